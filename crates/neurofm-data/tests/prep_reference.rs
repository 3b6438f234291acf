//! Compares neurofm's preprocessing kernels with MNE / scipy on real EEGMAT data.
//!
//! The reference outputs are written by `scripts/reference/make_prep_reference.py` (MNE 1.13.2,
//! scipy 1.15.3) into `data/cache/prep-reference/` (or `$NEUROFM_PREP_REFERENCE`). When they are
//! missing the tests fail under CI (`CI` set) and are skipped with a message otherwise.
//!
//! Tolerances (relative to the channel's largest absolute reference value):
//! FIR filters and notch (MNE) 1e-4 (both the `f64` and the `f32` overlap-add), `resample_poly`
//! and `sosfiltfilt` (scipy) 1e-5.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use neurofm_data::dsp::{fir, iir, resample};

fn reference_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("NEUROFM_PREP_REFERENCE") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/cache/prep-reference"),
    };
    if dir.join("manifest.json").is_file() {
        return Some(dir);
    }
    let msg = format!(
        "prep reference files missing in {}: run `python3 scripts/reference/make_prep_reference.py`",
        dir.display()
    );
    if std::env::var_os("CI").is_some() {
        panic!("{msg}");
    }
    eprintln!("skipping: {msg}");
    None
}

/// A minimal reader for the little-endian float64 C-order `.npy` files numpy writes.
fn read_npy(path: &Path) -> (Vec<usize>, Vec<f64>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        &bytes[..6],
        b"\x93NUMPY",
        "{}: not an npy file",
        path.display()
    );
    let major = bytes[6];
    let (hlen, hstart) = if major == 1 {
        (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10)
    } else {
        (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        )
    };
    let header = std::str::from_utf8(&bytes[hstart..hstart + hlen]).expect("header is ascii");
    assert!(
        header.contains("'descr': '<f8'"),
        "{}: {header}",
        path.display()
    );
    assert!(header.contains("'fortran_order': False"), "{header}");
    let shape_str = header
        .split("'shape': (")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .expect("shape");
    let shape: Vec<usize> = shape_str
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().expect("shape entry"))
        .collect();
    let data: Vec<f64> = bytes[hstart + hlen..]
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect();
    assert_eq!(data.len(), shape.iter().product::<usize>());
    (shape, data)
}

fn rows(shape: &[usize], data: &[f64]) -> Vec<Vec<f64>> {
    let n = shape[1];
    data.chunks_exact(n).map(<[f64]>::to_vec).collect()
}

/// max |a - b| / max |b| over one channel.
fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "length");
    let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let err = a
        .iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()));
    err / scale
}

struct Case {
    name: String,
    sfreq: f64,
    input: Vec<Vec<f64>>,
}

fn cases(dir: &Path) -> Vec<Case> {
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).expect("manifest"))
            .expect("manifest json");
    manifest["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .filter(|c| c["case"].as_str() != Some("chain_s01_2"))
        .map(|c| {
            let name = c["case"].as_str().expect("case").to_string();
            let (shape, data) = read_npy(&dir.join(format!("{name}.input.npy")));
            Case {
                sfreq: c["sfreq"].as_f64().expect("sfreq"),
                input: rows(&shape, &data),
                name,
            }
        })
        .collect()
}

fn check(dir: &Path, case: &Case, step: &str, tol: f64, f: &dyn Fn(&[f64]) -> Vec<f64>) {
    check_as(dir, case, step, step, tol, f);
}

/// Compares `f` with the reference output of `step`, reporting it as `name`.
fn check_as(
    dir: &Path,
    case: &Case,
    step: &str,
    name: &str,
    tol: f64,
    f: &dyn Fn(&[f64]) -> Vec<f64>,
) {
    let (shape, data) = read_npy(&dir.join(format!("{}.{step}.npy", case.name)));
    let expected = rows(&shape, &data);
    for (ch, (x, want)) in case.input.iter().zip(&expected).enumerate() {
        let got = f(x);
        let e = rel_err(&got, want);
        eprintln!("{} {name} ch{ch}: rel err {e:.2e}", case.name);
        assert!(
            e <= tol,
            "{} {name} channel {ch}: relative error {e:e} > {tol:e}",
            case.name
        );
    }
}

