//! `neurofm ingest`: read recordings in any supported format into a store.

use std::collections::{BTreeMap, HashSet};
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
/// Directories are searched recursively for files a reader handles; a BIDS root (a directory with
/// `dataset_description.json`) is read as BIDS: `sub-*/[ses-*/]{eeg,meg,ieeg}/` recordings with
/// subject/session/task/run from the names, events from `*_events.tsv`, channel types and bads
/// from `*_channels.tsv`, and participants.tsv columns as metadata. Ingest is resumable: a
/// source already in the store (same sha256) is skipped, so re-running after an interruption
/// continues where it stopped. A killed ingest leaves a store that lists only complete recordings.
///
/// C. elegans calcium imaging: Dag et al. (2023) whole-brain HDF5 files (`gcamp/trace_array`,
/// `timing/timestamp_confocal`) are recognized by content. They are homogenized: resampled onto
/// a common time step (`--dt`), optionally smoothed and z-scored, and placed on the 302
/// canonical neurons (row i = neuron i, absent or unidentified neurons are zero rows with 0 in
/// the `mask` extra tensor); behaviour series become the `covariates` extra tensor. The files
/// store no neuron names: give a NeuroPAL label table with `--neuropal-labels`, or keep the
/// unnamed ROIs with `--calcium-rows rois`. Generic time x neuron matrices (CSV/TSV, NPY, MAT,
/// HDF5) are read with `--as calcium --sfreq HZ` and ROI time series with `--as fmri-roi --tr S`.
/// Connectomes go in with `neurofm ingest-connectome`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  neurofm ingest ../shared/data/eegmat --out stores/eegmat \\
      --pattern 'Subject(?P<subject>\\d+)_(?P<run>\\d)\\.edf'
  neurofm ingest rec.vhdr --out stores/lab --subject 07 --task oddball --label group=patient
  neurofm ingest worm1-data.h5 --out stores/worms --neuropal-labels worm1-labels.csv --dt 0.5
  neurofm ingest ../shared/data/celegans-dag2023 --out stores/worms --calcium-rows rois \\
      --pattern '(?P<subject>[0-9-]+)-data\\.h5'
  neurofm ingest traces.npy --as calcium --sfreq 2.85 --names neurons.txt --out stores/worms
  neurofm ingest roi_ts.csv --as fmri-roi --tr 2.0 --subject 01 --out stores/fmri")]
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
    /// Recordings up to this many MiB (as f32) are decoded by a reading thread while the
    /// previous one is written; larger ones are streamed in blocks (bounded memory). Hidden: a
    /// tuning and test knob.
    #[arg(long, value_name = "MIB", default_value_t = 64, hide = true)]
    pub prefetch_mib: usize,

    /// Read CSV/TSV, NPY, MAT and HDF5 inputs as matrices: `calcium` (time x neuron, homogenized
    /// like the Dag files) or `fmri-roi` (time x ROI series, stored as read). Without it only
    /// Dag et al. (2023) HDF5 files are taken among these extensions.
    #[arg(
        long = "as",
        value_enum,
        value_name = "KIND",
        help_heading = "Matrices"
    )]
    pub as_kind: Option<MatrixKind>,
    /// Sampling rate of a matrix in Hz (the files store none).
    #[arg(long, value_name = "HZ", help_heading = "Matrices")]
    pub sfreq: Option<f64>,
    /// Repetition time of ROI series in seconds (the same as --sfreq 1/TR).
    #[arg(
        long,
        value_name = "SECONDS",
        conflicts_with = "sfreq",
        help_heading = "Matrices"
    )]
    pub tr: Option<f64>,
    /// One name per matrix column (or row with --channels-first): a text file with one name per
    /// line, or a comma-separated list. Default: the CSV header; for `fmri-roi` without a header
    /// roi0, roi1, ...; required for calcium NPY/MAT/HDF5. Calcium names are matched to the
    /// 302 neurons (case and zero padding ignored: `va01` = VA1); an empty name is an
    /// unidentified ROI.
    #[arg(long, value_name = "FILE|A,B,...", help_heading = "Matrices")]
    pub names: Option<String>,
    /// HDF5 dataset path or MAT variable name of the matrix (MAT: optional when the file has a
    /// single 2-D numeric variable).
    #[arg(long, value_name = "NAME", help_heading = "Matrices")]
    pub dataset: Option<String>,
    /// The matrix is channel x time (one row per neuron/ROI) instead of time x channel.
    #[arg(long, help_heading = "Matrices")]
    pub channels_first: bool,

    /// NeuroPAL label table for Dag et al. (2023) files: CSV `neuropal_roi,neuron` (1-based
    /// NeuroPAL ROI, neuron name), matched to GCaMP ROIs through the file's
    /// `neuropal_registration/roi_match`.
    #[arg(long, value_name = "CSV", help_heading = "Calcium imaging")]
    pub neuropal_labels: Option<PathBuf>,
    /// Trace dataset of Dag et al. (2023) files (also `gcamp/trace_array_original`,
    /// `gcamp/traces_array_F_F20`).
    #[arg(
        long,
        value_name = "DATASET",
        default_value = "gcamp/trace_array",
        help_heading = "Calcium imaging"
    )]
    pub dag_trace: String,
    /// Common time step in seconds: every trace and covariate is linearly interpolated on its
    /// own timestamps onto 0, dt, 2 dt, ... The default 0.5 s (2 Hz) is finer than the volume
    /// interval of the Dag et al. (2023) recordings (0.55-0.77 s), so none is decimated.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 0.5,
        help_heading = "Calcium imaging"
    )]
    pub dt: f64,
    /// Centred moving average over N samples (odd) after resampling; 1 = no smoothing.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 1,
        help_heading = "Calcium imaging"
    )]
    pub smooth: usize,
    /// Per-trace normalization after resampling: `none` keeps the values as read (scale later
    /// with a recipe), `zscore` gives each trace mean 0 and std 1 (a constant trace becomes 0).
    #[arg(
        long,
        value_enum,
        default_value_t = Normalize::None,
        help_heading = "Calcium imaging"
    )]
    pub normalize: Normalize,
    /// Rows of a calcium recording: `canonical` = the 302 C. elegans neurons in canonical order
    /// with a `mask` (a recording with no identified neuron is refused); `rois` = the file's
    /// ROIs in file order, names kept, for recordings without neuron identities.
    #[arg(
        long,
        value_enum,
        default_value_t = CalciumRows::Canonical,
        help_heading = "Calcium imaging"
    )]
    pub calcium_rows: CalciumRows,
    /// A neuron name that is not one of the 302: `error` stops with the file and the names;
    /// `drop` leaves that ROI unidentified (not placed) and records the names in the entry's
    /// `calcium.read_report` metadata.
    #[arg(
        long,
        value_enum,
        default_value_t = UnknownNeurons::Error,
        help_heading = "Calcium imaging"
    )]
    pub unknown_neurons: UnknownNeurons,
}

