//! `neurofm ingest`: read recordings in any supported format into a store.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use neurofm_data::{NewEntry, Store};
use regex::Regex;
use serde_json::Value;

use crate::progress;
use crate::Global;

/// Read recordings (EDF, BDF, GDF, BrainVision, EEGLAB, FIF, NIfTI, ...) into a store.
///
/// Each input file becomes one recording: a `data/<id>.safetensors` file holding a
/// `[channels, samples]` float32 tensor in SI units, plus one entry in `manifest.json`.
/// Directories are searched recursively for files a reader handles. Ingest is resumable: a
/// source already in the store (same sha256) is skipped, so re-running after an interruption
/// continues where it stopped. A killed ingest leaves a store that lists only complete recordings.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  neurofm ingest ../shared/data/eegmat --out stores/eegmat \\
      --pattern 'Subject(?P<subject>\\d+)_(?P<run>\\d)\\.edf'
  neurofm ingest rec.vhdr --out stores/lab --subject 07 --task oddball --label group=patient")]
pub struct Args {
    /// Files or directories to ingest.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// The store to write (created if missing; appended to if it exists).
    #[arg(long, short = 'o')]
    pub out: PathBuf,
    /// Regex applied to each file name; named groups `subject`, `session`, `task`, `run` fill
    /// those fields, any other named group becomes a label.
    #[arg(long)]
    pub pattern: Option<String>,
    /// Subject id for every input (overrides what the file or --pattern says).
    #[arg(long)]
    pub subject: Option<String>,
    /// Session for every input.
    #[arg(long)]
    pub session: Option<String>,
    /// Task for every input.
    #[arg(long)]
    pub task: Option<String>,
    /// Run for every input.
    #[arg(long)]
    pub run: Option<String>,
    /// Extra label KEY=VALUE stored with every input (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Store a recording even when its (subject, session, task, run) is already in the store.
    #[arg(long)]
    pub allow_duplicates: bool,
    /// Rewrite the manifest after at most N new recordings (and at least every 5 s). A killed
    /// ingest loses at most that much work, which the next run redoes.
    #[arg(long, value_name = "N", default_value_t = 32)]
    pub commit_every: usize,
    /// List what would be ingested and exit.
    #[arg(long)]
    pub dry_run: bool,
}

