//! fMRI preprocessing steps: pure functions on [`Recording`]s holding `Signal::Volumes`
//! (`[time, x, y, z]`) — and, for temporal resampling, ROI series too.
//!
//! * [`resample_tr`]: to a common TR by **linear interpolation** between the two nearest
//!   volumes. Volume `k` is taken at `k * TR` (slice timing is ignored); the new grid is
//!   `j * TR_new` for every `j` with `j * TR_new <= (n - 1) * TR` (no extrapolation). Linear
//!   interpolation slightly low-passes the signal when upsampling and aliases when downsampling
//!   by large factors (no anti-alias filter): use it to bring TRs that differ by a few percent to
//!   a common one, not for large rate changes.
//! * [`crop_or_pad`]: to a target grid (e.g. 96³ as SwiFT), centred: `floor((n - target) / 2)`
//!   voxels are cut before (crop) or `floor((target - n) / 2)` added before (pad, with a fill
//!   value); the affine's translation moves so every kept voxel keeps its world position.
//! * [`threshold_mask`] / [`mask_from_image`]: a brain mask from an intensity threshold on the
//!   temporal mean image, or from a mask image on the same grid (non-zero = brain).
//! * [`zscore_in_mask`]: z-scores intensities of the voxels inside the mask — over all brain
//!   voxels and volumes together ([`ZscoreMode::Global`], SwiFT's choice) or per voxel over time
//!   ([`ZscoreMode::PerVoxel`]); voxels outside the mask are set to `background`.
//! * [`parcellate`]: a label atlas on the same grid → ROI × time (modality `fmri-roi`, one
//!   channel per non-zero label in ascending order, mean over the label's voxels).
//!
//! Non-finite voxels (NaN volumes) make z-scoring and parcellation fail with the volume and the
//! count ([`FmriError::NonFinite`]): they are never silently averaged in.
//!
//! Recipes run these functions as the steps `resample_tr`, `crop_or_pad`, `zscore_in_mask` and
//! `parcellate` ([`crate::steps::Step`], [`crate::steps::volumes`], `docs/recipes.md`).

use std::collections::BTreeMap;

use neurofm_core::{ChannelInfo, ChannelKind, Modality, Recording, Signal, Unit};
use thiserror::Error;

/// Errors of the fMRI steps. Each names the recording (its source path).
#[derive(Debug, Error)]
pub enum FmriError {
    #[error("{source_path}: {step}: expected volumes ([time, x, y, z]), got a channel signal")]
    NotVolumes { source_path: String, step: String },
    #[error("{source_path}: {step}: {reason}")]
    Invalid {
        source_path: String,
        step: String,
        reason: String,
    },
    #[error("{source_path}: {step}: volume {volume} has {count} non-finite voxels inside the mask/atlas")]
    NonFinite {
        source_path: String,
        step: String,
        volume: usize,
        count: usize,
    },
}

fn invalid(rec: &Recording, step: &str, reason: impl Into<String>) -> FmriError {
    FmriError::Invalid {
        source_path: rec.info.provenance.source_path.clone(),
        step: step.into(),
        reason: reason.into(),
    }
}

/// A copy of `rec`'s info and annotations with an empty signal (the caller sets the new one):
/// the samples are not copied.
fn header_only(rec: &Recording) -> Recording {
    Recording {
        info: rec.info.clone(),
        signal: Signal::Channels {
            n_channels: 0,
            n_samples: 0,
            data: Vec::new(),
        },
        annotations: rec.annotations.clone(),
    }
}

type Volumes<'a> = (usize, [usize; 3], [[f64; 4]; 4], &'a [f32]);

fn volumes<'a>(rec: &'a Recording, step: &str) -> Result<Volumes<'a>, FmriError> {
    match &rec.signal {
        Signal::Volumes {
            n_volumes,
            dims,
            affine,
            data,
        } => Ok((*n_volumes, *dims, *affine, data)),
        Signal::Channels { .. } => Err(FmriError::NotVolumes {
            source_path: rec.info.provenance.source_path.clone(),
            step: step.into(),
        }),
    }
}

