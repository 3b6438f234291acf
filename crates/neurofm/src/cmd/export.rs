//! `neurofm export --checkpoint DIR --out FILE.safetensors`.

use std::path::PathBuf;

use crate::Global;

/// Export a checkpoint's weights as one safetensors file (PyTorch module names), with
/// config.json beside it and a check file for scripts/check/export_numpy.py.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Checkpoint directory (checkpoints/<run>/step-<N>).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Output file (.safetensors).
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(args: Args, global: &Global) -> anyhow::Result<()> {
    let s = neurofm_train::export::export(&args.checkpoint, &args.out)?;
    if !global.quiet {
        eprintln!(
            "exported {} tensors ({} parameters) to {}; config {}; check {}",
            s.n_tensors,
            s.n_parameters,
            s.weights.display(),
            s.config.display(),
            s.check.display()
        );
    }
    Ok(())
}