/// Every file under the inputs that some reader claims by extension, sorted.
fn collect_inputs(inputs: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in inputs {
        if p.is_dir() {
            walk(p, &mut out).with_context(|| format!("listing {}", p.display()))?;
        } else if p.exists() {
            out.push(p.clone());
        } else {
            bail!("{}: no such file or directory", p.display());
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn readable(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    neurofm_io::FORMATS
        .iter()
        .flat_map(|f| f.extensions.iter())
        .any(|e| name.ends_with(&format!(".{e}")))
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for ent in std::fs::read_dir(dir)? {
        let p = ent?.path();
        if p.is_dir() {
            walk(&p, out)?;
        } else if readable(&p) {
            out.push(p);
        }
    }
    Ok(())
}

fn parse_labels(raw: &[String]) -> anyhow::Result<BTreeMap<String, Value>> {
    let mut m = BTreeMap::new();
    for l in raw {
        let Some((k, v)) = l.split_once('=') else {
            bail!("--label `{l}`: expected KEY=VALUE");
        };
        if k.is_empty() {
            bail!("--label `{l}`: empty key");
        }
        m.insert(k.to_string(), Value::from(v));
    }
    Ok(m)
}

pub fn run(args: Args, global: &Global) -> anyhow::Result<()> {
    let pattern = args
        .pattern
        .as_deref()
        .map(Regex::new)
        .transpose()
        .context("--pattern is not a valid regular expression")?;
    let base_labels = parse_labels(&args.labels)?;
    let files = collect_inputs(&args.inputs)?;
    if files.is_empty() {
        bail!(
            "no readable recordings under {} (known extensions: {})",
            args.inputs
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            neurofm_io::FORMATS
                .iter()
                .flat_map(|f| f.extensions.iter().copied())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if args.dry_run {
        for f in &files {
            println!("{}", f.display());
        }
        println!(
            "{} file(s) would be ingested into {}",
            files.len(),
            args.out.display()
        );
        return Ok(());
    }
    let mut store = Store::open_or_create(&args.out)
        .with_context(|| format!("opening store {}", args.out.display()))?;
    store.set_commit_every(args.commit_every, std::time::Duration::from_secs(5));
    let files_bar = progress::bar(files.len() as u64, "ingest", global.quiet);
    let (mut added, mut skipped, mut duplicates) = (0usize, 0usize, 0usize);
    for file in &files {
        files_bar.set_message(file.display().to_string());
        let sha = neurofm_io::sha256_file(file)?;
        if let Some(e) = store.find_source(&sha, None) {
            files_bar.println(format!(
                "skip {} (already in the store as {})",
                file.display(),
                e.id
            ));
            skipped += 1;
            files_bar.inc(1);
            continue;
        }
        let mut reader = neurofm_io::open_raw(file)?;
        let mut info = reader.info().clone();
        let mut labels = base_labels.clone();
        if let Some(re) = &pattern {
            let name = file
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            let Some(caps) = re.captures(&name) else {
                bail!(
                    "{}: file name does not match --pattern `{}`",
                    file.display(),
                    re.as_str()
                );
            };
            for g in re.capture_names().flatten() {
                if let Some(m) = caps.name(g) {
                    let v = m.as_str().to_string();
                    match g {
                        "subject" => info.subject = Some(v),
                        "session" => info.session = Some(v),
                        "task" => info.task = Some(v),
                        "run" => info.run = Some(v),
                        other => {
                            labels.insert(other.to_string(), Value::from(v));
                        }
                    }
                }
            }
        }
        for (field, v) in [
            (&mut info.subject, &args.subject),
            (&mut info.session, &args.session),
            (&mut info.task, &args.task),
            (&mut info.run, &args.run),
        ] {
            if v.is_some() {
                field.clone_from(v);
            }
        }
        if !args.allow_duplicates {
            if let Some(e) = store.find_duplicate_key(&info) {
                files_bar.println(format!(
                    "duplicate: {} has the same (subject, session, task, run) as {} (from {}); not ingested (use --allow-duplicates)",
                    file.display(),
                    e.id,
                    e.provenance.source_path
                ));
                duplicates += 1;
                files_bar.inc(1);
                continue;
            }
        }
        let mut wrapped = WithInfo {
            inner: reader.as_mut(),
            info,
        };
        let id = store
            .add_from_reader(
                &mut wrapped,
                NewEntry {
                    labels,
                    ..NewEntry::default()
                },
                &mut |_, _| {},
            )
            .with_context(|| format!("ingesting {}", file.display()))?;
        let _ = id;
        added += 1;
        files_bar.inc(1);
    }
    files_bar.finish_and_clear();
    store
        .commit()
        .with_context(|| format!("writing {}/manifest.json", args.out.display()))?;
    if !global.quiet {
        eprintln!(
            "{}: {added} added, {skipped} already present, {duplicates} duplicate(s) skipped; {} recording(s) in the store",
            args.out.display(),
            store.len()
        );
    }
    Ok(())
}

/// A reader whose info (subject, session, ...) was overridden from the command line.
struct WithInfo<'a> {
    inner: &'a mut dyn neurofm_io::RawReader,
    info: neurofm_core::Info,
}

impl neurofm_io::RawReader for WithInfo<'_> {
    fn info(&self) -> &neurofm_core::Info {
        &self.info
    }
    fn annotations(&self) -> &[neurofm_core::Annotation] {
        self.inner.annotations()
    }
    fn n_times(&self) -> usize {
        self.inner.n_times()
    }
    fn volume_geometry(&self) -> Option<([usize; 3], [[f64; 4]; 4])> {
        self.inner.volume_geometry()
    }
    fn read_segment(
        &mut self,
        start: usize,
        stop: usize,
        out: &mut [f32],
    ) -> Result<(), neurofm_io::IoError> {
        self.inner.read_segment(start, stop, out)
    }
}
