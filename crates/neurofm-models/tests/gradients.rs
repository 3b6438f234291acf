//! Finite-difference gradient tests of every module used in training (f64 unless noted),
//! and proof that the harness catches stopped gradients (candle's fused ops fail it).

mod common;
use common::vars_of;

use candle_core::{DType, Device, Module, Result, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use neurofm_models::gradcheck::{check_gradients, seeded_uniform, GradReport};
use neurofm_models::layers::{Attention, Block, BlockSpec, LayerNorm, Mlp};
use neurofm_models::{fused, ops, Gpt, GptConfig, Mae, MaeConfig};

const TOL: f64 = 1e-3;
const H: f64 = 1e-5;

fn var(shape: &[usize], seed: u64, dtype: DType) -> Result<Var> {
    Var::from_tensor(&seeded_uniform(
        shape,
        -1.0,
        1.0,
        seed,
        dtype,
        &Device::Cpu,
    )?)
}

/// A random linear functional of `y`, so that every output entry matters.
fn probe_loss(y: &Tensor, seed: u64) -> Result<Tensor> {
    let r = seeded_uniform(y.dims(), -1.0, 1.0, seed, y.dtype(), y.device())?;
    (y * r)?.sum_all()
}

fn assert_ok(reports: &[GradReport], tol: f64) {
    assert!(!reports.is_empty());
    for r in reports {
        assert!(r.has_grad, "{}: no gradient", r.name);
        assert!(
            r.numeric_norm > 1e-8,
            "{}: numeric gradient vanishes ({:e})",
            r.name,
            r.numeric_norm
        );
        assert!(
            r.rel_err < tol,
            "{}: relative error {:e} (analytic {:e}, numeric {:e})",
            r.name,
            r.rel_err,
            r.analytic_norm,
            r.numeric_norm
        );
    }
}

fn worst(reports: &[GradReport]) -> f64 {
    reports.iter().map(|r| r.rel_err).fold(0.0, f64::max)
}

#[test]
fn layer_norm_gradients() -> Result<()> {
    let x = var(&[3, 4, 8], 1, DType::F64)?;
    let w = Var::from_tensor(&(seeded_uniform(&[8], 0.5, 1.5, 2, DType::F64, &Device::Cpu)?))?;
    let b = var(&[8], 3, DType::F64)?;
    let f = || {
        probe_loss(
            &ops::layer_norm(x.as_tensor(), w.as_tensor(), b.as_tensor(), 1e-5)?,
            9,
        )
    };
    let vars = vec![
        ("x".into(), x.clone()),
        ("w".into(), w.clone()),
        ("b".into(), b.clone()),
    ];
    assert_ok(&check_gradients(&f, &vars, 40, H, 0)?, TOL);
    // The fused forward equals the composition of primitive ops.
    let a = ops::layer_norm(x.as_tensor(), w.as_tensor(), b.as_tensor(), 1e-5)?;
    let c = ops::layer_norm_composed(x.as_tensor(), w.as_tensor(), b.as_tensor(), 1e-5)?;
    let d = (a - c)?.abs()?.max_all()?.to_scalar::<f64>()?;
    assert!(d < 1e-12, "fused vs composed layer norm differ by {d}");
    Ok(())
}

#[test]
fn candle_fused_layer_norm_fails_the_same_check() -> Result<()> {
    // candle's fused layer norm only runs in f32/f16/bf16: run the same check in f32 for
    // both, ours passes and candle's (no backward) fails.
    let h = 1e-2;
    let x = var(&[3, 4, 8], 1, DType::F32)?;
    let w = Var::from_tensor(&(seeded_uniform(&[8], 0.5, 1.5, 2, DType::F32, &Device::Cpu)?))?;
    let b = var(&[8], 3, DType::F32)?;
    let vars = vec![
        ("x".into(), x.clone()),
        ("w".into(), w.clone()),
        ("b".into(), b.clone()),
    ];
    let ours = || {
        probe_loss(
            &ops::layer_norm(x.as_tensor(), w.as_tensor(), b.as_tensor(), 1e-5)?,
            9,
        )
    };
    assert_ok(&check_gradients(&ours, &vars, 40, h, 0)?, 1e-2);
    let fused = || {
        probe_loss(
            &candle_nn::ops::layer_norm(x.as_tensor(), w.as_tensor(), b.as_tensor(), 1e-5)?,
            9,
        )
    };
    let rep = check_gradients(&fused, &vars, 40, h, 0)?;
    assert!(
        worst(&rep) > 0.5,
        "candle's fused layer norm unexpectedly passed: {rep:?}"
    );
    assert!(rep.iter().all(|r| !r.has_grad));
    // candle_nn::LayerNorm on contiguous input takes the same fused path.
    let ln = candle_nn::LayerNorm::new(w.as_tensor().clone(), b.as_tensor().clone(), 1e-5);
    let module = || probe_loss(&ln.forward(x.as_tensor())?, 9);
    assert!(worst(&check_gradients(&module, &vars, 40, h, 0)?) > 0.5);
    Ok(())
}

#[test]
fn softmax_gradients() -> Result<()> {
    let x = var(&[2, 3, 5, 5], 4, DType::F64)?;
    let vars = vec![("x".into(), x.clone())];
    for (scale, causal) in [(1.0, false), (0.37, false), (0.5, true)] {
        let f = || {
            probe_loss(
                &ops::scaled_softmax(&(x.as_tensor() * 3.0)?, scale, causal)?,
                5,
            )
        };
        assert_ok(&check_gradients(&f, &vars, 60, H, 1)?, TOL);
        let a = ops::scaled_softmax(x.as_tensor(), scale, causal)?;
        let c = ops::scaled_softmax_composed(x.as_tensor(), scale, causal)?;
        let d = (a - c)?.abs()?.max_all()?.to_scalar::<f64>()?;
        assert!(d < 1e-12, "fused vs composed softmax differ by {d}");
    }
    Ok(())
}

#[test]
fn candle_fused_softmax_fails_the_same_check() -> Result<()> {
    let x = var(&[2, 3, 5, 5], 4, DType::F64)?;
    let vars = vec![("x".into(), x.clone())];
    let ours = || probe_loss(&ops::softmax_last_dim(&(x.as_tensor() * 3.0)?)?, 5);
    assert_ok(&check_gradients(&ours, &vars, 60, H, 1)?, TOL);
    let fused = || {
        probe_loss(
            &candle_nn::ops::softmax_last_dim(&(x.as_tensor() * 3.0)?)?,
            5,
        )
    };
    let rep = check_gradients(&fused, &vars, 60, H, 1)?;
    assert!(
        worst(&rep) > 0.5,
        "candle's fused softmax unexpectedly passed: {rep:?}"
    );
    Ok(())
}

fn module_check(
    build: &dyn Fn(VarBuilder) -> Result<Box<dyn Module>>,
    x_shape: &[usize],
) -> Result<()> {
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F64, &Device::Cpu);
    let m = build(vb)?;
    let x = var(x_shape, 11, DType::F64)?;
    let mut vars = vars_of(&vm)?;
    vars.push(("input".into(), x.clone()));
    let f = || probe_loss(&m.forward(x.as_tensor())?, 12);
    let rep = check_gradients(&f, &vars, 12, H, 2)?;
    assert_ok(&rep, TOL);
    Ok(())
}

