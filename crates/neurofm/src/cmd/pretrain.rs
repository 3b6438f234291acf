//! `neurofm pretrain --config configs/pretrain/<name>.toml`: pretrain a model on a store.

use std::io::IsTerminal;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use candle_core::{DType, Device};
use candle_nn::VarMap;
use neurofm_models::ModelConfig;
use neurofm_train::checkpoint::{self, CheckpointFiles};
use neurofm_train::init::SeededVarMap;
use neurofm_train::loader::WindowSource;
use neurofm_train::pretrain::{self, ModelObjective, PretrainConfig};
use neurofm_train::{RunInfo, Trainer};

use crate::Global;

/// Pretrain a model on the windows of a store: a masked autoencoder over patches (`kind = "mae"`)
/// or a causal transformer over tokens of a fitted tokenizer (`kind = "gpt"`).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Pretrain configuration (TOML: [data], [model], [train]); optional with --resume, which
    /// then uses the configuration saved in the checkpoint.
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
    /// Total optimizer steps (overrides train.steps).
    #[arg(long)]
    pub max_steps: Option<u64>,
    /// Run directory (overrides train.out).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run from its newest checkpoint (in train.out, or --out). The losses are the
    /// same, bit for bit, as those of an uninterrupted run.
    #[arg(long, conflicts_with = "resume_from")]
    pub resume: bool,
    /// Continue from this checkpoint directory (checkpoints/<run>/step-<N>); without --config
    /// the configuration saved in the checkpoint is used.
    #[arg(long, value_name = "DIR")]
    pub resume_from: Option<PathBuf>,
    /// Windows per micro-batch (overrides train.batch_size).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Seed of the data order and the masks (overrides train.seed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Where to train.
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    pub device: DeviceArg,
    /// Print the resolved configuration, the parameter count and a data summary, then stop.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceArg {
    Cpu,
    Cuda,
}

const PRETRAIN_FILE: &str = "pretrain.json";
/// Steps averaged for the end-of-run loss.
const TAIL_STEPS: usize = 20;

fn objective_name(m: &ModelConfig) -> &'static str {
    match m {
        ModelConfig::Mae(c) => c.objective.name(),
        ModelConfig::Gpt(_) => "next-token",
    }
}