/// Number of time points [`resample_tr`] makes of `n` points sampled at `sfreq_hz` when
/// resampling to `tr_s` (0 when `n` is 0): every `j` with `j * tr_s <= (n - 1) / sfreq_hz`.
pub fn resample_tr_len(n: usize, sfreq_hz: f64, tr_s: f64) -> usize {
    if n == 0 {
        return 0;
    }
    let span = (n - 1) as f64 * (1.0 / sfreq_hz);
    (span / tr_s + 1e-9).floor() as usize + 1
}

/// (index, weight of the next point) of each output time point.
fn tr_positions(n: usize, sfreq_hz: f64, tr_s: f64) -> Vec<(usize, f64)> {
    let src_tr = 1.0 / sfreq_hz;
    (0..resample_tr_len(n, sfreq_hz, tr_s))
        .map(|j| {
            let x = j as f64 * tr_s / src_tr;
            let i = (x.floor() as usize).min(n - 1);
            let f = if i + 1 < n { x - i as f64 } else { 0.0 };
            (i, f)
        })
        .collect()
}

fn interpolate_rows(data: &[f32], n: usize, pos: &[(usize, f64)]) -> Vec<f32> {
    let n_out = pos.len();
    let rows = data.len().checked_div(n).unwrap_or(0);
    let mut d = vec![0f32; rows * n_out];
    for (row, out) in data
        .chunks_exact(n.max(1))
        .zip(d.chunks_exact_mut(n_out.max(1)))
    {
        for (o, &(i, f)) in out.iter_mut().zip(pos) {
            *o = if f == 0.0 {
                row[i]
            } else {
                row[i] + f as f32 * (row[i + 1] - row[i])
            };
        }
    }
    d
}

/// Resamples row-major rows of `n` points sampled at `sfreq_hz` to `tr_s` exactly as
/// [`resample_tr`] resamples a channel signal (used for time-aligned extra tensors). Returns
/// the new row length and the data; `None` when a rate is not positive or `n` is 0.
pub fn resample_tr_rows(
    data: &[f32],
    n: usize,
    sfreq_hz: f64,
    tr_s: f64,
) -> Option<(usize, Vec<f32>)> {
    if !(sfreq_hz.is_finite() && sfreq_hz > 0.0 && tr_s.is_finite() && tr_s > 0.0) || n == 0 {
        return None;
    }
    let pos = tr_positions(n, sfreq_hz, tr_s);
    Some((pos.len(), interpolate_rows(data, n, &pos)))
}

/// Resamples to repetition time `tr_s` by linear interpolation (see the module docs). Works on
/// volumes (`[time, ...]`) and on channel signals (ROI series).
pub fn resample_tr(rec: &Recording, tr_s: f64) -> Result<Recording, FmriError> {
    let step = "resample_tr";
    if !(tr_s.is_finite() && tr_s > 0.0) {
        return Err(invalid(rec, step, format!("target TR {tr_s} must be > 0")));
    }
    let sf = rec.info.sfreq_hz;
    if !(sf.is_finite() && sf > 0.0) {
        return Err(invalid(
            rec,
            step,
            format!("the recording has no TR (sfreq_hz = {sf}); set one first"),
        ));
    }
    let src_tr = 1.0 / sf;
    let n = rec.signal.n_times();
    if n == 0 {
        return Err(invalid(rec, step, "no time points"));
    }
    let pos = tr_positions(n, sf, tr_s);
    let n_out = pos.len();
    let mut out = header_only(rec);
    out.info.sfreq_hz = 1.0 / tr_s;
    out.info.metadata.insert(
        "fmri.resample_tr".into(),
        format!("{src_tr} s -> {tr_s} s (linear interpolation), {n} -> {n_out} time points"),
    );
    match &rec.signal {
        Signal::Volumes {
            dims, affine, data, ..
        } => {
            let nv = dims[0] * dims[1] * dims[2];
            let mut d = vec![0f32; n_out * nv];
            for (j, &(i, f)) in pos.iter().enumerate() {
                let a = &data[i * nv..(i + 1) * nv];
                let o = &mut d[j * nv..(j + 1) * nv];
                if f == 0.0 {
                    o.copy_from_slice(a);
                } else {
                    let b = &data[(i + 1) * nv..(i + 2) * nv];
                    let f = f as f32;
                    for ((o, &a), &b) in o.iter_mut().zip(a).zip(b) {
                        *o = a + f * (b - a);
                    }
                }
            }
            out.signal = Signal::Volumes {
                n_volumes: n_out,
                dims: *dims,
                affine: *affine,
                data: d,
            };
        }
        Signal::Channels {
            n_channels, data, ..
        } => {
            out.signal = Signal::Channels {
                n_channels: *n_channels,
                n_samples: n_out,
                data: interpolate_rows(data, n, &pos),
            };
        }
    }
    Ok(out)
}