#[test]
fn layer_norm_module_gradients() -> Result<()> {
    module_check(&|vb| Ok(Box::new(LayerNorm::new(6, 1e-5, vb)?)), &[2, 3, 6])
}

#[test]
fn attention_gradients() -> Result<()> {
    for causal in [false, true] {
        module_check(
            &|vb| Ok(Box::new(Attention::new(8, 2, true, causal, vb)?)),
            &[2, 5, 8],
        )?;
    }
    Ok(())
}

#[test]
fn mlp_gradients() -> Result<()> {
    module_check(&|vb| Ok(Box::new(Mlp::new(6, 10, vb)?)), &[2, 3, 6])
}

/// The block (on the CPU one fused graph node, `block.rs`): finite differences for every
/// parameter and the input, with and without the qkv bias, causal or not; and the fused node
/// against the composition of its layers (the path CUDA runs), output and every gradient.
#[test]
fn block_gradients() -> Result<()> {
    for (qkv_bias, causal) in [(true, false), (false, true)] {
        let spec = BlockSpec {
            dim: 8,
            n_heads: 2,
            mlp_dim: 16,
            qkv_bias,
            causal,
            eps: 1e-5,
        };
        module_check(&|vb| Ok(Box::new(Block::new(spec, vb)?)), &[2, 4, 8])?;
        // Length 5 keeps the attention probabilities for the backward pass; length 100 does
        // not (heads x length = 200 > 2 (7 dim + 2 mlp_dim) = 176), so the backward pass
        // recomputes them.
        for (dtype, len) in [(DType::F64, 5), (DType::F32, 5), (DType::F64, 100)] {
            let vm = VarMap::new();
            let block = Block::new(spec, VarBuilder::from_varmap(&vm, dtype, &Device::Cpu))?;
            let x = var(&[3, len, 8], 13, dtype)?;
            let mut vars = vars_of(&vm)?;
            vars.push(("input".into(), x.clone()));
            let f = || probe_loss(&block.forward(x.as_tensor())?, 14);
            let d = fused_vs_composed(&f, &vars)?;
            let tol = if dtype == DType::F64 { 1e-5 } else { 1e-3 };
            assert!(
                d < tol,
                "block {dtype:?} length {len} (qkv bias {qkv_bias}, causal {causal}): fused vs composed differ by {d:e}"
            );
        }
    }
    Ok(())
}

