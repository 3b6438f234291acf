//! Downstream use of a pretrained encoder: frozen features for the linear probe
//! ([`EncoderFeatures`]), and supervised finetuning per fold ([`finetune_fold`]) — from a
//! pretrained checkpoint (strict loading) or, as the baseline, from a seeded random
//! initialization of the same architecture.
//!
//! Finetuning: the encoder's pooled features `[B, d_model]` feed a linear classifier
//! (`classifier.weight`, `classifier.bias`). The loss is class-weighted cross-entropy (weights
//! `n / (k · count_c)` from the training side, as scikit-learn's `balanced`). Every epoch the
//! validation subjects (a seeded share of the fold's training subjects, never test subjects)
//! are scored by balanced accuracy (ties: lower validation loss); the best epoch's weights are
//! kept and training stops after `patience` epochs without improvement. The test side is only
//! scored once, with the kept weights.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::{Module, VarMap};
use neurofm_eval::logreg::argmax_rows;
use neurofm_eval::metrics::Metrics;
use neurofm_eval::probe::{FoldResult, SubjectResult};
use neurofm_eval::protocol::{check_fold, split_validation, Fold, Protocol, WindowMeta};
use neurofm_eval::source::FeatureExtractor;
use neurofm_eval::EvalError;
use neurofm_models::{Batch, ModelConfig, Pool, Pretrainable};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{self, sorted_vars, Checkpoint, LoadReport, TrainerState};
use crate::error::{Result, TrainError};
use crate::init::SeededVarMap;
use crate::loader::SplitMix64;
use crate::optim::{AdamW, AdamWConfig};

/// A pretrained checkpoint opened for downstream use.
#[derive(Debug, Clone)]
pub struct Pretrained {
    pub dir: PathBuf,
    pub model: ModelConfig,
    pub state: TrainerState,
    /// Accept model variables missing from the file (left as initialized) instead of failing.
    /// Unexpected tensors and shape mismatches always fail.
    pub allow_missing: bool,
}

impl Pretrained {
    /// Opens a checkpoint directory (`checkpoints/<run>/step-<N>`) or a run directory (its
    /// newest checkpoint).
    pub fn open(path: &Path) -> Result<Pretrained> {
        let dir = if path.join(checkpoint::MODEL_FILE).is_file() {
            path.to_path_buf()
        } else {
            checkpoint::latest(path)?.ok_or_else(|| TrainError::Checkpoint {
                path: path.to_path_buf(),
                reason: "neither a checkpoint (no model.safetensors) nor a run directory with a step-N checkpoint".into(),
            })?
        };
        let ck = Checkpoint::load(&dir)?;
        let model: ModelConfig =
            serde_json::from_value(ck.config.clone()).map_err(|e| TrainError::Checkpoint {
                path: dir.join(checkpoint::CONFIG_FILE),
                reason: format!("not a model configuration: {e}"),
            })?;
        Ok(Pretrained {
            dir,
            model,
            state: ck.state,
            allow_missing: false,
        })
    }

    pub fn model_path(&self) -> PathBuf {
        self.dir.join(checkpoint::MODEL_FILE)
    }

    /// Checks that windows of `window_len` samples fit the model, and that the data were
    /// prepared by the same recipe as the pretraining data (unless `allow_recipe_mismatch`).
    pub fn check_data(
        &self,
        window_len: usize,
        recipe_hash: Option<&str>,
        allow_recipe_mismatch: bool,
    ) -> Result<()> {
        let ModelConfig::Mae(m) = &self.model else {
            return Err(TrainError::Config {
                field: "checkpoint".into(),
                reason: format!(
                    "{}: only masked-autoencoder encoders (type mae) can be probed or finetuned on windows",
                    self.dir.display()
                ),
            });
        };
        if window_len == 0
            || !window_len.is_multiple_of(m.patch_len)
            || window_len / m.patch_len > m.max_patches
        {
            return Err(TrainError::Config {
                field: "windows.length_s".into(),
                reason: format!(
                    "windows of {window_len} samples do not fit the encoder of {} (patch_len {}, at most {} patches)",
                    self.dir.display(),
                    m.patch_len,
                    m.max_patches
                ),
            });
        }
        if !allow_recipe_mismatch && self.state.recipe_hash.as_deref() != recipe_hash {
            return Err(TrainError::Config {
                field: "recipe".into(),
                reason: format!(
                    "the task's store was prepared by recipe {} but {} was pretrained on data prepared by recipe {}; preprocessing must match (pass --allow-recipe-mismatch to override)",
                    recipe_hash.unwrap_or("(none)"),
                    self.dir.display(),
                    self.state.recipe_hash.as_deref().unwrap_or("(none)")
                ),
            });
        }
        Ok(())
    }

