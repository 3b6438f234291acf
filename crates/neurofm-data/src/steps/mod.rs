//! Preprocessing steps: each is a pure function from a [`Recording`] to a [`Recording`].
//!
//! Steps are declared in recipes (`[[steps]] type = "..."`, see `docs/recipes.md`) and checked
//! against a recording's header ([`Step::plan`]) before any samples are touched.

// `!(a < b)` is deliberate: NaN parameters must fail the checks.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

pub mod channels;
pub mod volumes;

use std::collections::BTreeMap;

use neurofm_core::{ChannelInfo, ChannelKind, Modality, Recording, Signal, Unit};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::dsp::{fir, iir, resample};
use crate::fmri::{Grid, ZscoreMode};
use crate::store::Entry;
use crate::window::WindowConfig;

pub use volumes::{ImageLoader, Resolved, StepFile, StepInputs};

/// One preprocessing step. The TOML/JSON form is tagged by `type`; unknown keys are rejected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    /// Keep these channels, in this order (by standard name, e.g. `T7` finds `EEG T3`).
    Pick { channels: Vec<String> },
    /// Keep the channels of these kinds (`eeg`, `eog`, `meg_mag`, ...), in recording order.
    PickKinds { kinds: Vec<ChannelKind> },
    /// Remove these channels.
    Drop { channels: Vec<String> },
    /// Remove the channels marked bad.
    DropBads {},
    /// Polyphase resampling to `sfreq_hz` (`scipy.signal.resample_poly`, Kaiser β = 5).
    Resample { sfreq_hz: f64 },
    /// MNE's default zero-phase FIR filter: high-pass (`l_freq`), low-pass (`h_freq`) or
    /// band-pass (both). Transition bandwidths default to MNE's `'auto'`.
    Filter {
        #[serde(default)]
        l_freq: Option<f64>,
        #[serde(default)]
        h_freq: Option<f64>,
        #[serde(default)]
        l_trans_bandwidth: Option<f64>,
        #[serde(default)]
        h_trans_bandwidth: Option<f64>,
    },
    /// MNE's default FIR notch (`mne.filter.notch_filter`): widths `f/200`, 1 Hz transition.
    Notch {
        freqs: Vec<f64>,
        #[serde(default)]
        notch_widths: Option<Vec<f64>>,
        #[serde(default = "default_notch_trans")]
        trans_bandwidth: f64,
    },
    /// Butterworth filter run forward and backward (`scipy.signal.sosfiltfilt`): high-pass
    /// (`l_freq`), low-pass (`h_freq`), band-pass (both), or band-stop (both, `stop = true`).
    Butterworth {
        order: usize,
        #[serde(default)]
        l_freq: Option<f64>,
        #[serde(default)]
        h_freq: Option<f64>,
        #[serde(default)]
        stop: bool,
    },
    /// Subtract the mean of the good channels of `kinds` (default EEG) from those channels.
    AverageReference {
        #[serde(default = "default_ref_kinds")]
        kinds: Vec<ChannelKind>,
    },
    /// Subtract one channel from every channel of `kinds` (default EEG); the reference channel
    /// itself becomes zero.
    Reference {
        channel: String,
        #[serde(default = "default_ref_kinds")]
        kinds: Vec<ChannelKind>,
    },
    /// Replace the channels by bipolar derivations `a - b`, named `a-b`.
    Bipolar { pairs: Vec<[String; 2]> },
    /// Multiply volt channels by 10⁶ (unit becomes `uV`).
    ToMicrovolts {},
    /// Divide every channel by a constant in stored units (e.g. `1e-4` = 100 µV for volt data).
    Divide { by: f64 },
    /// Per-channel z-score: `(x - mean) / std` (population std).
    Zscore {},
    /// Per-channel robust scaling: `(x - median) / IQR` (IQR with linear interpolation).
    RobustScale {},
    /// Clip every sample to `[min, max]`.
    Clip { min: f64, max: f64 },
    /// Mark channels bad: non-finite samples, flat (std below `flat_std`), or extreme variance
    /// (|robust z| of log variance above `variance_z`, across the recording's channels).
    MarkBads {
        #[serde(default = "default_flat_std")]
        flat_std: f64,
        #[serde(default = "default_variance_z")]
        variance_z: f64,
    },
    /// fMRI: resample in time to a repetition time of `tr_s` seconds by linear interpolation
    /// between the two nearest time points ([`crate::fmri::resample_tr`]). Volumes and channel
    /// signals (ROI series) alike.
    ResampleTr { tr_s: f64 },
    /// fMRI volumes: crop or pad every volume to `shape` voxels, centred, padding with `fill`
    /// (default 0); the affine moves so that kept voxels keep their world position
    /// ([`crate::fmri::crop_or_pad`]).
    CropOrPad {
        shape: [usize; 3],
        #[serde(default)]
        fill: f64,
    },
    /// fMRI volumes: z-score the voxels inside a brain mask, set the others to `background`
    /// (default 0) ([`crate::fmri::zscore_in_mask`]). The mask is exactly one of: `mask`, an
    /// image file on the recording's grid at this step (non-zero = brain); `threshold`, a
    /// fraction in [0, 1) of the maximum of the recording's temporal-mean image (voxels whose
    /// mean is above it are brain); `threshold_abs`, an intensity. `mode` is `global` (one mean
    /// and std over all brain voxels and volumes, the default) or `per_voxel` (each voxel over
    /// time).
    ZscoreInMask {
        #[serde(default)]
        mask: Option<String>,
        #[serde(default)]
        threshold: Option<f64>,
        #[serde(default)]
        threshold_abs: Option<f64>,
        #[serde(default)]
        mode: ZscoreMode,
        #[serde(default)]
        background: f64,
    },
    /// fMRI volumes → ROI × time: the mean of each non-zero label of the `atlas` image (on the
    /// recording's grid at this step), labels ascending; modality becomes `fmri-roi`. ROI names
    /// come from the optional `labels` table (value → name, see
    /// [`volumes::parse_labels`]), else `label_<value>` ([`crate::fmri::parcellate`]).
    Parcellate {
        atlas: String,
        #[serde(default)]
        labels: Option<String>,
    },
    /// Declares how training cuts the prepared recordings into windows (last step only).
    Window(WindowConfig),
}

