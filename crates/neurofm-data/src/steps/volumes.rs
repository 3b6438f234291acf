//! The fMRI recipe steps (`resample_tr`, `crop_or_pad`, `zscore_in_mask`, `parcellate`) and the
//! files they read (a brain mask, a label atlas, a label-names table).
//!
//! The steps call the functions of [`crate::fmri`]; this module adds what recipes need around
//! them: checks against a header ([`Plan`]) before any work, and the images, loaded once per
//! run by [`resolve`] through an [`ImageLoader`] the caller supplies (the CLI reads them with
//! `neurofm_io::read_recording`), each recorded with its sha256.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use neurofm_core::{ChannelInfo, Modality, Recording, Signal};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{Plan, Step};
use crate::error::DataError;
use crate::fmri::{self, FmriError, Grid};

/// Reads the image files recipe steps refer to (a mask, an atlas) as recordings holding volumes.
/// Any `Fn(&Path) -> Result<Recording, String>` is one.
pub trait ImageLoader {
    /// Reads the image at `path`; the error says why it cannot.
    fn load(&self, path: &Path) -> Result<Recording, String>;
}

impl<F> ImageLoader for F
where
    F: Fn(&Path) -> Result<Recording, String>,
{
    fn load(&self, path: &Path) -> Result<Recording, String> {
        self(path)
    }
}

/// A file a step reads, as recorded in the recipe's canonical JSON (`files`), so that its
/// content is part of the recipe hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepFile {
    /// Index of the step in the recipe.
    pub step: usize,
    /// The step's key naming the file (`mask`, `atlas`, `labels`).
    pub key: String,
    /// The path as written in the recipe.
    pub path: String,
    /// Lower-case hex sha256 of the file's bytes.
    pub sha256: String,
}

/// What one step needs beyond its parameters, loaded by [`resolve`].
#[derive(Clone)]
pub struct StepInputs {
    /// `mask` or `atlas`.
    pub key: &'static str,
    /// The file as resolved (recipe directory joined), for messages.
    pub path: String,
    /// The image: one volume.
    pub image: Arc<Recording>,
    /// Its grid.
    pub grid: Grid,
    /// `parcellate`: the label names read from the `labels` file.
    pub names: Option<BTreeMap<i64, String>>,
    /// `parcellate`: the ROI channels it makes (non-zero labels ascending).
    pub rois: Vec<ChannelInfo>,
}

impl std::fmt::Debug for StepInputs {
    // not the image's voxels
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepInputs")
            .field("key", &self.key)
            .field("path", &self.path)
            .field("grid", &self.grid)
            .field("names", &self.names)
            .field("rois", &self.rois.len())
            .finish()
    }
}

/// The inputs of every step that reads files, and the files' record.
#[derive(Clone, Default)]
pub struct Resolved {
    /// By step index.
    pub inputs: BTreeMap<usize, StepInputs>,
    /// Every file read, in step order.
    pub files: Vec<StepFile>,
}

impl PartialEq for Resolved {
    fn eq(&self, other: &Self) -> bool {
        self.files == other.files
    }
}

impl std::fmt::Debug for Resolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolved")
            .field("files", &self.files)
            .finish()
    }
}

/// The files a step reads: (key, path as written).
fn step_files(step: &Step) -> Vec<(&'static str, &str)> {
    match step {
        Step::ZscoreInMask {
            mask: Some(path), ..
        } => vec![("mask", path.as_str())],
        Step::Parcellate { atlas, labels } => {
            let mut v = vec![("atlas", atlas.as_str())];
            if let Some(l) = labels {
                v.push(("labels", l.as_str()));
            }
            v
        }
        _ => Vec::new(),
    }
}