    /// Builds the model in `varmap` and loads its weights strictly (every tensor of the file
    /// matched by name and shape, none missing, none unexpected).
    pub fn build(
        &self,
        varmap: &VarMap,
        seed: u64,
        device: &Device,
    ) -> Result<(Box<dyn Pretrainable>, LoadReport)> {
        let vb = SeededVarMap::var_builder(varmap, seed, DType::F32, device);
        let model = self.model.build(vb)?;
        let report = checkpoint::load_strict(&self.model_path(), varmap, self.allow_missing)?;
        Ok((model, report))
    }
}

/// Feature width (`d_model`) of a model configuration.
pub fn feature_dim(m: &ModelConfig) -> usize {
    match m {
        ModelConfig::Mae(c) => c.d_model,
        ModelConfig::Gpt(c) => c.d_model,
    }
}

fn channel_tensor(channel_names: &[String], device: &Device) -> Result<Tensor> {
    let ids: Vec<u32> = channel_names
        .iter()
        .map(|n| neurofm_tokenize::channels::channel_id(n))
        .collect();
    Ok(Tensor::from_slice(&ids, ids.len(), device)?)
}

/// Frozen encoder features (pooled per [`Pool`]) as a probe feature extractor.
pub struct EncoderFeatures {
    model: Box<dyn Pretrainable>,
    channel_ids: Tensor,
    n_channels: usize,
    dim: usize,
    device: Device,
    name: String,
    pool: Pool,
}

impl EncoderFeatures {
    /// The pretrained encoder of `pretrained`, its weights loaded strictly. `channel_names`: the
    /// task's channels in window order.
    pub fn new(
        pretrained: &Pretrained,
        channel_names: &[String],
        device: &Device,
        pool: Pool,
    ) -> Result<(EncoderFeatures, LoadReport)> {
        let varmap = VarMap::new();
        let (model, report) = pretrained.build(&varmap, 0, device)?;
        let enc = Self::from_model(pretrained, model, channel_names, device, pool)?;
        Ok((enc, report))
    }

    /// The same architecture with the seeded random initialization its pretraining started
    /// from (`train.seed` of the checkpoint): the untrained twin every pretrained encoder is
    /// compared with.
    pub fn random_init(
        pretrained: &Pretrained,
        channel_names: &[String],
        device: &Device,
        pool: Pool,
    ) -> Result<EncoderFeatures> {
        let varmap = VarMap::new();
        let vb = SeededVarMap::var_builder(&varmap, pretrained.state.seed, DType::F32, device);
        let model = pretrained.model.build(vb)?;
        let mut enc = Self::from_model(pretrained, model, channel_names, device, pool)?;
        enc.name = format!("random-init-{}", pretrained.state.model_kind);
        Ok(enc)
    }

