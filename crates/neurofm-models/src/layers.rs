//! Transformer building blocks shared by the models (names mirror timm's ViT modules:
//! `norm1`, `attn.qkv`, `attn.proj`, `norm2`, `mlp.fc1`, `mlp.fc2`).

use candle_core::{Module, Result, Tensor};
use candle_nn::{Init, Linear, VarBuilder};

use crate::{attention, block, fused, ops};

/// A linear layer `y = x W^T + b` with weight `[out, in]` (PyTorch layout), initialized
/// like `nn.Linear` (uniform in ±1/sqrt(in)).
pub fn linear(in_dim: usize, out_dim: usize, bias: bool, vb: VarBuilder) -> Result<Linear> {
    let bound = 1.0 / (in_dim as f64).sqrt();
    let init = Init::Uniform {
        lo: -bound,
        up: bound,
    };
    let w = vb.get_with_hints((out_dim, in_dim), "weight", init)?;
    let b = if bias {
        Some(vb.get_with_hints(out_dim, "bias", init)?)
    } else {
        None
    };
    Ok(Linear::new(w, b))
}

/// `nn.LayerNorm(dim, eps)`: weight (ones) and bias (zeros), with a real backward pass.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    pub fn new(dim: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            weight: vb.get_with_hints(dim, "weight", Init::Const(1.0))?,
            bias: vb.get_with_hints(dim, "bias", Init::Const(0.0))?,
            eps,
        })
    }
}

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        ops::layer_norm(x, &self.weight, &self.bias, self.eps)
    }
}

/// Multi-head self-attention: `qkv` projection, scaled-dot-product attention with the fused
/// differentiable softmax, output projection `proj`.
#[derive(Debug, Clone)]
pub struct Attention {
    qkv: Linear,
    proj: Linear,
    n_heads: usize,
    head_dim: usize,
    causal: bool,
}

impl Attention {
    pub fn new(
        dim: usize,
        n_heads: usize,
        qkv_bias: bool,
        causal: bool,
        vb: VarBuilder,
    ) -> Result<Self> {
        if n_heads == 0 || !dim.is_multiple_of(n_heads) {
            candle_core::bail!("attention: d_model {dim} is not divisible by n_heads {n_heads}");
        }
        Ok(Self {
            qkv: linear(dim, 3 * dim, qkv_bias, vb.pp("qkv"))?,
            proj: linear(dim, dim, true, vb.pp("proj"))?,
            n_heads,
            head_dim: dim / n_heads,
            causal,
        })
    }
}

impl Module for Attention {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, l, d) = x.dims3()?;
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let qkv = fused::linear(&self.qkv, x)?;
        if ops::fused_on(&qkv) {
            let out = attention::fused_attention(&qkv, self.n_heads, scale, self.causal)?;
            return fused::linear(&self.proj, &out);
        }
        let qkv = qkv
            .reshape((b, l, 3, self.n_heads, self.head_dim))?
            .permute((2, 0, 3, 1, 4))?; // [3, B, H, L, Dh]
        let q = qkv.get(0)?.contiguous()?;
        let k = qkv.get(1)?.contiguous()?;
        let v = qkv.get(2)?.contiguous()?;
        let scores = q.matmul(&k.t()?)?; // [B, H, L, L]
        let p = ops::scaled_softmax(&scores, scale, self.causal)?;
        let out = p.matmul(&v)?; // [B, H, L, Dh]
        let out = out.transpose(1, 2)?.reshape((b, l, d))?;
        fused::linear(&self.proj, &out)
    }
}

/// Two-layer MLP with exact (erf) GELU, as `nn.GELU()`.
#[derive(Debug, Clone)]
pub struct Mlp {
    fc1: Linear,
    fc2: Linear,
}

impl Mlp {
    pub fn new(dim: usize, hidden: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            fc1: linear(dim, hidden, true, vb.pp("fc1"))?,
            fc2: linear(hidden, dim, true, vb.pp("fc2"))?,
        })
    }
}

impl Module for Mlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        fused::linear(&self.fc2, &fused::gelu_erf(&fused::linear(&self.fc1, x)?)?)
    }
}

/// Pre-norm transformer block: `x + attn(norm1(x))`, then `x + mlp(norm2(x))`. On the CPU
/// the whole block is one graph node (`block.rs`); elsewhere a composition of its layers.
#[derive(Debug, Clone)]
pub struct Block {
    norm1: LayerNorm,
    attn: Attention,
    norm2: LayerNorm,
    mlp: Mlp,
    spec: BlockSpec,
}

/// Shape of one transformer block.
#[derive(Debug, Clone, Copy)]
pub struct BlockSpec {
    pub dim: usize,
    pub n_heads: usize,
    pub mlp_dim: usize,
    pub qkv_bias: bool,
    pub causal: bool,
    pub eps: f64,
}

impl Block {
    pub fn new(s: BlockSpec, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            norm1: LayerNorm::new(s.dim, s.eps, vb.pp("norm1"))?,
            attn: Attention::new(s.dim, s.n_heads, s.qkv_bias, s.causal, vb.pp("attn"))?,
            norm2: LayerNorm::new(s.dim, s.eps, vb.pp("norm2"))?,
            mlp: Mlp::new(s.dim, s.mlp_dim, vb.pp("mlp"))?,
            spec: s,
        })
    }

    /// The parameters in the order [`crate::block`] concatenates them, or `None` when a layer
    /// has no bias where the fused block expects one.
    fn params(&self) -> Option<Vec<&Tensor>> {
        let (qkv, proj) = (&self.attn.qkv, &self.attn.proj);
        let (fc1, fc2) = (&self.mlp.fc1, &self.mlp.fc2);
        let mut p = vec![&self.norm1.weight, &self.norm1.bias, qkv.weight()];
        if self.spec.qkv_bias {
            p.push(qkv.bias()?);
        }
        p.extend([
            proj.weight(),
            proj.bias()?,
            &self.norm2.weight,
            &self.norm2.bias,
        ]);
        p.extend([fc1.weight(), fc1.bias()?, fc2.weight(), fc2.bias()?]);
        Some(p)
    }
}

impl Module for Block {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if ops::fused_on(x) && x.rank() == 3 {
            if let Some(params) = self.params() {
                let s = self.spec;
                let spec = block::Spec {
                    dim: s.dim,
                    heads: s.n_heads,
                    mlp_dim: s.mlp_dim,
                    qkv_bias: s.qkv_bias,
                    causal: s.causal,
                    eps: s.eps,
                };
                return block::fused_block(x, &params, spec);
            }
        }
        let x = (x + self.attn.forward(&self.norm1.forward(x)?)?)?;
        &x + self.mlp.forward(&self.norm2.forward(&x)?)?
    }
}