/// Lower-case hex sha256 of a file, read in 1 MiB pieces.
fn sha256_file(path: &Path) -> Result<String, String> {
    let mut f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Loads every file the steps read, once each (a file used by two steps is read once), paths
/// relative to `base_dir` unless absolute. Fails before any work on a missing or unreadable
/// file, an image that is not a single volume, an atlas without integer labels, an empty mask,
/// or a bad labels table, naming the step and the file.
pub fn resolve(
    steps: &[Step],
    base_dir: &Path,
    loader: &dyn ImageLoader,
) -> Result<Resolved, DataError> {
    let mut out = Resolved::default();
    let mut images: HashMap<PathBuf, Arc<Recording>> = HashMap::new();
    for (index, step) in steps.iter().enumerate() {
        let files = step_files(step);
        if files.is_empty() {
            continue;
        }
        let mut inputs: Option<StepInputs> = None;
        let mut names = None;
        for (key, written) in files {
            let path = if Path::new(written).is_absolute() {
                PathBuf::from(written)
            } else {
                base_dir.join(written)
            };
            let err = |reason: String| DataError::StepFile {
                index,
                step: step.name().to_string(),
                key: key.to_string(),
                path: path.display().to_string(),
                reason,
            };
            let sha256 = sha256_file(&path).map_err(&err)?;
            out.files.push(StepFile {
                step: index,
                key: key.to_string(),
                path: written.to_string(),
                sha256,
            });
            if key == "labels" {
                let text = std::fs::read_to_string(&path).map_err(|e| err(e.to_string()))?;
                names = Some(parse_labels(&text).map_err(&err)?);
                continue;
            }
            let image = match images.get(&path) {
                Some(im) => im.clone(),
                None => {
                    let mut rec = loader.load(&path).map_err(&err)?;
                    if rec.info.provenance.source_path.is_empty() {
                        rec.info.provenance.source_path = path.display().to_string();
                    }
                    let im = Arc::new(rec);
                    images.insert(path.clone(), im.clone());
                    im
                }
            };
            let grid = check_image(&image).map_err(&err)?;
            let brain = image
                .signal
                .data()
                .iter()
                .filter(|v| v.is_finite() && **v != 0.0)
                .count();
            if key == "mask" && brain == 0 {
                return Err(err("the mask has no non-zero voxel".into()));
            }
            inputs = Some(StepInputs {
                key,
                path: path.display().to_string(),
                image,
                grid,
                names: None,
                rois: Vec::new(),
            });
        }
        let Some(mut inputs) = inputs else {
            continue;
        };
        if let Step::Parcellate { .. } = step {
            let err = |reason: String| DataError::StepFile {
                index,
                step: step.name().to_string(),
                key: "atlas".into(),
                path: inputs.path.clone(),
                reason,
            };
            let labels = fmri::label_voxels(&inputs.image).map_err(&err)?;
            inputs.rois = fmri::roi_channels(labels.keys(), names.as_ref());
            let mut seen = BTreeSet::new();
            for c in &inputs.rois {
                if !seen.insert(c.name.as_str()) {
                    return Err(err(format!(
                        "two labels are named `{}`: ROI names must be unique",
                        c.name
                    )));
                }
            }
            inputs.names = names;
        }
        out.inputs.insert(index, inputs);
    }
    Ok(out)
}

/// The grid of a single-volume image whose data length matches it.
fn check_image(image: &Recording) -> Result<Grid, String> {
    match &image.signal {
        Signal::Volumes {
            n_volumes,
            dims,
            affine,
            data,
        } => {
            if *n_volumes != 1 {
                return Err(format!(
                    "holds {n_volumes} volumes; a mask or atlas must be one 3-D volume"
                ));
            }
            let nv = dims[0] * dims[1] * dims[2];
            if data.len() != nv {
                return Err(format!(
                    "holds {} values, its grid {dims:?} needs {nv}",
                    data.len()
                ));
            }
            Ok(Grid {
                dims: *dims,
                affine: *affine,
            })
        }
        Signal::Channels { .. } => Err("is not a volume image (it has channels)".into()),
    }
}

/// Reads a label-names table: one label per line, `value` then `name`, separated by a tab, a
/// comma or spaces. A first line whose first field is not an integer is a header: its columns
/// `index` / `value` / `id` and `name` / `label` are used when present (BIDS `dseg.tsv`), the
/// first two otherwise. Blank lines and lines starting with `#` are skipped. Values and names
/// must be unique.
pub fn parse_labels(text: &str) -> Result<BTreeMap<i64, String>, String> {
    let mut out = BTreeMap::new();
    let mut names = BTreeSet::new();
    let mut cols = (0usize, 1usize);
    let mut first = true;
    for (k, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = if line.contains('\t') {
            line.split('\t').collect()
        } else if line.contains(',') {
            line.split(',').collect()
        } else {
            line.split_whitespace().collect()
        };
        let fields: Vec<&str> = fields.iter().map(|f| f.trim().trim_matches('"')).collect();
        let lineno = k + 1;
        if first {
            first = false;
            if fields.first().is_some_and(|f| f.parse::<i64>().is_err()) {
                let find = |names: &[&str]| {
                    fields
                        .iter()
                        .position(|f| names.iter().any(|n| f.eq_ignore_ascii_case(n)))
                };
                cols = (
                    find(&["index", "value", "id"]).unwrap_or(0),
                    find(&["name", "label"]).unwrap_or(1),
                );
                continue;
            }
        }
        let value = fields
            .get(cols.0)
            .ok_or_else(|| format!("line {lineno}: no column {}", cols.0 + 1))?;
        let value: i64 = value
            .parse()
            .map_err(|_| format!("line {lineno}: label value `{value}` is not an integer"))?;
        let name = fields
            .get(cols.1)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| format!("line {lineno}: label {value} has no name"))?;
        if !names.insert(name.to_string()) {
            return Err(format!("line {lineno}: name `{name}` is used twice"));
        }
        if out.insert(value, name.to_string()).is_some() {
            return Err(format!("line {lineno}: label {value} is listed twice"));
        }
    }
    if out.is_empty() {
        return Err("no labels".into());
    }
    Ok(out)
}

