//! `neurofm report RUN`: re-renders `report.md` and the PNG plots of an evaluation run from its
//! `report.json`.

use std::path::PathBuf;

use anyhow::Context;

use crate::Global;

/// Re-render report.md and the plots of an evaluation run from its report.json.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Run directory (holds report.json, written by `neurofm probe`).
    pub run: PathBuf,
}

pub fn run(args: Args, global: &Global) -> anyhow::Result<()> {
    let json = args.run.join("report.json");
    let report = neurofm_eval::report::Report::load(&json)?;
    let files = report
        .render(&args.run)
        .with_context(|| format!("rendering the report of {}", args.run.display()))?;
    if !global.quiet {
        for f in files {
            eprintln!("wrote {}", f.display());
        }
    }
    Ok(())
}