    fn from_model(
        pretrained: &Pretrained,
        model: Box<dyn Pretrainable>,
        channel_names: &[String],
        device: &Device,
        pool: Pool,
    ) -> Result<EncoderFeatures> {
        match pool {
            Pool::Cls if !model.has_cls_token() => {
                return Err(TrainError::Config {
                    field: "pool".into(),
                    reason: format!(
                        "the {} encoder of {} has no class token; use --pool mean or channel",
                        pretrained.state.model_kind,
                        pretrained.dir.display()
                    ),
                })
            }
            Pool::Attention => {
                return Err(TrainError::Config {
                    field: "pool".into(),
                    reason: "attention pooling is learned with the classifier: use it with `neurofm finetune`; a frozen probe takes --pool mean, channel or cls".into(),
                })
            }
            _ => {}
        }
        Ok(EncoderFeatures {
            model,
            channel_ids: channel_tensor(channel_names, device)?,
            n_channels: channel_names.len(),
            dim: pool.dim(channel_names.len(), feature_dim(&pretrained.model)),
            device: device.clone(),
            name: format!("{}-encoder", pretrained.state.model_kind),
            pool,
        })
    }
}

impl FeatureExtractor for EncoderFeatures {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn batch_size(&self) -> usize {
        32
    }

    fn extract(&mut self, x: &[f32], batch: usize) -> std::result::Result<Vec<f64>, EvalError> {
        let num = |e: candle_core::Error| EvalError::Numerical {
            what: self.name.clone(),
            reason: e.to_string(),
        };
        let t = x.len() / (batch * self.n_channels).max(1);
        let xt = Tensor::from_slice(x, (batch, self.n_channels, t), &self.device).map_err(num)?;
        let b = Batch {
            x: xt,
            channel_ids: self.channel_ids.clone(),
            tokens: None,
        };
        let pooled = match self.pool {
            // The model's own mean pooling (as before readouts existed).
            Pool::Mean => self.model.encode(&b),
            p => self
                .model
                .encode_tokens(&b)
                .and_then(|tok| p.pool_tokens(&tok)),
        };
        let f = pooled
            .and_then(|f| f.to_dtype(DType::F64))
            .and_then(|f| f.to_device(&Device::Cpu))
            .and_then(|f| f.flatten_all())
            .and_then(|f| f.to_vec1::<f64>())
            .map_err(num)?;
        Ok(f)
    }
}

/// What to finetune.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FinetuneMode {
    /// Encoder and classifier.
    Full,
    /// The classifier only, on frozen encoder features.
    Head,
}

impl FinetuneMode {
    pub fn as_str(self) -> &'static str {
        match self {
            FinetuneMode::Full => "full",
            FinetuneMode::Head => "head",
        }
    }
}

/// Finetuning settings (TOML `[finetune]` of a task, or CLI flags).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FinetuneConfig {
    pub mode: FinetuneMode,
    /// Upper bound on epochs over the training side.
    pub max_epochs: usize,
    /// Epochs without a better validation score before stopping.
    pub patience: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub weight_decay: f64,
    /// Global gradient-norm clip (0 = off).
    pub grad_clip: f64,
    /// Share of the fold's training subjects held out for early stopping.
    pub val_fraction: f64,
}

impl Default for FinetuneConfig {
    fn default() -> Self {
        FinetuneConfig {
            mode: FinetuneMode::Full,
            max_epochs: 30,
            patience: 5,
            batch_size: 32,
            lr: 5e-4,
            weight_decay: 0.05,
            grad_clip: 1.0,
            val_fraction: 0.2,
        }
    }
}

impl FinetuneConfig {
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, reason: String| {
            Err(TrainError::Config {
                field: format!("finetune.{field}"),
                reason,
            })
        };
        if self.max_epochs == 0 {
            return bad("max_epochs", "must be at least 1".into());
        }
        if self.batch_size == 0 {
            return bad("batch_size", "must be at least 1".into());
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad("lr", format!("{} is not a positive learning rate", self.lr));
        }
        if !(self.val_fraction > 0.0 && self.val_fraction < 1.0) {
            return bad(
                "val_fraction",
                format!("{} is not in (0, 1)", self.val_fraction),
            );
        }
        if !self.weight_decay.is_finite() || self.weight_decay < 0.0 {
            return bad(
                "weight_decay",
                format!("{} is not a non-negative number", self.weight_decay),
            );
        }
        if !self.grad_clip.is_finite() || self.grad_clip < 0.0 {
            return bad(
                "grad_clip",
                format!("{} is not a non-negative number", self.grad_clip),
            );
        }
        Ok(())
    }
}

