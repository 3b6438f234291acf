//! The training loop: micro-batches from the background [`Loader`], gradient accumulation,
//! global-norm clipping, [`AdamW`], the cosine schedule, metrics, checkpoints and the loss plot.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{self, Checkpoint, CheckpointFiles, LoadReport, TrainerState};
use crate::error::{Result, TrainError};
use crate::loader::{batches_per_epoch, HostBatch, Loader, LoaderConfig, WindowSource};
use crate::metrics::{MetricsLog, StepRecord};
use crate::optim::{AdamW, AdamWConfig};
use crate::schedule::CosineSchedule;

/// What the engine trains: a scalar loss of a batch `x` (`[batch, channels, samples]` f32).
/// Anything random in the loss (masks, dropout) must be derived from `(seed, step)` only —
/// `step` is the micro-batch counter of the run — so that a resumed run is exact.
pub trait Objective {
    fn loss(&self, x: &Tensor, seed: u64, step: u64) -> candle_core::Result<Tensor>;
}

/// Engine settings (the `[train]` table of a pretrain config, resolved).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Total optimizer steps (the schedule's length).
    pub steps: u64,
    pub batch_size: usize,
    /// Micro-batches per optimizer step.
    pub accumulate: usize,
    pub lr: f64,
    pub min_lr: f64,
    pub warmup_steps: u64,
    pub adamw: AdamWConfig,
    /// Maximum global gradient norm; 0 disables clipping.
    pub grad_clip: f64,
    pub seed: u64,
    /// Checkpoint every N optimizer steps (and after the last one); 0 = only at the end.
    pub checkpoint_every: u64,
    /// Checkpoints to keep (0 = all).
    pub keep_last: usize,
    /// Batches each loader thread prepares ahead.
    pub prefetch: usize,
    /// Loader threads.
    pub workers: usize,
}

impl TrainConfig {
    /// Checks the values, naming the offending `train.<key>`.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, reason: &str| {
            Err(TrainError::Config {
                field: format!("train.{field}"),
                reason: reason.to_string(),
            })
        };
        if self.steps == 0 {
            return bad("steps", "must be at least 1");
        }
        if self.batch_size == 0 {
            return bad("batch_size", "must be at least 1");
        }
        if self.accumulate == 0 {
            return bad("accumulate", "must be at least 1");
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad("lr", "must be a positive number");
        }
        if !(self.min_lr.is_finite() && self.min_lr >= 0.0 && self.min_lr <= self.lr) {
            return bad("min_lr", "must be between 0 and lr");
        }
        if !(self.adamw.weight_decay.is_finite() && self.adamw.weight_decay >= 0.0) {
            return bad("weight_decay", "must be ≥ 0");
        }
        if !(0.0..1.0).contains(&self.adamw.beta1) {
            return bad("beta1", "must be in [0, 1)");
        }
        if !(0.0..1.0).contains(&self.adamw.beta2) {
            return bad("beta2", "must be in [0, 1)");
        }
        if !(self.adamw.eps.is_finite() && self.adamw.eps > 0.0) {
            return bad("eps", "must be > 0");
        }
        if !(self.grad_clip.is_finite() && self.grad_clip >= 0.0) {
            return bad("grad_clip", "must be ≥ 0 (0 disables clipping)");
        }
        Ok(())
    }

    pub fn schedule(&self) -> CosineSchedule {
        CosineSchedule {
            base_lr: self.lr,
            min_lr: self.min_lr,
            warmup_steps: self.warmup_steps,
            total_steps: self.steps,
        }
    }
}

/// Where and how a run is recorded.
#[derive(Debug, Clone)]
pub struct RunInfo {
    /// `checkpoints/<run>`: holds `step-N/`, `metrics.jsonl`, `loss.png`.
    pub dir: PathBuf,
    pub files: CheckpointFiles,
    pub recipe_hash: Option<String>,
    pub model_kind: String,
    pub channels: Vec<String>,
    /// The objective's trivial loss (a predictor that ignores its input): each step's record
    /// then carries `loss_over_trivial`.
    pub trivial_loss: Option<f64>,
}

