//! Reconstruction and vocabulary statistics every tokenizer reports.

use serde::{Deserialize, Serialize};

/// How well `decode(encode(x))` reproduces `x`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Reconstruction {
    /// Samples compared.
    pub n_samples: u64,
    /// Normalized mean squared error `sum((x - x̂)²) / sum((x - mean x)²)`.
    pub nmse: f64,
    /// Signal-to-noise ratio `10 log10(sum(x²) / sum((x - x̂)²))` in dB (infinite when exact).
    pub snr_db: f64,
}

/// Streaming accumulator for [`Reconstruction`] (sums in f64).
#[derive(Debug, Clone, Default)]
pub struct ReconstructionAcc {
    n: u64,
    sum: f64,
    sum_sq: f64,
    err_sq: f64,
}

impl ReconstructionAcc {
    pub fn add(&mut self, x: &[f32], x_hat: &[f32]) {
        for (&a, &b) in x.iter().zip(x_hat) {
            let (a, b) = (a as f64, b as f64);
            self.n += 1;
            self.sum += a;
            self.sum_sq += a * a;
            self.err_sq += (a - b) * (a - b);
        }
    }

    pub fn finish(&self) -> Reconstruction {
        let n = self.n.max(1) as f64;
        let var_sum = (self.sum_sq - self.sum * self.sum / n).max(0.0);
        Reconstruction {
            n_samples: self.n,
            nmse: if var_sum > 0.0 {
                self.err_sq / var_sum
            } else {
                0.0
            },
            snr_db: if self.err_sq > 0.0 {
                10.0 * (self.sum_sq / self.err_sq).log10()
            } else {
                f64::INFINITY
            },
        }
    }
}

/// Vocabulary usage of a discrete tokenizer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VocabStats {
    pub vocab_size: usize,
    /// Distinct tokens seen.
    pub used: usize,
    /// `used / vocab_size`.
    pub usage: f64,
    /// Tokens emitted.
    pub n_tokens: u64,
    /// Signal samples those tokens encode.
    pub n_samples: u64,
    /// Empirical entropy of the token distribution, bits per token.
    pub entropy_bits_per_token: f64,
    /// `entropy_bits_per_token * n_tokens / n_samples`.
    pub entropy_bits_per_sample: f64,
    /// `log2(vocab_size) * n_tokens / n_samples` (fixed-length code).
    pub fixed_bits_per_sample: f64,
}

/// Streaming accumulator for [`VocabStats`].
#[derive(Debug, Clone)]
pub struct VocabAcc {
    counts: Vec<u64>,
    n_samples: u64,
}

impl VocabAcc {
    pub fn new(vocab_size: usize) -> Self {
        Self {
            counts: vec![0; vocab_size],
            n_samples: 0,
        }
    }

    pub fn add(&mut self, tokens: &[u32], n_samples: usize) {
        for &t in tokens {
            if let Some(c) = self.counts.get_mut(t as usize) {
                *c += 1;
            }
        }
        self.n_samples += n_samples as u64;
    }

    pub fn finish(&self) -> VocabStats {
        let v = self.counts.len();
        let n_tokens: u64 = self.counts.iter().sum();
        let used = self.counts.iter().filter(|&&c| c > 0).count();
        let nt = n_tokens.max(1) as f64;
        let h: f64 = self
            .counts
            .iter()
            .filter(|&&c| c > 0)
            .map(|&c| {
                let p = c as f64 / nt;
                -p * p.log2()
            })
            .sum();
        let per_sample = n_tokens as f64 / self.n_samples.max(1) as f64;
        VocabStats {
            vocab_size: v,
            used,
            usage: used as f64 / v.max(1) as f64,
            n_tokens,
            n_samples: self.n_samples,
            entropy_bits_per_token: h,
            entropy_bits_per_sample: h * per_sample,
            fixed_bits_per_sample: (v.max(1) as f64).log2() * per_sample,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconstruction_metrics() {
        let x = [1.0f32, -1.0, 1.0, -1.0];
        let mut a = ReconstructionAcc::default();
        a.add(&x, &x);
        let r = a.finish();
        assert_eq!(r.nmse, 0.0);
        assert!(r.snr_db.is_infinite());
        let mut a = ReconstructionAcc::default();
        a.add(&x, &[0.9, -0.9, 0.9, -0.9]);
        let r = a.finish();
        // error power 0.01 per sample, signal power 1 -> 20 dB, NMSE 0.01.
        assert!((r.snr_db - 20.0).abs() < 1e-4, "{}", r.snr_db);
        assert!((r.nmse - 0.01).abs() < 1e-6, "{}", r.nmse);
    }

    #[test]
    fn vocab_metrics() {
        let mut a = VocabAcc::new(4);
        a.add(&[0, 1, 0, 1], 4);
        let s = a.finish();
        assert_eq!(s.used, 2);
        assert!((s.usage - 0.5).abs() < 1e-12);
        assert!((s.entropy_bits_per_token - 1.0).abs() < 1e-12);
        assert!((s.fixed_bits_per_sample - 2.0).abs() < 1e-12);
        assert!((s.entropy_bits_per_sample - 1.0).abs() < 1e-12);
    }
}
