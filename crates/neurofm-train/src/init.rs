//! Seeded parameter initialization.
//!
//! candle's `VarMap` draws initial values from the device's global RNG, which cannot be seeded on
//! the CPU: two runs with the same seed start from different weights. [`SeededVarMap`] is a
//! `VarBuilder` backend that stores variables in a `VarMap` like candle's, but draws each new
//! variable from a generator seeded by `(seed, variable name)`: the same seed gives the same
//! initial weights whatever order the model creates its variables in.

use candle_core::{DType, Device, Result, Shape, Tensor, Var};
use candle_nn::init::{FanInOut, NonLinearity, NormalOrUniform};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder, VarMap};

use crate::loader::SplitMix64;

/// Standard normal by Box–Muller.
fn normal(rng: &mut SplitMix64) -> f64 {
    let u1 = 1.0 - rng.next_f64(); // (0, 1]
    let u2 = rng.next_f64();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// FNV-1a hash of a name: a stable stream id.
pub fn name_id(name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Values of a new variable `name` of `shape` under `init`, drawn from `(seed, name)`.
pub fn init_values(init: Init, shape: &Shape, seed: u64, name: &str) -> Vec<f32> {
    let n = shape.elem_count();
    let mut rng = SplitMix64::new(name_id(name) ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    match init {
        Init::Const(v) => vec![v as f32; n],
        Init::Randn { mean, stdev } => (0..n)
            .map(|_| (mean + stdev * normal(&mut rng)) as f32)
            .collect(),
        Init::Uniform { lo, up } => (0..n)
            .map(|_| (lo + (up - lo) * rng.next_f64()) as f32)
            .collect(),
        Init::Kaiming {
            dist,
            fan,
            non_linearity,
        } => {
            let fan_n = match fan {
                FanInOut::FanIn | FanInOut::FanOut => fan.for_shape(shape),
            }
            .max(1);
            let std = gain(non_linearity) / (fan_n as f64).sqrt();
            match dist {
                NormalOrUniform::Uniform => {
                    let bound = 3f64.sqrt() * std;
                    (0..n)
                        .map(|_| (-bound + 2.0 * bound * rng.next_f64()) as f32)
                        .collect()
                }
                NormalOrUniform::Normal => {
                    (0..n).map(|_| (std * normal(&mut rng)) as f32).collect()
                }
            }
        }
    }
}

fn gain(nl: NonLinearity) -> f64 {
    nl.gain()
}

/// A `VarBuilder` backend: variables live in a [`VarMap`]; new ones are initialized from
/// `(seed, name)`.
#[derive(Clone)]
pub struct SeededVarMap {
    varmap: VarMap,
    seed: u64,
}

impl SeededVarMap {
    pub fn new(varmap: VarMap, seed: u64) -> Self {
        SeededVarMap { varmap, seed }
    }

    /// A `VarBuilder` creating seeded variables in `varmap`.
    pub fn var_builder(
        varmap: &VarMap,
        seed: u64,
        dtype: DType,
        device: &Device,
    ) -> VarBuilder<'static> {
        let backend: Box<dyn SimpleBackend> = Box::new(SeededVarMap::new(varmap.clone(), seed));
        VarBuilder::from_backend(backend, dtype, device.clone())
    }
}

impl SimpleBackend for SeededVarMap {
    fn get(&self, s: Shape, name: &str, h: Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        let data = self.varmap.data();
        let mut map = data
            .lock()
            .map_err(|_| candle_core::Error::Msg("variable map lock poisoned".into()))?;
        if let Some(v) = map.get(name) {
            let t = v.as_tensor();
            if t.shape() != &s {
                candle_core::bail!(
                    "variable `{name}` exists with shape {:?}, requested {:?}",
                    t.dims(),
                    s.dims()
                );
            }
            return Ok(t.clone());
        }
        let values = init_values(h, &s, self.seed, name);
        let t = Tensor::from_vec(values, s, dev)?.to_dtype(dtype)?;
        let var = Var::from_tensor(&t)?;
        let out = var.as_tensor().clone();
        map.insert(name.to_string(), var);
        Ok(out)
    }

    fn get_unchecked(&self, name: &str, _dtype: DType, _dev: &Device) -> Result<Tensor> {
        candle_core::bail!("variable `{name}`: a seeded VarMap needs the shape (use `get`)")
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.varmap
            .data()
            .lock()
            .map(|m| m.contains_key(name))
            .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_weights_other_seed_other_weights() {
        let build = |seed| {
            let vm = VarMap::new();
            let vb = SeededVarMap::var_builder(&vm, seed, DType::F32, &Device::Cpu);
            let a = vb
                .get_with_hints((4, 8), "a.weight", candle_nn::init::DEFAULT_KAIMING_NORMAL)
                .unwrap();
            let b = vb
                .get_with_hints(
                    16,
                    "b",
                    Init::Randn {
                        mean: 0.0,
                        stdev: 0.02,
                    },
                )
                .unwrap();
            (
                a.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                b.to_vec1::<f32>().unwrap(),
            )
        };
        let (a0, b0) = build(1);
        let (a1, b1) = build(1);
        let (a2, _) = build(2);
        assert_eq!(a0, a1);
        assert_eq!(b0, b1);
        assert_ne!(a0, a2);
        // Kaiming normal, fan_in 8, gain 1 (linear): std 1/sqrt(8) ≈ 0.354; Randn std 0.02.
        let std = |v: &[f32]| {
            let m = v.iter().sum::<f32>() / v.len() as f32;
            (v.iter().map(|x| (x - m) * (x - m)).sum::<f32>() / v.len() as f32).sqrt()
        };
        assert!(std(&b0) > 0.005 && std(&b0) < 0.04, "{}", std(&b0));
        assert!(std(&a0) > 0.15 && std(&a0) < 0.6, "{}", std(&a0));
    }

    #[test]
    fn many_draws_have_the_requested_moments() {
        let s = Shape::from(20000);
        let v = init_values(
            Init::Randn {
                mean: 1.0,
                stdev: 2.0,
            },
            &s,
            7,
            "x",
        );
        let m = v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|&x| (x as f64 - m).powi(2)).sum::<f64>() / v.len() as f64;
        assert!((m - 1.0).abs() < 0.05, "{m}");
        assert!((var.sqrt() - 2.0).abs() < 0.05, "{var}");
        let u = init_values(Init::Uniform { lo: -1.0, up: 3.0 }, &s, 7, "y");
        assert!(u.iter().all(|&x| (-1.0..3.0).contains(&x)));
    }
}
