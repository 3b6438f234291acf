//! `neurofm pretrain`: the TOML configuration, its resolution into a model, a data source and an
//! engine configuration, with every impossible shape refused before training, naming the key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{Device, Tensor};
use neurofm_data::store::Store;
use neurofm_data::window::{LabelSource, WindowConfig, WindowIndex};
use neurofm_models::objective::{trivial_loss, MaeObjective, SpectralTarget, Taper};
use neurofm_models::{Batch, GptConfig, MaeConfig, ModelConfig, Pretrainable};
use neurofm_tokenize::Tokenizer;
use serde::{Deserialize, Serialize};

use crate::data::StoreWindows;
use crate::error::{Result, TrainError};
use crate::optim::AdamWConfig;
use crate::trainer::{Objective, TrainConfig};

/// A pretrain configuration file (`configs/pretrain/<name>.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PretrainConfig {
    pub data: DataSection,
    pub model: ModelSection,
    pub train: TrainSection,
    /// `[tokenizer]`: the fitted discrete tokenizer a token model (`kind = "gpt"`) reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer: Option<TokenizerSection>,
    /// `[objective]`: what a masked autoencoder predicts for its masked patches (default raw).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objective: Option<ObjectiveSection>,
}

/// `[objective]` of a masked autoencoder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectiveSection {
    /// `raw` (masked-patch MSE), `raw-normalized` (each target patch z-scored), `spectral`
    /// (standardized log-amplitude spectrum and phase of each masked patch).
    pub kind: String,
    /// `spectral`: amplitude bands `[[lo, hi], ...]` in Hz (half-open); absent = every rfft bin.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bands_hz: Vec<[f64; 2]>,
    /// `spectral`: weight of the phase loss (cos, sin of every bin) against the amplitude loss.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase_weight: Option<f64>,
    /// `spectral`: taper before the DFT, `hann` (default) or `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taper: Option<Taper>,
    /// Windows (spread evenly over the store) used to fit the target standardization and to
    /// compute the trivial loss (default 512).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fit_windows: Option<usize>,
}

impl ObjectiveSection {
    /// The objective for patches of `patch_len` samples at `sfreq_hz` (unfitted).
    pub fn resolve(&self, patch_len: usize, sfreq_hz: f64) -> Result<MaeObjective> {
        let bad = |field: &str, reason: String| TrainError::Config {
            field: format!("objective.{field}"),
            reason,
        };
        let spectral_only = |field: &str| {
            Err(bad(
                field,
                format!(
                    "only applies to kind = \"spectral\" (kind is \"{}\")",
                    self.kind
                ),
            ))
        };
        if self.kind != "spectral" {
            if !self.bands_hz.is_empty() {
                return spectral_only("bands_hz");
            }
            if self.phase_weight.is_some() {
                return spectral_only("phase_weight");
            }
            if self.taper.is_some() {
                return spectral_only("taper");
            }
        }
        match self.kind.as_str() {
            "raw" => Ok(MaeObjective::Raw),
            "raw-normalized" => Ok(MaeObjective::RawNormalized),
            "spectral" => {
                let k = SpectralTarget::n_bins(patch_len);
                let df = sfreq_hz / patch_len as f64;
                let mut bands = Vec::new();
                for (i, &[lo, hi]) in self.bands_hz.iter().enumerate() {
                    // Bins whose centre frequency f = j * df lies in [lo, hi).
                    let first = (lo / df).ceil().max(0.0) as usize;
                    let end = ((hi / df).ceil().max(0.0) as usize).min(k);
                    if !(lo.is_finite() && hi.is_finite() && lo < hi) || first >= end {
                        return Err(bad(
                            "bands_hz",
                            format!(
                                "band {i} = [{lo}, {hi}) Hz holds no rfft bin of a {patch_len}-sample patch at {sfreq_hz} Hz (bins every {df} Hz up to {} Hz)",
                                (k - 1) as f64 * df
                            ),
                        ));
                    }
                    bands.push([first, end]);
                }
                let t = SpectralTarget::new(
                    self.taper.unwrap_or_default(),
                    bands,
                    self.phase_weight.unwrap_or(1.0),
                );
                t.validate(patch_len)
                    .map_err(|e| bad("phase_weight", e.to_string()))?;
                Ok(MaeObjective::Spectral(t))
            }
            other => Err(bad(
                "kind",
                format!("unknown objective `{other}`; supported: raw, raw-normalized, spectral"),
            )),
        }
    }
}