fn default_notch_trans() -> f64 {
    1.0
}
fn default_ref_kinds() -> Vec<ChannelKind> {
    vec![ChannelKind::Eeg]
}
fn default_flat_std() -> f64 {
    1e-12
}
fn default_variance_z() -> f64 {
    5.0
}

/// What a recording looks like between steps (header only), for validation before any work.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Sampling rate (1 / TR for fMRI).
    pub sfreq_hz: f64,
    /// The channels (empty for volumes).
    pub channels: Vec<ChannelInfo>,
    /// Time points: samples or volumes.
    pub n_times: usize,
    /// The voxel grid while the recording holds volumes `[t, x, y, z]`; `None` for channels.
    pub grid: Option<Grid>,
    pub modality: Modality,
}

impl Plan {
    /// The plan of a stored recording: `[channels, samples]`, or `[t, x, y, z]` with an affine.
    pub fn of_entry(entry: &Entry) -> Result<Plan, String> {
        let grid = match (entry.shape.as_slice(), entry.affine) {
            ([_, _], None) => None,
            (&[_, x, y, z], Some(affine)) => Some(Grid {
                dims: [x, y, z],
                affine,
            }),
            _ => {
                return Err(format!(
                    "needs a [channels, samples] or a [t, x, y, z] recording, this one is {:?}",
                    entry.shape
                ))
            }
        };
        Ok(Plan {
            sfreq_hz: entry.sfreq_hz,
            channels: entry.channels.clone(),
            n_times: entry.n_times,
            grid,
            modality: entry.modality,
        })
    }

    /// The plan of a recording in memory.
    pub fn of_recording(rec: &Recording) -> Plan {
        Plan {
            sfreq_hz: rec.info.sfreq_hz,
            channels: rec.info.channels.clone(),
            n_times: rec.signal.n_times(),
            grid: Grid::of(rec),
            modality: rec.info.modality,
        }
    }

    /// The shape of the data: `[channels, samples]` or `[t, x, y, z]`.
    pub fn shape(&self) -> Vec<usize> {
        match &self.grid {
            Some(g) => vec![self.n_times, g.dims[0], g.dims[1], g.dims[2]],
            None => vec![self.channels.len(), self.n_times],
        }
    }
}

/// How a step changes the list of channels (for carrying per-channel extras along).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelChange {
    /// The same channels in the same order.
    Same,
    /// The channels at these input indices, in this order.
    Select(Vec<usize>),
    /// New channels computed from several input channels (`bipolar`).
    Derived,
}

