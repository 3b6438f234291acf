//! `neurofm probe`: evaluate features with a linear probe on a task's protocol, next to the
//! band-power baseline, with and without Euclidean alignment.

use std::path::PathBuf;

use anyhow::{bail, Context};
use candle_core::Device;
use neurofm_data::Store;
use neurofm_eval::bandpower::BandPower;
use neurofm_eval::probe::{evaluate_linear, LinearMethod};
use neurofm_eval::protocol::{labelled_subjects, Protocol};
use neurofm_eval::report::{summarize, MethodKind, Report, REPORT_FORMAT_VERSION};
use neurofm_eval::source::WindowSource;
use neurofm_eval::store_source::StoreWindows;
use neurofm_eval::task::TaskConfig;
use neurofm_models::Pool;
use neurofm_train::finetune::{EncoderFeatures, Pretrained};

use crate::progress;
use crate::Global;

/// Euclidean alignment modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EaMode {
    /// Run every method with and without alignment.
    Both,
    On,
    Off,
}

/// Evaluate a task, every fold and seed: linear probe of a pretrained encoder's features and of
/// log band power, with and without Euclidean alignment.
///
/// The task file names the store, how it is cut into labelled windows, the classes and the
/// protocol. Each method's features are standardized on the training side of a fold and fed to
/// an L2 multinomial logistic regression whose C is chosen by cross-validation over the training
/// subjects only. Methods: the frozen encoder of --checkpoint (mean-pooled features), and log band
/// power (δ θ α β γ per channel, Welch PSD) as the baseline. Euclidean alignment (per subject, from that subject's windows, labels unused) is
/// applied before the features when asked. Writes report.json, report.md and PNG plots to --out.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:
  neurofm probe --task configs/tasks/eegmat-rest-vs-arith.toml --checkpoint checkpoints/eegmat \\
    --seeds 0 --ea both --out runs/eegmat-probe")]
pub struct Args {
    /// Task file (configs/tasks/*.toml).
    #[arg(long, value_name = "TOML")]
    pub task: PathBuf,
    /// Store directory (default: the task's `store`).
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// loso, leave-N-out or few-shot-K (default: the task's protocol).
    #[arg(long, value_name = "NAME")]
    pub protocol: Option<String>,
    /// Comma-separated seeds (fold assignment of leave-N-out, few-shot sampling).
    #[arg(long, value_delimiter = ',', default_value = "0", value_name = "SEEDS")]
    pub seeds: Vec<u64>,
    /// Euclidean alignment.
    #[arg(long, value_enum, default_value_t = EaMode::Both)]
    pub ea: EaMode,
    /// Run directory for report.json, report.md and the plots.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// A pretrained encoder (checkpoint directory, or run directory = its newest checkpoint):
    /// its frozen, mean-pooled features are probed next to the band-power baseline. Its
    /// weights load strictly (every tensor matched by name and shape).
    #[arg(long, value_name = "DIR")]
    pub checkpoint: Option<PathBuf>,
    /// Probe even though the task's store was prepared by another recipe than the encoder's
    /// pretraining data.
    #[arg(long)]
    pub allow_recipe_mismatch: bool,
    /// Readout of the encoder's token outputs: mean (one d_model vector per window), channel
    /// (one vector per channel, mean over time, concatenated in the task's channel order, so
    /// the topography survives; C x d_model features make the probe several times slower)
    /// or cls (models with a class token).
    #[arg(long, value_enum, default_value_t = PoolArg::Mean)]
    pub pool: PoolArg,
    /// Do not probe the untrained twin (the same architecture with the seeded random
    /// initialization its pretraining started from) next to the pretrained encoder.
    #[arg(long)]
    pub no_random_init: bool,
    #[command(flatten)]
    pub subjects: SubjectArgs,
}

/// Readouts a frozen probe can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PoolArg {
    Mean,
    Channel,
    Cls,
}

impl PoolArg {
    pub fn pool(self) -> Pool {
        match self {
            PoolArg::Mean => Pool::Mean,
            PoolArg::Channel => Pool::Channel,
            PoolArg::Cls => Pool::Cls,
        }
    }
}

/// Subject selection of an evaluation (overrides the task's `subjects` / `exclude_subjects`).
#[derive(Debug, Clone, clap::Args)]
pub struct SubjectArgs {
    /// Evaluate only these subjects (comma-separated ids), e.g. the half of a two-fold subject
    /// split that the encoder was not pretrained on.
    #[arg(long, value_delimiter = ',', value_name = "IDS")]
    pub subjects: Option<Vec<String>>,
    /// Leave these subjects out (comma-separated ids).
    #[arg(long, value_delimiter = ',', value_name = "IDS")]
    pub exclude_subjects: Option<Vec<String>>,
}

impl SubjectArgs {
    /// Applies the selection to `task`.
    pub fn apply(&self, task: &mut TaskConfig) {
        if let Some(s) = &self.subjects {
            task.subjects = Some(s.clone());
        }
        if let Some(s) = &self.exclude_subjects {
            task.exclude_subjects = s.clone();
        }
    }
}

/// The recipe hash shared by every entry of a store (None if unprepared or mixed).
pub fn store_recipe_hash(store: &Store) -> Option<String> {
    let mut hashes = store.entries().iter().map(|e| e.recipe_hash.clone());
    let first = hashes.next()??;
    hashes
        .all(|h| h.as_deref() == Some(first.as_str()))
        .then_some(first)
}

