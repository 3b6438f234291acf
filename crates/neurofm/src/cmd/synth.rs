//! `neurofm synth`: realistic synthetic multi-subject EEG into a store (and optionally EDF+).

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context};
use neurofm_data::synth::{generate_subject, parse_difficulty, SynthConfig, CLASS_NAMES, PRESETS};
use neurofm_data::{NewEntry, Store};
use neurofm_io::edf_write::write_edf_plus;
use serde_json::json;

use crate::Global;

/// Generate synthetic multi-subject EEG with labelled motor-imagery-like trials.
///
/// Each subject gets one recording per run on standard 10-20 electrodes: a 1/f background with
/// spatial correlation, a posterior alpha rhythm, mu/beta rhythms over C3/C4/Cz, line noise and
/// sensor noise, with per-subject gains, frequencies and noise levels. Trials are annotated with
/// their class: `left` (mu/beta desynchronization over C4), `right` (over C3), `feet` (over Cz),
/// `rest` (none). The same seed always gives the same bytes.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Presets:\n  quickstart  8 subjects, 19 channels, 200 Hz, 4 classes x 40 trials of 4 s (default)\n  tiny        3 subjects, 4 classes x 6 trials (for tests)\n\nExample:\n  neurofm synth --out data/synth --edf-dir data/synth-edf --subjects 4 --difficulty hard"
)]
pub struct Args {
    /// Store directory to add the recordings to (created if missing).
    #[arg(long, value_name = "STORE")]
    pub out: PathBuf,
    /// Also write one EDF+ file per recording here (sub-01_task-synth_run-01.edf, ...).
    #[arg(long, value_name = "DIR")]
    pub edf_dir: Option<PathBuf>,
    /// Preset giving the defaults of every option below.
    #[arg(long, default_value = "quickstart", value_parser = PRESETS)]
    pub preset: String,
    /// Number of subjects (ids 01, 02, ...).
    #[arg(long, value_name = "N")]
    pub subjects: Option<usize>,
    /// Runs (recordings) per subject.
    #[arg(long, value_name = "N")]
    pub runs: Option<usize>,
    /// Number of classes, 2 to 4: left, right, feet, rest (in that order).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(2..=4))]
    pub classes: Option<u8>,
    /// Trials of each class in each run.
    #[arg(long, value_name = "N")]
    pub trials_per_class: Option<usize>,
    /// Random seed.
    #[arg(long, value_name = "S")]
    pub seed: Option<u64>,
    /// easy, medium, hard, or a number in [0, 1] (0 = trivial, 1 = very hard).
    #[arg(long, value_name = "LEVEL")]
    pub difficulty: Option<String>,
    /// Sampling rate in Hz.
    #[arg(long, value_name = "HZ")]
    pub sfreq: Option<f64>,
    /// Power-line frequency in Hz (50 or 60).
    #[arg(long, value_name = "HZ")]
    pub line_freq: Option<f64>,
    /// Comma-separated 10-20 electrodes to generate (default: all 19).
    #[arg(long, value_name = "NAMES", value_delimiter = ',')]
    pub channels: Option<Vec<String>>,
}

impl Args {
    /// The preset with the given options applied.
    pub fn config(&self) -> anyhow::Result<SynthConfig> {
        let mut cfg = SynthConfig::preset(&self.preset)?;
        if let Some(v) = self.subjects {
            cfg.n_subjects = v;
        }
        if let Some(v) = self.runs {
            cfg.n_runs = v;
        }
        if let Some(v) = self.classes {
            cfg.n_classes = v as usize;
        }
        if let Some(v) = self.trials_per_class {
            cfg.trials_per_class = v;
        }
        if let Some(v) = self.seed {
            cfg.seed = v;
        }
        if let Some(v) = &self.difficulty {
            cfg.difficulty = parse_difficulty(v)?;
        }
        if let Some(v) = self.sfreq {
            cfg.sfreq_hz = v;
        }
        if let Some(v) = self.line_freq {
            cfg.line_freq_hz = v;
        }
        if let Some(v) = &self.channels {
            cfg.channels = v.iter().map(|s| s.trim().to_string()).collect();
        }
        cfg.validate()?;
        Ok(cfg)
    }
}

pub fn run(args: Args, global: &Global) -> anyhow::Result<()> {
    let cfg = args.config()?;
    let mut store = Store::open_or_create(&args.out)
        .with_context(|| format!("opening store {}", args.out.display()))?;
    if let Some(dir) = &args.edf_dir {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating EDF directory {}", dir.display()))?;
    }
    let classes: Vec<&str> = CLASS_NAMES[..cfg.n_classes].to_vec();
    let pb = crate::progress::bar(cfg.n_subjects as u64, "synth", global.quiet);
    let (mut n_recordings, mut total_s) = (0usize, 0f64);
    for s in 0..cfg.n_subjects {
        let recs = generate_subject(&cfg, s)?;
        for rec in &recs {
            if let Some(e) = store.find_duplicate_key(&rec.info) {
                bail!(
                    "{}: already holds subject {} task synth run {} (entry `{}`); write to a new --out",
                    args.out.display(),
                    rec.info.subject.as_deref().unwrap_or("?"),
                    rec.info.run.as_deref().unwrap_or("?"),
                    e.id
                );
            }
            let labels = BTreeMap::from([
                ("dataset".to_string(), json!("synth")),
                ("seed".to_string(), json!(cfg.seed)),
                ("difficulty".to_string(), json!(cfg.difficulty)),
                ("classes".to_string(), json!(classes)),
            ]);
            store
                .add(
                    rec,
                    NewEntry {
                        labels,
                        ..NewEntry::default()
                    },
                )
                .with_context(|| format!("adding a recording to {}", args.out.display()))?;
            if let Some(dir) = &args.edf_dir {
                let name = format!(
                    "sub-{}_task-synth_run-{}.edf",
                    rec.info.subject.as_deref().unwrap_or("00"),
                    rec.info.run.as_deref().unwrap_or("01")
                );
                write_edf_plus(&dir.join(name), rec)?;
            }
            n_recordings += 1;
            total_s += rec.duration_s();
        }
        pb.inc(1);
    }
    pb.finish_and_clear();
    if !global.quiet {
        eprintln!(
            "synth: {n_recordings} recordings ({} subjects x {} runs, {} channels at {} Hz, {:.1} min in all, classes {}) added to {}{}",
            cfg.n_subjects,
            cfg.n_runs,
            cfg.channels.len(),
            cfg.sfreq_hz,
            total_s / 60.0,
            classes.join("/"),
            args.out.display(),
            args.edf_dir
                .as_ref()
                .map(|d| format!("; EDF+ files in {}", d.display()))
                .unwrap_or_default()
        );
    }
    Ok(())
}