impl Step {
    /// How the step changes `channels` (the channels before the step).
    pub fn channel_change(&self, channels: &[ChannelInfo]) -> Result<ChannelChange, String> {
        Ok(match self {
            Step::Pick { channels: names } => {
                ChannelChange::Select(channels::find_all(channels, names)?)
            }
            Step::PickKinds { kinds } => ChannelChange::Select(
                (0..channels.len())
                    .filter(|&i| kinds.contains(&channels[i].kind))
                    .collect(),
            ),
            Step::Drop { channels: names } => {
                let drop = channels::find_all(channels, names)?;
                ChannelChange::Select((0..channels.len()).filter(|i| !drop.contains(i)).collect())
            }
            Step::DropBads {} => {
                ChannelChange::Select((0..channels.len()).filter(|&i| !channels[i].bad).collect())
            }
            Step::Bipolar { .. } | Step::Parcellate { .. } => ChannelChange::Derived,
            _ => ChannelChange::Same,
        })
    }

    /// The resampler of a `resample` step for a recording sampled at `sfreq_hz` (`None` for
    /// the steps that keep the time axis).
    pub fn resampler(&self, sfreq_hz: f64) -> Result<Option<resample::PolyphaseResampler>, String> {
        match self {
            Step::Resample { sfreq_hz: to } => {
                let (up, down) =
                    resample::rational_ratio(sfreq_hz, *to).map_err(|e| e.to_string())?;
                resample::PolyphaseResampler::new(up, down)
                    .map(Some)
                    .map_err(|e| e.to_string())
            }
            _ => Ok(None),
        }
    }