pub fn run(args: Args, global: &Global) -> anyhow::Result<()> {
    let mut task = TaskConfig::load(&args.task)?;
    args.subjects.apply(&mut task);
    let store_dir = args.store.clone().unwrap_or_else(|| task.store.clone());
    let store = Store::open(&store_dir)
        .with_context(|| format!("opening the store of task {}", task.name))?;
    let recipe_hash = store_recipe_hash(&store);
    let source = StoreWindows::new(store, &task)?;
    let protocol = match &args.protocol {
        Some(p) => Protocol::parse_cli(p)?,
        None => task.protocol.clone(),
    };
    let info = source.info();
    let subjects = labelled_subjects(&info.windows)?;
    let n_labelled = info.windows.iter().filter(|w| w.label.is_some()).count();
    if n_labelled == 0 {
        bail!(
            "task {}: no labelled window in {}",
            task.name,
            store_dir.display()
        );
    }
    if !global.quiet {
        eprintln!(
            "{}: {} labelled windows ({} channels x {} samples at {} Hz), {} subjects, protocol {}",
            task.name,
            n_labelled,
            info.n_channels,
            info.window_len,
            info.sfreq_hz,
            subjects.len(),
            protocol.name()
        );
    }
    let ea_modes: Vec<bool> = match args.ea {
        EaMode::Both => vec![false, true],
        EaMode::On => vec![true],
        EaMode::Off => vec![false],
    };
    let mut bp = BandPower::new(
        info.n_channels,
        info.window_len,
        info.sfreq_hz,
        task.bandpower.nperseg,
    )?;
    let pool = args.pool.pool();
    let mut encoders = Vec::new();
    if let Some(dir) = &args.checkpoint {
        let pre = Pretrained::open(dir)?;
        pre.check_data(
            info.window_len,
            recipe_hash.as_deref(),
            args.allow_recipe_mismatch,
        )?;
        let (enc, report) = EncoderFeatures::new(&pre, &info.channel_names, &Device::Cpu, pool)?;
        if !global.quiet {
            eprintln!(
                "encoder {} (step {}): weights {report}; readout {}",
                pre.dir.display(),
                pre.state.step,
                pool.as_str()
            );
        }
        let kind = pre.state.model_kind.clone();
        encoders.push((
            format!("{kind}-encoder+logreg"),
            MethodKind::Model,
            format!(
                "frozen pretrained encoder {} (step {}), {}-pooled features + L2 multinomial logistic regression",
                pre.dir.display(),
                pre.state.step,
                pool.as_str()
            ),
            enc,
        ));
        if !args.no_random_init {
            let rand = EncoderFeatures::random_init(&pre, &info.channel_names, &Device::Cpu, pool)?;
            encoders.push((
                "random-init+logreg".to_string(),
                MethodKind::Baseline,
                format!(
                    "the same {kind} architecture untrained (the seeded random initialization its pretraining started from, seed {}), {}-pooled features + L2 multinomial logistic regression",
                    pre.state.seed,
                    pool.as_str()
                ),
                rand,
            ));
        }
    }
    let mut methods = Vec::new();
    for (name, kind, description, enc) in encoders.iter_mut() {
        methods.push(LinearMethod {
            name: name.clone(),
            kind: *kind,
            description: description.clone(),
            extractor: enc,
        });
    }
    methods.push(LinearMethod {
        name: "bandpower+logreg".into(),
        kind: MethodKind::Baseline,
        description: "log band power (delta, theta, alpha, beta, gamma per channel; Welch PSD) + L2 multinomial logistic regression".into(),
        extractor: &mut bp,
    });
    let pb = progress::bar(n_labelled as u64, "features", global.quiet);
    let results = evaluate_linear(
        &source,
        &protocol,
        &args.seeds,
        &ea_modes,
        &mut methods,
        &task.probe,
        &mut |stage, done, total| {
            pb.set_length(total);
            pb.set_position(done);
            pb.set_message(stage.to_string());
        },
    )?;
    pb.finish_and_clear();
    let info = source.info();
    let report = Report {
        format_version: REPORT_FORMAT_VERSION,
        task: task.name.clone(),
        protocol: protocol.name(),
        classes: info.classes.clone(),
        n_windows: n_labelled,
        n_channels: info.n_channels,
        window_len: info.window_len,
        sfreq_hz: info.sfreq_hz,
        subjects,
        seeds: args.seeds.clone(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        neurofm_version: env!("CARGO_PKG_VERSION").into(),
        methods: results,
    };
    write_and_summarize(&report, &args.out, &[], global.quiet)?;
    Ok(())
}

/// Writes report.json, report.md and the plots to `out`, then (unless quiet) prints each
/// method's balanced accuracy and the files written (`extra_files` too).
pub fn write_and_summarize(
    report: &Report,
    out: &std::path::Path,
    extra_files: &[PathBuf],
    quiet: bool,
) -> anyhow::Result<()> {
    let files = report
        .write_all(out)
        .with_context(|| format!("writing the report to {}", out.display()))?;
    if !quiet {
        for m in &report.methods {
            let s = summarize(m, report.classes.len());
            eprintln!(
                "{:<28} balanced accuracy {:.3} ± {:.3} (chance {:.3})",
                m.label(),
                s.balanced_accuracy.mean,
                s.balanced_accuracy.std,
                s.chance_uniform
            );
        }
        for f in files.iter().chain(extra_files) {
            eprintln!("wrote {}", f.display());
        }
    }
    Ok(())
}
