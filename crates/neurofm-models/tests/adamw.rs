//! The in-place AdamW update against candle's composed ops (bit for bit) and against the
//! textbook formula (to rounding).

use candle_core::{DType, Device, Result, Tensor, Var};
use neurofm_models::adamw::{update, update_composed, AdamWStep};

fn bits(t: &Tensor) -> Result<Vec<u64>> {
    Ok(match t.dtype() {
        DType::F32 => t
            .flatten_all()?
            .to_vec1::<f32>()?
            .into_iter()
            .map(|x| x.to_bits() as u64)
            .collect(),
        _ => t
            .flatten_all()?
            .to_vec1::<f64>()?
            .into_iter()
            .map(f64::to_bits)
            .collect(),
    })
}

fn values(t: &Tensor) -> Result<Vec<f64>> {
    t.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()
}

/// Runs `steps` updates of a `[rows, cols]` parameter through both paths; the gradient is a
/// transposed (strided) view, as a linear layer's weight gradient is.
fn check(dtype: DType, rows: usize, cols: usize, weight_decay: f64, steps: i32) -> Result<()> {
    let dev = Device::Cpu;
    let p0 = Tensor::randn(0f32, 1f32, (rows, cols), &dev)?.to_dtype(dtype)?;
    let p_fast = Var::from_tensor(&p0.copy()?)?;
    let p_ref = Var::from_tensor(&p0.copy()?)?;
    let mut mf = p0.zeros_like()?;
    let mut vf = p0.zeros_like()?;
    let mut mr = p0.zeros_like()?;
    let mut vr = p0.zeros_like()?;
    // the formula, per element, in f64
    let mut p_exp = values(&p0)?;
    let mut m_exp = vec![0f64; p_exp.len()];
    let mut v_exp = vec![0f64; p_exp.len()];
    let (lr, b1, b2, eps) = (3e-2, 0.9, 0.95, 1e-8);
    for t in 1..=steps {
        let g = Tensor::randn(0f32, 1f32, (cols, rows), &dev)?
            .to_dtype(dtype)?
            .t()?;
        assert!(rows == 1 || cols == 1 || !g.is_contiguous());
        let s = AdamWStep::new(lr, b1, b2, eps, weight_decay, t);
        let m_storage_before = mf.clone();
        update(&p_fast, &mut mf, &mut vf, &g, &s)?;
        update_composed(&p_ref, &mut mr, &mut vr, &g, &s)?;
        // in place: a clone taken before the update shares the buffer and sees the new moments
        assert_eq!(
            bits(&m_storage_before)?,
            bits(&mf)?,
            "m was reallocated, step {t}"
        );
        assert_eq!(
            bits(p_fast.as_tensor())?,
            bits(p_ref.as_tensor())?,
            "p, step {t}"
        );
        assert_eq!(bits(&mf)?, bits(&mr)?, "m, step {t}");
        assert_eq!(bits(&vf)?, bits(&vr)?, "v, step {t}");

        let gv = values(&g)?;
        let (bc1, bc2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
        for i in 0..p_exp.len() {
            p_exp[i] *= 1.0 - lr * weight_decay;
            m_exp[i] = b1 * m_exp[i] + (1.0 - b1) * gv[i];
            v_exp[i] = b2 * v_exp[i] + (1.0 - b2) * gv[i] * gv[i];
            p_exp[i] -= lr / bc1 * m_exp[i] / ((v_exp[i] / bc2).sqrt() + eps);
        }
        let tol = if dtype == DType::F32 { 1e-5 } else { 1e-12 };
        for (i, (&got, &want)) in values(p_fast.as_tensor())?.iter().zip(&p_exp).enumerate() {
            assert!(
                (got - want).abs() <= tol * (1.0 + want.abs()),
                "p[{i}] = {got}, formula {want}, step {t}"
            );
        }
    }
    Ok(())
}

#[test]
fn adamw_in_place_equals_composed() -> Result<()> {
    for dtype in [DType::F32, DType::F64] {
        check(dtype, 3, 5, 0.05, 4)?;
        check(dtype, 7, 1, 0.0, 3)?;
        // larger than one parallel chunk
        check(dtype, 300, 130, 0.1, 3)?;
    }
    Ok(())
}

#[test]
fn adamw_rejects_mismatched_state() -> Result<()> {
    // a moment of the wrong shape must not be silently written through
    let dev = Device::Cpu;
    let p = Var::from_tensor(&Tensor::ones((2, 3), DType::F32, &dev)?)?;
    let mut m = Tensor::zeros((3, 2), DType::F32, &dev)?;
    let mut v = Tensor::zeros((2, 3), DType::F32, &dev)?;
    let g = Tensor::ones((2, 3), DType::F32, &dev)?;
    let s = AdamWStep::new(1e-3, 0.9, 0.999, 1e-8, 0.0, 1);
    assert!(update(&p, &mut m, &mut v, &g, &s).is_err());
    Ok(())
}
