//! Patch tokenizer: a per-channel signal cut into non-overlapping patches of `patch_len`
//! samples; each patch carries its channel identity (10-05 table index, see
//! [`crate::channels`]) and its time (patch) index. An optional fitted scale is applied
//! first (e.g. volts → unit standard deviation). This is the input format of the masked
//! autoencoder in `neurofm-models`.

use serde::{Deserialize, Serialize};

use crate::channels::channel_id;
use crate::error::{check, TokenizeError};

/// A fitted patch tokenizer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchTokenizer {
    /// Samples per patch.
    pub patch_len: usize,
    /// Multiplier applied to the signal before patching (1 / fitted std, or 1).
    pub scale: f64,
}

/// Patches of a `[C, T]` signal.
#[derive(Debug, Clone, PartialEq)]
pub struct Patches {
    pub n_channels: usize,
    pub n_patches: usize,
    pub patch_len: usize,
    /// `[C, P, patch_len]` row-major, scaled.
    pub data: Vec<f32>,
    /// 10-05 channel id of each channel (`channels::unknown_channel()` when not in the table).
    pub channel_ids: Vec<u32>,
    /// Patch (time) index of each of the `P` patches: `0..P`.
    pub time_index: Vec<u32>,
    /// Samples at the end of each channel that do not fill a whole patch (dropped).
    pub dropped: usize,
}

impl PatchTokenizer {
    pub fn new(patch_len: usize, scale: f64) -> Result<Self, TokenizeError> {
        let t = Self { patch_len, scale };
        t.validate()?;
        Ok(t)
    }

    pub fn validate(&self) -> Result<(), TokenizeError> {
        check(self.patch_len > 0, "patch_len", || "must be > 0".into())?;
        check(self.scale.is_finite() && self.scale > 0.0, "scale", || {
            format!("must be finite and > 0, got {}", self.scale)
        })
    }

    /// Cuts `data` (`[n_channels, n_times]` row-major) into patches.
    pub fn encode(
        &self,
        data: &[f32],
        n_channels: usize,
        channel_names: &[String],
    ) -> Result<Patches, TokenizeError> {
        if n_channels == 0 || !data.len().is_multiple_of(n_channels) {
            return Err(TokenizeError::Input(format!(
                "{} values are not a whole number of rows of {n_channels} channels",
                data.len()
            )));
        }
        if channel_names.len() != n_channels {
            return Err(TokenizeError::Input(format!(
                "{} channel names for {n_channels} channels",
                channel_names.len()
            )));
        }
        let n_times = data.len() / n_channels;
        let p = n_times / self.patch_len;
        let used = p * self.patch_len;
        let scale = self.scale as f32;
        let mut out = Vec::with_capacity(n_channels * used);
        for row in data.chunks_exact(n_times) {
            out.extend(row[..used].iter().map(|&v| v * scale));
        }
        Ok(Patches {
            n_channels,
            n_patches: p,
            patch_len: self.patch_len,
            data: out,
            channel_ids: channel_names.iter().map(|n| channel_id(n)).collect(),
            time_index: (0..p as u32).collect(),
            dropped: n_times - used,
        })
    }

    /// The signal `[C, P * patch_len]` (in the input units) of `patches`.
    pub fn decode(&self, patches: &Patches) -> Vec<f32> {
        let inv = (1.0 / self.scale) as f32;
        patches.data.iter().map(|&v| v * inv).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels::{standard_index, unknown_channel};

    #[test]
    fn patches_round_trip_and_carry_identity() -> Result<(), TokenizeError> {
        let tok = PatchTokenizer::new(4, 2.0)?;
        let names = vec!["Cz".to_string(), "ECG".to_string()];
        let data: Vec<f32> = (0..22).map(|i| i as f32).collect(); // 2 x 11
        let p = tok.encode(&data, 2, &names)?;
        assert_eq!((p.n_patches, p.dropped), (2, 3));
        assert_eq!(
            p.channel_ids,
            vec![standard_index("Cz").unwrap_or(0), unknown_channel()]
        );
        assert_eq!(p.time_index, vec![0, 1]);
        // second channel, second patch = samples 11+4..11+8, scaled by 2
        assert_eq!(&p.data[12..16], &[30.0, 32.0, 34.0, 36.0]);
        let back = tok.decode(&p);
        assert_eq!(&back[..8], &data[..8]);
        assert_eq!(&back[8..], &data[11..19]);
        Ok(())
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(PatchTokenizer::new(0, 1.0).is_err());
        assert!(PatchTokenizer::new(4, f64::NAN).is_err());
        let tok = PatchTokenizer {
            patch_len: 4,
            scale: 1.0,
        };
        assert!(tok.encode(&[0.0; 7], 2, &["a".into(), "b".into()]).is_err());
        assert!(tok.encode(&[0.0; 8], 2, &["a".into()]).is_err());
    }
}
