//! neurofm models in candle, with differentiable building blocks.
//!
//! - [`mae::Mae`]: masked autoencoder over per-channel patch tokens (EEG/MEG foundation
//!   model pretraining, LaBraM / CBraMod style).
//! - [`gpt::Gpt`]: causal transformer over discrete tokens (next-token prediction).
//!
//! Both implement [`Pretrainable`], the interface the training engine and the evaluation
//! code use. Variable names mirror a PyTorch module tree (`patch_embed.proj.weight`,
//! `blocks.0.attn.qkv.weight`, `blocks.0.norm1.weight`, ...), so checkpoints load in PyTorch
//! with the same keys (see `scripts/check/torch_mae_parity.py`).
//!
//! candle's fused softmax / layer-norm ops have no backward pass; [`ops`] provides versions
//! that do, and `tests/gradients.rs` checks every trained module against finite differences.

pub mod adamw;
pub mod attention;
mod block;
pub mod error;
pub mod fused;
pub mod gpt;
pub mod gradcheck;
pub mod layers;
pub mod mae;
pub mod mask;
pub mod objective;
pub mod ops;
pub mod vmath;

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

pub use error::ModelError;
pub use gpt::{Gpt, GptConfig};
pub use mae::{Mae, MaeConfig, MaeOutput};

/// One training / evaluation batch.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Continuous signal windows `[B, C, T]` (f32).
    pub x: Tensor,
    /// Channel ids `[C]` (u32): index into the 10-05 table, see
    /// `neurofm_tokenize::channels::channel_id`.
    pub channel_ids: Tensor,
    /// Discrete tokens `[B, L]` (u32) for token models.
    pub tokens: Option<Tensor>,
}

/// What the training engine and the evaluation code need from a model.
pub trait Pretrainable: Send + Sync {
    /// The scalar pretraining loss of `batch`. Any randomness (e.g. the patch mask) is a pure
    /// function of `(seed, step)`.
    fn loss(&self, batch: &Batch, seed: u64, step: u64) -> Result<Tensor>;
    /// Pooled features `[B, d_model]`.
    fn encode(&self, batch: &Batch) -> Result<Tensor>;
    /// Encoder outputs of every token, `[B, C, P, d_model]` (per channel `c`, its `P` tokens in
    /// time order), for the readouts of [`Pool`].
    fn encode_tokens(&self, batch: &Batch) -> Result<Tensor> {
        let _ = batch;
        candle_core::bail!("this model does not expose per-token encoder outputs")
    }
    /// Whether the model has a class token ([`Pool::Cls`]).
    fn has_cls_token(&self) -> bool {
        false
    }
}

/// How per-token encoder outputs become one feature vector per window (`--pool`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Pool {
    /// Mean over every token: `[B, d_model]`.
    #[default]
    Mean,
    /// Mean over time per channel, concatenated in the task's channel order: `[B, C·d_model]`,
    /// so the topography survives.
    Channel,
    /// The class token's output (models with a class token only).
    Cls,
    /// A learned attention pooling (finetuning only: its query is trained with the head).
    Attention,
}

impl Pool {
    pub fn as_str(self) -> &'static str {
        match self {
            Pool::Mean => "mean",
            Pool::Channel => "channel",
            Pool::Cls => "cls",
            Pool::Attention => "attention",
        }
    }

    /// Feature width for `n_channels` channels of a `d_model`-wide encoder (attention pooling:
    /// `d_model`).
    pub fn dim(self, n_channels: usize, d_model: usize) -> usize {
        match self {
            Pool::Channel => n_channels * d_model,
            _ => d_model,
        }
    }

    /// Pools `tokens` `[B, C, P, d]` (mean and channel readouts; the others need the model).
    pub fn pool_tokens(self, tokens: &Tensor) -> Result<Tensor> {
        let (b, c, p, d) = tokens.dims4()?;
        match self {
            Pool::Mean => tokens.reshape((b, c * p, d))?.mean(1),
            Pool::Channel => tokens.mean(2)?.reshape((b, c * d)),
            Pool::Cls | Pool::Attention => candle_core::bail!(
                "pool `{}` is not a fixed readout of the token outputs",
                self.as_str()
            ),
        }
    }
}

/// Any model's configuration, tagged by `type` (`"mae"` or `"gpt"`): what `config.json`
/// of a checkpoint holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ModelConfig {
    Mae(MaeConfig),
    Gpt(GptConfig),
}

impl ModelConfig {
    /// Checks every field.
    pub fn validate(&self) -> std::result::Result<(), ModelError> {
        match self {
            ModelConfig::Mae(c) => c.validate(),
            ModelConfig::Gpt(c) => c.validate(),
        }
    }

    /// Builds the model, creating or loading its variables through `vb`.
    pub fn build(&self, vb: VarBuilder) -> Result<Box<dyn Pretrainable>> {
        Ok(match self {
            ModelConfig::Mae(c) => Box::new(Mae::new(c, vb)?),
            ModelConfig::Gpt(c) => Box::new(Gpt::new(c, vb)?),
        })
    }
}