/// `[tokenizer]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenizerSection {
    /// A tokenizer JSON written by `neurofm tokenizer train` (e.g. a mu-law quantizer).
    pub path: PathBuf,
}

/// `[data]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    /// The store directory.
    pub store: PathBuf,
    /// Window length and stride; when absent, the window step recorded by `neurofm prepare`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<WindowSettings>,
    /// Channels the model sees, in order (default: all channels of the store).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<Vec<String>>,
    /// Pretrain only on these subjects (default: every subject of the store).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subjects: Option<Vec<String>>,
    /// Never pretrain on these subjects (e.g. those a downstream task evaluates on).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_subjects: Vec<String>,
}

/// `[data.window]`
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowSettings {
    pub length_s: f64,
    pub stride_s: f64,
}

/// `[model]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// `"mae"`.
    pub kind: String,
    /// A preset of that kind (`"tiny"`, `"base"`).
    #[serde(default = "default_preset")]
    pub preset: String,
    /// Fields of the model configuration that replace the preset's values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub overrides: BTreeMap<String, serde_json::Value>,
}

fn default_preset() -> String {
    "tiny".into()
}

/// `[train]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSection {
    pub steps: u64,
    pub batch_size: usize,
    pub lr: f64,
    #[serde(default)]
    pub min_lr: f64,
    #[serde(default)]
    pub warmup_steps: u64,
    #[serde(default = "default_weight_decay")]
    pub weight_decay: f64,
    #[serde(default = "default_grad_clip")]
    pub grad_clip: f64,
    #[serde(default = "one")]
    pub accumulate: usize,
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub checkpoint_every: u64,
    #[serde(default = "default_keep_last")]
    pub keep_last: usize,
    /// The run directory (`checkpoints/<run>`).
    pub out: PathBuf,
    #[serde(default = "default_beta1")]
    pub beta1: f64,
    #[serde(default = "default_beta2")]
    pub beta2: f64,
    #[serde(default = "default_eps")]
    pub eps: f64,
    #[serde(default = "default_prefetch")]
    pub prefetch: usize,
    #[serde(default = "default_workers")]
    pub workers: usize,
}

fn default_weight_decay() -> f64 {
    0.05
}
fn default_grad_clip() -> f64 {
    1.0
}
fn one() -> usize {
    1
}
fn default_keep_last() -> usize {
    3
}
fn default_beta1() -> f64 {
    0.9
}
fn default_beta2() -> f64 {
    0.999
}
fn default_eps() -> f64 {
    1e-8
}
fn default_prefetch() -> usize {
    4
}
fn default_workers() -> usize {
    2
}

impl TrainSection {
    pub fn engine_config(&self) -> TrainConfig {
        TrainConfig {
            steps: self.steps,
            batch_size: self.batch_size,
            accumulate: self.accumulate,
            lr: self.lr,
            min_lr: self.min_lr,
            warmup_steps: self.warmup_steps,
            adamw: AdamWConfig {
                beta1: self.beta1,
                beta2: self.beta2,
                eps: self.eps,
                weight_decay: self.weight_decay,
            },
            grad_clip: self.grad_clip,
            seed: self.seed,
            checkpoint_every: self.checkpoint_every,
            keep_last: self.keep_last,
            prefetch: self.prefetch,
            workers: self.workers,
        }
    }
}

impl PretrainConfig {
    /// Parses TOML text; `path` names the file in errors (serde names the unknown key).
    pub fn from_toml(path: &Path, text: &str) -> Result<PretrainConfig> {
        toml::from_str(text).map_err(|e| TrainError::Config {
            field: path.display().to_string(),
            reason: e.to_string(),
        })
    }