/// The labelled windows of a task in memory (already Euclidean-aligned when asked).
pub struct LabelledWindows<'a> {
    /// `[n_windows, n_channels, window_len]` for every window of `meta` (unlabelled ones may be
    /// zeros: they are never used).
    pub data: &'a [f32],
    pub meta: &'a [WindowMeta],
    pub n_channels: usize,
    pub window_len: usize,
    pub channel_names: &'a [String],
    pub n_classes: usize,
}

impl LabelledWindows<'_> {
    fn batch(&self, idx: &[usize], device: &Device) -> Result<(Tensor, Vec<u32>)> {
        let sz = self.n_channels * self.window_len;
        let mut x = Vec::with_capacity(idx.len() * sz);
        let mut y = Vec::with_capacity(idx.len());
        for &i in idx {
            let w = self.data.get(i * sz..(i + 1) * sz).ok_or_else(|| {
                TrainError::Data(format!("window {i} is outside the loaded windows"))
            })?;
            x.extend_from_slice(w);
            let label = self
                .meta
                .get(i)
                .and_then(|m| m.label)
                .ok_or_else(|| TrainError::Data(format!("window {i} has no label")))?;
            y.push(label as u32);
        }
        let x = Tensor::from_vec(x, (idx.len(), self.n_channels, self.window_len), device)?;
        Ok((x, y))
    }
}

/// Where finetuning of one fold starts from.
pub enum Start<'a> {
    Pretrained(&'a Pretrained),
    /// A seeded random initialization of this architecture (the from-scratch baseline).
    Scratch(&'a ModelConfig),
}

/// One fold's outcome, with the training history.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FinetuneFold {
    pub result: FoldResult,
    pub best_epoch: usize,
    pub epochs_run: usize,
    /// Per epoch: (train loss, validation loss, validation balanced accuracy).
    pub history: Vec<(f64, f64, f64)>,
    pub validation_subjects: Vec<String>,
}

/// `idx` shuffled (Fisher–Yates), a pure function of (seed, epoch).
fn shuffled(idx: &[usize], seed: u64, epoch: u64) -> Vec<usize> {
    let mut v = idx.to_vec();
    let mut rng =
        SplitMix64::new(seed ^ epoch.wrapping_mul(0xD1B5_4A32_D192_ED03) ^ 0x5DEE_CE66_D1CE_4E5B);
    for i in (1..v.len()).rev() {
        // Lemire's multiply-shift: uniform in 0..=i (bias < (i + 1) / 2^64).
        let j = ((u128::from(rng.next_u64()) * (i as u128 + 1)) >> 64) as usize;
        v.swap(i, j);
    }
    v
}

/// Moves a seeded share (`fraction`, at least 1, at most all but 1) of the fold's training
/// windows to its validation side.
fn split_windows(fold: &Fold, fraction: f64, seed: u64) -> Result<Fold> {
    let n = fold.train.len();
    if n < 2 {
        return Err(TrainError::Data(format!(
            "fold {}: {n} training window(s); early stopping needs at least 2",
            fold.name
        )));
    }
    let order = shuffled(&fold.train, seed, u64::MAX);
    let n_val = ((n as f64 * fraction).round() as usize).clamp(1, n - 1);
    let mut f = fold.clone();
    f.validation = order[..n_val].to_vec();
    f.train = order[n_val..].to_vec();
    f.validation.sort_unstable();
    f.train.sort_unstable();
    f.validation_subjects = f.train_subjects.clone();
    Ok(f)
}

fn fold_seed(seed: u64, fold: &str) -> u64 {
    crate::init::name_id(fold) ^ seed
}

struct Classifier {
    model: Box<dyn Pretrainable>,
    head: candle_nn::Linear,
    channel_ids: Tensor,
    frozen: bool,
}

impl Classifier {
    fn logits(&self, x: Tensor) -> candle_core::Result<Tensor> {
        let f = self.model.encode(&Batch {
            x,
            channel_ids: self.channel_ids.clone(),
            tokens: None,
        })?;
        let f = if self.frozen { f.detach() } else { f };
        self.head.forward(&f)
    }
}