/// What a finished (or stopped) run reports.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// `(step, loss)` of every step this call ran.
    pub losses: Vec<(u64, f32)>,
    pub last_checkpoint: Option<PathBuf>,
    /// True when `on_step` asked to stop before `steps`.
    pub stopped: bool,
}

/// Trains the variables of a VarMap with an [`Objective`].
pub struct Trainer<'a> {
    cfg: TrainConfig,
    run: RunInfo,
    vars: Vec<(String, Var)>,
    opt: AdamW,
    state: TrainerState,
    device: Device,
    source: Arc<dyn WindowSource>,
    objective: &'a dyn Objective,
}

const LOSS_TAIL: usize = 100;

impl<'a> Trainer<'a> {
    pub fn new(
        cfg: TrainConfig,
        run: RunInfo,
        varmap: &VarMap,
        device: Device,
        source: Arc<dyn WindowSource>,
        objective: &'a dyn Objective,
    ) -> Result<Self> {
        cfg.validate()?;
        if batches_per_epoch(source.len(), cfg.batch_size) == 0 {
            return Err(TrainError::Config {
                field: "train.batch_size".into(),
                reason: format!(
                    "batch size {} is larger than the number of windows ({})",
                    cfg.batch_size,
                    source.len()
                ),
            });
        }
        let vars = checkpoint::sorted_vars(varmap);
        if vars.is_empty() {
            return Err(TrainError::Config {
                field: "model".into(),
                reason: "the model has no trainable variables".into(),
            });
        }
        let state = TrainerState {
            step: 0,
            micro_batches: 0,
            epoch: 0,
            position: 0,
            seed: cfg.seed,
            batch_size: cfg.batch_size,
            accumulate: cfg.accumulate,
            n_windows: source.len(),
            elapsed_s: 0.0,
            loss_tail: Vec::new(),
            recipe_hash: run.recipe_hash.clone(),
            model_kind: run.model_kind.clone(),
            channels: run.channels.clone(),
            neurofm_version: env!("CARGO_PKG_VERSION").to_string(),
        };
        Ok(Trainer {
            opt: AdamW::new(cfg.adamw),
            cfg,
            run,
            vars,
            state,
            device,
            source,
            objective,
        })
    }

    /// Continues from checkpoint `dir`: weights (strict), optimizer moments and trainer state.
    /// The seed, batch size, accumulation and data size must be those of the checkpoint, since
    /// the data order and masks depend on them.
    pub fn resume(&mut self, dir: &Path) -> Result<LoadReport> {
        let ckpt = Checkpoint::load(dir)?;
        let s = &ckpt.state;
        let check = |field: &str, ckpt_v: String, now: String| {
            if ckpt_v != now {
                Err(TrainError::Checkpoint {
                    path: dir.to_path_buf(),
                    reason: format!(
                        "`{field}` is {ckpt_v} in the checkpoint but {now} now; an exact resume needs the same value"
                    ),
                })
            } else {
                Ok(())
            }
        };
        check("train.seed", s.seed.to_string(), self.cfg.seed.to_string())?;
        check(
            "train.batch_size",
            s.batch_size.to_string(),
            self.cfg.batch_size.to_string(),
        )?;
        check(
            "train.accumulate",
            s.accumulate.to_string(),
            self.cfg.accumulate.to_string(),
        )?;
        check(
            "number of windows",
            s.n_windows.to_string(),
            self.source.len().to_string(),
        )?;
        check(
            "recipe hash",
            format!("{:?}", s.recipe_hash),
            format!("{:?}", self.run.recipe_hash),
        )?;
        let report = checkpoint::load_strict_vars(&ckpt.model_path(), &self.vars, false)?;
        let opt = AdamW::load(&ckpt.optimizer_path(), &self.vars)?;
        if opt.t != s.step {
            return Err(TrainError::Checkpoint {
                path: dir.to_path_buf(),
                reason: format!(
                    "optimizer has done {} steps but trainer_state.json says {}",
                    opt.t, s.step
                ),
            });
        }
        self.opt = opt;
        // The optimizer hyper-parameters of the checkpoint are kept: an exact resume needs them.
        self.cfg.adamw = self.opt.config;
        self.state = ckpt.state;
        Ok(report)
    }