    /// The step's `type` name.
    pub fn name(&self) -> &'static str {
        match self {
            Step::Pick { .. } => "pick",
            Step::PickKinds { .. } => "pick_kinds",
            Step::Drop { .. } => "drop",
            Step::DropBads {} => "drop_bads",
            Step::Resample { .. } => "resample",
            Step::Filter { .. } => "filter",
            Step::Notch { .. } => "notch",
            Step::Butterworth { .. } => "butterworth",
            Step::AverageReference { .. } => "average_reference",
            Step::Reference { .. } => "reference",
            Step::Bipolar { .. } => "bipolar",
            Step::ToMicrovolts {} => "to_microvolts",
            Step::Divide { .. } => "divide",
            Step::Zscore {} => "zscore",
            Step::RobustScale {} => "robust_scale",
            Step::Clip { .. } => "clip",
            Step::MarkBads { .. } => "mark_bads",
            Step::ResampleTr { .. } => "resample_tr",
            Step::CropOrPad { .. } => "crop_or_pad",
            Step::ZscoreInMask { .. } => "zscore_in_mask",
            Step::Parcellate { .. } => "parcellate",
            Step::Window(_) => "window",
        }
    }

    /// Whether this is an fMRI step (`resample_tr`, `crop_or_pad`, `zscore_in_mask`,
    /// `parcellate`); the others need a channel recording.
    pub fn is_fmri(&self) -> bool {
        matches!(
            self,
            Step::ResampleTr { .. }
                | Step::CropOrPad { .. }
                | Step::ZscoreInMask { .. }
                | Step::Parcellate { .. }
        )
    }

    /// Checks that the step applies to a recording shaped like `plan` and updates `plan` to the
    /// step's output. Fails with the reason (the caller adds recording and step). Steps that
    /// read a file (`zscore_in_mask` with a `mask`, `parcellate`) need [`Step::plan_with`].
    pub fn plan(&self, plan: &mut Plan) -> Result<(), String> {
        self.plan_with(plan, None)
    }

    /// [`Step::plan`] with the files the step reads (from [`volumes::resolve`]).
    pub fn plan_with(&self, plan: &mut Plan, inputs: Option<&StepInputs>) -> Result<(), String> {
        if self.is_fmri() {
            return volumes::plan(self, plan, inputs);
        }
        if plan.grid.is_some() {
            return Err(volumes::needs_channels(&plan.shape()));
        }
        match self {
            Step::Pick { .. } | Step::Drop { .. } | Step::DropBads {} => {
                if let ChannelChange::Select(idx) = self.channel_change(&plan.channels)? {
                    plan.channels = idx.iter().map(|&i| plan.channels[i].clone()).collect();
                }
            }
            Step::PickKinds { kinds } => {
                plan.channels.retain(|c| kinds.contains(&c.kind));
                if plan.channels.is_empty() {
                    return Err(format!("no channel of kinds {kinds:?}"));
                }
            }
            Step::Resample { sfreq_hz } => {
                if let Some(r) = self.resampler(plan.sfreq_hz)? {
                    plan.n_times = r.output_len(plan.n_times);
                }
                plan.sfreq_hz = *sfreq_hz;
            }
            Step::Filter {
                l_freq,
                h_freq,
                l_trans_bandwidth,
                h_trans_bandwidth,
            } => {
                if l_freq.is_none() && h_freq.is_none() {
                    return Err("give l_freq, h_freq or both".into());
                }
                let h = fir::design_pass(
                    plan.sfreq_hz,
                    *l_freq,
                    *h_freq,
                    *l_trans_bandwidth,
                    *h_trans_bandwidth,
                )
                .map_err(|e| e.to_string())?;
                check_len(h.len(), plan.n_times)?;
            }
            Step::Notch {
                freqs,
                notch_widths,
                trans_bandwidth,
            } => {
                let h = fir::design_notch(
                    plan.sfreq_hz,
                    freqs,
                    notch_widths.as_deref(),
                    *trans_bandwidth,
                )
                .map_err(|e| e.to_string())?;
                check_len(h.len(), plan.n_times)?;
            }
            Step::Butterworth {
                order,
                l_freq,
                h_freq,
                stop,
            } => {
                let sos = iir::butter_sos(*order, band(*l_freq, *h_freq, *stop)?, plan.sfreq_hz)
                    .map_err(|e| e.to_string())?;
                let pad = iir::default_padlen(&sos);
                if plan.n_times <= pad {
                    return Err(format!(
                        "{} samples is too short for this filter (needs more than {pad})",
                        plan.n_times
                    ));
                }
            }
            Step::AverageReference { kinds } => {
                if !plan
                    .channels
                    .iter()
                    .any(|c| kinds.contains(&c.kind) && !c.bad)
                {
                    return Err(format!("no good channel of kinds {kinds:?} to average"));
                }
            }
            Step::Reference { channel, .. } => {
                channels::find(&plan.channels, channel)
                    .ok_or_else(|| format!("the recording has no channel {channel}"))?;
            }
            Step::Bipolar { pairs } => {
                let mut out = Vec::with_capacity(pairs.len());
                for [a, b] in pairs {
                    let ia = channels::find(&plan.channels, a)
                        .ok_or_else(|| format!("the recording has no channel {a}"))?;
                    channels::find(&plan.channels, b)
                        .ok_or_else(|| format!("the recording has no channel {b}"))?;
                    let mut c = plan.channels[ia].clone();
                    c.name = format!("{a}-{b}");
                    c.standard_name = Some(format!("{a}-{b}"));
                    c.position = None;
                    out.push(c);
                }
                plan.channels = out;
            }
            Step::ToMicrovolts {} => {
                for c in &mut plan.channels {
                    if c.unit == Unit::Volt {
                        c.unit = Unit::Other("uV".into());
                    }
                }
            }
            Step::Divide { by } => {
                if !(by.is_finite() && *by != 0.0) {
                    return Err(format!("cannot divide by {by}"));
                }
            }
            Step::Zscore {} | Step::RobustScale {} => {}
            Step::Clip { min, max } => {
                if !(min < max) {
                    return Err(format!("min ({min}) must be below max ({max})"));
                }
            }
            Step::MarkBads {
                flat_std,
                variance_z,
            } => {
                if !(*flat_std >= 0.0 && *variance_z > 0.0) {
                    return Err("flat_std must be >= 0 and variance_z > 0".into());
                }
            }
            Step::Window(cfg) => {
                cfg.samples(plan.sfreq_hz).map_err(|e| e.to_string())?;
            }
            Step::ResampleTr { .. }
            | Step::CropOrPad { .. }
            | Step::ZscoreInMask { .. }
            | Step::Parcellate { .. } => {}
        }
        if plan.channels.is_empty() {
            return Err("no channel left".into());
        }
        Ok(())
    }

    /// Applies the step. Only the fMRI steps take volumes. Steps that read a file need
    /// [`Step::apply_with`].
    pub fn apply(&self, rec: Recording) -> Result<(Recording, Option<String>), String> {
        self.apply_with(rec, None)
    }

    /// [`Step::apply`] with the files the step reads (from [`volumes::resolve`]).
    pub fn apply_with(
        &self,
        rec: Recording,
        inputs: Option<&StepInputs>,
    ) -> Result<(Recording, Option<String>), String> {
        if self.is_fmri() {
            return volumes::apply(self, rec, inputs);
        }
        let Recording {
            mut info,
            signal,
            annotations,
        } = rec;
        let (n_ch, n, mut data) = match signal {
            Signal::Channels {
                n_channels,
                n_samples,
                data,
            } => (n_channels, n_samples, data),
            v @ Signal::Volumes { .. } => return Err(volumes::needs_channels(&v.shape())),
        };
        let mut note = None;
        match self {
            Step::Pick { .. } | Step::PickKinds { .. } | Step::Drop { .. } | Step::DropBads {} => {
                if let ChannelChange::Select(idx) = self.channel_change(&info.channels)? {
                    data = gather(&data, n, &idx);
                    info.channels = idx.iter().map(|&i| info.channels[i].clone()).collect();
                }
            }
            Step::Resample { sfreq_hz } => {
                let Some(r) = self.resampler(info.sfreq_hz)? else {
                    return Err("no resampler".into());
                };
                let n_out = r.output_len(n);
                let rows: Vec<Vec<f32>> = data
                    .par_chunks(n.max(1))
                    .map(|row| to_f32(&r.apply(&to_f64(row))))
                    .collect();
                data = rows.concat();
                debug_assert_eq!(data.len(), n_ch * n_out);
                info.sfreq_hz = *sfreq_hz;
                return finish(info, n_ch, n_out, data, annotations, note);
            }
            Step::Filter {
                l_freq,
                h_freq,
                l_trans_bandwidth,
                h_trans_bandwidth,
            } => {
                let h = fir::design_pass(
                    info.sfreq_hz,
                    *l_freq,
                    *h_freq,
                    *l_trans_bandwidth,
                    *h_trans_bandwidth,
                )
                .map_err(|e| e.to_string())?;
                fir_rows(&h, &mut data, n)?;
            }
            Step::Notch {
                freqs,
                notch_widths,
                trans_bandwidth,
            } => {
                let h = fir::design_notch(
                    info.sfreq_hz,
                    freqs,
                    notch_widths.as_deref(),
                    *trans_bandwidth,
                )
                .map_err(|e| e.to_string())?;
                fir_rows(&h, &mut data, n)?;
            }
            Step::Butterworth {
                order,
                l_freq,
                h_freq,
                stop,
            } => {
                let sos = iir::butter_sos(*order, band(*l_freq, *h_freq, *stop)?, info.sfreq_hz)
                    .map_err(|e| e.to_string())?;
                data.par_chunks_mut(n.max(1))
                    .try_for_each(|row| -> Result<(), String> {
                        let y = iir::sosfiltfilt(&sos, &to_f64(row)).map_err(|e| e.to_string())?;
                        copy_f32(row, &y);
                        Ok(())
                    })?;
            }
            Step::AverageReference { kinds } => {
                let members: Vec<usize> = (0..n_ch)
                    .filter(|&i| kinds.contains(&info.channels[i].kind))
                    .collect();
                let good: Vec<usize> = members
                    .iter()
                    .copied()
                    .filter(|&i| !info.channels[i].bad)
                    .collect();
                if good.is_empty() {
                    return Err(format!("no good channel of kinds {kinds:?} to average"));
                }
                let mut mean = vec![0f64; n];
                for &i in &good {
                    for (m, v) in mean.iter_mut().zip(&data[i * n..(i + 1) * n]) {
                        *m += f64::from(*v);
                    }
                }
                let k = good.len() as f64;
                for &i in &members {
                    for (v, m) in data[i * n..(i + 1) * n].iter_mut().zip(&mean) {
                        *v = (f64::from(*v) - m / k) as f32;
                    }
                }
            }
            Step::Reference { channel, kinds } => {
                let r = channels::find(&info.channels, channel)
                    .ok_or_else(|| format!("the recording has no channel {channel}"))?;
                let reference: Vec<f32> = data[r * n..(r + 1) * n].to_vec();
                for i in 0..n_ch {
                    if kinds.contains(&info.channels[i].kind) || i == r {
                        for (v, rv) in data[i * n..(i + 1) * n].iter_mut().zip(&reference) {
                            *v -= rv;
                        }
                    }
                }
            }
            Step::Bipolar { pairs } => {
                let mut out = Vec::with_capacity(pairs.len() * n);
                let mut chans = Vec::with_capacity(pairs.len());
                for [a, b] in pairs {
                    let ia = channels::find(&info.channels, a)
                        .ok_or_else(|| format!("the recording has no channel {a}"))?;
                    let ib = channels::find(&info.channels, b)
                        .ok_or_else(|| format!("the recording has no channel {b}"))?;
                    out.extend(
                        data[ia * n..(ia + 1) * n]
                            .iter()
                            .zip(&data[ib * n..(ib + 1) * n])
                            .map(|(x, y)| x - y),
                    );
                    let mut c = info.channels[ia].clone();
                    c.name = format!("{a}-{b}");
                    c.standard_name = Some(format!("{a}-{b}"));
                    c.position = None;
                    c.bad = info.channels[ia].bad || info.channels[ib].bad;
                    chans.push(c);
                }
                info.channels = chans;
                return finish(info, pairs.len(), n, out, annotations, note);
            }
            Step::ToMicrovolts {} => {
                for (i, c) in info.channels.iter_mut().enumerate() {
                    if c.unit == Unit::Volt {
                        c.unit = Unit::Other("uV".into());
                        for v in &mut data[i * n..(i + 1) * n] {
                            *v = (f64::from(*v) * 1e6) as f32;
                        }
                    }
                }
            }
            Step::Divide { by } => {
                for v in &mut data {
                    *v = (f64::from(*v) / by) as f32;
                }
                for c in &mut info.channels {
                    c.unit = Unit::Arbitrary;
                }
            }
            Step::Zscore {} => {
                data.par_chunks_mut(n.max(1)).for_each(|row| {
                    let (mean, std) = mean_std(row);
                    let s = if std > 0.0 { std } else { 1.0 };
                    for v in row.iter_mut() {
                        *v = ((f64::from(*v) - mean) / s) as f32;
                    }
                });
                for c in &mut info.channels {
                    c.unit = Unit::Arbitrary;
                }
            }
            Step::RobustScale {} => {
                data.par_chunks_mut(n.max(1)).for_each(|row| {
                    let mut sorted: Vec<f64> = row.iter().map(|v| f64::from(*v)).collect();
                    sorted.sort_by(f64::total_cmp);
                    let med = quantile(&sorted, 0.5);
                    let iqr = quantile(&sorted, 0.75) - quantile(&sorted, 0.25);
                    let s = if iqr > 0.0 { iqr } else { 1.0 };
                    for v in row.iter_mut() {
                        *v = ((f64::from(*v) - med) / s) as f32;
                    }
                });
                for c in &mut info.channels {
                    c.unit = Unit::Arbitrary;
                }
            }
            Step::Clip { min, max } => {
                let (lo, hi) = (*min as f32, *max as f32);
                let mut clipped = 0usize;
                for v in &mut data {
                    if *v < lo {
                        *v = lo;
                        clipped += 1;
                    } else if *v > hi {
                        *v = hi;
                        clipped += 1;
                    }
                }
                note = Some(format!("clipped {clipped} samples"));
            }
            Step::MarkBads {
                flat_std,
                variance_z,
            } => {
                let bads = detect_bads(&data, n, *flat_std, *variance_z);
                let mut names = Vec::new();
                for (i, why) in bads {
                    info.channels[i].bad = true;
                    names.push(format!("{} ({why})", info.channels[i].name));
                }
                note = Some(if names.is_empty() {
                    "no bad channels".to_string()
                } else {
                    format!("bad channels: {}", names.join(", "))
                });
            }
            Step::Window(_)
            | Step::ResampleTr { .. }
            | Step::CropOrPad { .. }
            | Step::ZscoreInMask { .. }
            | Step::Parcellate { .. } => {}
        }
        let n_ch = info.channels.len();
        finish(info, n_ch, n, data, annotations, note)
    }
}