pub fn run(args: Args, global: &Global) -> anyhow::Result<()> {
    let mut cfg = match (&args.config, &args.resume_from) {
        (Some(path), _) => PretrainConfig::read(path)?,
        (None, Some(dir)) => read_saved_config(dir)?,
        (None, None) => bail!("--config is required (or --resume-from DIR to continue a run)"),
    };
    if let Some(v) = args.max_steps {
        cfg.train.steps = v;
    }
    if let Some(v) = &args.out {
        cfg.train.out = v.clone();
    }
    if let Some(v) = args.batch_size {
        cfg.train.batch_size = v;
    }
    if let Some(v) = args.seed {
        cfg.train.seed = v;
    }
    let resume_dir =
        if let Some(d) = &args.resume_from {
            Some(d.clone())
        } else if args.resume {
            Some(checkpoint::latest(&cfg.train.out)?.with_context(|| {
                format!("--resume: no checkpoint in {}", cfg.train.out.display())
            })?)
        } else {
            None
        };

    let resolved = pretrain::resolve(&cfg)?;
    let device = match args.device {
        DeviceArg::Cpu => Device::Cpu,
        DeviceArg::Cuda => Device::new_cuda(0).context("--device cuda")?,
    };
    let varmap = VarMap::new();
    // Initial weights are a function of train.seed (candle's own init is not seedable on CPU).
    let vb = SeededVarMap::var_builder(&varmap, cfg.train.seed, DType::F32, &device);
    let model = resolved
        .model
        .build(vb)
        .context("building the model from [model]")?;
    let mut objective = ModelObjective::new(model, &resolved.channel_ids, &device)?;
    if let (Some(tok), ModelConfig::Gpt(g)) = (&resolved.tokenizer, &resolved.model) {
        objective = objective.with_tokenizer(tok.clone(), g.max_len);
    }
    let source = resolved.source.clone();
    let n_params: usize = checkpoint::sorted_vars(&varmap)
        .iter()
        .map(|(_, v)| v.as_tensor().elem_count())
        .sum();

    // The loss of a trivial predictor, to judge the pretraining loss against.
    let zero_loss = resolved.trivial_loss;
    if args.dry_run {
        print_dry_run(&cfg, &resolved, n_params)?;
        // The loader alone, for 2 s: what the step may consume without waiting for data.
        let lcfg = neurofm_train::LoaderConfig {
            batch_size: cfg.train.batch_size,
            seed: cfg.train.seed,
            prefetch: cfg.train.prefetch,
            workers: cfg.train.workers,
        };
        let src: std::sync::Arc<dyn WindowSource> = source.clone();
        let mut loader = neurofm_train::Loader::start(src, lcfg, 0)?;
        let t0 = std::time::Instant::now();
        let mut n = 0usize;
        while t0.elapsed().as_secs_f64() < 2.0 {
            n += loader.next_batch()?.windows.len();
        }
        println!(
            "loader_windows_per_s = {:.0}  # {} reader threads, measured for 2 s",
            n as f64 / t0.elapsed().as_secs_f64(),
            cfg.train.workers
        );
        println!(
            "trivial_loss = {zero_loss:.6}  # {}",
            resolved.trivial_description
        );
        return Ok(());
    }

    let model_json = serde_json::to_value(&resolved.model)?;
    let mut extra = std::collections::BTreeMap::new();
    extra.insert(PRETRAIN_FILE.to_string(), serde_json::to_value(&cfg)?);
    let run = RunInfo {
        dir: cfg.train.out.clone(),
        files: CheckpointFiles {
            config: model_json,
            tokenizer: match &resolved.tokenizer {
                Some(t) => Some(t.to_json()?),
                None => None,
            },
            extra,
        },
        recipe_hash: source.recipe_hash(),
        model_kind: pretrain::kind_name(&resolved.model).to_string(),
        channels: source.channel_names().to_vec(),
        trivial_loss: Some(zero_loss),
    };
    let source_dyn: std::sync::Arc<dyn WindowSource> = source.clone();
    let mut trainer = Trainer::new(
        resolved.engine.clone(),
        run,
        &varmap,
        device,
        source_dyn,
        &objective,
    )?;
    if let Some(dir) = &resume_dir {
        let report = trainer.resume(dir)?;
        if !global.quiet {
            eprintln!(
                "resuming from {} (step {}, {})",
                dir.display(),
                trainer.state().step,
                report
            );
        }
    }
    let total = cfg.train.steps;
    let done = trainer.state().step;
    if !global.quiet {
        eprintln!(
            "pretrain: {} {} ({} parameters) on {} windows of {} channels × {} samples, steps {}..{} → {}",
            pretrain::kind_name(&resolved.model),
            cfg.model.preset,
            n_params,
            source.len(),
            source.n_channels(),
            source.window_len(),
            done,
            total,
            cfg.train.out.display()
        );
        eprintln!(
            "objective: {}; reference: a trivial predictor scores loss {zero_loss:.4} ({})",
            objective_name(&resolved.model),
            resolved.trivial_description
        );
    }
    let pb = crate::progress::bar(total, "pretrain", global.quiet);
    pb.set_position(done);
    let summary = trainer.run(&mut |r| {
        pb.set_position(r.step);
        pb.set_message(format!(
            "loss {:.4} ({:.1}% of trivial) lr {:.2e} {:.0} windows/s",
            r.loss,
            100.0 * r.loss_over_trivial.unwrap_or(f64::NAN),
            r.lr,
            r.windows_per_s
        ));
        if !std::io::stderr().is_terminal() && !global.quiet && r.step % 50 == 0 {
            let per_step = (cfg.train.batch_size * cfg.train.accumulate) as f64;
            let eta_s =
                (total.saturating_sub(r.step)) as f64 * per_step / r.windows_per_s.max(1e-9);
            eprintln!(
                "step {}/{} loss {:.4} ({:.1}% of trivial) lr {:.2e} {:.0} windows/s eta {:.0} s",
                r.step,
                total,
                r.loss,
                100.0 * r.loss_over_trivial.unwrap_or(f64::NAN),
                r.lr,
                r.windows_per_s,
                eta_s
            );
        }
        ControlFlow::Continue(())
    });
    pb.finish_and_clear();
    let summary = summary?;
    if !global.quiet {
        let last = summary.losses.last().map(|l| l.1).unwrap_or(f32::NAN);
        // The end of the run, judged on the mean of its last steps (one step's loss is noisy).
        let tail: Vec<f64> = summary
            .losses
            .iter()
            .rev()
            .take(TAIL_STEPS)
            .map(|l| f64::from(l.1))
            .collect();
        let tail_mean = tail.iter().sum::<f64>() / tail.len().max(1) as f64;
        let ratio = tail_mean / zero_loss.max(f64::MIN_POSITIVE);
        eprintln!(
            "done: step {} loss {:.4}; mean of the last {} steps {:.4} = {:.1}% of the trivial loss {zero_loss:.4}; {:.1} s of training; checkpoint {}; metrics {}; plot {}",
            trainer.state().step,
            last,
            tail.len(),
            tail_mean,
            100.0 * ratio,
            trainer.state().elapsed_s,
            summary
                .last_checkpoint
                .as_deref()
                .map(Path::display)
                .map(|d| d.to_string())
                .unwrap_or_else(|| "-".into()),
            cfg.train.out.join("metrics.jsonl").display(),
            cfg.train.out.join("loss.png").display()
        );
        if !tail.is_empty() && ratio > 0.9 {
            eprintln!(
                "warning: the model did not get below 90% of the trivial loss ({:.1}%): it has learned little beyond {}",
                100.0 * ratio,
                resolved.trivial_description
            );
        }
    }
    Ok(())
}

