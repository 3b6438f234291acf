//! `neurofm tokenizer`: fit a tokenizer on a store, inspect a fitted one.

use std::path::{Path, PathBuf};

use anyhow::Context;
use neurofm_data::store::Store;
use neurofm_tokenize::{Evaluator, Fitter, Tokenizer, TokenizerConfig, TokenizerReport};

use crate::progress;
use crate::Global;

/// Fit a signal tokenizer on a store (patch, or mu-law + BPE) and report its reconstruction
/// error (NMSE, SNR) and, for discrete tokenizers, vocabulary usage and bits per sample.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(Debug, clap::Subcommand)]
enum Sub {
    /// Fit a tokenizer on every channel recording of a store and write it as JSON.
    Train(TrainArgs),
    /// Show a fitted tokenizer; with --store, measure its round trip on the store.
    Inspect(InspectArgs),
}

#[derive(Debug, clap::Args)]
struct TrainArgs {
    /// Store directory to fit on.
    #[arg(long)]
    store: PathBuf,
    /// Tokenizer config (TOML), e.g. configs/tokenizer/mulaw.toml.
    #[arg(long)]
    config: PathBuf,
    /// Output tokenizer JSON.
    #[arg(long)]
    out: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct InspectArgs {
    /// Tokenizer JSON.
    tokenizer: PathBuf,
    /// Store to measure reconstruction error and vocabulary usage on.
    #[arg(long)]
    store: Option<PathBuf>,
    /// Print as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args, global: &Global) -> anyhow::Result<()> {
    match args.command {
        Sub::Train(a) => train(a, global),
        Sub::Inspect(a) => inspect(a, global),
    }
}

fn read_config(path: &Path) -> anyhow::Result<TokenizerConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let cfg: TokenizerConfig =
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    cfg.validate()
        .with_context(|| format!("in {}", path.display()))?;
    Ok(cfg)
}

/// Calls `f` with every channel row of every 2-D (channels × samples) entry of the store.
fn for_each_channel(
    store: &Store,
    quiet: bool,
    msg: &str,
    mut f: impl FnMut(&[f32]) -> anyhow::Result<()>,
) -> anyhow::Result<usize> {
    let entries = store.entries();
    let pb = progress::bar(entries.len() as u64, msg, quiet);
    let mut used = 0;
    for e in entries {
        pb.inc(1);
        if e.shape.len() != 2 {
            continue;
        }
        let view = store
            .view(&e.id)
            .with_context(|| format!("reading store entry {}", e.id))?;
        for ch in 0..e.shape[0] {
            let row = view
                .row(ch)
                .with_context(|| format!("store entry {}: channel {ch} missing", e.id))?;
            f(&row)?;
        }
        used += 1;
    }
    pb.finish_and_clear();
    Ok(used)
}

fn print_report(
    tok: &Tokenizer,
    report: Option<&TokenizerReport>,
    json: bool,
) -> anyhow::Result<()> {
    if json {
        let v = serde_json::json!({ "tokenizer": tok.to_json()?, "report": report });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    match tok {
        Tokenizer::Patch(p) => {
            println!("type patch: patch_len {} scale {:e}", p.patch_len, p.scale)
        }
        Tokenizer::Mulaw(q) => {
            println!(
                "type mulaw: mu {} levels {} max_abs {:e}",
                q.mu, q.levels, q.max_abs
            );
            if let Some(b) = &q.bpe {
                println!("bpe: vocab {} (word_len {})", b.vocab_size(), b.word_len);
            }
        }
    }
    if let Some(r) = report {
        let rec = &r.reconstruction;
        println!(
            "reconstruction: {} samples, NMSE {:.3e}, SNR {:.2} dB",
            rec.n_samples, rec.nmse, rec.snr_db
        );
        if r.dropped_samples > 0 {
            println!(
                "dropped (tail shorter than a patch): {} samples",
                r.dropped_samples
            );
        }
        if let Some(v) = &r.vocab {
            println!(
                "vocabulary: {}/{} used ({:.1}%), {} tokens, entropy {:.3} bits/token, {:.3} bits/sample (fixed-length {:.3})",
                v.used,
                v.vocab_size,
                100.0 * v.usage,
                v.n_tokens,
                v.entropy_bits_per_token,
                v.entropy_bits_per_sample,
                v.fixed_bits_per_sample
            );
        }
    }
    Ok(())
}

fn evaluate(tok: &Tokenizer, store: &Store, quiet: bool) -> anyhow::Result<TokenizerReport> {
    let mut ev = Evaluator::new(tok);
    for_each_channel(store, quiet, "evaluate", |row| Ok(ev.add_channel(row)?))?;
    Ok(ev.finish())
}

fn train(a: TrainArgs, global: &Global) -> anyhow::Result<()> {
    let cfg = read_config(&a.config)?;
    let store =
        Store::open(&a.store).with_context(|| format!("opening store {}", a.store.display()))?;
    let mut fitter = Fitter::new(&cfg)?;
    let used = for_each_channel(&store, global.quiet, "fit", |row| {
        fitter.add_channel(row);
        Ok(())
    })?;
    if used == 0 {
        anyhow::bail!(
            "store {} has no channel recordings to fit on",
            a.store.display()
        );
    }
    let tok = fitter
        .finish()
        .with_context(|| format!("fitting {}", a.config.display()))?;
    let report = evaluate(&tok, &store, global.quiet)?;
    tok.save(&a.out)?;
    if !global.quiet || a.json {
        print_report(&tok, Some(&report), a.json)?;
    }
    if !global.quiet && !a.json {
        println!("wrote {} (fitted on {used} recordings)", a.out.display());
    }
    Ok(())
}

fn inspect(a: InspectArgs, global: &Global) -> anyhow::Result<()> {
    let tok = Tokenizer::load(&a.tokenizer)?;
    let report = match &a.store {
        Some(s) => {
            let store = Store::open(s).with_context(|| format!("opening store {}", s.display()))?;
            Some(evaluate(&tok, &store, global.quiet)?)
        }
        None => None,
    };
    print_report(&tok, report.as_ref(), a.json)
}
