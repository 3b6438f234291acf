//! Butterworth filters as second-order sections (`scipy.signal.butter(..., output='sos')`) and
//! zero-phase forward-backward filtering (`scipy.signal.sosfiltfilt` with `padtype='odd'`,
//! the default `padlen`, and `sosfilt_zi` initial conditions).
//!
//! The result of `sosfiltfilt` depends only on the overall transfer function and on how many
//! sections are first-order (which sets the default padding), so the sections here are grouped
//! as scipy groups them for those counts: conjugate pole pairs, the real pole of an odd order in
//! a section padded with a pole and a zero at the origin.

use std::f64::consts::PI;

use realfft::num_complex::Complex;

use super::{odd_extend, DspError};

type C = Complex<f64>;

/// Which band a Butterworth filter passes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BandType {
    Lowpass(f64),
    Highpass(f64),
    Bandpass(f64, f64),
    Bandstop(f64, f64),
}

/// One second-order section `[b0, b1, b2, a0=1, a1, a2]`.
pub type Sos = [f64; 6];

fn prod(v: &[C]) -> C {
    v.iter().fold(C::new(1.0, 0.0), |a, b| a * b)
}

/// `scipy.signal.butter(order, Wn, btype, fs=sfreq, output='zpk')`.
fn butter_zpk(order: usize, band: BandType, sfreq: f64) -> Result<(Vec<C>, Vec<C>, f64), DspError> {
    if order == 0 {
        return Err(DspError::invalid("butterworth", "order must be at least 1"));
    }
    let nyq = sfreq / 2.0;
    let check = |f: f64, name: &str| -> Result<f64, DspError> {
        if !(f > 0.0 && f < nyq) {
            return Err(DspError::invalid(
                "butterworth",
                format!("{name} {f} Hz must be in (0, Nyquist = {nyq} Hz)"),
            ));
        }
        // normalized to Nyquist, then pre-warped as scipy does with fs = 2
        let wn = 2.0 * f / sfreq;
        Ok(2.0 * 2.0 * (PI * wn / 2.0).tan())
    };
    // analog prototype
    let n = order as i64;
    let p: Vec<C> = (0..order)
        .map(|i| {
            let m = (-n + 1 + 2 * i as i64) as f64;
            -(C::new(0.0, PI * m / (2.0 * n as f64))).exp()
        })
        .collect();
    let z: Vec<C> = Vec::new();
    let k = 1.0;
    let (z, p, k) = match band {
        BandType::Lowpass(f) => {
            let wo = check(f, "cutoff")?;
            let degree = p.len() - z.len();
            (
                z.iter().map(|v| v * wo).collect::<Vec<_>>(),
                p.iter().map(|v| v * wo).collect::<Vec<_>>(),
                k * wo.powi(degree as i32),
            )
        }
        BandType::Highpass(f) => {
            let wo = check(f, "cutoff")?;
            let degree = p.len() - z.len();
            let mut zh: Vec<C> = z.iter().map(|v| wo / v).collect();
            let ph: Vec<C> = p.iter().map(|v| wo / v).collect();
            zh.extend(std::iter::repeat_n(C::new(0.0, 0.0), degree));
            let kk = k
                * (prod(&z.iter().map(|v| -v).collect::<Vec<_>>())
                    / prod(&p.iter().map(|v| -v).collect::<Vec<_>>()))
                .re;
            (zh, ph, kk)
        }
        BandType::Bandpass(lo, hi) | BandType::Bandstop(lo, hi) => {
            if !(lo < hi) {
                return Err(DspError::invalid(
                    "butterworth",
                    format!("band edges must increase, got {lo} and {hi} Hz"),
                ));
            }
            let w1 = check(lo, "low edge")?;
            let w2 = check(hi, "high edge")?;
            let bw = w2 - w1;
            let wo = (w1 * w2).sqrt();
            let degree = p.len() - z.len();
            let split = |v: &[C]| -> Vec<C> {
                let mut out: Vec<C> = v.iter().map(|x| x + (x * x - wo * wo).sqrt()).collect();
                out.extend(v.iter().map(|x| x - (x * x - wo * wo).sqrt()));
                out
            };
            if matches!(band, BandType::Bandpass(..)) {
                let zl: Vec<C> = z.iter().map(|v| v * bw / 2.0).collect();
                let pl: Vec<C> = p.iter().map(|v| v * bw / 2.0).collect();
                let mut zb = split(&zl);
                let pb = split(&pl);
                zb.extend(std::iter::repeat_n(C::new(0.0, 0.0), degree));
                (zb, pb, k * bw.powi(degree as i32))
            } else {
                let zh: Vec<C> = z.iter().map(|v| (bw / 2.0) / v).collect();
                let ph: Vec<C> = p.iter().map(|v| (bw / 2.0) / v).collect();
                let mut zb = split(&zh);
                let pb = split(&ph);
                zb.extend(std::iter::repeat_n(C::new(0.0, wo), degree));
                zb.extend(std::iter::repeat_n(C::new(0.0, -wo), degree));
                let kk = k
                    * (prod(&z.iter().map(|v| -v).collect::<Vec<_>>())
                        / prod(&p.iter().map(|v| -v).collect::<Vec<_>>()))
                    .re;
                (zb, pb, kk)
            }
        }
    };
    // bilinear transform with fs = 2
    let fs2 = C::new(4.0, 0.0);
    let degree = p.len() - z.len();
    let mut zz: Vec<C> = z.iter().map(|v| (fs2 + v) / (fs2 - v)).collect();
    let pz: Vec<C> = p.iter().map(|v| (fs2 + v) / (fs2 - v)).collect();
    zz.extend(std::iter::repeat_n(C::new(-1.0, 0.0), degree));
    let kz = k
        * (prod(&z.iter().map(|v| fs2 - v).collect::<Vec<_>>())
            / prod(&p.iter().map(|v| fs2 - v).collect::<Vec<_>>()))
        .re;
    Ok((zz, pz, kz))
}

