//! Masked autoencoder over per-channel patch tokens.
//!
//! The pretraining scheme of "Masked Autoencoders Are Scalable Vision Learners" (He et al.,
//! CVPR 2022) applied to multichannel neural signals as in LaBraM ("Large Brain Model for
//! Learning Generic Representations with Tremendous EEG Data in BCI", Jiang et al., ICLR
//! 2024) and CBraMod (Wang et al., ICLR 2025): each channel is cut into patches of
//! `patch_len` samples, each patch is one token carrying a learned channel embedding (its
//! index in the 10-05 table, or the "unknown" slot) and a learned time (patch index)
//! embedding. A random fraction of patches is replaced by a learned mask token (the encoder
//! sees every position, LaBraM/CBraMod style), a pre-norm transformer encodes the sequence,
//! and a light decoder (a linear head, optionally after a few transformer blocks)
//! reconstructs the raw samples of the masked patches.
//!
//! Loss: mean squared error over the masked patches, optionally plus
//! `fft_loss_weight` × the mean squared error of their Fourier amplitudes (the DFT is a
//! fixed matmul with cos/sin matrices, so it has a gradient).
//!
//! Module tree (PyTorch names): `patch_embed.proj`, `channel_embed`, `time_embed`,
//! `mask_token`, `blocks.{i}.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}`, `norm`,
//! [`decoder_embed`, `decoder_blocks.{i}.*`, `decoder_norm`,] `head`.

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::{Embedding, Init, Linear, VarBuilder};
use serde::{Deserialize, Serialize};

use crate::error::{check, ModelError};
use crate::fused;
use crate::layers::{linear, Block, BlockSpec, LayerNorm};
use crate::mask::random_patch_mask_on;
use crate::objective::{normalize_patches, MaeObjective};
use crate::{Batch, Pretrainable};

/// Configuration of [`Mae`]. Missing keys take the `base` preset's values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MaeConfig {
    /// Samples per patch (one token), e.g. 200 = 1 s at 200 Hz.
    pub patch_len: usize,
    /// Token width.
    pub d_model: usize,
    /// Encoder blocks.
    pub depth: usize,
    /// Attention heads (must divide `d_model`).
    pub n_heads: usize,
    /// Hidden width of the MLPs.
    pub mlp_dim: usize,
    /// Channel embedding slots: the 10-05 table plus one "unknown" slot.
    pub n_channel_ids: usize,
    /// Longest window, in patches (size of the time embedding).
    pub max_patches: usize,
    /// Fraction of patches masked in pretraining.
    pub mask_ratio: f64,
    /// Weight of the Fourier-amplitude loss (0 = off).
    pub fft_loss_weight: f64,
    /// Decoder transformer blocks before the linear head (0 = linear head only).
    pub decoder_depth: usize,
    /// Decoder width (used when `decoder_depth > 0`).
    pub decoder_dim: usize,
    /// Decoder attention heads (used when `decoder_depth > 0`).
    pub decoder_heads: usize,
    /// Layer-norm epsilon.
    pub layer_norm_eps: f64,
    /// Bias in the q/k/v projection.
    pub qkv_bias: bool,
    /// What the masked patches are reconstructed as (`raw` when absent, as before objectives
    /// existed).
    pub objective: MaeObjective,
}

impl Default for MaeConfig {
    fn default() -> Self {
        Self::base()
    }
}

impl MaeConfig {
    /// Preset names.
    pub const PRESETS: &'static str = "tiny, base";

    /// A small model for tests and smoke runs.
    pub fn tiny() -> Self {
        Self {
            patch_len: 200,
            d_model: 64,
            depth: 2,
            n_heads: 4,
            mlp_dim: 256,
            n_channel_ids: neurofm_tokenize::channels::n_channel_ids(),
            max_patches: 64,
            mask_ratio: 0.5,
            fft_loss_weight: 0.0,
            decoder_depth: 0,
            decoder_dim: 64,
            decoder_heads: 4,
            layer_norm_eps: 1e-5,
            qkv_bias: true,
            objective: MaeObjective::Raw,
        }
    }