    /// Reads a TOML file.
    pub fn read(path: &Path) -> Result<PretrainConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
        Self::from_toml(path, &text)
    }

    /// The tokenizer of `[tokenizer]`, if any.
    pub fn load_tokenizer(&self) -> Result<Option<Tokenizer>> {
        match &self.tokenizer {
            None => Ok(None),
            Some(t) => Tokenizer::load(&t.path)
                .map(Some)
                .map_err(|e| TrainError::Config {
                    field: "tokenizer.path".into(),
                    reason: e.to_string(),
                }),
        }
    }

    /// The model configuration: preset, then overrides, then validation. A token model takes
    /// its `vocab_size` from the tokenizer unless overridden (and then it must agree).
    pub fn model_config(&self) -> Result<ModelConfig> {
        let m = &self.model;
        let cfg = match m.kind.as_str() {
            "mae" => {
                if self.tokenizer.is_some() {
                    return Err(TrainError::Config {
                        field: "tokenizer".into(),
                        reason: "the masked autoencoder reads continuous patches; remove [tokenizer] or use kind = \"gpt\"".into(),
                    });
                }
                let base = MaeConfig::preset(&m.preset).map_err(|e| TrainError::Config {
                    field: "model.preset".into(),
                    reason: e.to_string(),
                })?;
                ModelConfig::Mae(apply_overrides(base, &m.overrides, "mae")?)
            }
            "gpt" => {
                if self.objective.is_some() {
                    return Err(TrainError::Config {
                        field: "objective".into(),
                        reason: "a gpt model predicts the next token; [objective] applies to kind = \"mae\"".into(),
                    });
                }
                let tok = self.load_tokenizer()?.ok_or_else(|| TrainError::Config {
                    field: "tokenizer.path".into(),
                    reason: "a gpt model reads discrete tokens: give [tokenizer] path = a tokenizer JSON from `neurofm tokenizer train` (e.g. configs/tokenizer/mulaw.toml)".into(),
                })?;
                let vocab = tok.vocab_size().ok_or_else(|| TrainError::Config {
                    field: "tokenizer.path".into(),
                    reason: format!(
                        "the {} tokenizer is continuous; a gpt model needs a discrete one (mulaw)",
                        tok.type_name()
                    ),
                })?;
                let mut base = GptConfig::preset(&m.preset).map_err(|e| TrainError::Config {
                    field: "model.preset".into(),
                    reason: e.to_string(),
                })?;
                base.vocab_size = vocab;
                let cfg: GptConfig = apply_overrides(base, &m.overrides, "gpt")?;
                if cfg.vocab_size != vocab {
                    return Err(TrainError::Config {
                        field: "model.overrides.vocab_size".into(),
                        reason: format!(
                            "{} differs from the tokenizer's vocabulary of {vocab} tokens",
                            cfg.vocab_size
                        ),
                    });
                }
                ModelConfig::Gpt(cfg)
            }
            other => {
                return Err(TrainError::Config {
                    field: "model.kind".into(),
                    reason: format!("unknown model kind `{other}`; supported: mae, gpt"),
                })
            }
        };
        cfg.validate().map_err(|e| TrainError::Config {
            field: match &e {
                neurofm_models::ModelError::Config { field, .. } => {
                    format!("model.overrides.{field}")
                }
                _ => "model".into(),
            },
            reason: e.to_string(),
        })?;
        Ok(cfg)
    }

    /// The window configuration: `[data.window]`, else the window step recorded in the store.
    pub fn window_config(&self, store: &Store) -> Result<WindowConfig> {
        if let Some(w) = self.data.window {
            return Ok(WindowConfig {
                length_s: w.length_s,
                stride_s: w.stride_s,
                labels: LabelSource::None,
            });
        }
        let recorded = WindowConfig::from_store(store).map_err(|e| TrainError::Config {
            field: "data.window".into(),
            reason: e.to_string(),
        })?;
        let mut w = recorded.ok_or_else(|| TrainError::Config {
            field: "data.window".into(),
            reason: format!(
                "missing, and the store {} records no window step (prepare it with a recipe that ends in `window`, or set length_s and stride_s)",
                self.data.store.display()
            ),
        })?;
        // Pretraining ignores labels: every window of every recording is used.
        w.labels = LabelSource::None;
        Ok(w)
    }
}