fn finish(
    info: neurofm_core::Info,
    n_ch: usize,
    n: usize,
    data: Vec<f32>,
    annotations: Vec<neurofm_core::Annotation>,
    note: Option<String>,
) -> Result<(Recording, Option<String>), String> {
    let signal = Signal::channels(n_ch, n, data).map_err(|e| e.to_string())?;
    let rec = Recording::new(info, signal, annotations).map_err(|e| e.to_string())?;
    Ok((rec, note))
}

fn check_len(n_taps: usize, n_times: usize) -> Result<(), String> {
    // MNE only warns when the filter is longer than the signal; the result is still defined.
    if n_times == 0 {
        return Err(format!("empty recording (filter has {n_taps} taps)"));
    }
    Ok(())
}

fn band(l: Option<f64>, h: Option<f64>, stop: bool) -> Result<iir::BandType, String> {
    use iir::BandType::*;
    match (l, h, stop) {
        (Some(l), Some(h), false) => Ok(Bandpass(l, h)),
        (Some(l), Some(h), true) => Ok(Bandstop(l, h)),
        (Some(l), None, false) => Ok(Highpass(l)),
        (None, Some(h), false) => Ok(Lowpass(h)),
        (_, _, true) => Err("a band-stop needs both l_freq and h_freq".into()),
        (None, None, _) => Err("give l_freq, h_freq or both".into()),
    }
}