    /// The default pretraining size.
    pub fn base() -> Self {
        Self {
            patch_len: 200,
            d_model: 256,
            depth: 8,
            n_heads: 8,
            mlp_dim: 1024,
            n_channel_ids: neurofm_tokenize::channels::n_channel_ids(),
            max_patches: 256,
            mask_ratio: 0.5,
            fft_loss_weight: 0.0,
            decoder_depth: 2,
            decoder_dim: 128,
            decoder_heads: 4,
            layer_norm_eps: 1e-5,
            qkv_bias: true,
            objective: MaeObjective::Raw,
        }
    }

    /// `"tiny"` or `"base"`.
    pub fn preset(name: &str) -> std::result::Result<Self, ModelError> {
        match name {
            "tiny" => Ok(Self::tiny()),
            "base" => Ok(Self::base()),
            _ => Err(ModelError::UnknownPreset {
                model: "mae",
                name: name.to_string(),
                known: Self::PRESETS,
            }),
        }
    }

    /// Checks every field.
    pub fn validate(&self) -> std::result::Result<(), ModelError> {
        check(self.patch_len >= 2, "patch_len", || {
            format!("must be >= 2, got {}", self.patch_len)
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
        check(self.n_channel_ids > 0, "n_channel_ids", || {
            "must be > 0".into()
        })?;
        check(self.max_patches > 0, "max_patches", || "must be > 0".into())?;
        check(
            self.mask_ratio > 0.0 && self.mask_ratio < 1.0,
            "mask_ratio",
            || format!("must be in (0, 1), got {}", self.mask_ratio),
        )?;
        check(
            self.fft_loss_weight >= 0.0 && self.fft_loss_weight.is_finite(),
            "fft_loss_weight",
            || format!("must be finite and >= 0, got {}", self.fft_loss_weight),
        )?;
        if self.decoder_depth > 0 {
            check(self.decoder_dim > 0, "decoder_dim", || "must be > 0".into())?;
            check(
                self.decoder_heads > 0 && self.decoder_dim.is_multiple_of(self.decoder_heads),
                "decoder_heads",
                || {
                    format!(
                        "must divide decoder_dim {} (got {})",
                        self.decoder_dim, self.decoder_heads
                    )
                },
            )?;
        }
        check(
            self.layer_norm_eps > 0.0 && self.layer_norm_eps.is_finite(),
            "layer_norm_eps",
            || format!("must be > 0, got {}", self.layer_norm_eps),
        )?;
        if let MaeObjective::Spectral(sp) = &self.objective {
            sp.validate(self.patch_len)?;
            check(self.fft_loss_weight == 0.0, "fft_loss_weight", || {
                "must be 0 with the spectral objective (its amplitude head already predicts the spectrum)".into()
            })?;
        }
        Ok(())
    }

    fn spec(&self, dim: usize, n_heads: usize) -> BlockSpec {
        BlockSpec {
            dim,
            n_heads,
            mlp_dim: if dim == self.d_model {
                self.mlp_dim
            } else {
                self.mlp_dim * dim / self.d_model
            },
            qkv_bias: self.qkv_bias,
            causal: false,
            eps: self.layer_norm_eps,
        }
    }
}

/// The losses of one masked-autoencoder step.
#[derive(Debug, Clone)]
pub struct MaeOutput {
    /// `recon_loss + fft_loss_weight * fft_loss` (scalar).
    pub loss: Tensor,
    /// The objective's loss over the masked patches (scalar): mean squared error of their
    /// samples, or for `spectral` amplitude MSE + `phase_weight` × phase MSE.
    pub recon_loss: Tensor,
    /// Mean squared error of the masked patches' Fourier amplitudes (scalar), when
    /// `fft_loss_weight > 0`.
    pub fft_loss: Option<Tensor>,
    /// Prediction for every patch: `[B, C, n_patches, patch_len]` samples (`raw`, z-scored for
    /// `raw-normalized`) or `[B, C, n_patches, amp_dim]` standardized log amplitudes
    /// (`spectral`).
    pub pred: Tensor,
}

/// The masked autoencoder (see the module docs).
#[derive(Debug, Clone)]
pub struct Mae {
    cfg: MaeConfig,
    patch_embed: Linear,
    channel_embed: Embedding,
    time_embed: Tensor,
    mask_token: Tensor,
    blocks: Vec<Block>,
    norm: LayerNorm,
    decoder_embed: Option<Linear>,
    decoder_blocks: Vec<Block>,
    decoder_norm: Option<LayerNorm>,
    head: Linear,
    /// Phase head of the `spectral` objective (`head` predicts the amplitudes).
    phase_head: Option<Linear>,
}

impl Mae {
    pub fn new(cfg: &MaeConfig, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        let d = cfg.d_model;
        let emb_init = Init::Randn {
            mean: 0.0,
            stdev: 0.02,
        };
        let patch_embed = linear(cfg.patch_len, d, true, vb.pp("patch_embed").pp("proj"))?;
        let channel_embed = Embedding::new(
            vb.pp("channel_embed")
                .get_with_hints((cfg.n_channel_ids, d), "weight", emb_init)?,
            d,
        );
        let time_embed =
            vb.pp("time_embed")
                .get_with_hints((cfg.max_patches, d), "weight", emb_init)?;
        let mask_token = vb.get_with_hints((1, 1, 1, d), "mask_token", emb_init)?;
        let blocks = (0..cfg.depth)
            .map(|i| Block::new(cfg.spec(d, cfg.n_heads), vb.pp("blocks").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        let norm = LayerNorm::new(d, cfg.layer_norm_eps, vb.pp("norm"))?;
        let (decoder_embed, decoder_blocks, decoder_norm, head_in) = if cfg.decoder_depth > 0 {
            let dd = cfg.decoder_dim;
            (
                Some(linear(d, dd, true, vb.pp("decoder_embed"))?),
                (0..cfg.decoder_depth)
                    .map(|i| {
                        Block::new(
                            cfg.spec(dd, cfg.decoder_heads),
                            vb.pp("decoder_blocks").pp(i),
                        )
                    })
                    .collect::<Result<Vec<_>>>()?,
                Some(LayerNorm::new(
                    dd,
                    cfg.layer_norm_eps,
                    vb.pp("decoder_norm"),
                )?),
                dd,
            )
        } else {
            (None, Vec::new(), None, d)
        };
        let (head_out, phase_head) = match &cfg.objective {
            MaeObjective::Raw | MaeObjective::RawNormalized => (cfg.patch_len, None),
            MaeObjective::Spectral(sp) => (
                sp.amp_dim(cfg.patch_len),
                Some(linear(
                    head_in,
                    crate::objective::SpectralTarget::phase_dim(cfg.patch_len),
                    true,
                    vb.pp("phase_head"),
                )?),
            ),
        };
        let head = linear(head_in, head_out, true, vb.pp("head"))?;
        Ok(Self {
            cfg: cfg.clone(),
            patch_embed,
            channel_embed,
            time_embed,
            mask_token,
            blocks,
            norm,
            decoder_embed,
            decoder_blocks,
            decoder_norm,
            head,
            phase_head,
        })
    }

    pub fn config(&self) -> &MaeConfig {
        &self.cfg
    }

    /// Number of patches in a window of `n_times` samples (must be a multiple of
    /// `patch_len` and at most `max_patches` patches).
    pub fn n_patches(&self, n_times: usize) -> Result<usize> {
        let n = self.cfg.patch_len;
        if n_times == 0 || !n_times.is_multiple_of(n) {
            candle_core::bail!(
                "mae: window length {n_times} is not a positive multiple of patch_len {n}"
            );
        }
        let p = n_times / n;
        if p > self.cfg.max_patches {
            candle_core::bail!(
                "mae: window of {p} patches exceeds max_patches {}",
                self.cfg.max_patches
            );
        }
        Ok(p)
    }

    fn check_channels(&self, channel_ids: &Tensor, c: usize) -> Result<()> {
        let ids = channel_ids.to_dtype(DType::U32)?.to_vec1::<u32>()?;
        if ids.len() != c {
            candle_core::bail!("mae: {} channel ids for {c} channels", ids.len());
        }
        if let Some(bad) = ids.iter().find(|&&i| i as usize >= self.cfg.n_channel_ids) {
            candle_core::bail!(
                "mae: channel id {bad} out of range (n_channel_ids = {})",
                self.cfg.n_channel_ids
            );
        }
        Ok(())
    }

    /// Token embeddings `[B, C * P, d_model]` and the raw patches `[B, C, P, patch_len]`.
    fn embed(
        &self,
        x: &Tensor,
        channel_ids: &Tensor,
        mask: Option<&Tensor>,
    ) -> Result<(Tensor, Tensor)> {
        let (b, c, t) = x.dims3()?;
        let p = self.n_patches(t)?;
        self.check_channels(channel_ids, c)?;
        let d = self.cfg.d_model;
        let patches = x.reshape((b, c, p, self.cfg.patch_len))?;
        let tok = fused::linear(&self.patch_embed, &patches)?; // [B, C, P, d]
        let ch = self
            .channel_embed
            .forward(&channel_ids.to_dtype(DType::U32)?)?
            .reshape((1, c, 1, d))?;
        let tm = self.time_embed.narrow(0, 0, p)?.reshape((1, 1, p, d))?;
        // masked tokens -> mask_token, then + channel and time embeddings
        let pos = ch.broadcast_add(&tm)?; // [1, C, P, d], small
        let mask = match mask {
            Some(m) => Some(m.to_dtype(tok.dtype())?.reshape((b, c, p, 1))?),
            None => None,
        };
        let tok = fused::mask_and_add(&tok, mask.as_ref(), &self.mask_token, &pos)?; // [B, C*P, d]
        Ok((tok, patches))
    }

    fn encoder(&self, mut h: Tensor) -> Result<Tensor> {
        for blk in &self.blocks {
            h = blk.forward(&h)?;
        }
        self.norm.forward(&h)
    }

    /// Masked-autoencoder losses for `x` `[B, C, T]`, `channel_ids` `[C]` and `mask`
    /// `[B, C, T / patch_len]` (u8 or float, 1 = masked).
    pub fn forward_loss(
        &self,
        x: &Tensor,
        channel_ids: &Tensor,
        mask: &Tensor,
    ) -> Result<MaeOutput> {
        let (b, c, t) = x.dims3()?;
        let p = self.n_patches(t)?;
        if mask.dims() != [b, c, p] {
            candle_core::bail!(
                "mae: mask shape {:?}, expected [{b}, {c}, {p}]",
                mask.dims()
            );
        }
        let n = self.cfg.patch_len;
        let (tok, patches) = self.embed(x, channel_ids, Some(mask))?;
        let mut h = self.encoder(tok)?;
        if let Some(e) = &self.decoder_embed {
            h = fused::linear(e, &h)?;
            for blk in &self.decoder_blocks {
                h = blk.forward(&h)?;
            }
            if let Some(nrm) = &self.decoder_norm {
                h = nrm.forward(&h)?;
            }
        }
        let m = mask.to_dtype(h.dtype())?.reshape((b, c, p, 1))?;
        let head = fused::linear(&self.head, &h)?;
        let (pred, recon_loss, extra) = match &self.cfg.objective {
            MaeObjective::Raw => {
                let pred = head.reshape((b, c, p, n))?;
                let l = fused::masked_mse(&pred, &patches, &m)?;
                (pred, l, None)
            }
            MaeObjective::RawNormalized => {
                let pred = head.reshape((b, c, p, n))?;
                let target = normalize_patches(&patches)?;
                let l = fused::masked_mse(&pred, &target, &m)?;
                (pred, l, None)
            }
            MaeObjective::Spectral(sp) => {
                let phase_head = self.phase_head.as_ref().ok_or_else(|| {
                    candle_core::Error::Msg("mae: spectral objective without a phase head".into())
                })?;
                let rows = patches.reshape((b * c * p, n))?;
                let (ta, tp) = sp.targets(&rows)?;
                let na = ta.dim(1)?;
                let np = tp.dim(1)?;
                let pred = head.reshape((b, c, p, na))?;
                let pph = fused::linear(phase_head, &h)?.reshape((b, c, p, np))?;
                let la = fused::masked_mse(&pred, &ta.reshape((b, c, p, na))?, &m)?;
                let lp = fused::masked_mse(&pph, &tp.reshape((b, c, p, np))?, &m)?;
                (pred, la, Some((lp * sp.phase_weight)?))
            }
        };
        let recon_loss = match extra {
            Some(e) => (recon_loss + e)?,
            None => recon_loss,
        };
        let spectral = matches!(self.cfg.objective, MaeObjective::Spectral(_));
        let (loss, fft_loss) = if self.cfg.fft_loss_weight > 0.0 && !spectral {
            let n_masked = m.sum_all()?.maximum(1.0)?.detach();
            let (cos, sin) = dft_matrices(n, pred.dtype(), pred.device())?;
            let k = cos.dim(1)?;
            let ap = amplitude(&pred.reshape((b * c * p, n))?, &cos, &sin)?;
            let at = amplitude(&patches.reshape((b * c * p, n))?, &cos, &sin)?;
            let e = (ap - at)?.sqr()?.reshape((b, c, p, k))?.broadcast_mul(&m)?;
            let fft = (e.sum_all()? / &(&n_masked * k as f64)?)?;
            (
                (&recon_loss + (&fft * self.cfg.fft_loss_weight)?)?,
                Some(fft),
            )
        } else {
            (recon_loss.clone(), None)
        };
        Ok(MaeOutput {
            loss,
            recon_loss,
            fft_loss,
            pred,
        })
    }

    /// Mean-pooled encoder features `[B, d_model]` of unmasked `x` `[B, C, T]`.
    pub fn encode(&self, x: &Tensor, channel_ids: &Tensor) -> Result<Tensor> {
        let (tok, _) = self.embed(x, channel_ids, None)?;
        self.encoder(tok)?.mean(1)
    }

    /// Encoder outputs of every token of unmasked `x` `[B, C, T]`, as `[B, C, P, d_model]`.
    pub fn encode_tokens(&self, x: &Tensor, channel_ids: &Tensor) -> Result<Tensor> {
        let (b, c, t) = x.dims3()?;
        let p = self.n_patches(t)?;
        let (tok, _) = self.embed(x, channel_ids, None)?;
        self.encoder(tok)?.reshape((b, c, p, self.cfg.d_model))
    }
}

/// Real-DFT matrices `[n, n/2 + 1]` scaled by 1/n: `x @ cos` is Re(rfft(x))/n and
/// `x @ sin` is Im(rfft(x))/n (as `torch.fft.rfft(x, norm="forward")`).
pub fn dft_matrices(
    n: usize,
    dtype: DType,
    device: &candle_core::Device,
) -> Result<(Tensor, Tensor)> {
    let k = n / 2 + 1;
    let mut c = Vec::with_capacity(n * k);
    let mut s = Vec::with_capacity(n * k);
    for t in 0..n {
        for f in 0..k {
            // (t * f) mod n keeps the angle small and exact for large n.
            let ang = 2.0 * std::f64::consts::PI * ((t * f) % n) as f64 / n as f64;
            c.push(ang.cos() / n as f64);
            s.push(-ang.sin() / n as f64);
        }
    }
    let c = Tensor::from_vec(c, (n, k), device)?.to_dtype(dtype)?;
    let s = Tensor::from_vec(s, (n, k), device)?.to_dtype(dtype)?;
    Ok((c, s))
}

/// `|rfft(x)| / n` of each row of `x` `[rows, n]`, as `sqrt(re² + im² + 1e-12)`.
pub fn amplitude(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let re = x.matmul(cos)?;
    let im = x.matmul(sin)?;
    ((re.sqr()? + im.sqr()?)? + 1e-12)?.sqrt()
}

impl Pretrainable for Mae {
    fn loss(&self, batch: &Batch, seed: u64, step: u64) -> Result<Tensor> {
        let (b, c, t) = batch.x.dims3()?;
        let p = self.n_patches(t)?;
        let mask = random_patch_mask_on(
            &[b, c, p],
            self.cfg.mask_ratio,
            seed,
            step,
            batch.x.device(),
        )?;
        Ok(self.forward_loss(&batch.x, &batch.channel_ids, &mask)?.loss)
    }

    fn encode(&self, batch: &Batch) -> Result<Tensor> {
        Mae::encode(self, &batch.x, &batch.channel_ids)
    }

    fn encode_tokens(&self, batch: &Batch) -> Result<Tensor> {
        Mae::encode_tokens(self, &batch.x, &batch.channel_ids)
    }
}
