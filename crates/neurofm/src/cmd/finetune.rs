//! `neurofm finetune`: supervised finetuning of a pretrained encoder on every fold and seed of a
//! task, next to the same architecture trained from scratch and the band-power probe.

use std::path::PathBuf;

use anyhow::{bail, Context};
use candle_core::Device;
use neurofm_data::Store;
use neurofm_eval::bandpower::BandPower;
use neurofm_eval::ea::Alignment;
use neurofm_eval::probe::{evaluate_linear, LinearMethod};
use neurofm_eval::protocol::{labelled_subjects, make_folds, Protocol};
use neurofm_eval::report::{MethodKind, MethodResult, Report, REPORT_FORMAT_VERSION};
use neurofm_eval::source::WindowSource;
use neurofm_eval::store_source::StoreWindows;
use neurofm_eval::task::TaskConfig;
use neurofm_train::finetune::{
    finetune_fold, FinetuneConfig, FinetuneFold, FinetuneMode, LabelledWindows, Pretrained, Start,
};

use crate::cmd::probe::{store_recipe_hash, write_and_summarize, EaMode};
use crate::progress;
use crate::Global;

/// Finetune a pretrained encoder on a task (every fold and seed), with baselines.
///
/// For each fold of the task's protocol (e.g. leave-one-subject-out) and each seed: a share of the
/// training subjects is held out for early stopping (never a test subject); the encoder of
/// --checkpoint (strictly loaded) plus a linear classifier is trained with class-weighted
/// cross-entropy and AdamW; the epoch with the best validation balanced accuracy is kept; the test
/// subject is scored once. In the same report, on the same folds: the same architecture trained
/// from a seeded random initialization (the from-scratch baseline), and the log band-power +
/// logistic-regression probe. Writes report.json, report.md, PNG plots and finetune.json (per-fold
/// training histories) to --out.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:
  neurofm finetune --task configs/tasks/eegmat-rest-vs-arith.toml --checkpoint checkpoints/eegmat \\
    --seeds 0,1 --out runs/eegmat-finetune")]