/// `needs a channel recording; this one is volumes ...`
pub(crate) fn needs_channels(shape: &[usize]) -> String {
    format!("needs a channel recording; this one is volumes [t, x, y, z] = {shape:?} — parcellate first")
}

fn needs_volumes(plan: &Plan) -> String {
    format!(
        "needs volumes [t, x, y, z]; this one is a channel recording [channels, samples] = [{}, {}]",
        plan.channels.len(),
        plan.n_times
    )
}

fn not_loaded(step: &Step) -> String {
    let what = step_files(step)
        .first()
        .map(|(k, p)| format!("the {k} `{p}`"))
        .unwrap_or_else(|| "its file".into());
    format!("{what} is not loaded: the recipe must be resolved (Recipe::resolve) first")
}

fn grid_mismatch(inputs: &StepInputs, here: &Grid) -> String {
    let (key, path, g) = (inputs.key, &inputs.path, &inputs.grid);
    if g.dims != here.dims {
        format!(
            "{key} {path} is on a {:?} grid, the recording at this step is on {:?}: they must be \
             the same grid",
            g.dims, here.dims
        )
    } else {
        format!(
            "{key} {path} has the recording's size {:?} but another voxel → world affine: {key} \
             {g}; recording at this step {here}",
            g.dims
        )
    }
}

/// Checks an fMRI step against `plan` and updates `plan` to its output.
pub(crate) fn plan(
    step: &Step,
    plan: &mut Plan,
    inputs: Option<&StepInputs>,
) -> Result<(), String> {
    if let Step::ResampleTr { tr_s } = step {
        if !(tr_s.is_finite() && *tr_s > 0.0) {
            return Err(format!("tr_s = {tr_s}: the target TR must be > 0 seconds"));
        }
        let sf = plan.sfreq_hz;
        if !(sf.is_finite() && sf > 0.0) {
            return Err(format!("the recording has no TR (sfreq_hz = {sf})"));
        }
        if plan.n_times == 0 {
            return Err("the recording has no time points".into());
        }
        plan.n_times = fmri::resample_tr_len(plan.n_times, sf, *tr_s);
        plan.sfreq_hz = 1.0 / tr_s;
        return Ok(());
    }
    let Some(grid) = plan.grid else {
        return Err(needs_volumes(plan));
    };
    match step {
        Step::CropOrPad { shape, fill } => {
            if shape.contains(&0) {
                return Err(format!("shape {shape:?} has a zero size"));
            }
            if !fill.is_finite() {
                return Err(format!("fill = {fill} must be finite"));
            }
            plan.grid = Some(grid.crop_or_pad(*shape));
        }
        Step::ZscoreInMask {
            mask,
            threshold,
            threshold_abs,
            background,
            ..
        } => {
            let given = [mask.is_some(), threshold.is_some(), threshold_abs.is_some()];
            if given.iter().filter(|&&g| g).count() != 1 {
                return Err(
                    "give exactly one of mask (a file), threshold (a fraction of the mean \
                     image's maximum) or threshold_abs (an intensity)"
                        .into(),
                );
            }
            if let Some(t) = threshold {
                if !(*t >= 0.0 && *t < 1.0) {
                    return Err(format!(
                        "threshold = {t}: a fraction of the mean image's maximum, in [0, 1)"
                    ));
                }
            }
            if let Some(t) = threshold_abs {
                if !t.is_finite() {
                    return Err(format!("threshold_abs = {t} must be finite"));
                }
            }
            if !background.is_finite() {
                return Err(format!("background = {background} must be finite"));
            }
            if mask.is_some() {
                let inputs = inputs.ok_or_else(|| not_loaded(step))?;
                if !inputs.grid.same_as(&grid) {
                    return Err(grid_mismatch(inputs, &grid));
                }
            }
        }
        Step::Parcellate { .. } => {
            let inputs = inputs.ok_or_else(|| not_loaded(step))?;
            if !inputs.grid.same_as(&grid) {
                return Err(grid_mismatch(inputs, &grid));
            }
            plan.channels = inputs.rois.clone();
            plan.modality = Modality::FmriRoi;
            plan.grid = None;
        }
        _ => return Err(format!("`{}` is not an fMRI step", step.name())),
    }
    Ok(())
}

