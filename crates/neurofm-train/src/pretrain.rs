//! `neurofm pretrain`: the TOML configuration, its resolution into a model, a data source and an
//! engine configuration, with every impossible shape refused before training, naming the key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{Device, Tensor};
use neurofm_data::store::Store;
use neurofm_data::window::{LabelSource, WindowConfig, WindowIndex};
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
}

/// Opens the store, builds the windows and checks the model against them.
pub fn resolve(cfg: &PretrainConfig) -> Result<Resolved> {
    let model = cfg.model_config()?;
    let engine = cfg.train.engine_config();
    engine.validate()?;
    let store = Store::open(&cfg.data.store).map_err(|e| TrainError::Config {
        field: "data.store".into(),
        reason: e.to_string(),
    })?;
    let wcfg = cfg.window_config(&store)?;
    let index = WindowIndex::build(&store, &wcfg).map_err(|e| TrainError::Config {
        field: "data.window".into(),
        reason: e.to_string(),
    })?;
    let source = StoreWindows::new(store, index, cfg.data.channels.as_deref())?;
    check_shapes(&model, &source, &wcfg)?;
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

/// Mean square of the samples of up to `max_windows` windows spread evenly over `source`:
/// the masked-reconstruction loss (mean squared error per masked sample) of a model that
/// always predicts zero — the level a pretraining loss must go below to have learned anything.
pub fn mean_square(source: &StoreWindows, max_windows: usize) -> Result<f64> {
    let n = source.len();
    let take = n.min(max_windows.max(1));
    let mut buf = vec![0f32; source.n_channels() * source.window_len()];
    let (mut sum, mut count) = (0f64, 0usize);
    for k in 0..take {
        let i = k * n / take;
        source.read(i, &mut buf)?;
        sum += buf
            .iter()
            .map(|&v| f64::from(v) * f64::from(v))
            .sum::<f64>();
        count += buf.len();
    }
    Ok(sum / count.max(1) as f64)
}