/// The voxel grid of a volume signal: its size and voxel → world affine.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Grid {
    pub dims: [usize; 3],
    pub affine: [[f64; 4]; 4],
}

impl Grid {
    /// The grid of a volume recording (`None` for a channel signal).
    pub fn of(rec: &Recording) -> Option<Grid> {
        match &rec.signal {
            Signal::Volumes { dims, affine, .. } => Some(Grid {
                dims: *dims,
                affine: *affine,
            }),
            Signal::Channels { .. } => None,
        }
    }

    /// The grid [`crop_or_pad`] makes of this one.
    pub fn crop_or_pad(&self, target: [usize; 3]) -> Grid {
        let off = crop_offsets(self.dims, target);
        Grid {
            dims: target,
            affine: shifted_affine(&self.affine, off),
        }
    }

    /// Same size and (within 1e-4, relative) the same affine.
    pub fn same_as(&self, other: &Grid) -> bool {
        self.dims == other.dims && same_grid(&self.affine, &other.affine)
    }
}

impl std::fmt::Display for Grid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let a = &self.affine;
        write!(
            f,
            "{:?} voxels, affine rows {:?} {:?} {:?}",
            self.dims, a[0], a[1], a[2]
        )
    }
}

/// Source index = target index + offset, per axis (centred crop or pad).
fn crop_offsets(dims: [usize; 3], target: [usize; 3]) -> [isize; 3] {
    std::array::from_fn(|a| {
        let (s, t) = (dims[a] as isize, target[a] as isize);
        if s >= t {
            (s - t) / 2
        } else {
            -((t - s) / 2)
        }
    })
}

/// The affine after moving the voxel origin by `off` voxels (world positions kept).
fn shifted_affine(affine: &[[f64; 4]; 4], off: [isize; 3]) -> [[f64; 4]; 4] {
    let mut aff = *affine;
    for row in aff.iter_mut().take(3) {
        row[3] += (0..3).map(|c| row[c] * off[c] as f64).sum::<f64>();
    }
    aff
}