/// Splits roots into conjugate pairs (upper half-plane member first) and real roots.
fn pair_roots(r: &[C]) -> (Vec<C>, Vec<f64>) {
    let tol = 1e-9;
    let mut complex: Vec<C> = r.iter().filter(|v| v.im > tol).copied().collect();
    complex.sort_by(|a, b| a.re.total_cmp(&b.re));
    let mut real: Vec<f64> = r
        .iter()
        .filter(|v| v.im.abs() <= tol)
        .map(|v| v.re)
        .collect();
    real.sort_by(f64::total_cmp);
    (complex, real)
}

/// Butterworth filter of `order` as second-order sections (scipy's `butter(..., output='sos')`
/// up to section grouping).
pub fn butter_sos(order: usize, band: BandType, sfreq: f64) -> Result<Vec<Sos>, DspError> {
    let (z, p, k) = butter_zpk(order, band, sfreq)?;
    let (pc, mut pr) = pair_roots(&p);
    let (zc, mut zr) = pair_roots(&z);
    // Pad to an even count with a root at the origin, as zpk2sos does for odd orders.
    if pr.len() % 2 == 1 {
        pr.push(0.0);
    }
    while zc.len() * 2 + zr.len() < pc.len() * 2 + pr.len() {
        zr.push(0.0);
    }
    // Keep the origin-padded real pair last, like scipy's first-order section: sort reals so that
    // the 0.0 pads sit together.
    let mut pole_quads: Vec<[f64; 2]> = pc.iter().map(|c| [-2.0 * c.re, c.norm_sqr()]).collect();
    let mut rp = pr.clone();
    // pair real poles: put the padding zero (if any) with one real pole
    rp.sort_by(|a, b| (a.abs()).total_cmp(&b.abs()));
    for pair in rp.chunks(2) {
        pole_quads.push([-(pair[0] + pair[1]), pair[0] * pair[1]]);
    }
    let mut zero_quads: Vec<[f64; 2]> = zc.iter().map(|c| [-2.0 * c.re, c.norm_sqr()]).collect();
    // pair real zeros: one +1 and one -1 where both exist (bandpass), zeros at origin last
    let mut plus: Vec<f64> = zr.iter().copied().filter(|v| *v > 0.5).collect();
    let mut minus: Vec<f64> = zr.iter().copied().filter(|v| *v < -0.5).collect();
    let mut other: Vec<f64> = zr.iter().copied().filter(|v| v.abs() <= 0.5).collect();
    let mut real_pairs: Vec<[f64; 2]> = Vec::new();
    while !plus.is_empty() && !minus.is_empty() {
        if let (Some(a), Some(b)) = (plus.pop(), minus.pop()) {
            real_pairs.push([a, b]);
        }
    }
    let mut rest: Vec<f64> = Vec::new();
    rest.append(&mut plus);
    rest.append(&mut minus);
    rest.append(&mut other);
    // origin zeros last so that they land in the same section as the origin pole
    rest.sort_by(|a, b| b.abs().total_cmp(&a.abs()));
    for pair in rest.chunks(2) {
        let (a, b) = (pair[0], *pair.get(1).unwrap_or(&0.0));
        real_pairs.push([a, b]);
    }
    for pair in real_pairs {
        zero_quads.push([-(pair[0] + pair[1]), pair[0] * pair[1]]);
    }
    let n_sec = pole_quads.len();
    if zero_quads.len() != n_sec {
        return Err(DspError::invalid(
            "butterworth",
            format!("{} zero pairs for {} pole pairs", zero_quads.len(), n_sec),
        ));
    }
    // The section with a pole at the origin gets the zero pair with one at the origin.
    let origin_pole = pole_quads.iter().position(|q| q[1] == 0.0);
    let origin_zero = zero_quads.iter().position(|q| q[1] == 0.0);
    if let (Some(ip), Some(iz)) = (origin_pole, origin_zero) {
        zero_quads.swap(ip, iz);
    }
    let mut sos: Vec<Sos> = pole_quads
        .iter()
        .zip(&zero_quads)
        .map(|(p, z)| [1.0, z[0], z[1], 1.0, p[0], p[1]])
        .collect();
    if let Some(first) = sos.first_mut() {
        first[0] *= k;
        first[1] *= k;
        first[2] *= k;
    }
    Ok(sos)
}

