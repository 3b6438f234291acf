//! `neurofm prepare`: apply a preprocessing recipe to every recording of a store.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use neurofm_data::{prepare_store, Recipe, Store};

use crate::progress;
use crate::Global;

/// Apply a preprocessing recipe (configs/recipes/*.toml) to every recording of a store.
///
/// The recipe is checked against every recording before any work (missing channels, band edges
/// above Nyquist, impossible resampling ratios, window labels the recording lacks, extra tensors
/// a step cannot carry fail here, naming the recording and the step). Recordings are processed
/// in parallel, one recording per thread at a time, and written to a new store whose entries
/// record the recipe and its hash. Extra tensors (e.g. a per-neuron `mask`, behaviour
/// `covariates`) are carried along: per-channel ones follow channel picks, time-aligned ones are
/// resampled with the signal, others are copied (docs/recipes.md). Recordings already prepared
/// with the same recipe in the output store are skipped, so an interrupted run can be resumed.
///
/// fMRI stores ([t, x, y, z] volumes) take the fMRI steps (resample_tr, crop_or_pad,
/// zscore_in_mask, parcellate); the mask and atlas images they name are read once, relative to
/// the recipe's directory, and their sha256 are part of the recipe hash.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:
  neurofm prepare --recipe configs/recipes/eegmat-200hz.toml \\
      --input stores/eegmat --output stores/eegmat-200hz")]
pub struct Args {
    /// Recipe file (TOML).
    #[arg(long, short = 'r')]
    pub recipe: PathBuf,
    /// Store to read.
    #[arg(long, short = 'i')]
    pub input: PathBuf,
    /// Store to write (created if missing).
    #[arg(long, short = 'o')]
    pub output: PathBuf,
    /// Worker threads (default: all cores).
    #[arg(long, short = 'j')]
    pub jobs: Option<usize>,
    /// Only check the recipe against every recording; write nothing.
    #[arg(long)]
    pub check: bool,
}

pub fn run(args: Args, global: &Global) -> anyhow::Result<()> {
    let mut recipe = Recipe::from_path(&args.recipe)?;
    // Mask and atlas images of fMRI steps: paths relative to the recipe's directory, read once.
    let base = args.recipe.parent().unwrap_or(Path::new("."));
    recipe
        .resolve(base, &|p: &Path| {
            neurofm_io::read_recording(p).map_err(|e| e.to_string())
        })
        .with_context(|| format!("recipe {}", args.recipe.display()))?;
    let input = Store::open(&args.input)
        .with_context(|| format!("opening input store {}", args.input.display()))?;
    recipe.validate_store(&input)?;
    if args.check {
        if !global.quiet {
            eprintln!(
                "recipe {} applies to all {} recordings of {} (hash {})",
                args.recipe.display(),
                input.entries().len(),
                args.input.display(),
                recipe.hash()
            );
        }
        return Ok(());
    }
    if args.input.canonicalize().ok() == args.output.canonicalize().ok() && args.output.exists() {
        bail!("--output must be another store than --input");
    }
    let mut output = Store::open_or_create(&args.output)
        .with_context(|| format!("opening output store {}", args.output.display()))?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(args.jobs.unwrap_or(0))
        .build()
        .context("starting worker threads")?;
    let pb = progress::bar(input.entries().len() as u64, "prepare", global.quiet);
    let report = pool.install(|| {
        prepare_store(&recipe, &input, &mut output, &|done, _total| {
            pb.set_position(done as u64)
        })
    })?;
    pb.finish_and_clear();
    if !global.quiet {
        for (id, note) in &report.notes {
            eprintln!("{id}: {note}");
        }
        eprintln!(
            "prepared {} recordings into {} ({} already there), recipe hash {}",
            report.prepared.len(),
            args.output.display(),
            report.skipped.len(),
            recipe.hash()
        );
    }
    Ok(())
}