/// Crops or pads every volume to `target` voxels, centred, updating the affine.
pub fn crop_or_pad(rec: &Recording, target: [usize; 3], fill: f32) -> Result<Recording, FmriError> {
    let step = "crop_or_pad";
    let (nt, dims, affine, data) = volumes(rec, step)?;
    if target.contains(&0) {
        return Err(invalid(
            rec,
            step,
            format!("target {target:?} has a zero size"),
        ));
    }
    let off = crop_offsets(dims, target);
    let [tx, ty, tz] = target;
    let nv_out = tx * ty * tz;
    let nv_in = dims[0] * dims[1] * dims[2];
    let mut d = vec![fill; nt * nv_out];
    for t in 0..nt {
        let src = &data[t * nv_in..(t + 1) * nv_in];
        let dst = &mut d[t * nv_out..(t + 1) * nv_out];
        for x in 0..tx {
            let sx = x as isize + off[0];
            if sx < 0 || sx >= dims[0] as isize {
                continue;
            }
            for y in 0..ty {
                let sy = y as isize + off[1];
                if sy < 0 || sy >= dims[1] as isize {
                    continue;
                }
                // contiguous z run
                let z0 = (-off[2]).max(0) as usize;
                let z1 = ((dims[2] as isize - off[2]).min(tz as isize)).max(0) as usize;
                if z0 >= z1 {
                    continue;
                }
                let s0 = ((sx as usize * dims[1] + sy as usize) * dims[2]) as isize
                    + z0 as isize
                    + off[2];
                let s0 = s0 as usize;
                let d0 = (x * ty + y) * tz;
                dst[d0 + z0..d0 + z1].copy_from_slice(&src[s0..s0 + (z1 - z0)]);
            }
        }
    }
    let aff = shifted_affine(&affine, off);
    let mut out = header_only(rec);
    out.signal = Signal::Volumes {
        n_volumes: nt,
        dims: target,
        affine: aff,
        data: d,
    };
    out.info.metadata.insert(
        "fmri.crop_or_pad".into(),
        format!("{dims:?} -> {target:?}, centred (source offset {off:?}), fill {fill}"),
    );
    Ok(out)
}

/// A brain mask: voxels whose temporal mean is above `threshold` (absolute), or above
/// `fraction * max(mean image)` when `relative`.
pub fn threshold_mask(
    rec: &Recording,
    threshold: f64,
    relative: bool,
) -> Result<Vec<bool>, FmriError> {
    let (nt, dims, _, data) = volumes(rec, "threshold_mask")?;
    let nv = dims[0] * dims[1] * dims[2];
    let mut mean = vec![0f64; nv];
    for t in 0..nt {
        for (m, &v) in mean.iter_mut().zip(&data[t * nv..(t + 1) * nv]) {
            *m += v as f64;
        }
    }
    mean.iter_mut().for_each(|m| *m /= nt.max(1) as f64);
    let thr = if relative {
        threshold
            * mean
                .iter()
                .copied()
                .filter(|v| v.is_finite())
                .fold(f64::NEG_INFINITY, f64::max)
    } else {
        threshold
    };
    Ok(mean.iter().map(|&m| m.is_finite() && m > thr).collect())
}

fn same_grid(a: &[[f64; 4]; 4], b: &[[f64; 4]; 4]) -> bool {
    a.iter()
        .flatten()
        .zip(b.iter().flatten())
        .all(|(x, y)| (x - y).abs() <= 1e-4 * (1.0 + x.abs()))
}

/// A mask from a 3D image on the same grid (non-zero, finite = brain).
pub fn mask_from_image(rec: &Recording, mask: &Recording) -> Result<Vec<bool>, FmriError> {
    let step = "mask_from_image";
    let (_, dims, affine, _) = volumes(rec, step)?;
    let (_, mdims, maffine, mdata) = volumes(mask, step)?;
    if mdims != dims || !same_grid(&affine, &maffine) {
        return Err(invalid(
            rec,
            step,
            format!(
                "mask {} is on another grid ({mdims:?} vs {dims:?}, or a different affine)",
                mask.info.provenance.source_path
            ),
        ));
    }
    let nv = dims[0] * dims[1] * dims[2];
    let Some(first) = mdata.get(..nv) else {
        return Err(invalid(
            rec,
            step,
            format!(
                "mask {} holds {} values, its grid {mdims:?} needs {nv}",
                mask.info.provenance.source_path,
                mdata.len()
            ),
        ));
    };
    Ok(first.iter().map(|&v| v.is_finite() && v != 0.0).collect())
}