/// `base` with the fields of `overrides` replaced; an unknown field fails naming it.
fn apply_overrides<T: Serialize + serde::de::DeserializeOwned>(
    base: T,
    overrides: &BTreeMap<String, serde_json::Value>,
    kind: &str,
) -> Result<T> {
    let mut v = serde_json::to_value(base).map_err(|e| TrainError::Config {
        field: "model".into(),
        reason: e.to_string(),
    })?;
    if let serde_json::Value::Object(map) = &mut v {
        for (k, val) in overrides {
            if !map.contains_key(k) {
                return Err(TrainError::Config {
                    field: format!("model.overrides.{k}"),
                    reason: format!(
                        "unknown field; the {kind} configuration has {}",
                        map.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                });
            }
            map.insert(k.clone(), val.clone());
        }
    }
    serde_json::from_value(v).map_err(|e| TrainError::Config {
        field: "model.overrides".into(),
        reason: e.to_string(),
    })
}

/// Everything needed to train, resolved and checked.
pub struct Resolved {
    pub model: ModelConfig,
    pub source: Arc<StoreWindows>,
    pub channel_ids: Vec<u32>,
    pub engine: TrainConfig,
    /// The discrete tokenizer of a token model.
    pub tokenizer: Option<Tokenizer>,
    /// The loss of a predictor that ignores its input, on a sample of the windows (see
    /// [`trivial_loss`]; ln(vocabulary) for a token model).
    pub trivial_loss: f64,
    /// What that trivial predictor does.
    pub trivial_description: String,
}

/// Opens the store, builds the windows and checks the model against them.
pub fn resolve(cfg: &PretrainConfig) -> Result<Resolved> {
    let mut model = cfg.model_config()?;
    let engine = cfg.train.engine_config();
    engine.validate()?;
    let store = Store::open(&cfg.data.store).map_err(|e| TrainError::Config {
        field: "data.store".into(),
        reason: e.to_string(),
    })?;
    let wcfg = cfg.window_config(&store)?;
    let mut index = WindowIndex::build(&store, &wcfg).map_err(|e| TrainError::Config {
        field: "data.window".into(),
        reason: e.to_string(),
    })?;
    if cfg.data.subjects.is_some() || !cfg.data.exclude_subjects.is_empty() {
        index
            .retain_subjects(cfg.data.subjects.as_deref(), &cfg.data.exclude_subjects)
            .map_err(|e| TrainError::Config {
                field: if cfg.data.subjects.is_some() {
                    "data.subjects".into()
                } else {
                    "data.exclude_subjects".into()
                },
                reason: e.to_string(),
            })?;
    }
    let source = StoreWindows::new(store, index, cfg.data.channels.as_deref())?;
    check_shapes(&model, &source, &wcfg)?;
    let (trivial, trivial_description) = match &mut model {
        ModelConfig::Mae(m) => {
            if let Some(o) = &cfg.objective {
                m.objective = o.resolve(m.patch_len, source.index().sfreq_hz)?;
            }
            let n_fit = cfg
                .objective
                .as_ref()
                .and_then(|o| o.fit_windows)
                .unwrap_or(512);
            let sample = sample_windows(&source, n_fit)?;
            if let MaeObjective::Spectral(sp) = &mut m.objective {
                if !sp.is_fitted(m.patch_len) {
                    let (n, c, t) = sample.dims3()?;
                    sp.fit(&sample.reshape((n * c * (t / m.patch_len), m.patch_len))?)?;
                }
            }
            m.validate().map_err(|e| TrainError::Config {
                field: "objective".into(),
                reason: e.to_string(),
            })?;
            (
                trivial_loss(&m.objective, &sample, m.patch_len)?,
                m.objective.trivial_description().to_string(),
            )
        }
        ModelConfig::Gpt(g) => (
            (g.vocab_size as f64).ln(),
            "uniform prediction over the vocabulary (ln V)".to_string(),
        ),
    };
    let channel_ids = source
        .channel_names()
        .iter()
        .map(|n| neurofm_tokenize::channels::channel_id(n))
        .collect();
    if source.len() < engine.batch_size {
        return Err(TrainError::Config {
            field: "train.batch_size".into(),
            reason: format!(
                "{} is more than the {} windows of the store",
                engine.batch_size,
                crate::loader::WindowSource::len(&source)
            ),
        });
    }
    let tokenizer = match &model {
        ModelConfig::Gpt(_) => cfg.load_tokenizer()?,
        ModelConfig::Mae(_) => None,
    };
    Ok(Resolved {
        model,
        source: Arc::new(source),
        channel_ids,
        engine,
        tokenizer,
        trivial_loss: trivial,
        trivial_description,
    })
}

use crate::loader::WindowSource as _;

fn check_shapes(model: &ModelConfig, source: &StoreWindows, w: &WindowConfig) -> Result<()> {
    let t = source.window_len();
    let sfreq = source.index().sfreq_hz;
    if matches!(model, ModelConfig::Gpt(_)) && t < 2 {
        return Err(TrainError::Config {
            field: "data.window.length_s".into(),
            reason: format!("a window of {t} sample(s) has no next token to predict"),
        });
    }
    if let ModelConfig::Mae(m) = model {
        if m.patch_len > t {
            return Err(TrainError::Config {
                field: "model.overrides.patch_len".into(),
                reason: format!(
                    "a patch of {} samples is longer than the window ({} s at {} Hz = {} samples)",
                    m.patch_len, w.length_s, sfreq, t
                ),
            });
        }
        if !t.is_multiple_of(m.patch_len) {
            return Err(TrainError::Config {
                field: "data.window.length_s".into(),
                reason: format!(
                    "the window ({t} samples) is not a multiple of model patch_len ({})",
                    m.patch_len
                ),
            });
        }
        if t / m.patch_len > m.max_patches {
            return Err(TrainError::Config {
                field: "model.overrides.max_patches".into(),
                reason: format!(
                    "the window has {} patches, more than max_patches = {}",
                    t / m.patch_len,
                    m.max_patches
                ),
            });
        }
    }
    Ok(())
}

/// A [`Pretrainable`] model as the engine's [`Objective`]: the batch gets the channel ids.
pub struct ModelObjective {
    pub model: Box<dyn Pretrainable>,
    pub channel_ids: Tensor,
    /// For token models: each channel of each window becomes one token sequence.
    pub tokenizer: Option<Tokenizer>,
    /// Longest token sequence the model takes (sequences are cut to it).
    pub max_len: usize,
}

impl ModelObjective {
    pub fn new(model: Box<dyn Pretrainable>, channel_ids: &[u32], device: &Device) -> Result<Self> {
        Ok(ModelObjective {
            model,
            channel_ids: Tensor::from_slice(channel_ids, channel_ids.len(), device)?,
            tokenizer: None,
            max_len: usize::MAX,
        })
    }

    /// A token model: `tokenizer` turns every channel of a window into tokens; sequences are
    /// cut to the shortest in the batch and to `max_len`.
    pub fn with_tokenizer(mut self, tokenizer: Tokenizer, max_len: usize) -> Self {
        self.tokenizer = Some(tokenizer);
        self.max_len = max_len;
        self
    }

    /// Tokens `[B·C, L]` of windows `x` `[B, C, T]`.
    pub fn tokens(&self, tok: &Tokenizer, x: &Tensor) -> candle_core::Result<Tensor> {
        let (b, c, t) = x.dims3()?;
        let host = x
            .to_device(&Device::Cpu)?
            .to_dtype(candle_core::DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let mut seqs = Vec::with_capacity(b * c);
        for row in host.chunks_exact(t.max(1)) {
            let toks = tok
                .tokens(row)
                .map_err(|e| candle_core::Error::Msg(format!("tokenizer: {e}")))?
                .ok_or_else(|| candle_core::Error::Msg("tokenizer is not discrete".into()))?;
            seqs.push(toks);
        }
        let len = seqs
            .iter()
            .map(Vec::len)
            .min()
            .unwrap_or(0)
            .min(self.max_len);
        if len < 2 {
            candle_core::bail!(
                "windows give {len} token(s) per channel; next-token prediction needs 2"
            );
        }
        let flat: Vec<u32> = seqs.iter().flat_map(|s| s[..len].iter().copied()).collect();
        Tensor::from_vec(flat, (b * c, len), x.device())
    }
}

impl Objective for ModelObjective {
    fn loss(&self, x: &Tensor, seed: u64, step: u64) -> candle_core::Result<Tensor> {
        let tokens = match &self.tokenizer {
            Some(tok) => Some(self.tokens(tok, x)?),
            None => None,
        };
        let batch = Batch {
            x: x.clone(),
            channel_ids: self.channel_ids.clone(),
            tokens,
        };
        self.model.loss(&batch, seed, step)
    }
}

/// The model kind name of a configuration (`"mae"`, `"gpt"`).
pub fn kind_name(m: &ModelConfig) -> &'static str {
    match m {
        ModelConfig::Mae(_) => "mae",
        ModelConfig::Gpt(_) => "gpt",
    }
}

/// Up to `max_windows` windows spread evenly over `source`, as `[N, C, T]` f32 on the CPU.
pub fn sample_windows(source: &StoreWindows, max_windows: usize) -> Result<Tensor> {
    let n = source.len();
    let take = n.min(max_windows.max(1));
    let sz = source.n_channels() * source.window_len();
    let mut buf = vec![0f32; take * sz];
    for (k, w) in buf.chunks_mut(sz.max(1)).enumerate().take(take) {
        source.read(k * n / take, w)?;
    }
    Ok(Tensor::from_vec(
        buf,
        (take, source.n_channels(), source.window_len()),
        &Device::Cpu,
    )?)
}
