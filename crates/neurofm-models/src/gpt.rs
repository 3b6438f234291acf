//! Causal transformer over discrete tokens.
//!
//! The decoder-only language model of "Improving Language Understanding by Generative
//! Pre-Training" (Radford et al., 2018) / GPT-2 (Radford et al., 2019) with pre-norm blocks,
//! trained by next-token cross-entropy on quantized neural signals (see
//! `neurofm_tokenize::quantize`), as in neural-signal GPTs such as Neuro-GPT (Cui et al.,
//! 2024).
//!
//! Module tree (PyTorch names): `tok_embed`, `pos_embed`, `blocks.{i}.{norm1,attn.qkv,
//! attn.proj,norm2,mlp.fc1,mlp.fc2}`, `norm`, `head` (no bias).

use candle_core::{DType, Module, Result, Tensor, D};
use candle_nn::{Embedding, Init, Linear, VarBuilder};
use serde::{Deserialize, Serialize};

use crate::error::{check, ModelError};
use crate::layers::{linear, Block, BlockSpec, LayerNorm};
use crate::ops::{log_softmax_last_dim, widened};
use crate::{Batch, Pretrainable};

/// Configuration of [`Gpt`]. Missing keys take the `base` preset's values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GptConfig {
    /// Number of distinct tokens.
    pub vocab_size: usize,
    /// Token width.
    pub d_model: usize,
    /// Transformer blocks.
    pub depth: usize,
    /// Attention heads (must divide `d_model`).
    pub n_heads: usize,
    /// Hidden width of the MLPs.
    pub mlp_dim: usize,
    /// Longest sequence (size of the position embedding).
    pub max_len: usize,
    /// Layer-norm epsilon.
    pub layer_norm_eps: f64,
    /// Bias in the q/k/v projection.
    pub qkv_bias: bool,
}

impl Default for GptConfig {
    fn default() -> Self {
        Self::base()
    }
}

impl GptConfig {
    /// Preset names.
    pub const PRESETS: &'static str = "tiny, base";

    /// A small model for tests and smoke runs (256 tokens = 8-bit µ-law).
    pub fn tiny() -> Self {
        Self {
            vocab_size: 256,
            d_model: 64,
            depth: 2,
            n_heads: 4,
            mlp_dim: 256,
            max_len: 256,
            layer_norm_eps: 1e-5,
            qkv_bias: true,
        }
    }

    /// The default pretraining size.
    pub fn base() -> Self {
        Self {
            vocab_size: 256,
            d_model: 256,
            depth: 8,
            n_heads: 8,
            mlp_dim: 1024,
            max_len: 1024,
            layer_norm_eps: 1e-5,
            qkv_bias: true,
        }
    }

    /// `"tiny"` or `"base"`.
    pub fn preset(name: &str) -> std::result::Result<Self, ModelError> {
        match name {
            "tiny" => Ok(Self::tiny()),
            "base" => Ok(Self::base()),
            _ => Err(ModelError::UnknownPreset {
                model: "gpt",
                name: name.to_string(),
                known: Self::PRESETS,
            }),
        }
    }

    /// Checks every field.
    pub fn validate(&self) -> std::result::Result<(), ModelError> {
        check(self.vocab_size >= 2, "vocab_size", || {
            format!("must be >= 2, got {}", self.vocab_size)
        })?;
        check(self.d_model > 0, "d_model", || "must be > 0".into())?;
        check(self.depth > 0, "depth", || "must be > 0".into())?;
        check(
            self.n_heads > 0 && self.d_model.is_multiple_of(self.n_heads),
            "n_heads",
            || {
                format!(
                    "must divide d_model {} (got {})",
                    self.d_model, self.n_heads
                )
            },
        )?;
        check(self.mlp_dim > 0, "mlp_dim", || "must be > 0".into())?;
        check(self.max_len >= 2, "max_len", || {
            format!("must be >= 2, got {}", self.max_len)
        })?;
        check(
            self.layer_norm_eps > 0.0 && self.layer_norm_eps.is_finite(),
            "layer_norm_eps",
            || format!("must be > 0, got {}", self.layer_norm_eps),
        )?;
        Ok(())
    }
}

/// The causal transformer (see the module docs).
#[derive(Debug, Clone)]
pub struct Gpt {
    cfg: GptConfig,
    tok_embed: Embedding,
    pos_embed: Tensor,
    blocks: Vec<Block>,
    norm: LayerNorm,
    head: Linear,
}