/// How [`zscore_in_mask`] normalizes (recipes: `mode = "global"` or `"per_voxel"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ZscoreMode {
    /// One mean and standard deviation over every brain voxel of every volume.
    #[default]
    Global,
    /// Each brain voxel over time.
    PerVoxel,
}

/// Z-scores brain voxels; voxels outside the mask become `background`.
pub fn zscore_in_mask(
    rec: &Recording,
    mask: &[bool],
    mode: ZscoreMode,
    background: f32,
) -> Result<Recording, FmriError> {
    let step = "zscore_in_mask";
    let (nt, dims, affine, data) = volumes(rec, step)?;
    let nv = dims[0] * dims[1] * dims[2];
    if mask.len() != nv {
        return Err(invalid(
            rec,
            step,
            format!("mask has {} voxels, volumes {nv}", mask.len()),
        ));
    }
    let n_in = mask.iter().filter(|&&m| m).count();
    if n_in == 0 {
        return Err(invalid(rec, step, "the mask is empty"));
    }
    for t in 0..nt {
        let bad = data[t * nv..(t + 1) * nv]
            .iter()
            .zip(mask)
            .filter(|(v, &m)| m && !v.is_finite())
            .count();
        if bad > 0 {
            return Err(FmriError::NonFinite {
                source_path: rec.info.provenance.source_path.clone(),
                step: step.into(),
                volume: t,
                count: bad,
            });
        }
    }
    let mut d = vec![background; data.len()];
    let mut constant = 0usize;
    match mode {
        ZscoreMode::Global => {
            let n = (n_in * nt) as f64;
            let mut s = 0f64;
            for t in 0..nt {
                for (v, &m) in data[t * nv..(t + 1) * nv].iter().zip(mask) {
                    if m {
                        s += *v as f64;
                    }
                }
            }
            let mean = s / n;
            let mut ss = 0f64;
            for t in 0..nt {
                for (v, &m) in data[t * nv..(t + 1) * nv].iter().zip(mask) {
                    if m {
                        ss += (*v as f64 - mean).powi(2);
                    }
                }
            }
            let sd = (ss / n).sqrt();
            if sd == 0.0 {
                return Err(invalid(rec, step, "brain intensities are constant (std 0)"));
            }
            for t in 0..nt {
                let src = &data[t * nv..(t + 1) * nv];
                let dst = &mut d[t * nv..(t + 1) * nv];
                for ((o, &v), &m) in dst.iter_mut().zip(src).zip(mask) {
                    if m {
                        *o = ((v as f64 - mean) / sd) as f32;
                    }
                }
            }
        }
        ZscoreMode::PerVoxel => {
            for (i, &m) in mask.iter().enumerate() {
                if !m {
                    continue;
                }
                let mean = (0..nt).map(|t| data[t * nv + i] as f64).sum::<f64>() / nt as f64;
                let sd = ((0..nt)
                    .map(|t| (data[t * nv + i] as f64 - mean).powi(2))
                    .sum::<f64>()
                    / nt as f64)
                    .sqrt();
                for t in 0..nt {
                    d[t * nv + i] = if sd > 0.0 {
                        ((data[t * nv + i] as f64 - mean) / sd) as f32
                    } else {
                        0.0
                    };
                }
                if sd == 0.0 {
                    constant += 1;
                }
            }
        }
    }
    let mut out = header_only(rec);
    out.signal = Signal::Volumes {
        n_volumes: nt,
        dims,
        affine,
        data: d,
    };
    out.info
        .metadata
        .insert("fmri.intensity".into(), "z-scored".into());
    out.info.metadata.insert(
        "fmri.zscore_in_mask".into(),
        format!(
            "{mode:?} over {n_in} brain voxels, background {background}{}",
            if constant > 0 {
                format!("; {constant} constant voxels set to 0")
            } else {
                String::new()
            }
        ),
    );
    Ok(out)
}