fn small_mae(fft: f64, decoder_depth: usize) -> MaeConfig {
    MaeConfig {
        patch_len: 8,
        d_model: 8,
        depth: 2,
        n_heads: 2,
        mlp_dim: 16,
        max_patches: 4,
        fft_loss_weight: fft,
        decoder_depth,
        decoder_dim: 4,
        decoder_heads: 2,
        ..MaeConfig::tiny()
    }
}

#[test]
fn mae_loss_gradients() -> Result<()> {
    for (fft, dec) in [(0.0, 0), (0.5, 1)] {
        let cfg = small_mae(fft, dec);
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F64, &Device::Cpu);
        let mae = Mae::new(&cfg, vb)?;
        let x = seeded_uniform(&[2, 3, 24], -1.0, 1.0, 21, DType::F64, &Device::Cpu)?;
        let ids = Tensor::new(&[0u32, 5, 343], &Device::Cpu)?;
        let mask = neurofm_models::mask::random_patch_mask(&[2, 3, 3], 0.5, 3, 0)?;
        let vars = vars_of(&vm)?;
        // Embedding rows not used by this batch have zero gradient: probe only used rows by
        // checking the channel table through the whole-tensor norm (unused rows agree at 0).
        let f = || Ok(mae.forward_loss(&x, &ids, &mask)?.loss);
        let rep = check_gradients(&f, &vars, 16, H, 3)?;
        for r in &rep {
            assert!(r.has_grad, "{}: no gradient", r.name);
            assert!(
                r.rel_err < TOL,
                "{} (fft {fft}, decoder {dec}): relative error {:e}",
                r.name,
                r.rel_err
            );
        }
        // Every variable except the (sparsely used) channel and time tables gets a
        // non-trivial numeric gradient at the probed coordinates.
        for r in rep
            .iter()
            .filter(|r| !r.name.contains("embed.weight") || r.name.starts_with("patch"))
        {
            assert!(
                r.numeric_norm > 1e-8,
                "{}: numeric gradient vanishes",
                r.name
            );
        }
    }
    Ok(())
}

/// The raw-normalized and spectral objectives (amplitude and phase heads, their standardized
/// targets and masked losses), in f64 against finite differences.
#[test]
fn mae_objective_gradients() -> Result<()> {
    use neurofm_models::objective::{MaeObjective, SpectralTarget, Taper};
    let x = seeded_uniform(&[2, 3, 24], -1.0, 1.0, 21, DType::F64, &Device::Cpu)?;
    let mut bands = SpectralTarget::new(Taper::Hann, vec![[0, 2], [2, 5]], 0.5);
    bands.fit(&x.reshape((18, 8))?)?;
    let mut bins = SpectralTarget::new(Taper::None, vec![], 1.0);
    bins.fit(&x.reshape((18, 8))?)?;
    for (obj, dec) in [
        (MaeObjective::RawNormalized, 0),
        (MaeObjective::Spectral(bands), 1),
        (MaeObjective::Spectral(bins), 0),
    ] {
        let cfg = MaeConfig {
            objective: obj.clone(),
            ..small_mae(0.0, dec)
        };
        let vm = VarMap::new();
        let mae = Mae::new(&cfg, VarBuilder::from_varmap(&vm, DType::F64, &Device::Cpu))?;
        let ids = Tensor::new(&[0u32, 5, 343], &Device::Cpu)?;
        let mask = neurofm_models::mask::random_patch_mask(&[2, 3, 3], 0.5, 3, 0)?;
        let vars = vars_of(&vm)?;
        if matches!(obj, MaeObjective::Spectral(_)) {
            assert!(vars.iter().any(|(n, _)| n == "phase_head.weight"));
        }
        let f = || Ok(mae.forward_loss(&x, &ids, &mask)?.loss);
        let rep = check_gradients(&f, &vars, 16, H, 5)?;
        for r in &rep {
            assert!(r.has_grad, "{} ({}): no gradient", r.name, obj.name());
            assert!(
                r.rel_err < TOL,
                "{} ({}): relative error {:e}",
                r.name,
                obj.name(),
                r.rel_err
            );
        }
        for r in rep.iter().filter(|r| r.name.contains("head")) {
            assert!(
                r.numeric_norm > 1e-8,
                "{}: numeric gradient vanishes",
                r.name
            );
        }
    }
    Ok(())
}