/// `scipy.signal.sosfilt_zi`: steady-state states of each section for a unit step.
fn sosfilt_zi(sos: &[Sos]) -> Vec<[f64; 2]> {
    let mut scale = 1.0;
    sos.iter()
        .map(|s| {
            let (b0, b1, b2, a1, a2) = (s[0], s[1], s[2], s[4], s[5]);
            let g = (b0 + b1 + b2) / (1.0 + a1 + a2);
            // direct form II transposed steady state for input 1 and output g
            let z2 = b2 - a2 * g;
            let z1 = b1 - a1 * g + z2;
            let zi = [scale * z1, scale * z2];
            scale *= g;
            zi
        })
        .collect()
}

fn sosfilt_inplace(sos: &[Sos], x: &mut [f64], zi: &[[f64; 2]], x0: f64) {
    for (s, z) in sos.iter().zip(zi) {
        let (b0, b1, b2, a1, a2) = (s[0], s[1], s[2], s[4], s[5]);
        let mut z1 = z[0] * x0;
        let mut z2 = z[1] * x0;
        for v in x.iter_mut() {
            let xin = *v;
            let y = b0 * xin + z1;
            z1 = b1 * xin - a1 * y + z2;
            z2 = b2 * xin - a2 * y;
            *v = y;
        }
    }
}