fn read_saved_config(dir: &Path) -> anyhow::Result<PretrainConfig> {
    let path = dir.join(PRETRAIN_FILE);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("{}: the checkpoint's configuration", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: invalid", path.display()))
}

fn print_dry_run(
    cfg: &PretrainConfig,
    r: &neurofm_train::pretrain::Resolved,
    n_params: usize,
) -> anyhow::Result<()> {
    let src = &r.source;
    let index = src.index();
    println!("# resolved configuration");
    println!("{}", toml::to_string_pretty(cfg)?);
    println!("# model");
    println!("{}", serde_json::to_string_pretty(&r.model)?);
    println!("parameters = {n_params}");
    println!();
    println!("# data");
    println!("store = {}", cfg.data.store.display());
    println!("recordings = {}", src.store().entries().len());
    println!("subjects = {}", index.subjects().len());
    println!("windows = {}", src.len());
    println!(
        "window = {} channels x {} samples at {} Hz",
        src.n_channels(),
        src.window_len(),
        index.sfreq_hz
    );
    println!("channels = {}", src.channel_names().join(", "));
    let unknown = r
        .channel_ids
        .iter()
        .filter(|&&id| id == neurofm_tokenize::channels::unknown_channel())
        .count();
    println!("channels without a 10-05 position = {unknown}");
    println!(
        "recipe_hash = {}",
        src.recipe_hash().unwrap_or_else(|| "(none)".into())
    );
    let per_step = cfg.train.batch_size * cfg.train.accumulate;
    println!(
        "batches per epoch = {}; windows per step = {per_step}; epochs = {:.2}",
        src.len() / cfg.train.batch_size.max(1),
        (cfg.train.steps as f64 * per_step as f64) / src.len().max(1) as f64
    );
    Ok(())
}