pub struct Args {
    /// Task file (configs/tasks/*.toml).
    #[arg(long, value_name = "TOML")]
    pub task: PathBuf,
    /// Pretrained encoder: a checkpoint directory, or a run directory (its newest checkpoint).
    #[arg(long, value_name = "DIR")]
    pub checkpoint: PathBuf,
    /// Run directory for the reports and plots.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Store directory (default: the task's `store`).
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// loso, leave-N-out or few-shot-K (default: the task's protocol).
    #[arg(long, value_name = "NAME")]
    pub protocol: Option<String>,
    /// Comma-separated seeds (initialization of the classifier and of the scratch model, data
    /// order, validation subjects, fold assignment of leave-N-out).
    #[arg(long, value_delimiter = ',', default_value = "0", value_name = "SEEDS")]
    pub seeds: Vec<u64>,
    /// Euclidean alignment of the windows.
    #[arg(long, value_enum, default_value_t = EaMode::Off)]
    pub ea: EaMode,
    /// full: encoder and classifier; head: the classifier only, on frozen features.
    #[arg(long, value_enum, default_value_t = ModeArg::Full)]
    pub mode: ModeArg,
    /// Maximum epochs per fold.
    #[arg(long, default_value_t = FinetuneConfig::default().max_epochs)]
    pub max_epochs: usize,
    /// Epochs without a better validation score before stopping.
    #[arg(long, default_value_t = FinetuneConfig::default().patience)]
    pub patience: usize,
    #[arg(long, default_value_t = FinetuneConfig::default().batch_size)]
    pub batch_size: usize,
    /// AdamW learning rate.
    #[arg(long, default_value_t = FinetuneConfig::default().lr)]
    pub lr: f64,
    /// Share of each fold's training subjects used for early stopping.
    #[arg(long, default_value_t = FinetuneConfig::default().val_fraction)]
    pub val_fraction: f64,
    /// Methods to run, comma-separated: finetune (the pretrained encoder), scratch (the same
    /// architecture from a random initialization), bandpower (log band power + logistic
    /// regression). Every method uses the same folds, so runs with different --methods compare.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "finetune,scratch,bandpower"
    )]
    pub methods: Vec<MethodArg>,
    /// Finetune even though the task's store was prepared by another recipe than the encoder's
    /// pretraining data.
    #[arg(long)]
    pub allow_recipe_mismatch: bool,
    /// Start even if model variables are missing from the checkpoint (they keep their seeded
    /// initialization; the count is printed). Unexpected tensors and shape mismatches always fail.
    #[arg(long)]
    pub allow_missing_weights: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MethodArg {
    Finetune,
    Scratch,
    Bandpower,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModeArg {
    Full,
    Head,
}

pub fn run(args: Args, global: &Global) -> anyhow::Result<()> {
    let task = TaskConfig::load(&args.task)?;
    let store_dir = args.store.clone().unwrap_or_else(|| task.store.clone());
    let store = Store::open(&store_dir)
        .with_context(|| format!("opening the store of task {}", task.name))?;
    let recipe_hash = store_recipe_hash(&store);
    let source = StoreWindows::new(store, &task)?;
    let protocol = match &args.protocol {
        Some(p) => Protocol::parse_cli(p)?,
        None => task.protocol.clone(),
    };
    let cfg = FinetuneConfig {
        mode: match args.mode {
            ModeArg::Full => FinetuneMode::Full,
            ModeArg::Head => FinetuneMode::Head,
        },
        max_epochs: args.max_epochs,
        patience: args.patience,
        batch_size: args.batch_size,
        lr: args.lr,
        val_fraction: args.val_fraction,
        ..FinetuneConfig::default()
    };
    cfg.validate()?;
    if args.seeds.is_empty() {
        bail!("--seeds: no seed given");
    }
    if args.methods.is_empty() {
        bail!("--methods: no method given");
    }
    let info = source.info().clone();
    let mut pre = Pretrained::open(&args.checkpoint)?;
    pre.allow_missing = args.allow_missing_weights;
    pre.check_data(
        info.window_len,
        recipe_hash.as_deref(),
        args.allow_recipe_mismatch,
    )?;
    let subjects = labelled_subjects(&info.windows)?;
    let labelled: Vec<usize> = (0..info.windows.len())
        .filter(|&i| info.windows[i].label.is_some())
        .collect();
    if labelled.is_empty() {
        bail!(
            "task {}: no labelled window in {}",
            task.name,
            store_dir.display()
        );
    }
    let n_classes = info.classes.len();
    let mut folds = Vec::new();
    for &seed in &args.seeds {
        folds.extend(make_folds(&protocol, &info.windows, n_classes, seed)?);
    }
    if !global.quiet {
        let varmap = candle_nn::VarMap::new();
        let (_, load) = pre.build(&varmap, 0, &Device::Cpu)?;
        eprintln!("encoder weights: {load}");
        eprintln!(
            "{}: {} labelled windows ({} channels x {} samples at {} Hz), {} subjects, protocol {}, {} folds x seeds; encoder {} (step {})",
            task.name,
            labelled.len(),
            info.n_channels,
            info.window_len,
            info.sfreq_hz,
            subjects.len(),
            protocol.name(),
            folds.len(),
            pre.dir.display(),
            pre.state.step
        );
    }

    // Every labelled window in memory once ([n_windows, C, T]; unlabelled rows stay zero).
    let sz = info.n_channels * info.window_len;
    let mut raw = vec![0f32; info.windows.len() * sz];
    for &i in &labelled {
        source.read(i, &mut raw[i * sz..(i + 1) * sz])?;
    }
    let ea_modes: Vec<bool> = match args.ea {
        EaMode::Both => vec![false, true],
        EaMode::On => vec![true],
        EaMode::Off => vec![false],
    };
    let device = Device::Cpu;
    let mut methods: Vec<MethodResult> = Vec::new();
    let mut histories: Vec<serde_json::Value> = Vec::new();
    let mut starts: Vec<(String, MethodKind, String, Start<'_>)> = Vec::new();
    if args.methods.contains(&MethodArg::Finetune) {
        starts.push((
            format!("{}-finetune-{}", pre.state.model_kind, cfg.mode.as_str()),
            MethodKind::Model,
            format!(
                "pretrained encoder {} (step {}) + linear classifier, finetuned ({}) with early stopping on held-out training subjects",
                pre.dir.display(),
                pre.state.step,
                cfg.mode.as_str()
            ),
            Start::Pretrained(&pre),
        ));
    }
    if args.methods.contains(&MethodArg::Scratch) {
        starts.push((
            format!("{}-scratch", pre.state.model_kind),
            MethodKind::Baseline,
            "the same architecture and classifier from a seeded random initialization, trained the same way (all weights)".into(),
            Start::Scratch(&pre.model),
        ));
    }
    for &ea in &ea_modes {
        let data_buf;
        let data: &[f32] = if ea {
            let a = Alignment::fit(&source)?;
            let mut d = raw.clone();
            for &i in &labelled {
                let subject = info.windows[i].subject.as_deref().unwrap_or("");
                a.apply(subject, &mut d[i * sz..(i + 1) * sz], info.window_len)?;
            }
            data_buf = d;
            &data_buf
        } else {
            &raw
        };
        let windows = LabelledWindows {
            data,
            meta: &info.windows,
            n_channels: info.n_channels,
            window_len: info.window_len,
            channel_names: &info.channel_names,
            n_classes,
        };
        for (name, kind, description, start) in &starts {
            let label = format!("{name}{}", if ea { " +EA" } else { "" });
            let mode_cfg = match start {
                Start::Scratch(_) => FinetuneConfig {
                    mode: FinetuneMode::Full,
                    ..cfg.clone()
                },
                Start::Pretrained(_) => cfg.clone(),
            };
            let pb = progress::bar(folds.len() as u64, &label, global.quiet);
            let mut results = Vec::new();
            for fold in &folds {
                pb.set_message(format!("{label}: fold {} seed {}", fold.name, fold.seed));
                let r: FinetuneFold = finetune_fold(
                    start,
                    &windows,
                    &protocol,
                    fold,
                    &mode_cfg,
                    fold.seed,
                    &device,
                    &mut |_, _| {},
                )
                .with_context(|| format!("{label}: fold {} seed {}", fold.name, fold.seed))?;
                if !global.quiet && pb.is_hidden() {
                    eprintln!(
                        "{label} fold {} seed {}: balanced accuracy {:.3} (best epoch {} of {})",
                        fold.name,
                        fold.seed,
                        r.result.metrics.balanced_accuracy,
                        r.best_epoch + 1,
                        r.epochs_run
                    );
                }
                histories.push(serde_json::json!({
                    "method": name, "ea": ea, "fold": fold.name, "seed": fold.seed,
                    "validation_subjects": r.validation_subjects,
                    "best_epoch": r.best_epoch, "epochs_run": r.epochs_run,
                    "history": r.history.iter().map(|(t, v, b)| serde_json::json!({"train_loss": t, "val_loss": v, "val_balanced_accuracy": b})).collect::<Vec<_>>(),
                }));
                results.push(r.result);
                pb.inc(1);
            }
            pb.finish_and_clear();
            methods.push(MethodResult {
                name: name.clone(),
                kind: *kind,
                ea,
                description: description.clone(),
                folds: results,
            });
        }
    }

    if args.methods.contains(&MethodArg::Bandpower) {
        let mut bp = BandPower::new(
            info.n_channels,
            info.window_len,
            info.sfreq_hz,
            task.bandpower.nperseg,
        )?;
        let mut lm = vec![LinearMethod {
            name: "bandpower+logreg".into(),
            kind: MethodKind::Baseline,
            description: "log band power (delta, theta, alpha, beta, gamma per channel; Welch PSD) + L2 multinomial logistic regression".into(),
            extractor: &mut bp,
        }];
        let pb = progress::bar(labelled.len() as u64, "bandpower", global.quiet);
        methods.extend(evaluate_linear(
            &source,
            &protocol,
            &args.seeds,
            &ea_modes,
            &mut lm,
            &task.probe,
            &mut |stage, done, total| {
                pb.set_length(total);
                pb.set_position(done);
                pb.set_message(stage.to_string());
            },
        )?);
        pb.finish_and_clear();
    }

    let report = Report {
        format_version: REPORT_FORMAT_VERSION,
        task: task.name.clone(),
        protocol: protocol.name(),
        classes: info.classes.clone(),
        n_windows: labelled.len(),
        n_channels: info.n_channels,
        window_len: info.window_len,
        sfreq_hz: info.sfreq_hz,
        subjects,
        seeds: args.seeds.clone(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        neurofm_version: env!("CARGO_PKG_VERSION").into(),
        methods,
    };
    let hist_path = args.out.join("finetune.json");
    let hist = serde_json::json!({ "config": cfg, "checkpoint": pre.dir, "folds": histories });
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    neurofm_eval::report::write_atomic(
        &hist_path,
        serde_json::to_string_pretty(&hist)?.as_bytes(),
    )?;
    write_and_summarize(&report, &args.out, &[hist_path], global.quiet)?;
    Ok(())
}
