//! Vectorizable f32 `exp` and `erf` for the CPU kernels' inner loops.
//!
//! `f32::exp` and candle's `erf_f32` call libm one element at a time; in a training step's
//! softmax and GELU that scalar code was the largest cost after the matrix products (`perf`:
//! `__expf_fma` 8%, `erff` 4% of a tiny-preset step). The functions here are branch-free
//! polynomial forms that the compiler turns into 8-wide AVX2 code: the slice loops are compiled
//! twice, once with `avx2,fma` enabled (picked at run time when the CPU has them) and once for
//! the baseline target. Both perform the same operations, fused multiply-adds included (an FMA
//! instruction in one, libm's exactly rounded `fmaf` in the other), so results do not depend on
//! the CPU.
//!
//! Accuracy (checked in the tests below against f64): `exp` within 2 ulp where the result is a
//! normal f32 (subnormal results down to -104, 0 below); `erf` within 6e-7 absolute.

use std::mem::MaybeUninit;

/// `exp(x)` for f32: range reduction by `ln 2` (Cody–Waite, two constants), a degree-5 minimax
/// polynomial on `[-ln2/2, ln2/2]`, and the power of two put into the exponent bits.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 = LN2_HI + LN2_LO, LN2_HI with its low 12 mantissa bits zero (n * LN2_HI is exact)
    const LN2_HI: f32 = f32::from_bits(0x3f31_7200); // 0.693145751953125
    const LN2_LO: f32 = f32::from_bits(0x35bf_be8e); // 1.428606765330187e-6
    const HI: f32 = 88.722_83;
    const LO: f32 = -103.972_08;
    let xc = x.clamp(LO, HI);
    // round to nearest without a libm call: add and subtract 1.5 * 2^23
    const SHIFTER: f32 = 12_582_912.0;
    let shifted = xc.mul_add(LOG2E, SHIFTER);
    let n = shifted - SHIFTER;
    // the integer n is in the low mantissa bits of `shifted` (a float-to-int cast would be
    // scalar code: Rust's casts saturate)
    let n_int = shifted.to_bits() as i32 - SHIFTER.to_bits() as i32;
    let r = (-n).mul_add(LN2_LO, (-n).mul_add(LN2_HI, xc));
    // minimax polynomial for (exp(r) - 1 - r) / r^2 on [-ln2/2, ln2/2] (Cephes' expf)
    let p = 1.987_569_1e-4f32;
    let p = p.mul_add(r, 1.398_199_9e-3);
    let p = p.mul_add(r, 8.333_452e-3);
    let p = p.mul_add(r, 4.166_579_6e-2);
    let p = p.mul_add(r, 0.166_666_65);
    let p = p.mul_add(r, 0.5);
    let p = p.mul_add(r * r, r) + 1.0;
    // 2^n as two factors 2^(n/2) and 2^(n - n/2), each a normal f32 for n in [-150, 128]
    let half = n_int >> 1;
    let s1 = f32::from_bits(((half + 127) as u32) << 23);
    let s2 = f32::from_bits(((n_int - half + 127) as u32) << 23);
    let y = p * s1 * s2;
    // NaN passes through the arithmetic above unchanged
    if x < LO {
        0.0
    } else if x > HI {
        f32::INFINITY
    } else {
        y
    }
}

/// `erf(x)` for f32: Abramowitz & Stegun 7.1.26's form `1 - t P(t) exp(-x^2)` with
/// `t = 1 / (1 + p |x|)`, sign restored; absolute error below 6e-7 (the formula's 1.5e-7 plus
/// f32 rounding in the alternating-sign polynomial; measured 5.6e-7 on [-6, 6]).
#[inline(always)]
pub fn erf_f32(x: f32) -> f32 {
    erf_and_gauss(x).0
}

/// `(erf(x), exp(-x^2))`: the form of [`erf_f32`] computes the Gaussian factor anyway, and
/// GELU's derivative needs it too (`exp(-x^2 / 2)` at `x / sqrt 2`), so one `exp` serves both.
#[inline(always)]
fn erf_and_gauss(x: f32) -> (f32, f32) {
    const P: f32 = 0.327_591_1;
    const A1: f32 = 0.254_829_6;
    const A2: f32 = -0.284_496_74;
    const A3: f32 = 1.421_413_8;
    const A4: f32 = -1.453_152_1;
    const A5: f32 = 1.061_405_4;
    let a = x.abs();
    let t = 1.0 / P.mul_add(a, 1.0);
    let poly = A5
        .mul_add(t, A4)
        .mul_add(t, A3)
        .mul_add(t, A2)
        .mul_add(t, A1)
        * t;
    let gauss = exp_f32(-a * a);
    let y = (-poly).mul_add(gauss, 1.0);
    (if x < 0.0 { -y } else { y }, gauss)
}

