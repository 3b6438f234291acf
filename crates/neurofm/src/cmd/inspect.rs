//! `neurofm inspect`: a readable summary of a store, one of its recordings, or a recording file.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context;
use neurofm_core::{Annotation, ChannelInfo, Info};
use neurofm_data::{Entry, Store};

use crate::Global;

/// Summarize a store, one recording in it, or a recording file (like MNE's `raw.info`).
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  neurofm inspect stores/eegmat                 # the whole store
  neurofm inspect stores/eegmat --id sub-00_run-1
  neurofm inspect ../shared/data/eegmat/Subject00_1.edf --json")]
pub struct Args {
    /// A store directory or a recording file.
    pub path: PathBuf,
    /// Show one recording of the store in detail.
    #[arg(long)]
    pub id: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args, _global: &Global) -> anyhow::Result<()> {
    if args.path.is_dir() {
        let store = Store::open(&args.path)?;
        match &args.id {
            Some(id) => {
                let e = store.entry(id).with_context(|| {
                    format!(
                        "{}: no recording with id `{id}` (see `neurofm inspect {}` for the list)",
                        args.path.display(),
                        args.path.display()
                    )
                })?;
                if args.json {
                    println!("{}", serde_json::to_string_pretty(e)?);
                } else {
                    print!("{}", describe_entry(e));
                }
            }
            None => {
                if args.json {
                    let v = serde_json::json!({
                        "path": args.path,
                        "format_version": store.format_version(),
                        "recordings": store.entries(),
                        "graphs": store.graphs(),
                    });
                    println!("{}", serde_json::to_string_pretty(&v)?);
                } else {
                    print!("{}", describe_store(&store));
                }
            }
        }
        return Ok(());
    }
    let reader = neurofm_io::open_raw(&args.path)?;
    let info = reader.info();
    if args.json {
        let v = serde_json::json!({
            "info": info,
            "n_times": reader.n_times(),
            "annotations": reader.annotations(),
            "volume_geometry": reader.volume_geometry().map(|(d, a)| serde_json::json!({"dims": d, "affine": a})),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        let title = args
            .path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        print!(
            "{}",
            describe(
                &title,
                info,
                reader.n_times(),
                reader.annotations(),
                &BTreeMap::new(),
                None
            )
        );
    }
    Ok(())
}

fn fmt_duration(s: f64) -> String {
    if s >= 3600.0 {
        format!(
            "{}h {:02}m {:04.1}s",
            (s / 3600.0) as u64,
            ((s % 3600.0) / 60.0) as u64,
            s % 60.0
        )
    } else if s >= 60.0 {
        format!("{}m {:04.1}s", (s / 60.0) as u64, s % 60.0)
    } else {
        format!("{s:.3} s")
    }
}

fn count_by<T: Ord + Clone>(items: impl Iterator<Item = T>) -> BTreeMap<T, usize> {
    let mut m = BTreeMap::new();
    for i in items {
        *m.entry(i).or_insert(0) += 1;
    }
    m
}

fn channel_summary(chs: &[ChannelInfo]) -> String {
    let kinds = count_by(chs.iter().map(|c| c.kind.as_str()));
    kinds
        .iter()
        .map(|(k, n)| format!("{n} {}", k.to_uppercase()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn describe_entry(e: &Entry) -> String {
    let mut extra = BTreeMap::new();
    for (k, v) in &e.labels {
        extra.insert(format!("label {k}"), v.to_string());
    }
    if let Some(h) = &e.recipe_hash {
        extra.insert("recipe".into(), h.clone());
    }
    if !e.extras.is_empty() {
        extra.insert("extra tensors".into(), e.extras.join(", "));
    }
    extra.insert("data file".into(), e.path.clone());
    describe(
        &e.id,
        &e.info(),
        e.n_times,
        &e.annotations,
        &extra,
        e.affine.map(|_| &e.shape[..]),
    )
}

fn describe(
    title: &str,
    info: &Info,
    n_times: usize,
    annotations: &[Annotation],
    extra: &BTreeMap<String, String>,
    volume_shape: Option<&[usize]>,
) -> String {
    let mut s = String::new();
    let dur = n_times as f64 / info.sfreq_hz;
    match volume_shape {
        Some(shape) => {
            let _ = writeln!(
                s,
                "<Recording {title} | {n_times} volumes of {:?} at TR {:.4} s ({})>",
                &shape[1..],
                1.0 / info.sfreq_hz,
                fmt_duration(dur)
            );
        }
        None => {
            let _ = writeln!(
                s,
                "<Recording {title} | {} channels x {n_times} samples at {} Hz ({})>",
                info.channels.len(),
                info.sfreq_hz,
                fmt_duration(dur)
            );
        }
    }
    let opt = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
    let _ = writeln!(s, "  modality      {}", info.modality);
    let _ = writeln!(
        s,
        "  subject       {}   session {}   task {}   run {}",
        opt(&info.subject),
        opt(&info.session),
        opt(&info.task),
        opt(&info.run)
    );
    let _ = writeln!(s, "  meas_date     {}", opt(&info.meas_date));
    if !info.channels.is_empty() {
        let _ = writeln!(s, "  channels      {}", channel_summary(&info.channels));
        let names: Vec<String> = info
            .channels
            .iter()
            .map(|c| match &c.standard_name {
                Some(sn) if sn != &c.name => format!("{} ({sn})", c.name),
                _ => c.name.clone(),
            })
            .collect();
        let _ = writeln!(s, "  ch_names      {}", names.join(", "));
        let units = count_by(info.channels.iter().map(|c| c.unit.as_str().to_string()));
        let _ = writeln!(
            s,
            "  units         {}",
            units
                .iter()
                .map(|(u, n)| format!("{u} ({n})"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let unknown: Vec<&str> = info
            .channels
            .iter()
            .filter(|c| c.standard_name.is_none())
            .map(|c| c.name.as_str())
            .collect();
        if !unknown.is_empty() {
            let _ = writeln!(s, "  non-standard  {}", unknown.join(", "));
        }
        let bads: Vec<&str> = info
            .channels
            .iter()
            .filter(|c| c.bad)
            .map(|c| c.name.as_str())
            .collect();
        let _ = writeln!(
            s,
            "  bads          {}",
            if bads.is_empty() {
                "none".to_string()
            } else {
                bads.join(", ")
            }
        );
    }
    let descs = count_by(annotations.iter().map(|a| a.description.clone()));
    let _ = writeln!(
        s,
        "  annotations   {}{}",
        annotations.len(),
        if descs.is_empty() {
            String::new()
        } else {
            format!(
                " ({})",
                descs
                    .iter()
                    .take(12)
                    .map(|(d, n)| format!("{d}: {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    );
    for (k, v) in &info.metadata {
        let _ = writeln!(s, "  {k:<13} {v}");
    }
    for (k, v) in extra {
        let _ = writeln!(s, "  {k:<13} {v}");
    }
    let p = &info.provenance;
    if !p.source_path.is_empty() {
        let _ = writeln!(
            s,
            "  source        {} (sha256 {}, reader {} {})",
            p.source_path,
            p.source_sha256.get(..12).unwrap_or(&p.source_sha256),
            p.reader,
            p.reader_version
        );
    }
    s
}

fn describe_store(store: &Store) -> String {
    let mut s = String::new();
    let es = store.entries();
    let subjects = count_by(es.iter().filter_map(|e| e.subject.clone()));
    let total: f64 = es.iter().map(Entry::duration_s).sum();
    let _ = writeln!(
        s,
        "<Store {} | {} recordings, {} subjects, {} total, format v{}>",
        store.root().display(),
        es.len(),
        subjects.len(),
        fmt_duration(total),
        store.format_version()
    );
    let modalities = count_by(es.iter().map(|e| e.modality.as_str()));
    let _ = writeln!(
        s,
        "  modalities    {}",
        modalities
            .iter()
            .map(|(m, n)| format!("{m} ({n})"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let rates = count_by(es.iter().map(|e| format!("{} Hz", e.sfreq_hz)));
    let _ = writeln!(
        s,
        "  sfreq         {}",
        rates
            .iter()
            .map(|(r, n)| format!("{r} ({n})"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let recipes = count_by(
        es.iter()
            .map(|e| e.recipe_hash.clone().unwrap_or_else(|| "none (raw)".into())),
    );
    let _ = writeln!(
        s,
        "  recipe        {}",
        recipes
            .iter()
            .map(|(r, n)| format!("{} ({n})", r.get(..16).unwrap_or(r)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for g in store.graphs() {
        let _ = writeln!(
            s,
            "  graph         {} over {} nodes: {}",
            g.name,
            g.nodes.len(),
            g.tensors.keys().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    if !es.is_empty() {
        let _ = writeln!(s);
        let w = es.iter().map(|e| e.id.len()).max().unwrap_or(2).max(2);
        let _ = writeln!(
            s,
            "  {:<w$}  {:>7}  {:>4}  {:>10}  {:>10}  {:>6}  source",
            "id", "subject", "ch", "samples", "duration", "annot"
        );
        for e in es {
            let _ = writeln!(
                s,
                "  {:<w$}  {:>7}  {:>4}  {:>10}  {:>10}  {:>6}  {}",
                e.id,
                e.subject.as_deref().unwrap_or("-"),
                e.channels.len(),
                e.n_times,
                format!("{:.1} s", e.duration_s()),
                e.annotations.len(),
                std::path::Path::new(&e.provenance.source_path)
                    .file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_default()
            );
        }
    }
    s
}
