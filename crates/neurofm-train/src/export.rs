//! Export a checkpoint's weights for other frameworks: one safetensors file whose tensor names
//! mirror the PyTorch module tree (the names the models use in `vb.pp(...)`), with metadata
//! `channels` (JSON list), `recipe_hash`, `tokenizer` (JSON or `null`), `model_kind`,
//! `neurofm_version`, `step`, `format = "pt"`; the checkpoint's `config.json` (the model
//! configuration) is copied beside it.
//!
//! A check file `<out>.check.json` records a fixed input, the output of one linear layer of the
//! model (the patch embedding when there is one) computed by candle, and every tensor's shape,
//! so that an independent reader (`scripts/check/export_numpy.py`) can recompute it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Module, Tensor};
use serde::{Deserialize, Serialize};

use crate::checkpoint::Checkpoint;
use crate::error::{Result, TrainError};
use crate::fsutil;
use crate::st;

/// What `export` wrote.
#[derive(Debug, Clone)]
pub struct ExportSummary {
    pub weights: PathBuf,
    pub config: PathBuf,
    pub check: PathBuf,
    pub n_tensors: usize,
    pub n_parameters: usize,
}

/// The check file beside the export.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExportCheck {
    /// Module prefix of the linear layer (`<linear>.weight` `[out, in]`, `<linear>.bias` `[out]`).
    pub linear: String,
    /// `[rows, in]`.
    pub input: Vec<Vec<f32>>,
    /// `input · weightᵀ + bias`, `[rows, out]`, computed by candle.
    pub output: Vec<Vec<f32>>,
    /// Every tensor's shape.
    pub shapes: BTreeMap<String, Vec<usize>>,
    /// Metadata keys the file must carry.
    pub metadata: BTreeMap<String, String>,
}

/// Exports checkpoint `ckpt_dir` to `out` (safetensors), `config.json` beside it and
/// `<out>.check.json`.
pub fn export(ckpt_dir: &Path, out: &Path) -> Result<ExportSummary> {
    let ckpt = Checkpoint::load(ckpt_dir)?;
    let model = st::load(&ckpt.model_path())?;
    let s = &ckpt.state;
    let mut meta = BTreeMap::new();
    let channels = serde_json::to_string(&s.channels).map_err(|source| TrainError::Json {
        path: out.to_path_buf(),
        source,
    })?;
    meta.insert("channels".to_string(), channels);
    meta.insert(
        "recipe_hash".to_string(),
        s.recipe_hash.clone().unwrap_or_default(),
    );
    meta.insert(
        "tokenizer".to_string(),
        ckpt.tokenizer
            .as_ref()
            .map(|t| t.to_string())
            .unwrap_or_else(|| "null".to_string()),
    );
    meta.insert("model_kind".to_string(), s.model_kind.clone());
    meta.insert("neurofm_version".to_string(), s.neurofm_version.clone());
    meta.insert("step".to_string(), s.step.to_string());
    meta.insert("format".to_string(), "pt".to_string());

    if let Some(parent) = out.parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent).map_err(|e| TrainError::io(parent, e))?;
        }
    }
    st::save(out, &model.tensors, &meta)?;
    let config_path = out.with_file_name("config.json");
    // The model configuration exactly as the checkpoint holds it (it rebuilds the model).
    fsutil::write_atomic(&config_path, &fsutil::to_json(&config_path, &ckpt.config)?)?;

    let linear = pick_linear(&model.tensors).ok_or_else(|| TrainError::Checkpoint {
        path: ckpt.model_path(),
        reason: "no linear layer (`<name>.weight` [out, in] with `<name>.bias` [out]) to check"
            .into(),
    })?;
    let (w, b) = match (
        model.tensors.get(&format!("{linear}.weight")),
        model.tensors.get(&format!("{linear}.bias")),
    ) {
        (Some(w), Some(b)) => (w, b),
        _ => {
            return Err(TrainError::Checkpoint {
                path: ckpt.model_path(),
                reason: format!("linear `{linear}` vanished"),
            })
        }
    };
    let dev = Device::Cpu;
    let n_in = w.shape.get(1).copied().unwrap_or(0);
    let rows = 3usize;
    let input: Vec<f32> = (0..rows * n_in)
        .map(|i| ((i as f32) * 0.37).sin() * 1.5)
        .collect();
    let x = Tensor::from_slice(&input, (rows, n_in), &dev)?;
    let layer = candle_nn::Linear::new(w.to_tensor(&dev)?, Some(b.to_tensor(&dev)?));
    let y = layer.forward(&x)?.to_vec2::<f32>()?;
    let check = ExportCheck {
        linear,
        input: input.chunks(n_in.max(1)).map(|c| c.to_vec()).collect(),
        output: y,
        shapes: model
            .tensors
            .iter()
            .map(|(k, t)| (k.clone(), t.shape.clone()))
            .collect(),
        metadata: meta,
    };
    let check_path = PathBuf::from(format!("{}.check.json", out.display()));
    fsutil::write_atomic(&check_path, &fsutil::to_json(&check_path, &check)?)?;
    Ok(ExportSummary {
        weights: out.to_path_buf(),
        config: config_path,
        check: check_path,
        n_tensors: model.tensors.len(),
        n_parameters: model.tensors.values().map(|t| t.data.len()).sum(),
    })
}

/// The patch embedding's linear layer if there is one, else the first linear layer by name.
fn pick_linear(tensors: &BTreeMap<String, st::HostTensor>) -> Option<String> {
    let linears: Vec<String> = tensors
        .iter()
        .filter_map(|(k, t)| {
            let prefix = k.strip_suffix(".weight")?;
            let bias = tensors.get(&format!("{prefix}.bias"))?;
            (t.shape.len() == 2 && bias.shape.len() == 1 && bias.shape[0] == t.shape[0])
                .then(|| prefix.to_string())
        })
        .collect();
    linears
        .iter()
        .find(|p| p.contains("patch_embed"))
        .or_else(|| linears.first())
        .cloned()
}
