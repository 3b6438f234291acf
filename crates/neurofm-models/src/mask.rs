//! Deterministic random patch masks for masked-autoencoder pretraining.
//!
//! The mask of a training step is a pure function of `(seed, step)`: there is no hidden RNG
//! state, so a run resumed from a checkpoint sees exactly the masks it would have seen.

use candle_core::{bail, Device, Result, Tensor};

/// SplitMix64 (Steele, Lea & Flood 2014): a tiny, well-mixed 64-bit generator.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform integer in `0..n` (`n > 0`), by Lemire's multiply-shift (bias < n / 2^64).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }
}

/// Stream for sample `b` of step `step` under `seed`.
fn stream(seed: u64, step: u64, b: u64) -> SplitMix64 {
    let mut s = SplitMix64::new(seed);
    let a = s.next_u64();
    let mut s = SplitMix64::new(a ^ step.wrapping_mul(0xD1B5_4A32_D192_ED03));
    let c = s.next_u64();
    SplitMix64::new(c ^ b.wrapping_mul(0x8CB9_2BA7_2F3D_8DD7))
}

/// Number of masked patches out of `n` for `ratio` (rounded to nearest).
pub fn n_masked(n: usize, ratio: f64) -> usize {
    ((n as f64 * ratio).round() as usize).min(n)
}

/// A `[B, ...]` f32 mask (1 = masked) on the CPU: for each sample `b`, exactly
/// `round(ratio * prod(shape[1..]))` positions, chosen uniformly without replacement from a
/// stream determined by `(seed, step, b)`.
pub fn random_patch_mask(shape: &[usize], ratio: f64, seed: u64, step: u64) -> Result<Tensor> {
    random_patch_mask_on(shape, ratio, seed, step, &Device::Cpu)
}

/// [`random_patch_mask`] placed on `device`.
pub fn random_patch_mask_on(
    shape: &[usize],
    ratio: f64,
    seed: u64,
    step: u64,
    device: &Device,
) -> Result<Tensor> {
    if !(0.0..=1.0).contains(&ratio) {
        bail!("mask ratio must be in [0, 1], got {ratio}");
    }
    let Some((&b, rest)) = shape.split_first() else {
        bail!("mask shape must have a batch dimension, got {shape:?}");
    };
    let per: usize = rest.iter().product();
    let k = n_masked(per, ratio);
    let mut data = vec![0f32; b * per];
    let mut idx: Vec<usize> = Vec::with_capacity(per);
    for (bi, row) in data.chunks_mut(per.max(1)).enumerate().take(b) {
        let mut rng = stream(seed, step, bi as u64);
        idx.clear();
        idx.extend(0..per);
        // Partial Fisher-Yates: the first k entries are a uniform k-subset.
        for i in 0..k {
            let j = i + rng.below(per - i);
            idx.swap(i, j);
        }
        for &i in &idx[..k] {
            row[i] = 1.0;
        }
    }
    Tensor::from_vec(data, shape, device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_is_deterministic_and_exact() -> Result<()> {
        let a = random_patch_mask(&[3, 4, 5], 0.5, 7, 11)?;
        let b = random_patch_mask(&[3, 4, 5], 0.5, 7, 11)?;
        let c = random_patch_mask(&[3, 4, 5], 0.5, 7, 12)?;
        let d = random_patch_mask(&[3, 4, 5], 0.5, 8, 11)?;
        let av = a.flatten_all()?.to_vec1::<f32>()?;
        assert_eq!(av, b.flatten_all()?.to_vec1::<f32>()?);
        assert_ne!(av, c.flatten_all()?.to_vec1::<f32>()?);
        assert_ne!(av, d.flatten_all()?.to_vec1::<f32>()?);
        for row in av.chunks(20) {
            assert_eq!(row.iter().filter(|&&v| v == 1.0).count(), 10);
        }
        // Samples of one batch get different masks.
        assert_ne!(av[..20], av[20..40]);
        Ok(())
    }

    #[test]
    fn mask_positions_are_uniform() -> Result<()> {
        // Over many steps every position is masked about ratio of the time.
        let mut counts = [0usize; 10];
        let steps = 4000;
        for s in 0..steps {
            let m = random_patch_mask(&[1, 10], 0.3, 1, s)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            for (c, v) in counts.iter_mut().zip(m) {
                *c += v as usize;
            }
        }
        for c in counts {
            let f = c as f64 / steps as f64;
            assert!((f - 0.3).abs() < 0.03, "frequency {f}");
        }
        Ok(())
    }

    #[test]
    fn bad_ratio_is_an_error() {
        assert!(random_patch_mask(&[1, 4], 1.5, 0, 0).is_err());
        assert!(random_patch_mask(&[], 0.5, 0, 0).is_err());
    }
}
