//! `neurofm merge`: copy the recordings of other stores into one.

use std::path::PathBuf;

use anyhow::Context;
use neurofm_data::Store;

use crate::progress;
use crate::Global;

/// Merge stores: copy every recording of each SOURCE into --into (created if missing).
///
/// A recording whose source file (same sha256, same recipe) is already in the destination is
/// skipped; one whose (subject, session, task, run) already exists with another source is
/// reported as a duplicate and not copied.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Stores to copy from.
    #[arg(required = true)]
    pub sources: Vec<PathBuf>,
    /// The destination store.
    #[arg(long)]
    pub into: PathBuf,
}

pub fn run(args: Args, global: &Global) -> anyhow::Result<()> {
    let mut dst = Store::open_or_create(&args.into)
        .with_context(|| format!("opening destination store {}", args.into.display()))?;
    for src_path in &args.sources {
        let src = Store::open(src_path)?;
        let bar = progress::bar(src.len() as u64, "merge", global.quiet);
        let report = dst
            .merge_from(&src, &mut |done, _| bar.set_position(done))
            .with_context(|| {
                format!(
                    "merging {} into {}",
                    src_path.display(),
                    args.into.display()
                )
            })?;
        bar.finish_and_clear();
        for id in &report.duplicates {
            eprintln!(
                "duplicate: {id} from {} has a (subject, session, task, run) already in {}; not copied",
                src_path.display(),
                args.into.display()
            );
        }
        if !global.quiet {
            eprintln!(
                "{}: {} added, {} already present, {} duplicate(s)",
                src_path.display(),
                report.added.len(),
                report.skipped_same_source.len(),
                report.duplicates.len()
            );
        }
    }
    Ok(())
}