#[test]
fn gpt_loss_gradients() -> Result<()> {
    let cfg = GptConfig {
        vocab_size: 7,
        d_model: 8,
        depth: 2,
        n_heads: 2,
        mlp_dim: 16,
        max_len: 6,
        ..GptConfig::tiny()
    };
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F64, &Device::Cpu);
    let gpt = Gpt::new(&cfg, vb)?;
    let tokens = Tensor::new(&[[0u32, 3, 6, 1, 2, 2], [5, 4, 3, 0, 1, 6]], &Device::Cpu)?;
    let vars = vars_of(&vm)?;
    let f = || gpt.forward_loss(&tokens);
    let rep = check_gradients(&f, &vars, 16, H, 4)?;
    for r in &rep {
        assert!(r.has_grad, "{}: no gradient", r.name);
        assert!(
            r.rel_err < TOL,
            "{}: relative error {:e}",
            r.name,
            r.rel_err
        );
    }
    for r in rep
        .iter()
        .filter(|r| r.name != "tok_embed.weight" && r.name != "pos_embed.weight")
    {
        assert!(
            r.numeric_norm > 1e-8,
            "{}: numeric gradient vanishes",
            r.name
        );
    }
    Ok(())
}

/// Loss and gradients of every variable under the fused CPU kernels and under the composed
/// primitive-op path (the one CUDA runs): returns the largest difference relative to the
/// larger magnitude of each compared tensor. Fails if a variable has a gradient in one path
/// only.
fn fused_vs_composed(loss: &dyn Fn() -> Result<Tensor>, vars: &[(String, Var)]) -> Result<f64> {
    let l1 = loss()?;
    let g1 = l1.backward()?;
    let l2 = ops::with_composed_ops(loss)?;
    let g2 = l2.backward()?;
    let rel = |a: &Tensor, b: &Tensor| -> Result<f64> {
        let a = a.to_dtype(DType::F64)?.flatten_all()?;
        let b = b.to_dtype(DType::F64)?.flatten_all()?;
        // A NaN or infinity anywhere fails the comparison (the `max` below would skip NaN).
        let finite =
            |t: &Tensor| -> Result<bool> { Ok(t.to_vec1::<f64>()?.iter().all(|v| v.is_finite())) };
        if !finite(&a)? || !finite(&b)? {
            return Ok(f64::INFINITY);
        }
        let d = (&a - &b)?.abs()?.max(0)?.to_scalar::<f64>()?;
        let m = a.abs()?.max(0)?.to_scalar::<f64>()?;
        let n = b.abs()?.max(0)?.to_scalar::<f64>()?;
        Ok(d / m.max(n).max(1e-30))
    };
    let mut worst = rel(&l1, &l2)?;
    for (name, v) in vars {
        match (g1.get(v.as_tensor()), g2.get(v.as_tensor())) {
            (Some(a), Some(b)) => worst = worst.max(rel(a, b)?),
            (None, None) => {}
            _ => candle_core::bail!("{name}: gradient in one path only"),
        }
    }
    Ok(worst)
}