fn gather(data: &[f32], n: usize, idx: &[usize]) -> Vec<f32> {
    let mut out = Vec::with_capacity(idx.len() * n);
    for &i in idx {
        out.extend_from_slice(&data[i * n..(i + 1) * n]);
    }
    out
}

fn to_f64(x: &[f32]) -> Vec<f64> {
    x.iter().map(|v| f64::from(*v)).collect()
}

fn to_f32(x: &[f64]) -> Vec<f32> {
    x.iter().map(|v| *v as f32).collect()
}

fn copy_f32(dst: &mut [f32], src: &[f64]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d = *s as f32;
    }
}

fn fir_rows(h: &[f64], data: &mut [f32], n: usize) -> Result<(), String> {
    if n == 0 {
        return Ok(());
    }
    // f32 FFTs: within 1e-6 of MNE's float64 result relative to the channel's range (checked
    // by tests/prep_reference.rs), the data are stored as f32 anyway
    let f = fir::OlaFilter::<f32>::new(h, n).map_err(|e| e.to_string())?;
    data.par_chunks_mut(n).for_each(|row| f.apply_in_place(row));
    Ok(())
}

fn mean_std(row: &[f32]) -> (f64, f64) {
    let n = row.len().max(1) as f64;
    let mean = row.iter().map(|v| f64::from(*v)).sum::<f64>() / n;
    let var = row
        .iter()
        .map(|v| (f64::from(*v) - mean).powi(2))
        .sum::<f64>()
        / n;
    (mean, var.sqrt())
}