/// How `--as` reads matrices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MatrixKind {
    /// Time x neuron calcium traces (modality `calcium`), homogenized.
    Calcium,
    /// Time x ROI series (modality `fmri-roi`).
    FmriRoi,
}

/// `--normalize`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Normalize {
    None,
    Zscore,
}

/// `--calcium-rows`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CalciumRows {
    Canonical,
    Rois,
}

/// `--unknown-neurons`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum UnknownNeurons {
    Error,
    Drop,
}

/// Extensions read as matrices with `--as`.
const MATRIX_EXTENSIONS: &[&str] = &["csv", "tsv", "npy", "mat", "h5", "hdf5"];

/// How one input is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum How {
    /// A recording format of `neurofm_io::FORMATS` (or a BIDS recording).
    Raw,
    /// A Dag et al. (2023) whole-brain calcium HDF5 file.
    Dag,
    /// A matrix read with `--as`.
    Matrix(MatrixKind),
}

/// One file to ingest; BIDS recordings carry their entities and sidecars.
struct Input {
    path: PathBuf,
    bids: Option<neurofm_io::bids::BidsRecording>,
    how: How,
}

fn lower_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default()
}

fn has_ext(path: &Path, exts: &[&str]) -> bool {
    let name = lower_name(path);
    exts.iter().any(|e| name.ends_with(&format!(".{e}")))
}

/// How a file is read, or `None` when no reader takes it with these options.
fn classify(path: &Path, args: &Args) -> Option<How> {
    let raw = neurofm_io::FORMATS
        .iter()
        .flat_map(|f| f.extensions.iter().copied())
        .collect::<Vec<_>>();
    if has_ext(path, &raw) {
        return Some(How::Raw);
    }
    let dag_allowed = match args.as_kind {
        None => true,
        Some(MatrixKind::Calcium) => args.dataset.is_none(),
        Some(MatrixKind::FmriRoi) => false,
    };
    if dag_allowed && has_ext(path, &["h5", "hdf5"]) && neurofm_io::celegans::is_dag2023(path) {
        return Some(How::Dag);
    }
    match args.as_kind {
        Some(k) if has_ext(path, MATRIX_EXTENSIONS) => Some(How::Matrix(k)),
        _ => None,
    }
}