#[test]
fn composed_path_gradients_equal_fused() -> Result<()> {
    // Layer norm and softmax alone.
    let x = var(&[3, 4, 8], 1, DType::F64)?;
    let w = Var::from_tensor(&(seeded_uniform(&[8], 0.5, 1.5, 2, DType::F64, &Device::Cpu)?))?;
    let b = var(&[8], 3, DType::F64)?;
    let vars = vec![
        ("x".into(), x.clone()),
        ("w".into(), w.clone()),
        ("b".into(), b.clone()),
    ];
    let f = || {
        probe_loss(
            &ops::layer_norm(x.as_tensor(), w.as_tensor(), b.as_tensor(), 1e-5)?,
            9,
        )
    };
    let d = fused_vs_composed(&f, &vars)?;
    assert!(
        d < 1e-12,
        "layer norm: fused vs composed gradients differ by {d:e}"
    );
    let s = var(&[2, 3, 5, 5], 4, DType::F64)?;
    let svars = vec![("s".into(), s.clone())];
    for (scale, causal) in [(1.0, false), (0.37, false), (0.5, true)] {
        let f = || {
            probe_loss(
                &ops::scaled_softmax(&(s.as_tensor() * 3.0)?, scale, causal)?,
                5,
            )
        };
        let d = fused_vs_composed(&f, &svars)?;
        assert!(
            d < 1e-12,
            "softmax {scale} {causal}: gradients differ by {d:e}"
        );
    }

    // The whole MAE loss (encoder, decoder, FFT loss) and the causal GPT loss, in f64. The
    // bound is set by candle's composed GELU backward, which rounds 1/sqrt(2 pi) to 0.398942
    // (relative error 7e-7); layer norm and softmax agree to 1e-12 above.
    let cfg = small_mae(0.5, 1);
    let vm = VarMap::new();
    let mae = Mae::new(&cfg, VarBuilder::from_varmap(&vm, DType::F64, &Device::Cpu))?;
    let x = seeded_uniform(&[2, 3, 24], -1.0, 1.0, 21, DType::F64, &Device::Cpu)?;
    let ids = Tensor::new(&[0u32, 5, 343], &Device::Cpu)?;
    let mask = neurofm_models::mask::random_patch_mask(&[2, 3, 3], 0.5, 3, 0)?;
    let f = || Ok(mae.forward_loss(&x, &ids, &mask)?.loss);
    let d = fused_vs_composed(&f, &vars_of(&vm)?)?;
    assert!(d < 1e-5, "mae: fused vs composed gradients differ by {d:e}");

    let gcfg = GptConfig {
        vocab_size: 7,
        d_model: 8,
        depth: 2,
        n_heads: 2,
        mlp_dim: 16,
        max_len: 6,
        ..GptConfig::tiny()
    };
    let vm = VarMap::new();
    let gpt = Gpt::new(
        &gcfg,
        VarBuilder::from_varmap(&vm, DType::F64, &Device::Cpu),
    )?;
    let tokens = Tensor::new(&[[0u32, 3, 6, 1, 2, 2], [5, 4, 3, 0, 1, 6]], &Device::Cpu)?;
    let f = || gpt.forward_loss(&tokens);
    let d = fused_vs_composed(&f, &vars_of(&vm)?)?;
    assert!(d < 1e-5, "gpt: fused vs composed gradients differ by {d:e}");

    // The tiny preset in f32 (the training dtype): agreement to f32 rounding.
    let vm = VarMap::new();
    let mae = Mae::new(
        &MaeConfig::tiny(),
        VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu),
    )?;
    let x = seeded_uniform(&[2, 4, 800], -1.0, 1.0, 5, DType::F32, &Device::Cpu)?;
    let ids = Tensor::new(&[0u32, 1, 2, 3], &Device::Cpu)?;
    let mask = neurofm_models::mask::random_patch_mask(&[2, 4, 4], 0.5, 1, 0)?;
    let f = || Ok(mae.forward_loss(&x, &ids, &mask)?.loss);
    let d = fused_vs_composed(&f, &vars_of(&vm)?)?;
    assert!(
        d < 1e-3,
        "mae tiny f32: fused vs composed gradients differ by {d:e}"
    );
    Ok(())
}