/// The default `padlen` of `sosfiltfilt`.
pub fn default_padlen(sos: &[Sos]) -> usize {
    let zb = sos.iter().filter(|s| s[2] == 0.0).count();
    let za = sos.iter().filter(|s| s[5] == 0.0).count();
    3 * (2 * sos.len() + 1 - zb.min(za))
}

/// `scipy.signal.sosfiltfilt(sos, x)` (padtype 'odd', default padlen).
pub fn sosfiltfilt(sos: &[Sos], x: &[f64]) -> Result<Vec<f64>, DspError> {
    let edge = default_padlen(sos);
    if x.len() <= edge {
        return Err(DspError::invalid(
            "sosfiltfilt",
            format!(
                "the signal ({} samples) must be longer than padlen ({edge})",
                x.len()
            ),
        ));
    }
    let mut ext = odd_extend(x, edge);
    let zi = sosfilt_zi(sos);
    let x0 = ext[0];
    sosfilt_inplace(sos, &mut ext, &zi, x0);
    ext.reverse();
    let y0 = ext[0];
    sosfilt_inplace(sos, &mut ext, &zi, y0);
    ext.reverse();
    Ok(ext[edge..ext.len() - edge].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gain_at(sos: &[Sos], f: f64, sfreq: f64) -> f64 {
        let w = 2.0 * PI * f / sfreq;
        let zinv = C::new(0.0, -w).exp();
        let mut h = C::new(1.0, 0.0);
        for s in sos {
            let num = s[0] + s[1] * zinv + s[2] * zinv * zinv;
            let den = s[3] + s[4] * zinv + s[5] * zinv * zinv;
            h *= num / den;
        }
        h.norm()
    }

    #[test]
    fn butterworth_is_3db_at_cutoff() {
        for (band, f_cut, f_pass, f_stop) in [
            (BandType::Lowpass(30.0), 30.0, 1.0, 150.0),
            (BandType::Highpass(5.0), 5.0, 100.0, 0.2),
        ] {
            for order in [1, 2, 3, 4, 5] {
                let sos = butter_sos(order, band, 500.0).unwrap();
                assert_eq!(sos.len(), order.div_ceil(2));
                assert!((gain_at(&sos, f_cut, 500.0) - 0.5f64.sqrt()).abs() < 1e-9);
                assert!((gain_at(&sos, f_pass, 500.0) - 1.0).abs() < 1e-3);
                let stop = gain_at(&sos, f_stop, 500.0);
                assert!(stop < 0.5f64.powi(order as i32), "order {order}: {stop}");
            }
        }
        let sos = butter_sos(4, BandType::Bandpass(8.0, 12.0), 250.0).unwrap();
        assert_eq!(sos.len(), 4);
        assert!((gain_at(&sos, 8.0, 250.0) - 0.5f64.sqrt()).abs() < 1e-9);
        assert!((gain_at(&sos, 12.0, 250.0) - 0.5f64.sqrt()).abs() < 1e-9);
        let sos = butter_sos(2, BandType::Bandstop(48.0, 52.0), 250.0).unwrap();
        assert!(gain_at(&sos, 50.0, 250.0) < 1e-2);
        assert!((gain_at(&sos, 20.0, 250.0) - 1.0).abs() < 1e-3);
    }

    #[test]
    fn odd_order_padlen_counts_first_order_section() {
        let sos = butter_sos(3, BandType::Lowpass(30.0), 500.0).unwrap();
        assert_eq!(default_padlen(&sos), 3 * (2 * 2 + 1 - 1));
        let sos = butter_sos(4, BandType::Lowpass(30.0), 500.0).unwrap();
        assert_eq!(default_padlen(&sos), 3 * (2 * 2 + 1));
    }

    #[test]
    fn filtfilt_passes_constants() {
        let sos = butter_sos(4, BandType::Lowpass(30.0), 500.0).unwrap();
        let y = sosfiltfilt(&sos, &vec![2.5; 300]).unwrap();
        for v in y {
            assert!((v - 2.5).abs() < 1e-9);
        }
    }
}
