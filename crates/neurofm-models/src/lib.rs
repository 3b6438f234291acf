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