impl Gpt {
    pub fn new(cfg: &GptConfig, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        let d = cfg.d_model;
        let init = Init::Randn {
            mean: 0.0,
            stdev: 0.02,
        };
        let tok_embed = Embedding::new(
            vb.pp("tok_embed")
                .get_with_hints((cfg.vocab_size, d), "weight", init)?,
            d,
        );
        let pos_embed = vb
            .pp("pos_embed")
            .get_with_hints((cfg.max_len, d), "weight", init)?;
        let spec = BlockSpec {
            dim: d,
            n_heads: cfg.n_heads,
            mlp_dim: cfg.mlp_dim,
            qkv_bias: cfg.qkv_bias,
            causal: true,
            eps: cfg.layer_norm_eps,
        };
        let blocks = (0..cfg.depth)
            .map(|i| Block::new(spec, vb.pp("blocks").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        let norm = LayerNorm::new(d, cfg.layer_norm_eps, vb.pp("norm"))?;
        let head = linear(d, cfg.vocab_size, false, vb.pp("head"))?;
        Ok(Self {
            cfg: cfg.clone(),
            tok_embed,
            pos_embed,
            blocks,
            norm,
            head,
        })
    }

    pub fn config(&self) -> &GptConfig {
        &self.cfg
    }

    fn check_tokens(&self, tokens: &Tensor) -> Result<(usize, usize)> {
        let (b, l) = tokens.dims2()?;
        if l > self.cfg.max_len {
            candle_core::bail!(
                "gpt: sequence of {l} tokens exceeds max_len {}",
                self.cfg.max_len
            );
        }
        let max = tokens
            .to_dtype(DType::U32)?
            .flatten_all()?
            .max(0)?
            .to_scalar::<u32>()?;
        if max as usize >= self.cfg.vocab_size {
            candle_core::bail!(
                "gpt: token {max} out of range (vocab_size = {})",
                self.cfg.vocab_size
            );
        }
        Ok((b, l))
    }

    /// Final hidden states `[B, L, d_model]` (after the last layer norm).
    fn hidden(&self, tokens: &Tensor) -> Result<Tensor> {
        let (_, l) = tokens.dims2()?;
        let mut h = self
            .tok_embed
            .forward(&tokens.to_dtype(DType::U32)?)?
            .broadcast_add(&self.pos_embed.narrow(0, 0, l)?)?;
        for blk in &self.blocks {
            h = blk.forward(&h)?;
        }
        self.norm.forward(&h)
    }

    /// Next-token logits `[B, L, vocab_size]`.
    pub fn logits(&self, tokens: &Tensor) -> Result<Tensor> {
        self.check_tokens(tokens)?;
        self.head.forward(&self.hidden(tokens)?)
    }

    /// Mean next-token cross-entropy (nats) of `tokens` `[B, L]` (L >= 2).
    pub fn forward_loss(&self, tokens: &Tensor) -> Result<Tensor> {
        let (b, l) = self.check_tokens(tokens)?;
        if l < 2 {
            candle_core::bail!("gpt: need at least 2 tokens per sequence, got {l}");
        }
        let tokens = tokens.to_dtype(DType::U32)?;
        let inp = tokens.narrow(1, 0, l - 1)?;
        let tgt = tokens.narrow(1, 1, l - 1)?.contiguous()?;
        let logits = self.head.forward(&self.hidden(&inp)?)?; // [B, L-1, V]

        // In f32 for bf16 / f16 logits (a half-precision sum of B (L-1) terms stalls).
        widened([&logits], |[logits]| {
            let logp = log_softmax_last_dim(logits)?;
            let picked = logp.gather(&tgt.unsqueeze(D::Minus1)?, D::Minus1)?; // [B, L-1, 1]
            picked.sum_all()? * (-1.0 / (b * (l - 1)) as f64)
        })
    }

    /// Mean-pooled final hidden states `[B, d_model]`.
    pub fn encode(&self, tokens: &Tensor) -> Result<Tensor> {
        self.check_tokens(tokens)?;
        self.hidden(tokens)?.mean(1)
    }
}

impl Pretrainable for Gpt {
    fn loss(&self, batch: &Batch, _seed: u64, _step: u64) -> Result<Tensor> {
        match &batch.tokens {
            Some(t) => self.forward_loss(t),
            None => candle_core::bail!("gpt: the batch has no tokens (a tokenizer must run first)"),
        }
    }

    fn encode(&self, batch: &Batch) -> Result<Tensor> {
        match &batch.tokens {
            Some(t) => Gpt::encode(self, t),
            None => candle_core::bail!("gpt: the batch has no tokens (a tokenizer must run first)"),
        }
    }
}