/// BIDS roots (directories with `dataset_description.json`) are scanned as BIDS; other
/// directories are searched for every file some reader takes (see [`classify`]).
fn collect_inputs(args: &Args) -> anyhow::Result<Vec<Input>> {
    let mut out: Vec<Input> = Vec::new();
    for p in &args.inputs {
        if p.is_dir() && p.join("dataset_description.json").is_file() {
            for r in neurofm_io::bids::scan(p)? {
                out.push(Input {
                    path: r.path.clone(),
                    bids: Some(r),
                    how: How::Raw,
                });
            }
        } else if p.is_dir() {
            let mut files = Vec::new();
            walk(p, args, &mut files).with_context(|| format!("listing {}", p.display()))?;
            out.extend(files.into_iter().map(|(path, how)| Input {
                path,
                bids: None,
                how,
            }));
        } else if p.exists() {
            let how = match classify(p, args) {
                Some(h) => h,
                None if has_ext(p, &["h5", "hdf5"]) => bail!(
                    "{}: an HDF5 file without the Dag et al. (2023) layout (gcamp/trace_array and \
                     timing/timestamp_confocal); read a matrix from it with --as calcium|fmri-roi \
                     --dataset PATH --sfreq HZ",
                    p.display()
                ),
                None if has_ext(p, MATRIX_EXTENSIONS) => bail!(
                    "{}: a matrix file stores neither what it holds nor a sampling rate; give \
                     --as calcium|fmri-roi and --sfreq HZ (or --tr SECONDS)",
                    p.display()
                ),
                // open_raw names the readers it tried
                None => How::Raw,
            };
            out.push(Input {
                path: p.clone(),
                bids: None,
                how,
            });
        } else {
            bail!("{}: no such file or directory", p.display());
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out.dedup_by(|a, b| a.path == b.path);
    Ok(out)
}

fn walk(dir: &Path, args: &Args, out: &mut Vec<(PathBuf, How)>) -> std::io::Result<()> {
    for ent in std::fs::read_dir(dir)? {
        let p = ent?.path();
        if p.is_dir() {
            walk(&p, args, out)?;
        } else if let Some(how) = classify(&p, args) {
            out.push((p, how));
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

/// `--names`: a file with one name per line, else a comma-separated list.
fn load_names(args: &Args) -> anyhow::Result<Option<Vec<String>>> {
    let Some(raw) = &args.names else {
        return Ok(None);
    };
    let p = Path::new(raw);
    if p.is_file() {
        let text = std::fs::read_to_string(p).with_context(|| format!("--names: reading {raw}"))?;
        Ok(Some(text.lines().map(|l| l.trim().to_string()).collect()))
    } else {
        Ok(Some(raw.split(',').map(|n| n.trim().to_string()).collect()))
    }
}

/// `--sfreq`, or `1 / --tr`.
fn matrix_rate(args: &Args, path: &Path) -> anyhow::Result<f64> {
    match (args.sfreq, args.tr) {
        (Some(f), _) if f.is_finite() && f > 0.0 => Ok(f),
        (Some(f), _) => bail!("--sfreq {f}: must be a positive number of Hz"),
        (None, Some(t)) if t.is_finite() && t > 0.0 => Ok(1.0 / t),
        (None, Some(t)) => bail!("--tr {t}: must be a positive number of seconds"),
        (None, None) => bail!(
            "{}: --sfreq HZ (or --tr SECONDS) is required: the file stores no sampling rate",
            path.display()
        ),
    }
}

fn layout(args: &Args) -> neurofm_io::csv_series::Layout {
    if args.channels_first {
        neurofm_io::csv_series::Layout::ChannelByTime
    } else {
        neurofm_io::csv_series::Layout::TimeByChannel
    }
}

/// Reads a Dag file or a matrix into memory; returns the recording, its store extras and a
/// one-line summary of what was done.
fn read_in_memory(
    path: &Path,
    how: How,
    args: &Args,
) -> anyhow::Result<(neurofm_core::Recording, NewEntry, String)> {
    use neurofm_io::celegans;
    let unknown = match args.unknown_neurons {
        UnknownNeurons::Error => celegans::UnknownNames::Error,
        UnknownNeurons::Drop => celegans::UnknownNames::Drop,
    };
    let calcium = match how {
        How::Dag => celegans::read_dag2023(
            path,
            &celegans::Dag2023Options {
                trace: args.dag_trace.clone(),
                neuropal_labels: args.neuropal_labels.clone(),
                unknown_names: unknown,
            },
        )?,
        How::Matrix(MatrixKind::Calcium) => celegans::read_neuron_matrix_layout(
            path,
            args.dataset.as_deref(),
            load_names(args)?,
            celegans::TimeAxis::Rate(matrix_rate(args, path)?),
            unknown,
            layout(args),
        )?,
        How::Matrix(MatrixKind::FmriRoi) => {
            let rate = matrix_rate(args, path)?;
            let neurofm_io::celegans::Matrix {
                rows,
                cols,
                data,
                header,
            } = neurofm_io::celegans::read_matrix_any(path, args.dataset.as_deref())?;
            let layout = layout(args);
            let n_ch = match layout {
                neurofm_io::csv_series::Layout::TimeByChannel => cols,
                neurofm_io::csv_series::Layout::ChannelByTime => rows,
            };
            let names = match (load_names(args)?, header, layout) {
                (Some(n), _, _) => n,
                (None, Some(h), neurofm_io::csv_series::Layout::TimeByChannel) => h,
                _ => (0..n_ch).map(|i| format!("roi{i}")).collect(),
            };
            let reader = ["csv", "tsv", "npy", "mat", "h5", "hdf5"]
                .into_iter()
                .find(|e| has_ext(path, &[e]))
                .unwrap_or("matrix");
            let mut opts = neurofm_io::csv_series::SeriesOptions::fmri_roi(rate);
            opts.layout = layout;
            let rec = neurofm_io::csv_series::matrix_to_recording(
                path, reader, rows, cols, &data, names, &opts,
            )?;
            let summary = format!(
                "{}: fmri-roi {} ROIs x {} samples at {} Hz",
                path.display(),
                rec.info.n_channels(),
                rec.signal.n_times(),
                rec.info.sfreq_hz
            );
            return Ok((rec, NewEntry::default(), summary));
        }
        How::Raw => bail!("{}: not a calcium file", path.display()),
    };
    let opts = celegans::HomogenizeOptions {
        dt_s: args.dt,
        smooth_samples: (args.smooth != 1).then_some(args.smooth),
        zscore: args.normalize == Normalize::Zscore,
    };
    let n_roi = calcium.recording.info.n_channels();
    let h = match args.calcium_rows {
        CalciumRows::Canonical => {
            let h = celegans::homogenize(&calcium, &opts).map_err(|e| {
                anyhow::Error::new(e).context("--dt / --smooth (calcium homogenization)")
            })?;
            if h.mask.iter().all(|&m| m == 0.0) {
                bail!(
                    "{}: none of its {n_roi} ROIs is identified as one of the 302 C. elegans \
                     neurons, so the canonical rows would all be empty; give the neuron names \
                     ({}) or keep the unnamed ROIs with --calcium-rows rois",
                    path.display(),
                    if how == How::Dag {
                        "the file stores none: --neuropal-labels TABLE.csv"
                    } else {
                        "--names, or a CSV header"
                    }
                );
            }
            h
        }
        CalciumRows::Rois => celegans::resample_rois(&calcium, &opts)
            .map_err(|e| anyhow::Error::new(e).context("--dt / --smooth (calcium resampling)"))?,
    };
    let entry = neurofm_data::calcium::homogenized_entry(&h);
    let recorded = h.mask.iter().filter(|&&m| m > 0.0).count();
    let mut summary = format!(
        "{}: calcium {} x {} at {} Hz ({}), {recorded} of {} rows recorded (from {n_roi} ROIs), covariates [{}]",
        path.display(),
        h.recording.info.n_channels(),
        h.recording.signal.n_times(),
        h.recording.info.sfreq_hz,
        match args.calcium_rows {
            CalciumRows::Canonical => "302 canonical neurons",
            CalciumRows::Rois => "ROIs in file order",
        },
        h.mask.len(),
        h.covariate_names.join(", ")
    );
    if let Some(r) = h.recording.info.metadata.get("calcium.read_report") {
        summary.push_str(&format!("\n  read: {r}"));
    }
    // every decision is in the entry's metadata; show the first few here
    for r in h.report.iter().take(5) {
        summary.push_str(&format!("\n  {r}"));
    }
    if h.report.len() > 5 {
        summary.push_str(&format!(
            "\n  ... {} more in metadata calcium.homogenize_report",
            h.report.len() - 5
        ));
    }
    Ok((h.recording, entry, summary))
}

/// Applies `--pattern`, `--subject`, ... to `info` and `labels`.
fn apply_overrides(
    args: &Args,
    pattern: Option<&Regex>,
    file: &Path,
    info: &mut neurofm_core::Info,
    labels: &mut BTreeMap<String, Value>,
) -> anyhow::Result<()> {
    if let Some(re) = pattern {
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
    Ok(())
}

pub fn run(args: Args, global: &Global) -> anyhow::Result<()> {
    let pattern = args
        .pattern
        .as_deref()
        .map(Regex::new)
        .transpose()
        .context("--pattern is not a valid regular expression")?;
    let base_labels = parse_labels(&args.labels)?;
    let files = collect_inputs(&args)?;
    if files.is_empty() {
        bail!(
            "no readable recordings under {} (known extensions: {}; Dag et al. (2023) .h5 files \
             by content; {} with --as)",
            args.inputs
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            neurofm_io::FORMATS
                .iter()
                .flat_map(|f| f.extensions.iter().copied())
                .collect::<Vec<_>>()
                .join(", "),
            MATRIX_EXTENSIONS.join(", ")
        );
    }
    if args.dry_run {
        for f in &files {
            match f.how {
                How::Raw => println!("{}", f.path.display()),
                How::Dag => println!("{}  (Dag et al. 2023 calcium)", f.path.display()),
                How::Matrix(MatrixKind::Calcium) => {
                    println!("{}  (calcium matrix)", f.path.display())
                }
                How::Matrix(MatrixKind::FmriRoi) => {
                    println!("{}  (ROI series)", f.path.display())
                }
            }
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
    // Sources already in the store when we start: the reading thread does not decode them.
    let known: HashSet<String> = store
        .entries()
        .iter()
        .filter(|e| e.recipe_hash.is_none())
        .map(|e| e.provenance.source_sha256.clone())
        .collect();
    let files_bar = progress::bar(files.len() as u64, "ingest", global.quiet);
    let (mut added, mut skipped, mut duplicates) = (0usize, 0usize, 0usize);
    // Two-stage pipeline: a reading thread opens (hashes) and decodes file k+1 while this
    // thread writes and fsyncs file k. Results come back in input order (ids are
    // deterministic); at most one prepared file waits in the channel.
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<anyhow::Result<Prepared>>(1);
        let (files_ref, args_ref, known_ref) = (&files, &args, &known);
        scope.spawn(move || {
            for input in files_ref {
                if tx.send(prepare(input, args_ref, known_ref)).is_err() {
                    break; // the writer stopped (error): stop reading
                }
            }
        });
        for input in &files {
            let file = &input.path;
            files_bar.set_message(file.display().to_string());
            let prepared = rx
                .recv()
                .map_err(|_| anyhow::anyhow!("the reading thread stopped"))??;
            let present = store.find_source(&prepared.sha, None).map(|e| e.id.clone());
            let what = match (prepared.what, present) {
                (What::Known, None) | (_, Some(_)) => {
                    let id = store
                        .find_source(&prepared.sha, None)
                        .map(|e| format!(" as {}", e.id))
                        .unwrap_or_default();
                    say(
                        &files_bar,
                        global.quiet,
                        format!("skip {} (already in the store{id})", file.display()),
                    );
                    skipped += 1;
                    files_bar.inc(1);
                    continue;
                }
                (w, None) => w,
            };
            let mut labels = base_labels.clone();
            let duplicate = |store: &Store, info: &neurofm_core::Info| -> bool {
                if args.allow_duplicates {
                    return false;
                }
                match store.find_duplicate_key(info) {
                    Some(e) => {
                        say(&files_bar, global.quiet, format!(
                            "duplicate: {} has the same (subject, session, task, run) as {} (from {}); not ingested (use --allow-duplicates)",
                            file.display(),
                            e.id,
                            e.provenance.source_path
                        ));
                        true
                    }
                    None => false,
                }
            };
            match what {
                // skipped above
                What::Known => continue,
                What::Stream(mut reader) => {
                    let mut info = reader.info().clone();
                    apply_overrides(&args, pattern.as_ref(), file, &mut info, &mut labels)?;
                    if duplicate(&store, &info) {
                        duplicates += 1;
                        files_bar.inc(1);
                        continue;
                    }
                    let mut wrapped = WithInfo {
                        inner: reader.as_mut(),
                        info,
                    };
                    store
                        .add_from_reader(
                            &mut wrapped,
                            NewEntry {
                                labels,
                                ..NewEntry::default()
                            },
                            &mut |_, _| {},
                        )
                        .with_context(|| format!("ingesting {}", file.display()))?;
                }
                What::Memory(mut rec) => {
                    apply_overrides(&args, pattern.as_ref(), file, &mut rec.info, &mut labels)?;
                    if duplicate(&store, &rec.info) {
                        duplicates += 1;
                        files_bar.inc(1);
                        continue;
                    }
                    store
                        .add(
                            &rec,
                            NewEntry {
                                labels,
                                ..NewEntry::default()
                            },
                        )
                        .with_context(|| format!("ingesting {}", file.display()))?;
                }
                What::Calcium {
                    mut rec,
                    mut entry,
                    summary,
                } => {
                    apply_overrides(&args, pattern.as_ref(), file, &mut rec.info, &mut labels)?;
                    if duplicate(&store, &rec.info) {
                        duplicates += 1;
                        files_bar.inc(1);
                        continue;
                    }
                    for (k, v) in labels {
                        entry.labels.entry(k).or_insert(v);
                    }
                    let id = store
                        .add(&rec, entry)
                        .with_context(|| format!("ingesting {}", file.display()))?;
                    say(
                        &files_bar,
                        global.quiet,
                        format!("{summary}\n  stored as {id}"),
                    );
                }
            }
            added += 1;
            files_bar.inc(1);
        }
        Ok(())
    })?;
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

/// One input, opened (and hashed) by the reading thread.
struct Prepared {
    /// sha256 of the source file.
    sha: String,
    what: What,
}

enum What {
    /// Already in the store when the ingest started: not read.
    Known,
    /// Opened; read block by block while writing.
    Stream(Box<dyn neurofm_io::RawReader>),
    /// Decoded ahead.
    Memory(neurofm_core::Recording),
    /// A homogenized calcium recording or ROI series, with its store extras and summary.
    Calcium {
        rec: neurofm_core::Recording,
        entry: NewEntry,
        summary: String,
    },
}

/// Opens one input; decodes it when it is small and not already in the store. The file is
/// hashed once (the readers record its sha256 in the provenance).
fn prepare(input: &Input, args: &Args, known: &HashSet<String>) -> anyhow::Result<Prepared> {
    let file = &input.path;
    if input.how != How::Raw {
        let sha = neurofm_io::sha256_file(file)?;
        if known.contains(&sha) {
            return Ok(Prepared {
                sha,
                what: What::Known,
            });
        }
        let (rec, entry, summary) = read_in_memory(file, input.how, args)?;
        return Ok(Prepared {
            sha,
            what: What::Calcium {
                rec,
                entry,
                summary,
            },
        });
    }
    let mut reader = match &input.bids {
        Some(b) => b.open()?,
        None => neurofm_io::open_raw(file)?,
    };
    let sha = match reader.info().provenance.source_sha256.as_str() {
        "" => neurofm_io::sha256_file(file)?,
        s => s.to_string(),
    };
    if known.contains(&sha) {
        return Ok(Prepared {
            sha,
            what: What::Known,
        });
    }
    let per_time = match reader.volume_geometry() {
        Some((d, _)) => d.iter().product::<usize>(),
        None => reader.info().n_channels(),
    };
    let bytes = per_time.saturating_mul(reader.n_times()).saturating_mul(4);
    let what = if bytes <= args.prefetch_mib.saturating_mul(1 << 20) {
        What::Memory(
            reader
                .read_all()
                .with_context(|| format!("reading {}", file.display()))?,
        )
    } else {
        What::Stream(reader)
    };
    Ok(Prepared { sha, what })
}

/// Prints an informational line above the bar, or on stderr when the bar is hidden (no TTY);
/// nothing with `--quiet`.
fn say(bar: &indicatif::ProgressBar, quiet: bool, msg: String) {
    if quiet {
        return;
    }
    if bar.is_hidden() {
        eprintln!("{msg}");
    } else {
        bar.println(msg);
    }
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
