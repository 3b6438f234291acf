//! The recording model.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::CoreError;

/// What kind of brain signal a recording holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Modality {
    Eeg,
    Meg,
    Ieeg,
    FmriVolume,
    FmriRoi,
    Calcium,
}

impl Modality {
    pub fn as_str(self) -> &'static str {
        match self {
            Modality::Eeg => "eeg",
            Modality::Meg => "meg",
            Modality::Ieeg => "ieeg",
            Modality::FmriVolume => "fmri-volume",
            Modality::FmriRoi => "fmri-roi",
            Modality::Calcium => "calcium",
        }
    }
}

impl fmt::Display for Modality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kind of one channel (MNE's channel types, plus ROI / neuron for fMRI and calcium).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    Eeg,
    Eog,
    Ecg,
    Emg,
    /// MEG magnetometer.
    MegMag,
    /// MEG (planar or axial) gradiometer.
    MegGrad,
    /// MEG reference sensor (CTF/KIT reference channels).
    MegRef,
    Stim,
    Resp,
    Seeg,
    Ecog,
    /// A region of interest (fMRI parcel).
    Roi,
    /// One neuron's calcium trace.
    Neuron,
    Misc,
}

impl ChannelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Eeg => "eeg",
            ChannelKind::Eog => "eog",
            ChannelKind::Ecg => "ecg",
            ChannelKind::Emg => "emg",
            ChannelKind::MegMag => "meg_mag",
            ChannelKind::MegGrad => "meg_grad",
            ChannelKind::MegRef => "meg_ref",
            ChannelKind::Stim => "stim",
            ChannelKind::Resp => "resp",
            ChannelKind::Seeg => "seeg",
            ChannelKind::Ecog => "ecog",
            ChannelKind::Roi => "roi",
            ChannelKind::Neuron => "neuron",
            ChannelKind::Misc => "misc",
        }
    }
}

impl fmt::Display for ChannelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Physical unit of a channel's values *as stored* (the store keeps SI units).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Unit {
    #[serde(rename = "V")]
    Volt,
    #[serde(rename = "T")]
    Tesla,
    #[serde(rename = "T/m")]
    TeslaPerMeter,
    /// Dimensionless / arbitrary units (stim channels, normalized signals, BOLD intensity).
    #[serde(rename = "a.u.")]
    Arbitrary,
    /// Any other unit, spelled as the source spelled it (e.g. "dF/F0", "%").
    #[serde(untagged)]
    Other(String),
}

impl Unit {
    pub fn as_str(&self) -> &str {
        match self {
            Unit::Volt => "V",
            Unit::Tesla => "T",
            Unit::TeslaPerMeter => "T/m",
            Unit::Arbitrary => "a.u.",
            Unit::Other(s) => s,
        }
    }
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelInfo {
    /// The name exactly as written in the source file.
    pub name: String,
    /// The standard (10-05, canonical neuron, ...) name when the name maps to one.
    #[serde(default)]
    pub standard_name: Option<String>,
    pub kind: ChannelKind,
    pub unit: Unit,
    /// Position in metres (head coordinates) when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<[f64; 3]>,
    /// Marked bad (by the file, a sidecar, or a preprocessing step).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub bad: bool,
}

impl ChannelInfo {
    pub fn new(name: impl Into<String>, kind: ChannelKind, unit: Unit) -> Self {
        ChannelInfo {
            name: name.into(),
            standard_name: None,
            kind,
            unit,
            position: None,
            bad: false,
        }
    }
}

/// Where a recording came from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    pub source_path: String,
    /// Lower-case hex sha256 of the source file's bytes (the main file for multi-file formats).
    pub source_sha256: String,
    /// Reader name, e.g. "edf".
    pub reader: String,
    /// Reader version (the neurofm-io crate version).
    pub reader_version: String,
}

/// A timed event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Annotation {
    /// Seconds from the first sample.
    pub onset_s: f64,
    pub duration_s: f64,
    pub description: String,
}

/// Everything about a recording except its samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Info {
    pub modality: Modality,
    /// Samples per second (volumes per second for fMRI: 1 / TR).
    pub sfreq_hz: f64,
    pub channels: Vec<ChannelInfo>,
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub session: Option<String>,
    #[serde(default)]
    pub task: Option<String>,
    #[serde(default)]
    pub run: Option<String>,
    /// Measurement start, ISO 8601 / RFC 3339 (UTC) when the file gives it.
    #[serde(default)]
    pub meas_date: Option<String>,
    pub provenance: Provenance,
    /// Free-form metadata (participants.tsv columns, device info, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

impl Info {
    pub fn new(modality: Modality, sfreq_hz: f64, channels: Vec<ChannelInfo>) -> Self {
        Info {
            modality,
            sfreq_hz,
            channels,
            subject: None,
            session: None,
            task: None,
            run: None,
            meas_date: None,
            provenance: Provenance::default(),
            metadata: BTreeMap::new(),
        }
    }

    pub fn n_channels(&self) -> usize {
        self.channels.len()
    }