    pub fn state(&self) -> &TrainerState {
        &self.state
    }

    pub fn config(&self) -> &TrainConfig {
        &self.cfg
    }

    pub fn vars(&self) -> &[(String, Var)] {
        &self.vars
    }

    /// Number of trainable scalars.
    pub fn parameter_count(&self) -> usize {
        self.vars
            .iter()
            .map(|(_, v)| v.as_tensor().elem_count())
            .sum()
    }

    /// Trains until `cfg.steps` optimizer steps are done, or until `on_step` returns
    /// `ControlFlow::Break` (then nothing more is written: the last checkpoint stays the one to
    /// resume from). A non-finite input, loss or gradient stops with [`TrainError::NonFinite`]
    /// before the optimizer touches the weights and before any checkpoint is written.
    pub fn run(
        &mut self,
        on_step: &mut dyn FnMut(&StepRecord) -> ControlFlow<()>,
    ) -> Result<RunSummary> {
        std::fs::create_dir_all(&self.run.dir).map_err(|e| TrainError::io(&self.run.dir, e))?;
        let mut metrics = MetricsLog::open(&self.run.dir.join("metrics.jsonl"), self.state.step)?;
        let schedule = self.cfg.schedule();
        let loader_cfg = LoaderConfig {
            batch_size: self.cfg.batch_size,
            seed: self.cfg.seed,
            prefetch: self.cfg.prefetch,
            workers: self.cfg.workers,
        };
        let bpe = batches_per_epoch(self.source.len(), self.cfg.batch_size) as u64;
        let mut loader = Loader::start(
            Arc::clone(&self.source),
            loader_cfg,
            self.state.micro_batches,
        )?;
        let mut summary = RunSummary {
            losses: Vec::new(),
            last_checkpoint: None,
            stopped: false,
        };
        let acc = self.cfg.accumulate;
        while self.state.step < self.cfg.steps {
            let t0 = Instant::now();
            let step = self.state.step;
            let lr = schedule.lr(step);
            let mut grads: BTreeMap<String, Tensor> = BTreeMap::new();
            let mut loss_sum = 0f32;
            let mut recordings: Vec<usize> = Vec::new();
            for _ in 0..acc {
                let batch = loader.next_batch()?;
                let (loss, g) = self.micro_step(&batch, step)?;
                loss_sum += loss;
                recordings.extend_from_slice(&batch.windows);
                for (name, g) in g {
                    let sum = match grads.remove(&name) {
                        Some(prev) => (prev + g)?,
                        None => g,
                    };
                    grads.insert(name, sum);
                }
            }
            let loss = loss_sum / acc as f32;
            let grad_norm = global_norm(&grads)?;
            if !grad_norm.is_finite() {
                return Err(self.non_finite(step, "gradient norm", &recordings));
            }
            if self.cfg.grad_clip > 0.0 && grad_norm > self.cfg.grad_clip {
                let scale = self.cfg.grad_clip / (grad_norm + 1e-6);
                for g in grads.values_mut() {
                    *g = (&*g * scale)?;
                }
            }
            self.opt.step(&self.vars, &grads, lr)?;
            let dt = t0.elapsed().as_secs_f64();
            self.state.step += 1;
            self.state.micro_batches += acc as u64;
            self.state.epoch = self.state.micro_batches / bpe;
            self.state.position = ((self.state.micro_batches % bpe) as usize) * self.cfg.batch_size;
            self.state.elapsed_s += dt;
            self.state.loss_tail.push((self.state.step, loss));
            if self.state.loss_tail.len() > LOSS_TAIL {
                let cut = self.state.loss_tail.len() - LOSS_TAIL;
                self.state.loss_tail.drain(..cut);
            }
            let record = StepRecord {
                step: self.state.step,
                loss,
                lr,
                grad_norm,
                windows_per_s: (self.cfg.batch_size * acc) as f64 / dt.max(1e-9),
                elapsed_s: self.state.elapsed_s,
                loss_over_trivial: self
                    .run
                    .trivial_loss
                    .filter(|t| *t > 0.0)
                    .map(|t| f64::from(loss) / t),
            };
            metrics.append(record)?;
            summary.losses.push((self.state.step, loss));
            let at_end = self.state.step == self.cfg.steps;
            let periodic = self.cfg.checkpoint_every > 0
                && self.state.step.is_multiple_of(self.cfg.checkpoint_every);
            if at_end || periodic {
                summary.last_checkpoint = Some(self.save_checkpoint()?);
                self.plot(&metrics)?;
            }
            if on_step(&record).is_break() {
                summary.stopped = !at_end;
                break;
            }
        }
        Ok(summary)
    }

