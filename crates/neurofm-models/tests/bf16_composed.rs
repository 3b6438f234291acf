//! The bf16 training step of the GPU benchmark (`train_step --device cuda --dtype bf16`) runs
//! the composed (primitive-op) graph in bf16; there is no GPU here, so this runs the same graph
//! on the CPU, where candle has bf16 kernels for the same ops: a forward pass, a backward pass
//! that reaches every parameter, and AdamW updates that keep everything finite and bf16, with
//! losses that follow an f32 run from the same weights.
//! A dtype mismatch in the graph (an f32 constant, mask or position table meeting bf16
//! activations) fails here instead of on a borrowed GPU, and so does a statistic summed in bf16
//! (candle's CPU sums of bf16 tensors accumulate in bf16: the MAE's first loss was 35% low).

mod common;
use common::vars_of;

use candle_core::{DType, Device, Result, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use neurofm_models::adamw::{update_composed, AdamWStep};
use neurofm_models::mask::random_patch_mask_on;
use neurofm_models::{ops, Gpt, GptConfig, Mae, MaeConfig};

fn finite(t: &Tensor) -> Result<bool> {
    let v = t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
    Ok(v.iter().all(|x| x.is_finite()))
}

/// Builds a model with `build` in `dtype`, sets its weights from `init` (the same names, any
/// float type) and trains `steps` AdamW steps on `loss(model, dtype, step)`; returns the
/// losses.
fn train<M>(
    dtype: DType,
    init: &[(String, Var)],
    build: impl Fn(VarBuilder) -> Result<M>,
    loss: impl Fn(&M, DType, u64) -> Result<Tensor>,
    steps: u64,
) -> Result<Vec<f32>> {
    let vm = VarMap::new();
    let model = build(VarBuilder::from_varmap(&vm, dtype, &Device::Cpu))?;
    let vars = vars_of(&vm)?;
    assert_eq!(vars.len(), init.len(), "parameter count");
    for ((name, v), (init_name, t)) in vars.iter().zip(init) {
        assert_eq!(name, init_name);
        assert_eq!(v.dtype(), dtype, "{name} was created as {:?}", v.dtype());
        v.set(&t.as_tensor().to_dtype(dtype)?)?;
    }
    let mut moments: Vec<(Tensor, Tensor)> = vars
        .iter()
        .map(|(_, v)| Ok((v.zeros_like()?, v.zeros_like()?)))
        .collect::<Result<_>>()?;
    let mut losses = Vec::new();
    for step in 0..steps {
        let loss = loss(&model, dtype, step)?;
        assert_eq!(loss.dtype(), dtype, "loss dtype");
        let grads = loss.backward()?;
        let s = AdamWStep::new(1e-3, 0.9, 0.999, 1e-8, 0.05, step as i32 + 1);
        for ((name, v), (m, mv)) in vars.iter().zip(moments.iter_mut()) {
            let g = grads
                .get(v.as_tensor())
                .unwrap_or_else(|| panic!("no gradient reached {name} ({dtype:?})"));
            assert_eq!(g.dtype(), dtype, "gradient of {name}");
            assert!(finite(g)?, "gradient of {name} is not finite ({dtype:?})");
            update_composed(v, m, mv, g, &s)?;
            assert!(finite(v.as_tensor())?, "{name} not finite after the update");
            assert_eq!(v.dtype(), dtype, "{name} changed dtype in the update");
        }
        losses.push(loss.to_dtype(DType::F32)?.to_scalar::<f32>()?);
    }
    Ok(losses)
}

/// Trains three steps in bf16 and in f32 from the same f32 weights, on the composed path, and
/// checks the bf16 losses follow the f32 ones within 2% (bf16 keeps 8 significant bits).
fn bf16_follows_f32<M>(
    build: impl Fn(VarBuilder) -> Result<M>,
    loss: impl Fn(&M, DType, u64) -> Result<Tensor>,
) -> Result<()> {
    let vm = VarMap::new();
    build(VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu))?;
    let init = vars_of(&vm)?;
    let (l16, l32) = ops::with_composed_ops(|| -> Result<_> {
        Ok((
            train(DType::BF16, &init, &build, &loss, 3)?,
            train(DType::F32, &init, &build, &loss, 3)?,
        ))
    })?;
    for (a, b) in l16.iter().zip(&l32) {
        eprintln!("bf16 loss {a}, f32 loss {b}");
        assert!(a.is_finite(), "bf16 loss {a}");
        assert!(
            (a - b).abs() <= 0.02 * b.abs().max(1e-3),
            "bf16 loss {a} vs f32 loss {b}"
        );
    }
    Ok(())
}

#[test]
fn composed_mae_trains_in_bf16_like_in_f32() -> Result<()> {
    let mut cfg = MaeConfig::tiny();
    cfg.decoder_depth = 1; // the base preset's decoder path too
    let (b, c, p) = (2, 3, 4);
    let x = Tensor::randn(0f32, 1f32, (b, c, p * cfg.patch_len), &Device::Cpu)?;
    let ids = Tensor::arange(0u32, c as u32, &Device::Cpu)?;
    bf16_follows_f32(
        |vb| Mae::new(&cfg, vb),
        |model, dtype, step| {
            let mask = random_patch_mask_on(&[b, c, p], cfg.mask_ratio, 7, step, &Device::Cpu)?;
            Ok(model.forward_loss(&x.to_dtype(dtype)?, &ids, &mask)?.loss)
        },
    )
}

#[test]
fn composed_gpt_trains_in_bf16_like_in_f32() -> Result<()> {
    let cfg = GptConfig::tiny();
    let tokens: Vec<u32> = (0..4 * 64).map(|i| (i * 37 + i / 5) % 256).collect();
    let tokens = Tensor::from_vec(tokens, (4, 64), &Device::Cpu)?;
    bf16_follows_f32(
        |vb| Gpt::new(&cfg, vb),
        |model, _, _| model.forward_loss(&tokens),
    )
}