/// Class-weighted mean negative log-likelihood: `Σ w_y · nll / Σ w_y`.
fn weighted_ce(logits: &Tensor, y: &[u32], class_w: &[f32]) -> candle_core::Result<Tensor> {
    let dev = logits.device();
    let logp = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    let yt = Tensor::from_slice(y, (y.len(), 1), dev)?;
    let picked = logp.gather(&yt, 1)?.squeeze(1)?;
    let w: Vec<f32> = y
        .iter()
        .map(|&c| class_w.get(c as usize).copied().unwrap_or(0.0))
        .collect();
    let wsum: f32 = w.iter().sum();
    let wt = Tensor::from_vec(w, y.len(), dev)?;
    (picked * wt)?
        .sum_all()?
        .affine(-1.0 / f64::from(wsum.max(1e-12)), 0.0)
}

/// Class probabilities `[n, k]` (row-major, f64) and the weighted loss of windows `idx`.
fn predict(
    clf: &Classifier,
    data: &LabelledWindows<'_>,
    idx: &[usize],
    class_w: &[f32],
    device: &Device,
) -> Result<(Vec<f64>, Vec<usize>, f64)> {
    let mut proba = Vec::with_capacity(idx.len() * data.n_classes);
    let mut labels = Vec::with_capacity(idx.len());
    let (mut loss_sum, mut w_sum) = (0f64, 0f64);
    for chunk in idx.chunks(64) {
        let (x, y) = data.batch(chunk, device)?;
        let logits = clf.logits(x)?.detach();
        let bw: f64 = y
            .iter()
            .map(|&c| f64::from(class_w.get(c as usize).copied().unwrap_or(0.0)))
            .sum();
        let l = weighted_ce(&logits, &y, class_w)?.to_scalar::<f32>()?;
        loss_sum += f64::from(l) * bw;
        w_sum += bw;
        let p = candle_nn::ops::softmax(&logits, D::Minus1)?
            .to_dtype(DType::F64)?
            .to_device(&Device::Cpu)?
            .flatten_all()?
            .to_vec1::<f64>()?;
        proba.extend_from_slice(&p);
        labels.extend(y.iter().map(|&c| c as usize));
    }
    Ok((proba, labels, loss_sum / w_sum.max(1e-12)))
}

fn metric_err(e: EvalError) -> TrainError {
    TrainError::Data(e.to_string())
}