/// The reason of an fMRI error without the recording and step (the caller adds them).
fn reason(e: FmriError) -> String {
    match e {
        FmriError::NotVolumes { .. } => "expected volumes ([t, x, y, z])".into(),
        FmriError::Invalid { reason, .. } => reason,
        FmriError::NonFinite { volume, count, .. } => {
            format!("volume {volume} has {count} non-finite voxels inside the mask/atlas")
        }
    }
}

/// Applies an fMRI step.
pub(crate) fn apply(
    step: &Step,
    rec: Recording,
    inputs: Option<&StepInputs>,
) -> Result<(Recording, Option<String>), String> {
    let out = match step {
        Step::ResampleTr { tr_s } => fmri::resample_tr(&rec, *tr_s).map_err(reason)?,
        Step::CropOrPad { shape, fill } => {
            fmri::crop_or_pad(&rec, *shape, *fill as f32).map_err(reason)?
        }
        Step::ZscoreInMask {
            mask,
            threshold,
            threshold_abs,
            mode,
            background,
        } => {
            let brain = match (mask, threshold, threshold_abs) {
                (Some(_), _, _) => {
                    let inputs = inputs.ok_or_else(|| not_loaded(step))?;
                    fmri::mask_from_image(&rec, &inputs.image).map_err(reason)?
                }
                (None, Some(t), _) => fmri::threshold_mask(&rec, *t, true).map_err(reason)?,
                (None, None, Some(t)) => fmri::threshold_mask(&rec, *t, false).map_err(reason)?,
                (None, None, None) => return Err("no mask given".into()),
            };
            let n = brain.iter().filter(|&&b| b).count();
            let out =
                fmri::zscore_in_mask(&rec, &brain, *mode, *background as f32).map_err(reason)?;
            return Ok((out, Some(format!("{n} brain voxels"))));
        }
        Step::Parcellate { .. } => {
            let inputs = inputs.ok_or_else(|| not_loaded(step))?;
            fmri::parcellate(&rec, &inputs.image, inputs.names.as_ref()).map_err(reason)?
        }
        _ => return Err(format!("`{}` is not an fMRI step", step.name())),
    };
    Ok((out, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_tables() {
        let m = parse_labels("1\tPrecuneus\n# comment\n\n7\tV1\n").unwrap();
        assert_eq!(m[&1], "Precuneus");
        assert_eq!(m[&7], "V1");
        let bids = parse_labels("name,index,color\nLeft,3,red\n\"Right\",4,blue\n").unwrap();
        assert_eq!(bids[&3], "Left");
        assert_eq!(bids[&4], "Right");
        let fs = parse_labels("0  Unknown  0 0 0 0\n17 Left-Hippocampus 220 216 20 0\n").unwrap();
        assert_eq!(fs[&17], "Left-Hippocampus");
        let e = parse_labels("index\tname\n1\tA\nx\tB\n").unwrap_err();
        assert!(e.contains("line 3") && e.contains("`x`"), "{e}");
        assert!(parse_labels("1\tA\n1\tB\n").unwrap_err().contains("twice"));
        assert!(parse_labels("1\tA\n2\tA\n").unwrap_err().contains("twice"));
        assert!(parse_labels("1\n").unwrap_err().contains("no name"));
        assert!(parse_labels("# nothing\n")
            .unwrap_err()
            .contains("no labels"));
    }
}
