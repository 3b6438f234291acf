//! `neurofm`: raw neural recordings in, foundation models out.
//!
//! The binary is thin: clap arguments are resolved into settings and handed to the library crates.
//! Errors are printed with their whole cause chain and the process exits with status 2.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;
mod progress;

/// Raw neural recordings (EEG, MEG, fMRI, calcium imaging) in, foundation models out.
#[derive(Debug, Parser)]
#[command(name = "neurofm", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Options every command accepts.
#[derive(Debug, Clone, clap::Args)]
pub struct Global {
    /// Hide progress bars and informational messages (errors are still printed).
    #[arg(long, short = 'q', global = true)]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    Ingest(cmd::ingest::Args),
    IngestConnectome(cmd::ingest_connectome::Args),
    Inspect(cmd::inspect::Args),
    Merge(cmd::merge::Args),
    Prepare(cmd::prepare::Args),
    Synth(cmd::synth::Args),
    Tokenizer(cmd::tokenizer::Args),
    Pretrain(cmd::pretrain::Args),
    Export(cmd::export::Args),
    Probe(cmd::probe::Args),
    Finetune(cmd::finetune::Args),
    Report(cmd::report::Args),
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let g = &cli.global;
    match cli.command {
        Command::Ingest(a) => cmd::ingest::run(a, g),
        Command::IngestConnectome(a) => cmd::ingest_connectome::run(a, g),
        Command::Inspect(a) => cmd::inspect::run(a, g),
        Command::Merge(a) => cmd::merge::run(a, g),
        Command::Prepare(a) => cmd::prepare::run(a, g),
        Command::Synth(args) => cmd::synth::run(args, g),
        Command::Tokenizer(a) => cmd::tokenizer::run(a, g),
        Command::Pretrain(a) => cmd::pretrain::run(a, g),
        Command::Export(a) => cmd::export::run(a, g),
        Command::Probe(a) => cmd::probe::run(a, g),
        Command::Finetune(a) => cmd::finetune::run(a, g),
        Command::Report(a) => cmd::report::run(a, g),
    }
}

fn main() -> ExitCode {
    // candle's element-wise ops on the calling thread, not on a second spinning pool beside
    // rayon's (before any thread starts: it sets an environment variable)
    neurofm_core::threads::candle_elementwise_on_caller();
    // reuse freed buffers instead of faulting in fresh pages (file after file, step after step)
    neurofm_core::allocator::keep_freed_memory();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(2)
        }
    }
}
