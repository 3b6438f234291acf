//! Checkpoints: `<run>/step-<N>/{model.safetensors, optimizer.safetensors, config.json,
//! tokenizer.json (if any), trainer_state.json}`, written into a temporary directory that is
//! fsynced and renamed into place, so a checkpoint directory is either complete or absent.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use candle_core::Var;
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};
use crate::fsutil;
use crate::optim::AdamW;
use crate::st::{self, HostTensor};

pub const MODEL_FILE: &str = "model.safetensors";
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
pub const CONFIG_FILE: &str = "config.json";
pub const TOKENIZER_FILE: &str = "tokenizer.json";
pub const STATE_FILE: &str = "trainer_state.json";

/// Where training stands; enough to continue bit for bit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainerState {
    /// Optimizer steps done.
    pub step: u64,
    /// Micro-batches consumed (`step · accumulate`); the loader restarts here.
    pub micro_batches: u64,
    /// Epoch of the next micro-batch.
    pub epoch: u64,
    /// Position of the next micro-batch's first window in that epoch's order.
    pub position: usize,
    /// Seed of the data order (`epoch_order(len, seed, epoch)`) and of the masks
    /// (derived from (seed, micro-batch)).
    pub seed: u64,
    pub batch_size: usize,
    pub accumulate: usize,
    /// Windows in the data source when the run started (the order depends on it).
    pub n_windows: usize,
    /// Training wall time so far, seconds.
    pub elapsed_s: f64,
    /// The last losses, `(step, loss)`.
    pub loss_tail: Vec<(u64, f32)>,
    pub recipe_hash: Option<String>,
    /// `"mae"`, `"gpt"`, …: what `neurofm export` writes as `model_kind`.
    pub model_kind: String,
    /// Channel names, in the order of the model input.
    pub channels: Vec<String>,
    pub neurofm_version: String,
}