/// The voxel indices (into one volume, z fastest) of each non-zero label of a label image's
/// first volume, labels ascending. Fails on a non-integer or non-finite label (naming the
/// voxel), on an image that holds fewer values than its grid, and on an image without any
/// non-zero label; the caller names the image.
pub fn label_voxels(atlas: &Recording) -> Result<BTreeMap<i64, Vec<usize>>, String> {
    let Signal::Volumes { dims, data, .. } = &atlas.signal else {
        return Err("is not a volume image".into());
    };
    let nv = dims[0] * dims[1] * dims[2];
    let Some(first) = data.get(..nv) else {
        return Err(format!(
            "holds {} values, its grid {dims:?} needs {nv}",
            data.len()
        ));
    };
    let mut voxels: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
    for (i, &v) in first.iter().enumerate() {
        if !v.is_finite() || v.fract() != 0.0 {
            return Err(format!("voxel {i} has label {v}: labels must be integers"));
        }
        if v != 0.0 {
            voxels.entry(v as i64).or_default().push(i);
        }
    }
    if voxels.is_empty() {
        return Err("has no non-zero label".into());
    }
    Ok(voxels)
}

/// The ROI channels [`parcellate`] makes for these labels (in this order): named by `names`,
/// else `label_<value>`; kind `roi`, arbitrary units.
pub fn roi_channels<'a>(
    labels: impl IntoIterator<Item = &'a i64>,
    names: Option<&BTreeMap<i64, String>>,
) -> Vec<ChannelInfo> {
    labels
        .into_iter()
        .map(|l| {
            let name = names
                .and_then(|m| m.get(l).cloned())
                .unwrap_or_else(|| format!("label_{l}"));
            ChannelInfo::new(name, ChannelKind::Roi, Unit::Arbitrary)
        })
        .collect()
}