    /// Index of the channel whose file name or standard name equals `name` (case-insensitive).
    pub fn channel_index(&self, name: &str) -> Option<usize> {
        self.channels.iter().position(|c| {
            c.name.eq_ignore_ascii_case(name)
                || c.standard_name
                    .as_deref()
                    .is_some_and(|s| s.eq_ignore_ascii_case(name))
        })
    }
}

/// The samples of a recording, row-major.
#[derive(Debug, Clone, PartialEq)]
pub enum Signal {
    /// `[n_channels, n_samples]`, row-major (channel 0's samples first).
    Channels {
        n_channels: usize,
        n_samples: usize,
        data: Vec<f32>,
    },
    /// `[n_volumes, nx, ny, nz]`, row-major (volume 0 first, z fastest), with the voxel→world
    /// affine (millimetres, RAS+ as NIfTI).
    Volumes {
        n_volumes: usize,
        dims: [usize; 3],
        affine: [[f64; 4]; 4],
        data: Vec<f32>,
    },
}

impl Signal {
    /// Builds a channels × samples signal, checking the length.
    pub fn channels(
        n_channels: usize,
        n_samples: usize,
        data: Vec<f32>,
    ) -> Result<Self, CoreError> {
        let expected = n_channels
            .checked_mul(n_samples)
            .ok_or_else(|| CoreError::Invalid {
                field: "signal shape".into(),
                reason: format!("{n_channels} x {n_samples} overflows"),
            })?;
        if data.len() != expected {
            return Err(CoreError::Shape {
                what: format!("channels x samples ({n_channels} x {n_samples})"),
                expected,
                got: data.len(),
            });
        }
        Ok(Signal::Channels {
            n_channels,
            n_samples,
            data,
        })
    }

    /// Tensor shape as stored.
    pub fn shape(&self) -> Vec<usize> {
        match self {
            Signal::Channels {
                n_channels,
                n_samples,
                ..
            } => vec![*n_channels, *n_samples],
            Signal::Volumes {
                n_volumes, dims, ..
            } => vec![*n_volumes, dims[0], dims[1], dims[2]],
        }
    }

    /// Number of time points (samples or volumes).
    pub fn n_times(&self) -> usize {
        match self {
            Signal::Channels { n_samples, .. } => *n_samples,
            Signal::Volumes { n_volumes, .. } => *n_volumes,
        }
    }

    pub fn data(&self) -> &[f32] {
        match self {
            Signal::Channels { data, .. } | Signal::Volumes { data, .. } => data,
        }
    }

    pub fn data_mut(&mut self) -> &mut [f32] {
        match self {
            Signal::Channels { data, .. } | Signal::Volumes { data, .. } => data,
        }
    }

    /// One channel's samples (channels signals only).
    pub fn channel(&self, i: usize) -> Option<&[f32]> {
        match self {
            Signal::Channels {
                n_channels,
                n_samples,
                data,
            } if i < *n_channels => Some(&data[i * n_samples..(i + 1) * n_samples]),
            _ => None,
        }
    }
}

/// A whole recording in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Recording {
    pub info: Info,
    pub signal: Signal,
    pub annotations: Vec<Annotation>,
}

impl Recording {
    /// Builds a recording, checking that the signal agrees with the channel list.
    pub fn new(
        info: Info,
        signal: Signal,
        annotations: Vec<Annotation>,
    ) -> Result<Self, CoreError> {
        if let Signal::Channels { n_channels, .. } = &signal {
            if *n_channels != info.channels.len() {
                return Err(CoreError::Shape {
                    what: "channel count (info vs signal)".into(),
                    expected: info.channels.len(),
                    got: *n_channels,
                });
            }
        }
        Ok(Recording {
            info,
            signal,
            annotations,
        })
    }

    pub fn duration_s(&self) -> f64 {
        self.signal.n_times() as f64 / self.info.sfreq_hz
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_serializes_as_si_symbol() {
        let s = serde_json::to_string(&vec![
            Unit::Volt,
            Unit::TeslaPerMeter,
            Unit::Other("dF/F0".into()),
        ])
        .unwrap();
        assert_eq!(s, r#"["V","T/m","dF/F0"]"#);
        let back: Vec<Unit> = serde_json::from_str(&s).unwrap();
        assert_eq!(back[2], Unit::Other("dF/F0".into()));
        assert_eq!(back[0], Unit::Volt);
    }

    #[test]
    fn signal_length_is_checked() {
        assert!(Signal::channels(2, 3, vec![0.0; 5]).is_err());
        let s = Signal::channels(2, 3, vec![0., 1., 2., 3., 4., 5.]).unwrap();
        assert_eq!(s.channel(1), Some(&[3.0f32, 4.0, 5.0][..]));
        assert_eq!(s.channel(2), None);
    }

    #[test]
    fn recording_rejects_channel_mismatch() {
        let info = Info::new(
            Modality::Eeg,
            100.0,
            vec![ChannelInfo::new("Cz", ChannelKind::Eeg, Unit::Volt)],
        );
        let sig = Signal::channels(2, 1, vec![0.0, 0.0]).unwrap();
        assert!(Recording::new(info, sig, vec![]).is_err());
    }
}