/// Extra files a checkpoint carries besides weights and optimizer state.
#[derive(Debug, Clone, Default)]
pub struct CheckpointFiles {
    /// The resolved configuration of the run (written as `config.json`).
    pub config: serde_json::Value,
    /// The fitted tokenizer, if the model uses one (written as `tokenizer.json`).
    pub tokenizer: Option<serde_json::Value>,
    /// Further JSON files by file name (e.g. `pretrain.json`, the command's resolved settings).
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// Variables of a VarMap sorted by name (VarMap's own order is unstable).
pub fn sorted_vars(varmap: &VarMap) -> Vec<(String, Var)> {
    let data = match varmap.data().lock() {
        Ok(d) => d,
        Err(poisoned) => poisoned.into_inner(),
    };
    let mut v: Vec<(String, Var)> = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// The directory name of the checkpoint after `step` optimizer steps.
pub fn step_dir_name(step: u64) -> String {
    format!("step-{step}")
}

/// Writes a checkpoint of `vars`, `opt` and `state` under `run_dir/step-<state.step>` and
/// removes all but the newest `keep_last` checkpoints (0 keeps all). Returns its path.
pub fn save(
    run_dir: &Path,
    vars: &[(String, Var)],
    opt: &AdamW,
    state: &TrainerState,
    files: &CheckpointFiles,
    keep_last: usize,
) -> Result<PathBuf> {
    std::fs::create_dir_all(run_dir).map_err(|e| TrainError::io(run_dir, e))?;
    let final_dir = run_dir.join(step_dir_name(state.step));
    let tmp = fsutil::temp_name(&final_dir);
    std::fs::create_dir_all(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
    let written = write_files(&tmp, vars, opt, state, files);
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    fsutil::sync_dir(&tmp)?;
    if final_dir.exists() {
        // A checkpoint of the same step from an earlier attempt: move it aside, then replace.
        let old = fsutil::temp_name(&final_dir.with_extension("old"));
        std::fs::rename(&final_dir, &old).map_err(|e| TrainError::io(&final_dir, e))?;
        std::fs::rename(&tmp, &final_dir).map_err(|e| TrainError::io(&final_dir, e))?;
        let _ = std::fs::remove_dir_all(&old);
    } else {
        std::fs::rename(&tmp, &final_dir).map_err(|e| TrainError::io(&final_dir, e))?;
    }
    fsutil::sync_dir(run_dir)?;
    if keep_last > 0 {
        let all = list(run_dir)?;
        let n = all.len();
        for (_, dir) in all.into_iter().take(n.saturating_sub(keep_last)) {
            std::fs::remove_dir_all(&dir).map_err(|e| TrainError::io(&dir, e))?;
        }
    }
    Ok(final_dir)
}

fn write_files(
    dir: &Path,
    vars: &[(String, Var)],
    opt: &AdamW,
    state: &TrainerState,
    files: &CheckpointFiles,
) -> Result<()> {
    let mut tensors = BTreeMap::new();
    for (name, var) in vars {
        tensors.insert(name.clone(), HostTensor::from_tensor(var.as_tensor())?);
    }
    let mut meta = BTreeMap::new();
    meta.insert("format".to_string(), "neurofm-model".to_string());
    meta.insert("step".to_string(), state.step.to_string());
    let p = dir.join(MODEL_FILE);
    fsutil::write_synced(&p, &st::serialize(&p, &tensors, &meta)?)?;
    let p = dir.join(OPTIMIZER_FILE);
    fsutil::write_synced(&p, &st::serialize(&p, &opt.host_state()?, &opt.metadata())?)?;
    let p = dir.join(CONFIG_FILE);
    fsutil::write_synced(&p, &fsutil::to_json(&p, &files.config)?)?;
    if let Some(tok) = &files.tokenizer {
        let p = dir.join(TOKENIZER_FILE);
        fsutil::write_synced(&p, &fsutil::to_json(&p, tok)?)?;
    }
    for (name, value) in &files.extra {
        let p = dir.join(name);
        fsutil::write_synced(&p, &fsutil::to_json(&p, value)?)?;
    }
    let p = dir.join(STATE_FILE);
    fsutil::write_synced(&p, &fsutil::to_json(&p, state)?)?;
    Ok(())
}

/// Complete checkpoints in `run_dir` (those with a `trainer_state.json`), oldest first.
pub fn list(run_dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(run_dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(TrainError::io(run_dir, e)),
    };
    for entry in rd {
        let entry = entry.map_err(|e| TrainError::io(run_dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(n) = name
            .strip_prefix("step-")
            .and_then(|s| s.parse::<u64>().ok())
        {
            let path = entry.path();
            if path.join(STATE_FILE).is_file() {
                out.push((n, path));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The newest complete checkpoint in `run_dir`.
pub fn latest(run_dir: &Path) -> Result<Option<PathBuf>> {
    Ok(list(run_dir)?.pop().map(|(_, p)| p))
}

/// A checkpoint directory read back (weights are applied separately with [`load_strict`]).
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub dir: PathBuf,
    pub state: TrainerState,
    pub config: serde_json::Value,
    pub tokenizer: Option<serde_json::Value>,
}

impl Checkpoint {
    /// Reads `trainer_state.json`, `config.json` and `tokenizer.json` (if present) of `dir`.
    pub fn load(dir: &Path) -> Result<Checkpoint> {
        for f in [MODEL_FILE, OPTIMIZER_FILE, CONFIG_FILE, STATE_FILE] {
            if !dir.join(f).is_file() {
                return Err(TrainError::Checkpoint {
                    path: dir.to_path_buf(),
                    reason: format!("missing {f}"),
                });
            }
        }
        let state: TrainerState = fsutil::read_json(&dir.join(STATE_FILE))?;
        let config: serde_json::Value = fsutil::read_json(&dir.join(CONFIG_FILE))?;
        let tok_path = dir.join(TOKENIZER_FILE);
        let tokenizer = if tok_path.is_file() {
            Some(fsutil::read_json(&tok_path)?)
        } else {
            None
        };
        Ok(Checkpoint {
            dir: dir.to_path_buf(),
            state,
            config,
            tokenizer,
        })
    }

    pub fn model_path(&self) -> PathBuf {
        self.dir.join(MODEL_FILE)
    }

    pub fn optimizer_path(&self) -> PathBuf {
        self.dir.join(OPTIMIZER_FILE)
    }
}

/// What strict loading found, by tensor name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadReport {
    /// In both the file and the model, same shape (loaded).
    pub matched: Vec<String>,
    /// In the model, not in the file (left as initialized).
    pub missing: Vec<String>,
    /// In the file, not in the model.
    pub unexpected: Vec<String>,
    /// In both, with different shapes: (name, model shape, file shape).
    pub shape_mismatch: Vec<(String, Vec<usize>, Vec<usize>)>,
}

impl LoadReport {
    /// True when nothing but matches was found.
    pub fn is_exact(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.shape_mismatch.is_empty()
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} matched, {} missing, {} unexpected, {} with another shape",
            self.matched.len(),
            self.missing.len(),
            self.unexpected.len(),
            self.shape_mismatch.len()
        )?;
        let show = |f: &mut fmt::Formatter<'_>, what: &str, names: &[String]| {
            if names.is_empty() {
                return Ok(());
            }
            let mut list: Vec<&str> = names.iter().take(8).map(String::as_str).collect();
            if names.len() > 8 {
                list.push("…");
            }
            write!(f, "; {what}: {}", list.join(", "))
        };
        show(f, "missing", &self.missing)?;
        show(f, "unexpected", &self.unexpected)?;
        for (name, want, got) in self.shape_mismatch.iter().take(8) {
            write!(f, "; `{name}` model {want:?} file {got:?}")?;
        }
        Ok(())
    }
}

/// Loads the tensors of safetensors file `path` into the variables of `varmap` by name.
/// Fails on unexpected tensors and shape mismatches, and on missing ones unless
/// `allow_missing`; nothing is modified when it fails.
pub fn load_strict(path: &Path, varmap: &VarMap, allow_missing: bool) -> Result<LoadReport> {
    load_strict_vars(path, &sorted_vars(varmap), allow_missing)
}

/// [`load_strict`] on an explicit variable list.
pub fn load_strict_vars(
    path: &Path,
    vars: &[(String, Var)],
    allow_missing: bool,
) -> Result<LoadReport> {
    let loaded = st::load(path)?;
    let mut report = LoadReport::default();
    let mut to_set = Vec::new();
    for (name, var) in vars {
        match loaded.tensors.get(name) {
            None => report.missing.push(name.clone()),
            Some(t) if t.shape.as_slice() != var.as_tensor().dims() => {
                report.shape_mismatch.push((
                    name.clone(),
                    var.as_tensor().dims().to_vec(),
                    t.shape.clone(),
                ))
            }
            Some(t) => {
                report.matched.push(name.clone());
                to_set.push((var, t));
            }
        }
    }
    let names: std::collections::BTreeSet<&str> = vars.iter().map(|(n, _)| n.as_str()).collect();
    report.unexpected = loaded
        .tensors
        .keys()
        .filter(|k| !names.contains(k.as_str()))
        .cloned()
        .collect();
    if !report.unexpected.is_empty()
        || !report.shape_mismatch.is_empty()
        || (!allow_missing && !report.missing.is_empty())
    {
        return Err(TrainError::Mismatch {
            path: path.to_path_buf(),
            report: Box::new(report),
        });
    }
    for (var, t) in to_set {
        let v = var.as_tensor();
        var.set(&t.to_tensor(v.device())?.to_dtype(v.dtype())?)?;
    }
    Ok(report)
}
