//! AdamW (Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019), with its
//! moments keyed by variable name so that they can be saved and restored exactly.
//!
//! The update follows `torch.optim.AdamW` (non-amsgrad, non-fused):
//! `p ← p·(1 − lr·wd)`, `m ← β1·m + (1−β1)·g`, `v ← β2·v + (1−β2)·g²`,
//! `p ← p − (lr / (1−β1ᵗ)) · m / (√v / √(1−β2ᵗ) + ε)`.
//! Weight decay applies to tensors of rank ≥ 2 only (matrices and convolution kernels), not to
//! biases and normalization gains — the usual parameter grouping of transformer pretraining.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{Tensor, Var};
use neurofm_models::adamw::{self, AdamWStep};
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};
use crate::st::{self, HostTensor};

/// AdamW hyper-parameters (the learning rate comes from the schedule at each step).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        }
    }
}

/// The optimizer: hyper-parameters, the number of updates done, and per-variable moments.
#[derive(Debug)]
pub struct AdamW {
    pub config: AdamWConfig,
    /// Number of updates applied so far (PyTorch's `state["step"]`).
    pub t: u64,
    /// First and second moments, by variable name.
    state: BTreeMap<String, (Tensor, Tensor)>,
}

impl AdamW {
    pub fn new(config: AdamWConfig) -> Self {
        AdamW {
            config,
            t: 0,
            state: BTreeMap::new(),
        }
    }

    /// Names that have optimizer state.
    pub fn state_names(&self) -> impl Iterator<Item = &str> {
        self.state.keys().map(|s| s.as_str())
    }

    /// The (m, v) moments of variable `name`, if it has been updated at least once.
    pub fn moments(&self, name: &str) -> Option<&(Tensor, Tensor)> {
        self.state.get(name)
    }

    /// Applies one update with learning rate `lr` to every variable of `vars` (sorted by name)
    /// that has a gradient in `grads`. Variables without a gradient are left untouched.
    pub fn step(
        &mut self,
        vars: &[(String, Var)],
        grads: &BTreeMap<String, Tensor>,
        lr: f64,
    ) -> Result<()> {
        self.t += 1;
        let c = self.config;
        let t = self.t as i32;
        let step = AdamWStep::new(lr, c.beta1, c.beta2, c.eps, c.weight_decay, t);
        for (name, var) in vars {
            let Some(g) = grads.get(name) else { continue };
            let s = if var.as_tensor().rank() >= 2 {
                step
            } else {
                step.without_decay()
            };
            let (m, v) = match self.state.entry(name.clone()) {
                Entry::Occupied(e) => e.into_mut(),
                // two separate buffers: the update writes into them
                Entry::Vacant(e) => {
                    let p = var.as_tensor();
                    e.insert((p.zeros_like()?, p.zeros_like()?))
                }
            };
            // In place on the CPU (three passes, no allocation), candle's ops elsewhere.
            adamw::update(var, m, v, g, &s)?;
        }
        Ok(())
    }

    /// Saves the moments (`exp_avg.<name>`, `exp_avg_sq.<name>`) and the step count to `path`.
    pub fn save(&self, path: &Path) -> Result<()> {
        st::save(path, &self.host_state()?, &self.metadata())
    }

    pub(crate) fn metadata(&self) -> BTreeMap<String, String> {
        let mut meta = BTreeMap::new();
        meta.insert("format".into(), "neurofm-adamw".into());
        meta.insert("step".into(), self.t.to_string());
        meta.insert(
            "config".into(),
            serde_json::to_string(&self.config).unwrap_or_default(),
        );
        meta
    }

    pub(crate) fn host_state(&self) -> Result<BTreeMap<String, HostTensor>> {
        let mut out = BTreeMap::new();
        for (name, (m, v)) in &self.state {
            out.insert(format!("exp_avg.{name}"), HostTensor::from_tensor(m)?);
            out.insert(format!("exp_avg_sq.{name}"), HostTensor::from_tensor(v)?);
        }
        Ok(out)
    }