/// numpy's default (linear) quantile of sorted data.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// (channel, reason) for each bad channel.
pub fn detect_bads(data: &[f32], n: usize, flat_std: f64, variance_z: f64) -> Vec<(usize, String)> {
    if n == 0 {
        return Vec::new();
    }
    let mut bads = BTreeMap::new();
    let mut logvar = Vec::new();
    for (i, row) in data.chunks(n).enumerate() {
        if row.iter().any(|v| !v.is_finite()) {
            bads.insert(i, "non-finite samples".to_string());
            continue;
        }
        let (_, std) = mean_std(row);
        if std <= flat_std {
            bads.insert(i, format!("flat, std {std:.3e}"));
            continue;
        }
        logvar.push((i, (std * std).ln()));
    }
    if logvar.len() >= 3 {
        let mut v: Vec<f64> = logvar.iter().map(|p| p.1).collect();
        v.sort_by(f64::total_cmp);
        let med = quantile(&v, 0.5);
        let mut dev: Vec<f64> = v.iter().map(|x| (x - med).abs()).collect();
        dev.sort_by(f64::total_cmp);
        let mad = quantile(&dev, 0.5) * 1.4826;
        if mad > 0.0 {
            for (i, lv) in logvar {
                let z = (lv - med) / mad;
                if z.abs() > variance_z {
                    bads.insert(i, format!("variance robust z {z:.1}"));
                }
            }
        }
    }
    bads.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use neurofm_core::{Info, Modality};

    fn rec(names: &[&str], n: usize, f: impl Fn(usize, usize) -> f32) -> Recording {
        let chans = names
            .iter()
            .map(|s| ChannelInfo::new(*s, ChannelKind::Eeg, Unit::Volt))
            .collect();
        let info = Info::new(Modality::Eeg, 100.0, chans);
        let mut data = Vec::new();
        for c in 0..names.len() {
            for t in 0..n {
                data.push(f(c, t));
            }
        }
        Recording::new(
            info,
            Signal::channels(names.len(), n, data).unwrap(),
            vec![],
        )
        .unwrap()
    }

    #[test]
    fn pick_reorders_by_standard_name() {
        let r = rec(&["EEG T3", "EEG Fp1", "ECG"], 4, |c, _| c as f32);
        let (out, _) = Step::Pick {
            channels: vec!["Fp1".into(), "T7".into()],
        }
        .apply(r.clone())
        .unwrap();
        assert_eq!(out.info.channels[0].name, "EEG Fp1");
        assert_eq!(out.signal.channel(1).unwrap(), &[0.0; 4]);
        let err = Step::Pick {
            channels: vec!["Cz".into()],
        }
        .apply(r)
        .unwrap_err();
        assert!(err.contains("no channel Cz"), "{err}");
    }

    #[test]
    fn references_and_scaling() {
        let r = rec(&["A", "B", "C"], 3, |c, t| (c * 10 + t) as f32);
        let (avg, _) = Step::AverageReference {
            kinds: vec![ChannelKind::Eeg],
        }
        .apply(r.clone())
        .unwrap();
        assert_eq!(avg.signal.channel(0).unwrap(), &[-10.0, -10.0, -10.0]);
        let (bip, _) = Step::Bipolar {
            pairs: vec![["C".into(), "A".into()]],
        }
        .apply(r.clone())
        .unwrap();
        assert_eq!(bip.info.channels[0].name, "C-A");
        assert_eq!(bip.signal.channel(0).unwrap(), &[20.0, 20.0, 20.0]);
        let (refd, _) = Step::Reference {
            channel: "B".into(),
            kinds: vec![ChannelKind::Eeg],
        }
        .apply(r.clone())
        .unwrap();
        assert_eq!(refd.signal.channel(2).unwrap(), &[10.0, 10.0, 10.0]);
        assert_eq!(refd.signal.channel(1).unwrap(), &[0.0, 0.0, 0.0]);
        let (d, _) = Step::Divide { by: 1e-4 }.apply(r.clone()).unwrap();
        assert!((d.signal.channel(1).unwrap()[2] - 120_000.0).abs() < 1e-2);
        let (z, _) = Step::Zscore {}.apply(r.clone()).unwrap();
        let (m, s) = mean_std(z.signal.channel(2).unwrap());
        assert!(m.abs() < 1e-6 && (s - 1.0).abs() < 1e-6);
        let (rb, _) = Step::RobustScale {}.apply(r.clone()).unwrap();
        // row [0, 1, 2]: median 1, IQR 1
        assert_eq!(rb.signal.channel(0).unwrap(), &[-1.0, 0.0, 1.0]);
        let (c, note) = Step::Clip {
            min: 0.0,
            max: 11.0,
        }
        .apply(r)
        .unwrap();
        assert_eq!(c.signal.channel(2).unwrap(), &[11.0, 11.0, 11.0]);
        assert_eq!(note.as_deref(), Some("clipped 4 samples"));
    }

    #[test]
    fn mark_bads_finds_flat_nan_and_loud_channels() {
        let r = rec(&["A", "B", "C", "D", "E", "F"], 200, |c, t| {
            let base = ((t * 37 + c * 11) % 17) as f32 - 8.0;
            match c {
                1 => 0.5,
                2 if t == 7 => f32::NAN,
                4 => base * 1000.0,
                _ => base,
            }
        });
        let (out, note) = Step::MarkBads {
            flat_std: 1e-12,
            variance_z: 5.0,
        }
        .apply(r)
        .unwrap();
        let bad: Vec<bool> = out.info.channels.iter().map(|c| c.bad).collect();
        assert_eq!(bad, vec![false, true, true, false, true, false], "{note:?}");
        let (kept, _) = Step::DropBads {}.apply(out).unwrap();
        assert_eq!(kept.info.channels.len(), 3);
    }

    #[test]
    fn resample_changes_rate_and_length() {
        let r = rec(&["A"], 1000, |_, t| (t as f32 * 0.01).sin());
        let mut plan = Plan::of_recording(&r);
        assert_eq!(plan.sfreq_hz, 100.0);
        let step = Step::Resample { sfreq_hz: 40.0 };
        step.plan(&mut plan).unwrap();
        let (out, _) = step.apply(r).unwrap();
        assert_eq!(out.info.sfreq_hz, 40.0);
        assert_eq!(out.signal.n_times(), 400);
        assert_eq!(plan.n_times, 400);
        assert!(Step::Resample { sfreq_hz: 0.0 }.plan(&mut plan).is_err());
    }
}