/// Compiles `$body` (a loop over slices) for AVX2+FMA and for the baseline target, and runs the
/// best one this CPU supports.
macro_rules! dispatch {
    ($name:ident ( $($arg:ident : $ty:ty),* ) -> $ret:ty $body:block) => {
        pub fn $name($($arg: $ty),*) -> $ret {
            #[inline(always)]
            fn body($($arg: $ty),*) -> $ret $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) -> $ret {
                    body($($arg),*)
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU has the features `avx2` was compiled for.
                    return unsafe { avx2($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
    ($name:ident ( $($arg:ident : $ty:ty),* ) $body:block) => {
        dispatch!($name($($arg: $ty),*) -> () $body);
    };
}

/// Lane-wise reduction helper: eight partial results combined pairwise at the end.
#[inline(always)]
fn combine8(a: [f32; 8], f: impl Fn(f32, f32) -> f32) -> f32 {
    f(
        f(f(a[0], a[4]), f(a[1], a[5])),
        f(f(a[2], a[6]), f(a[3], a[7])),
    )
}

#[inline(always)]
fn max2(a: f32, b: f32) -> f32 {
    if b > a {
        b
    } else {
        a
    }
}

dispatch!(scale_max(v: &mut [f32], scale: f32) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 8];
    let mut chunks = v.chunks_exact_mut(8);
    for c in &mut chunks {
        for (a, x) in acc.iter_mut().zip(c.iter_mut()) {
            *x *= scale;
            *a = max2(*a, *x);
        }
    }
    let mut m = combine8(acc, max2);
    for x in chunks.into_remainder() {
        *x *= scale;
        m = max2(m, *x);
    }
    m
});

dispatch!(exp_sub_sum(v: &mut [f32], sub: f32) -> f32 {
    for x in v.iter_mut() {
        *x = exp_f32(*x - sub);
    }
    sum_lanes(v)
});

dispatch!(exp_sub(v: &mut [f32], sub: f32) {
    for x in v.iter_mut() {
        *x = exp_f32(*x - sub);
    }
});

dispatch!(dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s = combine8(acc, |a, b| a + b);
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
});

// `d <- scale * p * (d - dot)` (the softmax backward's last step).
dispatch!(softmax_grad(p: &[f32], d: &mut [f32], dot: f32, scale: f32) {
    for (d, &p) in d.iter_mut().zip(p) {
        *d = scale * (p * (*d - dot));
    }
});

// Writes `out[i]` for every `i < min(len)`; callers pass equal lengths.
dispatch!(gelu_into(x: &[f32], out: &mut [MaybeUninit<f32>]) {
    for (o, &x) in out.iter_mut().zip(x) {
        o.write(0.5 * x * (1.0 + erf_f32(x * std::f32::consts::FRAC_1_SQRT_2)));
    }
});

// `g[i] *= gelu'(x[i])`.
dispatch!(gelu_grad_in_place(x: &[f32], g: &mut [f32]) {
    const INV_SQRT_2PI: f32 = 0.398_942_3;
    for (g, &x) in g.iter_mut().zip(x) {
        // erf(x / sqrt 2) and exp(-x^2 / 2) from one exp
        let (erf, gauss) = erf_and_gauss(x * std::f32::consts::FRAC_1_SQRT_2);
        *g *= 0.5 * (1.0 + erf) + x * INV_SQRT_2PI * gauss;
    }
});

/// Sum of `v` with eight interleaved partial sums (vectorizable; the order differs from a
/// left-to-right sum by rounding only).
#[inline(always)]
fn sum_lanes(v: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = v.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a += x;
        }
    }
    let mut s = combine8(acc, |a, b| a + b);
    for &x in rest {
        s += x;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps(a: f32, b: f32) -> u32 {
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
    }

    #[test]
    fn exp_is_within_two_ulp() {
        let mut worst = 0;
        let mut x = -87.0f32;
        while x < 88.0 {
            let want = (x as f64).exp() as f32;
            let got = exp_f32(x);
            worst = worst.max(ulps(got, want));
            x += 0.000_731;
        }
        assert!(worst <= 2, "worst {worst} ulp");
        assert_eq!(exp_f32(0.0), 1.0);
        assert_eq!(exp_f32(-110.0), 0.0);
        assert!((exp_f32(-100.0) as f64 / (-100f64).exp() - 1.0).abs() < 0.05);
        assert_eq!(exp_f32(89.0), f32::INFINITY);
        assert!((exp_f32(88.7) as f64 / (88.7f32 as f64).exp() - 1.0).abs() < 1e-6);
        assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
        assert!(exp_f32(f32::NAN).is_nan());
        // the slice version (AVX2 where available) agrees with the scalar one bit for bit
        let mut v: Vec<f32> = (0..1000).map(|i| -40.0 + i as f32 * 0.0731).collect();
        let want: Vec<f32> = v.iter().map(|&x| exp_f32(x - 1.5)).collect();
        let sum = exp_sub_sum(&mut v, 1.5);
        assert_eq!(v, want);
        let want_sum: f64 = want.iter().map(|&x| x as f64).sum();
        assert!((sum as f64 / want_sum - 1.0).abs() < 1e-6);
    }

    #[test]
    fn softmax_pieces_match_scalar_code() {
        for n in [1usize, 7, 8, 9, 256, 1001] {
            let v: Vec<f32> = (0..n)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.1)
                .collect();
            let mut s = v.clone();
            let m = scale_max(&mut s, 0.25);
            let want = v.iter().map(|x| x * 0.25).fold(f32::NEG_INFINITY, f32::max);
            assert_eq!(m, want);
            assert_eq!(s, v.iter().map(|x| x * 0.25).collect::<Vec<_>>());
            let w: Vec<f32> = (0..n).map(|i| (i as f32 * 0.3).cos()).collect();
            let want: f64 = v.iter().zip(&w).map(|(&a, &b)| a as f64 * b as f64).sum();
            assert!((dot(&v, &w) as f64 - want).abs() < 1e-4 * (1.0 + want.abs()));
            let mut d = w.clone();
            softmax_grad(&v, &mut d, 0.5, 2.0);
            for i in 0..n {
                assert_eq!(d[i], 2.0 * (v[i] * (w[i] - 0.5)));
            }
        }
    }

    #[test]
    fn erf_is_within_6e7() {
        let mut worst = 0f64;
        let mut x = -6.0f32;
        while x < 6.0 {
            let want = libm_erf(x as f64);
            worst = worst.max((erf_f32(x) as f64 - want).abs());
            x += 0.000_37;
        }
        assert!(worst < 6e-7, "worst {worst:e}");
    }

    #[test]
    fn gelu_slices_match_the_formula() {
        let x: Vec<f32> = (0..777).map(|i| -8.0 + i as f32 * 0.0213).collect();
        let g: Vec<f32> = (0..777).map(|i| 0.5 + (i % 7) as f32).collect();
        let mut y = vec![MaybeUninit::new(f32::NAN); x.len()];
        let mut dy = g.clone();
        gelu_into(&x, &mut y);
        gelu_grad_in_place(&x, &mut dy);
        // SAFETY: initialized above (NaN), then overwritten.
        let y: Vec<f32> = y.into_iter().map(|v| unsafe { v.assume_init() }).collect();
        for i in 0..x.len() {
            let xd = x[i] as f64;
            let cdf = 0.5 * (1.0 + libm_erf(xd / std::f64::consts::SQRT_2));
            let pdf = (-0.5 * xd * xd).exp() / (2.0 * std::f64::consts::PI).sqrt();
            assert!(
                (y[i] as f64 - xd * cdf).abs() < 1e-6 * (1.0 + xd.abs()),
                "gelu({xd})"
            );
            let want = g[i] as f64 * (cdf + xd * pdf);
            assert!(
                (dy[i] as f64 - want).abs() < 1e-6 * (1.0 + want.abs()),
                "gelu'({xd})"
            );
        }
    }

    /// erf in f64 (candle's port of the Boost implementation).
    fn libm_erf(x: f64) -> f64 {
        candle_core::cpu::erf::erf_f64(x)
    }
}