    /// Loads the state saved by [`AdamW::save`]. Every moment must belong to a variable of
    /// `vars` with the same shape; the hyper-parameters are taken from the file.
    pub fn load(path: &Path, vars: &[(String, Var)]) -> Result<AdamW> {
        let loaded = st::load(path)?;
        let bad = |reason: String| TrainError::Checkpoint {
            path: path.to_path_buf(),
            reason,
        };
        if loaded.metadata.get("format").map(String::as_str) != Some("neurofm-adamw") {
            return Err(bad("metadata `format` is not `neurofm-adamw`".into()));
        }
        let t: u64 = loaded
            .metadata
            .get("step")
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("metadata `step` is missing or not an integer".into()))?;
        let config: AdamWConfig = loaded
            .metadata
            .get("config")
            .and_then(|s| serde_json::from_str(s).ok())
            .ok_or_else(|| bad("metadata `config` is missing or invalid".into()))?;
        let by_name: BTreeMap<&str, &Var> = vars.iter().map(|(n, v)| (n.as_str(), v)).collect();
        let mut m_map = BTreeMap::new();
        let mut v_map = BTreeMap::new();
        for (key, t) in loaded.tensors {
            let (kind, name) = if let Some(n) = key.strip_prefix("exp_avg_sq.") {
                ("v", n.to_string())
            } else if let Some(n) = key.strip_prefix("exp_avg.") {
                ("m", n.to_string())
            } else {
                return Err(bad(format!("unexpected tensor `{key}`")));
            };
            let var = by_name
                .get(name.as_str())
                .ok_or_else(|| bad(format!("state for `{name}`, which the model does not have")))?;
            if var.as_tensor().dims() != t.shape.as_slice() {
                return Err(bad(format!(
                    "state `{key}` has shape {:?}, the variable has {:?}",
                    t.shape,
                    var.as_tensor().dims()
                )));
            }
            let tensor = t
                .to_tensor(var.as_tensor().device())?
                .to_dtype(var.as_tensor().dtype())?;
            if kind == "m" {
                m_map.insert(name, tensor);
            } else {
                v_map.insert(name, tensor);
            }
        }
        let mut state = BTreeMap::new();
        for (name, m) in m_map {
            let v = v_map
                .remove(&name)
                .ok_or_else(|| bad(format!("`exp_avg.{name}` without `exp_avg_sq.{name}`")))?;
            state.insert(name, (m, v));
        }
        if let Some(name) = v_map.keys().next() {
            return Err(bad(format!("`exp_avg_sq.{name}` without `exp_avg.{name}`")));
        }
        Ok(AdamW { config, t, state })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn first_step_moves_each_weight_by_lr_times_sign() -> Result<()> {
        // At t = 1, m̂ = g and v̂ = g², so the step is lr·g/(|g|+ε) ≈ lr·sign(g).
        let dev = Device::Cpu;
        let w = Var::from_slice(&[1.0f32, -2.0, 0.5], 3, &dev)?;
        let vars = vec![("w".to_string(), w.clone())];
        let mut grads = BTreeMap::new();
        grads.insert(
            "w".to_string(),
            Tensor::from_slice(&[0.3f32, -4.0, 0.0], 3, &dev)?,
        );
        let mut opt = AdamW::new(AdamWConfig {
            weight_decay: 0.5,
            ..AdamWConfig::default()
        });
        opt.step(&vars, &grads, 0.1)?;
        let got = w.as_tensor().to_vec1::<f32>()?;
        // rank-1: no weight decay
        let want = [
            1.0 - 0.1 * 0.3 / (0.3 + 1e-8),
            -2.0 + 0.1 * 4.0 / (4.0 + 1e-8),
            0.5,
        ];
        for (g, w) in got.iter().zip(want) {
            assert!((*g as f64 - w).abs() < 1e-6, "{got:?} vs {want:?}");
        }
        Ok(())
    }

    #[test]
    fn decay_applies_to_matrices_and_state_round_trips() -> Result<()> {
        let dev = Device::Cpu;
        let w = Var::from_slice(&[1.0f32, 2.0, 3.0, 4.0], (2, 2), &dev)?;
        let vars = vec![("layer.weight".to_string(), w.clone())];
        let mut grads = BTreeMap::new();
        grads.insert(
            "layer.weight".to_string(),
            Tensor::zeros((2, 2), DType::F32, &dev)?,
        );
        let mut opt = AdamW::new(AdamWConfig {
            weight_decay: 0.5,
            ..AdamWConfig::default()
        });
        opt.step(&vars, &grads, 0.1)?;
        // zero gradient: only the decoupled decay acts, p ← p·(1 − 0.05)
        let got = w.as_tensor().flatten_all()?.to_vec1::<f32>()?;
        for (g, p) in got.iter().zip([1.0f32, 2.0, 3.0, 4.0]) {
            assert!((g - p * 0.95).abs() < 1e-6);
        }
        let dir = tempfile::tempdir().map_err(|e| TrainError::io("tempdir", e))?;
        let path = dir.path().join("optimizer.safetensors");
        opt.save(&path)?;
        let back = AdamW::load(&path, &vars)?;
        assert_eq!(back.t, 1);
        assert_eq!(back.config, opt.config);
        // a variable the model does not have is refused
        let other = vec![("other".to_string(), w)];
        assert!(AdamW::load(&path, &other).is_err());
        Ok(())
    }
}