/// Mean signal of each atlas label → ROI × time (see the module docs). `names` maps label
/// values to ROI names (default `label_<value>`).
pub fn parcellate(
    rec: &Recording,
    atlas: &Recording,
    names: Option<&BTreeMap<i64, String>>,
) -> Result<Recording, FmriError> {
    let step = "parcellate";
    let (nt, dims, affine, data) = volumes(rec, step)?;
    let (_, adims, aaffine, _) = volumes(atlas, step)?;
    if adims != dims || !same_grid(&affine, &aaffine) {
        return Err(invalid(
            rec,
            step,
            format!(
                "atlas {} is on another grid ({adims:?} vs {dims:?}, or a different affine): resample it first",
                atlas.info.provenance.source_path
            ),
        ));
    }
    let voxels = label_voxels(atlas).map_err(|reason| {
        let src = &atlas.info.provenance.source_path;
        invalid(rec, step, format!("atlas {src}: {reason}"))
    })?;
    let nv = dims[0] * dims[1] * dims[2];
    let nr = voxels.len();
    let mut d = vec![0f32; nr * nt];
    for (r, vox) in voxels.values().enumerate() {
        for t in 0..nt {
            let vol = &data[t * nv..(t + 1) * nv];
            let mut s = 0f64;
            let mut bad = 0;
            for &i in vox {
                let v = vol[i];
                if v.is_finite() {
                    s += v as f64;
                } else {
                    bad += 1;
                }
            }
            if bad > 0 {
                return Err(FmriError::NonFinite {
                    source_path: rec.info.provenance.source_path.clone(),
                    step: step.into(),
                    volume: t,
                    count: bad,
                });
            }
            d[r * nt + t] = (s / vox.len() as f64) as f32;
        }
    }
    let channels = roi_channels(voxels.keys(), names);
    let mut info = rec.info.clone();
    info.modality = Modality::FmriRoi;
    info.channels = channels;
    info.metadata.insert(
        "fmri.parcellate".into(),
        format!(
            "atlas {} ({nr} labels, mean over voxels)",
            atlas.info.provenance.source_path
        ),
    );
    let signal = Signal::Channels {
        n_channels: nr,
        n_samples: nt,
        data: d,
    };
    Recording::new(info, signal, rec.annotations.clone())
        .map_err(|e| invalid(rec, step, e.to_string()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use neurofm_core::Info;

    const EYE: [[f64; 4]; 4] = [
        [2.0, 0.0, 0.0, -10.0],
        [0.0, 3.0, 0.0, -20.0],
        [0.0, 0.0, 4.0, -30.0],
        [0.0, 0.0, 0.0, 1.0],
    ];

    fn vols(
        nt: usize,
        dims: [usize; 3],
        f: impl Fn(usize, usize, usize, usize) -> f32,
    ) -> Recording {
        let mut data = Vec::new();
        for t in 0..nt {
            for x in 0..dims[0] {
                for y in 0..dims[1] {
                    for z in 0..dims[2] {
                        data.push(f(t, x, y, z));
                    }
                }
            }
        }
        let mut info = Info::new(Modality::FmriVolume, 0.5, vec![]);
        info.provenance.source_path = "mem.nii".into();
        Recording::new(
            info,
            Signal::Volumes {
                n_volumes: nt,
                dims,
                affine: EYE,
                data,
            },
            vec![],
        )
        .unwrap()
    }

    fn world(a: &[[f64; 4]; 4], i: [f64; 3]) -> [f64; 3] {
        std::array::from_fn(|r| a[r][0] * i[0] + a[r][1] * i[1] + a[r][2] * i[2] + a[r][3])
    }

    #[test]
    fn resample_linear() {
        // TR 2 s, value = t index at every voxel; to TR 1.5 s: times 0,1.5,3,4.5,6
        let rec = vols(4, [2, 1, 1], |t, _, _, _| t as f32 * 10.0);
        let out = resample_tr(&rec, 1.5).unwrap();
        assert_eq!(out.signal.n_times(), 5);
        assert_eq!(out.info.sfreq_hz, 1.0 / 1.5);
        let d = out.signal.data();
        let want = [0.0, 7.5, 15.0, 22.5, 30.0];
        for (j, w) in want.iter().enumerate() {
            assert!((d[2 * j] - w).abs() < 1e-5, "{d:?}");
        }
        assert!(resample_tr(&rec, 0.0).is_err());
    }

    #[test]
    fn crop_pad_keeps_world_positions() {
        let rec = vols(2, [5, 4, 3], |t, x, y, z| {
            (t * 1000 + x * 100 + y * 10 + z) as f32
        });
        let (_, _, a0, _) = volumes(&rec, "t").unwrap();
        let out = crop_or_pad(&rec, [3, 6, 3], -1.0).unwrap();
        let (nt, dims, a1, d) = volumes(&out, "t").unwrap();
        assert_eq!((nt, dims), (2, [3, 6, 3]));
        // x cropped by 1 before; y padded by 1 before
        for x in 0..3 {
            for y in 0..6 {
                for z in 0..3 {
                    let v = d[((3 + x) * 6 + y) * 3 + z];
                    let (sx, sy) = (x + 1, y as isize - 1);
                    if !(0..4).contains(&sy) {
                        assert_eq!(v, -1.0);
                    } else {
                        assert_eq!(v, (1000 + sx * 100 + sy as usize * 10 + z) as f32);
                        // same world position
                        let w1 = world(&a1, [x as f64, y as f64, z as f64]);
                        let w0 = world(&a0, [sx as f64, sy as f64, z as f64]);
                        assert_eq!(w1, w0);
                    }
                }
            }
        }
        // 96^3 target from a small image: pads all round
        let big = crop_or_pad(&rec, [96, 96, 96], 0.0).unwrap();
        assert_eq!(big.signal.shape(), vec![2, 96, 96, 96]);
        let s: f64 = big.signal.data().iter().map(|&v| v as f64).sum();
        let s0: f64 = rec.signal.data().iter().map(|&v| v as f64).sum();
        assert_eq!(s, s0);
    }

    #[test]
    fn mask_zscore_and_nan() {
        // brain = x >= 1
        let rec = vols(3, [3, 2, 2], |t, x, y, _| {
            if x == 0 {
                1.0
            } else {
                100.0 + (t + y) as f32
            }
        });
        let mask = threshold_mask(&rec, 50.0, false).unwrap();
        assert_eq!(mask.iter().filter(|&&m| m).count(), 8);
        assert_eq!(threshold_mask(&rec, 0.5, true).unwrap(), mask);
        let z = zscore_in_mask(&rec, &mask, ZscoreMode::Global, 0.0).unwrap();
        let d = z.signal.data();
        let inside: Vec<f64> = d
            .chunks(12)
            .flat_map(|v| {
                v.iter()
                    .zip(&mask)
                    .filter(|(_, &m)| m)
                    .map(|(x, _)| *x as f64)
            })
            .collect();
        let m = inside.iter().sum::<f64>() / inside.len() as f64;
        let sd = (inside.iter().map(|v| (v - m).powi(2)).sum::<f64>() / inside.len() as f64).sqrt();
        assert!(m.abs() < 1e-6 && (sd - 1.0).abs() < 1e-5);
        assert!(d
            .chunks(12)
            .all(|v| v.iter().zip(&mask).all(|(x, &m)| m || *x == 0.0)));
        let pv = zscore_in_mask(&rec, &mask, ZscoreMode::PerVoxel, 0.0).unwrap();
        // voxel (1,0,0) over time: 100,101,102 -> -1.22, 0, 1.22
        let v: Vec<f32> = (0..3).map(|t| pv.signal.data()[t * 12 + 4]).collect();
        assert!(
            (v[1]).abs() < 1e-6 && (v[2] - 1.2247449).abs() < 1e-5,
            "{v:?}"
        );
        // NaN volume inside the mask: error naming the volume
        let mut bad = rec.clone();
        bad.signal.data_mut()[12 + 4] = f32::NAN;
        match zscore_in_mask(&bad, &mask, ZscoreMode::Global, 0.0).unwrap_err() {
            FmriError::NonFinite { volume, count, .. } => assert_eq!((volume, count), (1, 1)),
            e => panic!("{e}"),
        }
        // mask image on another grid
        let other = vols(1, [2, 2, 2], |_, _, _, _| 1.0);
        assert!(mask_from_image(&rec, &other).is_err());
        let same = vols(1, [3, 2, 2], |_, x, _, _| x as f32);
        assert_eq!(mask_from_image(&rec, &same).unwrap(), mask);
    }

    #[test]
    fn parcellate_means() {
        let rec = vols(2, [2, 2, 1], |t, x, y, _| (t * 10 + x * 2 + y) as f32);
        // labels: (0,0)=0 background, (0,1)=3, (1,0)=3, (1,1)=7
        let atlas = vols(1, [2, 2, 1], |_, x, y, _| match (x, y) {
            (0, 0) => 0.0,
            (1, 1) => 7.0,
            _ => 3.0,
        });
        let mut names = BTreeMap::new();
        names.insert(7, "Precuneus".to_string());
        let roi = parcellate(&rec, &atlas, Some(&names)).unwrap();
        assert_eq!(roi.info.modality, Modality::FmriRoi);
        assert_eq!(roi.info.channels[0].name, "label_3");
        assert_eq!(roi.info.channels[1].name, "Precuneus");
        // label 3: voxels values 1 and 2 -> 1.5 ; label 7: 3
        assert_eq!(roi.signal.channel(0).unwrap(), &[1.5, 11.5]);
        assert_eq!(roi.signal.channel(1).unwrap(), &[3.0, 13.0]);
        let frac = vols(1, [2, 2, 1], |_, _, _, _| 0.5);
        assert!(parcellate(&rec, &frac, None).is_err());
    }
}