#[test]
fn gelu_gradients() -> Result<()> {
    let x = var(&[3, 4, 8], 6, DType::F64)?;
    let vars = vec![("x".into(), x.clone())];
    let f = || probe_loss(&fused::gelu_erf(&(x.as_tensor() * 3.0)?)?, 7);
    assert_ok(&check_gradients(&f, &vars, 60, H, 2)?, TOL);
    // Same values as candle's gelu_erf, and the same gradient as its composed backward (whose
    // derivative uses the rounded constant 0.398942 for 1/sqrt(2 pi)).
    let a = fused::gelu_erf(&(x.as_tensor() * 3.0)?)?;
    let c = (x.as_tensor() * 3.0)?.gelu_erf()?;
    let d = (a - c)?.abs()?.max_all()?.to_scalar::<f64>()?;
    assert!(d < 1e-12, "fused vs candle gelu_erf differ by {d}");
    let d = fused_vs_composed(&f, &vars)?;
    assert!(
        d < 1e-5,
        "gelu: fused vs composed gradients differ by {d:e}"
    );
    // f32 kernel.
    let x32 = var(&[5, 7], 8, DType::F32)?;
    let a = fused::gelu_erf(&(x32.as_tensor() * 3.0)?)?;
    let c = (x32.as_tensor() * 3.0)?.gelu_erf()?;
    let d = (a - c)?.abs()?.max_all()?.to_scalar::<f32>()?;
    assert!(d < 1e-6, "f32 fused vs candle gelu_erf differ by {d}");
    Ok(())
}

#[test]
fn fused_linear_gradients() -> Result<()> {
    let x = var(&[2, 3, 5], 11, DType::F64)?;
    let w = var(&[4, 5], 12, DType::F64)?;
    let b = var(&[4], 13, DType::F64)?;
    let lin = candle_nn::Linear::new(w.as_tensor().clone(), Some(b.as_tensor().clone()));
    let vars = vec![
        ("x".into(), x.clone()),
        ("w".into(), w.clone()),
        ("b".into(), b.clone()),
    ];
    let f = || probe_loss(&fused::linear(&lin, x.as_tensor())?, 14);
    assert_ok(&check_gradients(&f, &vars, 40, H, 5)?, TOL);
    let a = fused::linear(&lin, x.as_tensor())?;
    let c = lin.forward(x.as_tensor())?;
    assert_eq!(a.dims(), c.dims());
    let d = (a - c)?.abs()?.max_all()?.to_scalar::<f64>()?;
    assert!(d < 1e-12, "fused vs candle linear differ by {d}");
    let d = fused_vs_composed(&f, &vars)?;
    assert!(
        d < 1e-12,
        "linear: fused vs composed gradients differ by {d:e}"
    );
    // large enough for the products to be split into row blocks across threads
    let x = var(&[3, 100, 70], 15, DType::F64)?;
    let w = var(&[90, 70], 16, DType::F64)?;
    let b = var(&[90], 17, DType::F64)?;
    let lin = candle_nn::Linear::new(w.as_tensor().clone(), Some(b.as_tensor().clone()));
    let vars = vec![("x".into(), x.clone()), ("w".into(), w), ("b".into(), b)];
    let f = || probe_loss(&fused::linear(&lin, x.as_tensor())?, 18);
    let d = fused_vs_composed(&f, &vars)?;
    assert!(
        d < 1e-12,
        "large linear: fused vs composed gradients differ by {d:e}"
    );
    Ok(())
}

/// The fused attention op (`neurofm_models::attention`, taken by `Attention` on the CPU)
/// against the composition of candle ops (the path CUDA runs): output and every gradient, in
/// f64 and f32, causal or not, including one-token sequences and heads of one dimension.
#[test]
fn fused_attention_equals_composed() -> Result<()> {
    for (dtype, tol) in [(DType::F64, 1e-12), (DType::F32, 1e-4)] {
        for causal in [false, true] {
            // 150 and 128 tokens: several blocks of query rows (64), the last one partial or not.
            let shapes = [
                (2, 5, 2, 3),
                (3, 17, 4, 8),
                (1, 1, 1, 4),
                (2, 6, 3, 1),
                (2, 150, 2, 4),
                (1, 128, 1, 5),
            ];
            for (b, l, heads, dh) in shapes {
                let vm = VarMap::new();
                let vb = VarBuilder::from_varmap(&vm, dtype, &Device::Cpu);
                let att = Attention::new(heads * dh, heads, true, causal, vb)?;
                let x = var(&[b, l, heads * dh], 7, dtype)?;
                let mut vars = vars_of(&vm)?;
                vars.push(("x".into(), x.clone()));
                let f = || probe_loss(&(att.forward(x.as_tensor())? * 2.0)?, 3);
                let d = fused_vs_composed(&f, &vars)?;
                assert!(
                    d < tol,
                    "{dtype:?} causal {causal} {b}x{l}, {heads} heads of {dh}: fused vs composed differ by {d:e}"
                );
            }
        }
    }
    Ok(())
}
