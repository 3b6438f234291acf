//! A tiny masked autoencoder and an in-memory window source for the engine tests.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use neurofm_train::loader::SplitMix64;
use neurofm_train::{
    AdamWConfig, CheckpointFiles, Objective, RunInfo, TrainConfig, TrainError, WindowSource,
};

pub const C: usize = 3;
pub const T: usize = 16;
pub const PATCH: usize = 4;
pub const HIDDEN: usize = 8;

/// Sines of different frequency and phase per window; window `nan_at` (if any) holds a NaN.
pub struct Sines {
    pub n: usize,
    pub nan_at: Option<usize>,
}

impl WindowSource for Sines {
    fn len(&self) -> usize {
        self.n
    }
    fn n_channels(&self) -> usize {
        C
    }
    fn window_len(&self) -> usize {
        T
    }
    fn read(&self, i: usize, out: &mut [f32]) -> neurofm_train::Result<()> {
        if out.len() != C * T {
            return Err(TrainError::Data("wrong buffer".into()));
        }
        for c in 0..C {
            for t in 0..T {
                let f = 0.2 + 0.05 * (i % 7) as f32 + 0.1 * c as f32;
                out[c * T + t] = (f * t as f32 + i as f32).sin();
            }
        }
        if self.nan_at == Some(i) {
            out[5] = f32::NAN;
        }
        Ok(())
    }
    fn describe(&self, i: usize) -> String {
        format!("sub-{:02}_rec@{}", i % 4, i * T)
    }
}

/// patch → tanh(W1·patch + b1) → W2·h + b2, mean squared error on the patches picked by a mask
/// drawn from (seed, step).
pub struct TinyMae {
    w1: Tensor,
    b1: Tensor,
    w2: Tensor,
    b2: Tensor,
    pub nan_at_step: Option<u64>,
}

impl TinyMae {
    pub fn new(vb: VarBuilder) -> candle_core::Result<Self> {
        let init = candle_nn::init::DEFAULT_KAIMING_NORMAL;
        Ok(TinyMae {
            w1: vb.get_with_hints((HIDDEN, PATCH), "enc.weight", init)?,
            b1: vb.get_with_hints(HIDDEN, "enc.bias", candle_nn::init::ZERO)?,
            w2: vb.get_with_hints((PATCH, HIDDEN), "dec.weight", init)?,
            b2: vb.get_with_hints(PATCH, "dec.bias", candle_nn::init::ZERO)?,
            nan_at_step: None,
        })
    }
}

/// 1 = masked, half of the patches, from (seed, step) only.
pub fn mask(b: usize, n: usize, seed: u64, step: u64) -> Vec<f32> {
    let mut rng = SplitMix64::from_parts(&[seed, 0x6d61736b, step]);
    (0..b * n)
        .map(|_| if rng.next_f64() < 0.5 { 1.0 } else { 0.0 })
        .collect()
}

impl Objective for TinyMae {
    fn loss(&self, x: &Tensor, seed: u64, step: u64) -> candle_core::Result<Tensor> {
        let (b, c, t) = x.dims3()?;
        let n = c * (t / PATCH);
        let patches = x.reshape((b * n, PATCH))?;
        let m = Tensor::from_vec(mask(b, n, seed, step), (b * n, 1), x.device())?;
        // An autoencoder whose loss counts the masked patches only: enough to exercise the engine.
        let h = patches
            .matmul(&self.w1.t()?)?
            .broadcast_add(&self.b1)?
            .tanh()?;
        let y = h.matmul(&self.w2.t()?)?.broadcast_add(&self.b2)?;
        let err = (y - patches)?.sqr()?.broadcast_mul(&m)?;
        let loss =
            (err.sum_all()? / (m.sum_all()?.to_scalar::<f32>()? as f64 * PATCH as f64).max(1.0))?;
        if self.nan_at_step == Some(step) {
            return loss * f64::NAN;
        }
        Ok(loss)
    }
}

pub fn model(seed: u64) -> candle_core::Result<(VarMap, TinyMae)> {
    let varmap = VarMap::new();
    let dev = Device::Cpu;
    // candle's initializers draw from a global RNG; re-draw the values from the seed so that
    // every run of a test starts from the same weights.
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
    let m = TinyMae::new(vb)?;
    let mut rng = SplitMix64::from_parts(&[seed, 0x696e6974]);
    for (_, var) in neurofm_train::checkpoint::sorted_vars(&varmap) {
        let n = var.as_tensor().elem_count();
        let vals: Vec<f32> = (0..n)
            .map(|_| (rng.next_f64() as f32 - 0.5) * 0.8)
            .collect();
        var.set(&Tensor::from_vec(vals, var.as_tensor().dims(), &dev)?)?;
    }
    Ok((varmap, m))
}

pub fn config(steps: u64) -> TrainConfig {
    TrainConfig {
        steps,
        batch_size: 4,
        accumulate: 2,
        lr: 3e-2,
        min_lr: 1e-3,
        warmup_steps: 2,
        adamw: AdamWConfig {
            weight_decay: 0.05,
            ..AdamWConfig::default()
        },
        grad_clip: 0.5,
        seed: 11,
        checkpoint_every: 2,
        keep_last: 2,
        prefetch: 2,
        workers: 2,
    }
}

pub fn run_info(dir: &Path) -> RunInfo {
    RunInfo {
        dir: dir.to_path_buf(),
        files: CheckpointFiles {
            config: serde_json::json!({"type": "tiny", "hidden": HIDDEN}),
            tokenizer: None,
            extra: Default::default(),
        },
        recipe_hash: Some("abc123".into()),
        model_kind: "tiny".into(),
        trivial_loss: None,
        channels: vec!["Fz".into(), "Cz".into(), "Pz".into()],
    }
}

pub fn source(n: usize) -> Arc<dyn WindowSource> {
    Arc::new(Sines { n, nan_at: None })
}