    /// Writes a checkpoint of the current state now.
    pub fn save_checkpoint(&self) -> Result<PathBuf> {
        checkpoint::save(
            &self.run.dir,
            &self.vars,
            &self.opt,
            &self.state,
            &self.run.files,
            self.cfg.keep_last,
        )
    }

    fn plot(&self, metrics: &MetricsLog) -> Result<()> {
        let name = self
            .run
            .dir
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        crate::plot::loss_curve_png(
            metrics.records(),
            &format!("{} loss: {name}", self.run.model_kind),
            &self.run.dir.join("loss.png"),
        )
    }

    /// Forward + backward of one micro-batch: (loss, gradients by variable name, already divided
    /// by the accumulation count).
    fn micro_step(&self, batch: &HostBatch, step: u64) -> Result<(f32, Vec<(String, Tensor)>)> {
        let per = batch.shape[1] * batch.shape[2];
        if let Some(pos) = batch.data.iter().position(|v| !v.is_finite()) {
            let w = batch.windows.get(pos / per.max(1)).copied().unwrap_or(0);
            return Err(self.non_finite(step, "input sample", &[w]));
        }
        let x = Tensor::from_slice(&batch.data, batch.shape.as_slice(), &self.device)?;
        let loss = self.objective.loss(&x, self.cfg.seed, batch.index)?;
        let value = loss
            .to_dtype(DType::F32)?
            .to_device(&Device::Cpu)?
            .to_scalar::<f32>()?;
        if !value.is_finite() {
            return Err(self.non_finite(step, "loss", &batch.windows));
        }
        let scaled = if self.cfg.accumulate > 1 {
            (loss / self.cfg.accumulate as f64)?
        } else {
            loss
        };
        let grads = scaled.backward()?;
        let mut out = Vec::with_capacity(self.vars.len());
        for (name, var) in &self.vars {
            if let Some(g) = grads.get(var.as_tensor()) {
                out.push((name.clone(), g.clone()));
            }
        }
        Ok((value, out))
    }

    fn non_finite(&self, step: u64, what: &str, windows: &[usize]) -> TrainError {
        let mut names: Vec<String> = windows.iter().map(|&w| self.source.describe(w)).collect();
        names.sort();
        names.dedup();
        TrainError::NonFinite {
            step: step + 1,
            what: what.to_string(),
            recordings: names,
        }
    }
}

/// `sqrt(Σ ‖g‖²)` over the gradients, accumulated in f64 in name order.
pub fn global_norm(grads: &BTreeMap<String, Tensor>) -> Result<f64> {
    let mut total = 0f64;
    for g in grads.values() {
        let s = g
            .to_dtype(DType::F32)?
            .sqr()?
            .sum_all()?
            .to_device(&Device::Cpu)?
            .to_scalar::<f32>()?;
        total += s as f64;
    }
    Ok(total.sqrt())
}