/// Finetunes on one fold and scores its test side. `progress(epoch, max_epochs)`.
#[allow(clippy::too_many_arguments)]
pub fn finetune_fold(
    start: &Start<'_>,
    data: &LabelledWindows<'_>,
    protocol: &Protocol,
    fold: &Fold,
    cfg: &FinetuneConfig,
    seed: u64,
    device: &Device,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<FinetuneFold> {
    cfg.validate()?;
    check_fold(protocol, fold, data.meta).map_err(metric_err)?;
    // Validation: whole training subjects; with fewer than two training subjects (within-subject
    // few-shot), a seeded share of the training windows.
    let vseed = fold_seed(seed, &fold.name);
    let fold = match split_validation(fold, data.meta, cfg.val_fraction, vseed) {
        Ok(f) => f,
        Err(EvalError::NotEnoughData(_)) => split_windows(fold, cfg.val_fraction, vseed)?,
        Err(e) => return Err(metric_err(e)),
    };
    let k = data.n_classes;
    let rng_seed = fold_seed(seed, &fold.name);

    // Model (pretrained, strictly loaded; or seeded random) + classifier.
    let varmap = VarMap::new();
    let model_cfg = match start {
        Start::Pretrained(p) => &p.model,
        Start::Scratch(m) => *m,
    };
    let model = match start {
        Start::Pretrained(p) => p.build(&varmap, rng_seed, device)?.0,
        Start::Scratch(m) => {
            let vb = SeededVarMap::var_builder(&varmap, rng_seed, DType::F32, device);
            m.build(vb)?
        }
    };
    let vb = SeededVarMap::var_builder(&varmap, rng_seed, DType::F32, device);
    let head = candle_nn::linear(feature_dim(model_cfg), k, vb.pp("classifier"))?;
    let clf = Classifier {
        model,
        head,
        channel_ids: channel_tensor(data.channel_names, device)?,
        frozen: cfg.mode == FinetuneMode::Head,
    };
    let trainable: Vec<(String, Var)> = sorted_vars(&varmap)
        .into_iter()
        .filter(|(n, _)| cfg.mode == FinetuneMode::Full || n.starts_with("classifier."))
        .collect();

    // Class weights from the training side.
    let mut counts = vec![0usize; k];
    for &i in &fold.train {
        if let Some(l) = data.meta.get(i).and_then(|m| m.label) {
            if let Some(c) = counts.get_mut(l) {
                *c += 1;
            }
        }
    }
    let n_train = fold.train.len();
    let present = counts.iter().filter(|&&c| c > 0).count().max(1);
    let class_w: Vec<f32> = counts
        .iter()
        .map(|&c| {
            if c == 0 {
                0.0
            } else {
                (n_train as f64 / (present as f64 * c as f64)) as f32
            }
        })
        .collect();

    let mut opt = AdamW::new(AdamWConfig {
        weight_decay: cfg.weight_decay,
        ..AdamWConfig::default()
    });
    let snapshot = |vars: &[(String, Var)]| -> Result<Vec<Tensor>> {
        vars.iter()
            .map(|(_, v)| Ok(v.as_tensor().copy()?.detach()))
            .collect()
    };
    let mut best: Option<(f64, f64, usize, Vec<Tensor>)> = None;
    let mut history = Vec::new();
    let mut since_best = 0;
    for epoch in 0..cfg.max_epochs {
        let order = shuffled(&fold.train, rng_seed, epoch as u64);
        let (mut loss_sum, mut n_batches) = (0f64, 0usize);
        for chunk in order.chunks(cfg.batch_size) {
            let (x, y) = data.batch(chunk, device)?;
            let loss = weighted_ce(&clf.logits(x)?, &y, &class_w)?;
            let value = loss.to_scalar::<f32>()?;
            if !value.is_finite() {
                return Err(TrainError::NonFinite {
                    step: epoch as u64 + 1,
                    what: "finetuning loss".into(),
                    recordings: vec![format!("fold {}", fold.name)],
                });
            }
            let grads = loss.backward()?;
            let mut g = BTreeMap::new();
            for (name, var) in &trainable {
                if let Some(t) = grads.get(var.as_tensor()) {
                    g.insert(name.clone(), t.clone());
                }
            }
            if cfg.grad_clip > 0.0 {
                let norm = crate::trainer::global_norm(&g)?;
                if norm > cfg.grad_clip {
                    let s = cfg.grad_clip / norm;
                    for t in g.values_mut() {
                        *t = (&*t * s)?;
                    }
                }
            }
            opt.step(&trainable, &g, cfg.lr)?;
            loss_sum += f64::from(value);
            n_batches += 1;
        }
        let (vp, vy, vloss) = predict(&clf, data, &fold.validation, &class_w, device)?;
        let vm = Metrics::compute(&vy, &argmax_rows(&vp, k), Some(&vp), k).map_err(metric_err)?;
        history.push((
            loss_sum / n_batches.max(1) as f64,
            vloss,
            vm.balanced_accuracy,
        ));
        let better = match &best {
            None => true,
            Some((bacc, bloss, _, _)) => {
                vm.balanced_accuracy > *bacc || (vm.balanced_accuracy == *bacc && vloss < *bloss)
            }
        };
        progress(epoch + 1, cfg.max_epochs);
        if better {
            best = Some((vm.balanced_accuracy, vloss, epoch, snapshot(&trainable)?));
            since_best = 0;
        } else {
            since_best += 1;
            if since_best >= cfg.patience.max(1) {
                break;
            }
        }
    }
    let epochs_run = history.len();
    let best_epoch = match best {
        Some((_, _, e, weights)) => {
            for ((_, var), w) in trainable.iter().zip(weights) {
                var.set(&w)?;
            }
            e
        }
        None => 0,
    };

    // The test side, scored once.
    let (tp, ty, _) = predict(&clf, data, &fold.test, &class_w, device)?;
    let pred = argmax_rows(&tp, k);
    let metrics = Metrics::compute(&ty, &pred, Some(&tp), k).map_err(metric_err)?;
    let mut per_subject = Vec::new();
    for s in &fold.test_subjects {
        let pos: Vec<usize> = fold
            .test
            .iter()
            .enumerate()
            .filter(|(_, &i)| {
                data.meta.get(i).and_then(|m| m.subject.as_deref()) == Some(s.as_str())
            })
            .map(|(p, _)| p)
            .collect();
        if pos.is_empty() {
            continue;
        }
        let yt: Vec<usize> = pos.iter().map(|&p| ty[p]).collect();
        let yp: Vec<usize> = pos.iter().map(|&p| pred[p]).collect();
        let pr: Vec<f64> = pos
            .iter()
            .flat_map(|&p| tp[p * k..(p + 1) * k].iter().copied())
            .collect();
        per_subject.push(SubjectResult {
            subject: s.clone(),
            metrics: Metrics::compute(&yt, &yp, Some(&pr), k).map_err(metric_err)?,
        });
    }
    Ok(FinetuneFold {
        result: FoldResult {
            seed,
            fold: fold.name.clone(),
            test_subjects: fold.test_subjects.clone(),
            n_train: fold.train.len(),
            n_test: fold.test.len(),
            c: None,
            metrics,
            per_subject,
        },
        best_epoch,
        epochs_run,
        history,
        validation_subjects: fold.validation_subjects.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffle_is_a_seeded_permutation() {
        let idx: Vec<usize> = (0..50).collect();
        let a = shuffled(&idx, 3, 0);
        let mut s = a.clone();
        s.sort();
        assert_eq!(s, idx);
        assert_eq!(a, shuffled(&idx, 3, 0));
        assert_ne!(a, shuffled(&idx, 3, 1));
        assert_ne!(a, idx);
    }

    #[test]
    fn window_split_moves_a_seeded_share_of_training_windows() {
        let fold = Fold {
            name: "subject=01".into(),
            seed: 0,
            train_subjects: vec!["01".into()],
            validation_subjects: vec![],
            test_subjects: vec!["01".into()],
            train: (0..10).collect(),
            validation: vec![],
            test: (10..20).collect(),
        };
        let f = split_windows(&fold, 0.2, 5).unwrap();
        assert_eq!(f.validation.len(), 2);
        assert_eq!(f.train.len(), 8);
        let mut all: Vec<usize> = f.train.iter().chain(&f.validation).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
        assert_eq!(f.test, fold.test);
        assert_eq!(f, split_windows(&fold, 0.2, 5).unwrap());
        let one = Fold {
            train: vec![3],
            ..fold.clone()
        };
        assert!(split_windows(&one, 0.2, 5).is_err());
    }

    #[test]
    fn weighted_ce_matches_hand_computation() {
        let logits = Tensor::new(&[[2.0f32, 0.0], [0.0, 1.0], [1.0, 1.0]], &Device::Cpu).unwrap();
        let y = [0u32, 1, 0];
        let w = [1.0f32, 3.0];
        let got = weighted_ce(&logits, &y, &w)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let nll = |l: [f64; 2], c: usize| {
            let m = l[0].max(l[1]);
            let lse = m + ((l[0] - m).exp() + (l[1] - m).exp()).ln();
            lse - l[c]
        };
        let want = (nll([2.0, 0.0], 0) + 3.0 * nll([0.0, 1.0], 1) + nll([1.0, 1.0], 0)) / 5.0;
        assert!((f64::from(got) - want).abs() < 1e-6, "{got} vs {want}");
    }
}
