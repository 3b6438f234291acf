//! Quantizing tokenizer: µ-law companding of the signal scaled by a fitted (or given)
//! maximum absolute value, then uniform quantization to `levels` integer tokens — the
//! 8-bit µ-law coding of ITU-T G.711 and WaveNet (van den Oord et al., 2016) — optionally
//! followed by byte-pair-encoding merges over the token stream (see [`crate::bpe`]).

use serde::{Deserialize, Serialize};

use crate::bpe::BpeStage;
use crate::error::{check, TokenizeError};

/// A fitted µ-law quantizer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MulawQuantizer {
    /// Companding parameter µ (255 in G.711).
    pub mu: f64,
    /// Number of quantization levels K (tokens `0..K`).
    pub levels: usize,
    /// Input value mapped to ±1 before companding (larger values are clipped).
    pub max_abs: f64,
    /// Optional BPE merges over the level stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpe: Option<BpeStage>,
}

impl MulawQuantizer {
    pub fn new(mu: f64, levels: usize, max_abs: f64) -> Result<Self, TokenizeError> {
        let q = Self {
            mu,
            levels,
            max_abs,
            bpe: None,
        };
        q.validate()?;
        Ok(q)
    }

    pub fn validate(&self) -> Result<(), TokenizeError> {
        check(self.mu.is_finite() && self.mu > 0.0, "mu", || {
            format!("must be finite and > 0, got {}", self.mu)
        })?;
        check((2..=1 << 24).contains(&self.levels), "levels", || {
            format!("must be in 2..=16777216, got {}", self.levels)
        })?;
        check(
            self.max_abs.is_finite() && self.max_abs > 0.0,
            "max_abs",
            || format!("must be finite and > 0, got {}", self.max_abs),
        )?;
        if let Some(b) = &self.bpe {
            check(b.levels == self.levels, "bpe.levels", || {
                format!("{} does not match levels {}", b.levels, self.levels)
            })?;
        }
        Ok(())
    }

    /// µ-law companding of `x` in [-1, 1].
    pub fn compress(&self, x: f64) -> f64 {
        x.signum() * (1.0 + self.mu * x.abs()).ln() / (1.0 + self.mu).ln()
    }

    /// Inverse of [`compress`](Self::compress).
    pub fn expand(&self, y: f64) -> f64 {
        y.signum() * ((1.0 + self.mu).powf(y.abs()) - 1.0) / self.mu
    }

    /// Token of one sample (NaN maps to the middle level).
    pub fn encode_value(&self, v: f32) -> u32 {
        let x = (v as f64 / self.max_abs).clamp(-1.0, 1.0);
        let x = if x.is_nan() { 0.0 } else { x };
        let y = self.compress(x);
        let k = (self.levels - 1) as f64;
        ((y + 1.0) * 0.5 * k).round().clamp(0.0, k) as u32
    }

    /// Sample value of one token.
    pub fn decode_value(&self, t: u32) -> f32 {
        let k = (self.levels - 1) as f64;
        let y = (t.min(self.levels as u32 - 1) as f64) / k * 2.0 - 1.0;
        (self.expand(y) * self.max_abs) as f32
    }

    pub fn encode(&self, x: &[f32]) -> Vec<u32> {
        x.iter().map(|&v| self.encode_value(v)).collect()
    }

    pub fn decode(&self, t: &[u32]) -> Vec<f32> {
        t.iter().map(|&v| self.decode_value(v)).collect()
    }

    /// Output tokens of one channel: quantization levels, then BPE merges if present.
    pub fn tokens(&self, x: &[f32]) -> Result<Vec<u32>, TokenizeError> {
        let levels = self.encode(x);
        match &self.bpe {
            Some(b) => b.encode(&levels),
            None => Ok(levels),
        }
    }

    /// Signal of output tokens (inverse of [`tokens`](Self::tokens) up to quantization).
    pub fn detokenize(&self, tokens: &[u32]) -> Result<Vec<f32>, TokenizeError> {
        match &self.bpe {
            Some(b) => Ok(self.decode(&b.decode(tokens)?)),
            None => Ok(self.decode(tokens)),
        }
    }

    /// Number of output tokens.
    pub fn vocab_size(&self) -> usize {
        self.bpe.as_ref().map_or(self.levels, |b| b.vocab_size())
    }
}

/// The `q`-quantile (0 < q <= 1) of `|x|` over `values` (nearest rank), ignoring NaNs.
pub fn abs_quantile(values: &[f32], q: f64) -> Option<f64> {
    let mut a: Vec<f32> = values
        .iter()
        .filter(|v| !v.is_nan())
        .map(|v| v.abs())
        .collect();
    if a.is_empty() {
        return None;
    }
    let rank = ((q * a.len() as f64).ceil() as usize).clamp(1, a.len()) - 1;
    let (_, v, _) = a.select_nth_unstable_by(rank, |x, y| x.total_cmp(y));
    Some(*v as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn companding_inverts() -> Result<(), TokenizeError> {
        let q = MulawQuantizer::new(255.0, 256, 1.0)?;
        for &x in &[-1.0, -0.3, -1e-3, 0.0, 1e-4, 0.5, 1.0] {
            assert!((q.expand(q.compress(x)) - x).abs() < 1e-12);
        }
        // G.711: µ = 255, compress(1) = 1, compress(-1) = -1
        assert!((q.compress(1.0) - 1.0).abs() < 1e-12);
        Ok(())
    }

    #[test]
    fn quantization_endpoints_and_error() -> Result<(), TokenizeError> {
        let q = MulawQuantizer::new(255.0, 256, 2.0)?;
        assert_eq!(q.encode_value(2.0), 255);
        assert_eq!(q.encode_value(-2.0), 0);
        assert_eq!(q.encode_value(100.0), 255); // clipped
        assert_eq!(q.encode_value(f32::NAN), q.encode_value(0.0));
        assert!((q.decode_value(255) - 2.0).abs() < 1e-6);
        // Small values keep a small absolute error (finer steps near 0).
        for &v in &[0.001f32, -0.01, 0.1, 1.5] {
            let r = q.decode_value(q.encode_value(v));
            // half a step in the companded domain, mapped back
            let y = q.compress(v as f64 / 2.0);
            let step = 1.0 / 255.0;
            let bound = (q.expand(y.abs() + step) - q.expand(y.abs())) * 2.0;
            assert!(((r - v) as f64).abs() <= bound + 1e-7, "{v} -> {r}");
        }
        Ok(())
    }

    #[test]
    fn quantile() {
        let v = [1.0f32, -4.0, 2.0, 3.0, f32::NAN];
        assert_eq!(abs_quantile(&v, 1.0), Some(4.0));
        assert_eq!(abs_quantile(&v, 0.5), Some(2.0));
        assert_eq!(abs_quantile(&[], 0.5), None);
    }

    #[test]
    fn bad_config_is_an_error() {
        assert!(MulawQuantizer::new(0.0, 256, 1.0).is_err());
        assert!(MulawQuantizer::new(255.0, 1, 1.0).is_err());
        assert!(MulawQuantizer::new(255.0, 256, 0.0).is_err());
    }
}