/// The `f64` overlap-add, and the `f32` one recipes use (input rounded to `f32` first, as the
/// store holds it).
fn check_fir(dir: &Path, case: &Case, step: &str, h: &[f64]) {
    check(dir, case, step, 1e-4, &|x| {
        fir::filter_zero_phase(h, x).unwrap()
    });
    let name = format!("{step}.f32");
    check_as(dir, case, step, &name, 1e-4, &|x| {
        let x32: Vec<f32> = x.iter().map(|v| *v as f32).collect();
        fir::filter_zero_phase_f32(h, &x32)
            .unwrap()
            .iter()
            .map(|v| f64::from(*v))
            .collect()
    });
}

#[test]
fn fir_filters_match_mne() {
    let Some(dir) = reference_dir() else { return };
    for case in cases(&dir) {
        let sf = case.sfreq;
        let bp = fir::design_pass(sf, Some(0.3), Some(75.0), None, None).unwrap();
        check_fir(&dir, &case, "bandpass_0.3_75", &bp);
        let hp = fir::design_pass(sf, Some(1.0), None, None, None).unwrap();
        check_fir(&dir, &case, "highpass_1", &hp);
        let lp = fir::design_pass(sf, None, Some(40.0), None, None).unwrap();
        check_fir(&dir, &case, "lowpass_40", &lp);
    }
}

#[test]
fn notch_matches_mne() {
    let Some(dir) = reference_dir() else { return };
    for case in cases(&dir) {
        let sf = case.sfreq;
        let n1 = fir::design_notch(sf, &[50.0], None, 1.0).unwrap();
        check_fir(&dir, &case, "notch50", &n1);
        let n2 = fir::design_notch(sf, &[50.0, 100.0], None, 1.0).unwrap();
        check_fir(&dir, &case, "notch50_100", &n2);
    }
}

#[test]
fn resample_poly_matches_scipy() {
    let Some(dir) = reference_dir() else { return };
    for case in cases(&dir) {
        for (up, down) in [(2u64, 5u64), (4, 3), (1, 4)] {
            let r = resample::PolyphaseResampler::new(up, down).unwrap();
            check(&dir, &case, &format!("resample_{up}_{down}"), 1e-5, &|x| {
                r.apply(x)
            });
        }
    }
}

#[test]
fn sosfiltfilt_matches_scipy() {
    let Some(dir) = reference_dir() else { return };
    use iir::BandType::*;
    for case in cases(&dir) {
        let sf = case.sfreq;
        for (name, order, band) in [
            ("butter_bandpass_4", 4, Bandpass(1.0, 40.0)),
            ("butter_lowpass_3", 3, Lowpass(30.0)),
            ("butter_highpass_5", 5, Highpass(0.5)),
            ("butter_bandstop_2", 2, Bandstop(48.0, 52.0)),
        ] {
            let sos = iir::butter_sos(order, band, sf).unwrap();
            check(&dir, &case, name, 1e-5, &|x| {
                iir::sosfiltfilt(&sos, x).unwrap()
            });
        }
    }
}

/// The whole `configs/recipes/eegmat-200hz.toml` (without its window step) on a real EEGMAT EDF
/// read by neurofm-io, against MNE's `read_raw_edf` + `notch_filter` + `filter_data` + scipy's
/// `resample_poly` + division by 100 µV, within 1e-4 of each channel's range.
#[test]
fn eegmat_recipe_matches_mne_chain() {
    let Some(dir) = reference_dir() else { return };
    let shared = std::env::var_os("NEUROFM_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    let edf = shared.join("data/eegmat/Subject01_2.edf");
    let rec = neurofm_io::read_recording(&edf)
        .unwrap_or_else(|e| panic!("{}: {e} (set NEUROFM_SHARED)", edf.display()));
    let recipe_path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/recipes/eegmat-200hz.toml");
    let mut recipe = neurofm_data::Recipe::from_path(&recipe_path).unwrap();
    assert!(recipe.window().is_some());
    recipe.steps.pop();
    let (out, _) = recipe.apply(rec, "Subject01_2").unwrap();
    let (shape, data) = read_npy(&dir.join("chain_s01_2.output.npy"));
    let expected = rows(&shape, &data);
    assert_eq!(out.info.sfreq_hz, 200.0);
    assert_eq!(out.info.channels.len(), 19);
    for (ch, want) in expected.iter().enumerate() {
        let got: Vec<f64> = out
            .signal
            .channel(ch)
            .unwrap()
            .iter()
            .map(|v| f64::from(*v))
            .collect();
        let e = rel_err(&got, want);
        eprintln!("chain {}: rel err {e:.2e}", out.info.channels[ch].name);
        assert!(e <= 1e-4, "channel {ch}: relative error {e:e}");
    }
}
