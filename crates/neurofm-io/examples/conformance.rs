//! Reader conformance against golden values from the reference libraries (MNE).
//!
//! For every file under `<shared>/data` that has a golden JSON in `<shared>/golden` (the path
//! with `/` replaced by `__`, plus `.json`) and an extension a registered reader handles: open it
//! with `open_raw` and compare sampling rate, channel names, kinds, units, number of samples,
//! annotations and per-channel fingerprints (`first5`, mean, std, min, max; tolerance 1e-5 of the
//! channel's range, but not below float32 rounding of the channel's largest magnitude, which
//! float32 storage cannot beat). Prints `PASS`/`FAIL <reasons>`/`SKIP (no reader)` per file and a total line;
//! exits 1 on any failure. With `CI` set, a missing shared directory is a failure.
//!
//! `cargo run -p neurofm-io --example conformance [--shared DIR]`
//! (default `$NEUROFM_SHARED`, else `<repo root>/../shared`).
//!
//! Kinds: MNE's EDF/BDF/GDF readers call every non-stim channel `eeg`; neurofm refines kinds from
//! channel names (`ECG ECG` is `ecg`). A golden `eeg` is accepted for a refined kind only when
//! the refinement is exactly what `neurofm_core::channels::guess_kind` gives for that name; the
//! PASS line counts these.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use neurofm_core::channels::guess_kind;
use neurofm_core::{ChannelKind, Unit};
use neurofm_io::{open_raw, FORMATS};
use serde_json::Value;

fn shared_dir(args: &[String]) -> PathBuf {
    if let Some(i) = args.iter().position(|a| a == "--shared") {
        if let Some(d) = args.get(i + 1) {
            return PathBuf::from(d);
        }
    }
    if let Ok(d) = std::env::var("NEUROFM_SHARED") {
        return PathBuf::from(d);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared")
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn handled(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    FORMATS.iter().any(|f| {
        f.extensions
            .iter()
            .any(|e| name.ends_with(&format!(".{e}")))
    })
}

fn golden_kind(t: &str) -> Option<ChannelKind> {
    Some(match t {
        "eeg" => ChannelKind::Eeg,
        "eog" => ChannelKind::Eog,
        "ecg" => ChannelKind::Ecg,
        "emg" => ChannelKind::Emg,
        "mag" => ChannelKind::MegMag,
        "grad" => ChannelKind::MegGrad,
        "ref_meg" => ChannelKind::MegRef,
        "stim" => ChannelKind::Stim,
        "resp" => ChannelKind::Resp,
        "seeg" => ChannelKind::Seeg,
        "ecog" => ChannelKind::Ecog,
        "misc" => ChannelKind::Misc,
        _ => return None,
    })
}

fn golden_unit(u: &str) -> Unit {
    match u {
        "V" => Unit::Volt,
        "T" => Unit::Tesla,
        "T/m" => Unit::TeslaPerMeter,
        "-1" => Unit::Arbitrary,
        other => Unit::Other(other.to_string()),
    }
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

/// Compares one file; returns (problems, notes).
fn compare(path: &Path, g: &Value) -> Result<(Vec<String>, Vec<String>), String> {
    let mut bad = Vec::new();
    let mut notes = Vec::new();
    let mut r = open_raw(path).map_err(|e| format!("open: {e}"))?;
    let info = r.info().clone();
    let gch = g["channels"].as_array().cloned().unwrap_or_default();
    let n_ch_golden = g["n_channels"].as_u64().unwrap_or(gch.len() as u64) as usize;
    if info.n_channels() != n_ch_golden {
        bad.push(format!(
            "n_channels {} != golden {n_ch_golden}",
            info.n_channels()
        ));
        return Ok((bad, notes));
    }
    if let Some(sf) = g["sfreq"].as_f64() {
        if (info.sfreq_hz - sf).abs() > 1e-9 * sf.abs() {
            bad.push(format!("sfreq {} != golden {sf}", info.sfreq_hz));
        }
    }
    if let Some(nt) = g["n_times"].as_u64() {
        if r.n_times() as u64 != nt {
            bad.push(format!("n_times {} != golden {nt}", r.n_times()));
        }
    }
    if let Some(md) = g["meas_date"].as_str() {
        let ours = info.meas_date.clone().unwrap_or_default();
        if ours.get(..19) != md.get(..19) {
            bad.push(format!("meas_date {ours:?} != golden {md:?}"));
        }
    }
    let mut refined = 0;
    for (i, (c, gc)) in info.channels.iter().zip(&gch).enumerate() {
        let gname = gc["name"].as_str().unwrap_or("");
        if c.name != gname {
            bad.push(format!("channel {i} name {:?} != golden {gname:?}", c.name));
        }
        let gt = gc["type"].as_str().unwrap_or("");
        match golden_kind(gt) {
            Some(k) if k == c.kind => {}
            Some(ChannelKind::Eeg) if guess_kind(&c.name) == Some(c.kind) => refined += 1,
            _ => bad.push(format!(
                "channel {:?} kind {} != golden {gt}",
                c.name, c.kind
            )),
        }
        let gu = golden_unit(gc["unit"].as_str().unwrap_or(""));
        if gu != c.unit {
            bad.push(format!(
                "channel {:?} unit {} != golden {gu}",
                c.name, c.unit
            ));
        }
    }
    if refined > 0 {
        notes.push(format!("{refined} kind(s) refined from names"));
    }
    // annotations (as multisets, sorted by onset, description, duration)
    let key = |o: f64, d: f64, s: &str| (o, s.to_string(), d);
    let mut ours: Vec<_> = r
        .annotations()
        .iter()
        .map(|a| key(a.onset_s, a.duration_s, &a.description))
        .collect();
    let mut gold: Vec<_> = g["annotations"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|a| {
            key(
                f(&a["onset"]),
                f(&a["duration"]),
                a["description"].as_str().unwrap_or(""),
            )
        })
        .collect();
    let by = |a: &(f64, String, f64), b: &(f64, String, f64)| {
        a.0.total_cmp(&b.0)
            .then(a.1.cmp(&b.1))
            .then(a.2.total_cmp(&b.2))
    };
    ours.sort_by(by);
    gold.sort_by(by);
    if ours.len() != gold.len() {
        bad.push(format!(
            "{} annotations != golden {}",
            ours.len(),
            gold.len()
        ));
    } else {
        for (a, b) in ours.iter().zip(&gold) {
            if (a.0 - b.0).abs() > 1e-6 || (a.2 - b.2).abs() > 1e-6 || a.1 != b.1 {
                bad.push(format!("annotation {a:?} != golden {b:?}"));
                break;
            }
        }
    }
    // data fingerprints
    let nc = info.n_channels();
    let n = r.n_times();
    if nc > 0 && g.get("data_si").is_some() {
        let rec = r.read_all().map_err(|e| format!("read_all: {e}"))?;
        let data = rec.signal.data();
        let ds = &g["data_si"];
        for c in 0..nc {
            let row = &data[c * n..(c + 1) * n];
            let gmin = f(&ds["min"][c]);
            let gmax = f(&ds["max"][c]);
            let range = gmax - gmin;
            let scale = if range > 0.0 {
                range
            } else {
                gmax.abs().max(gmin.abs()).max(f64::MIN_POSITIVE)
            };
            // float32 storage: never ask for less than f32 rounding of the channel's largest
            // magnitude (matters for DC channels whose range is tiny next to their offset)
            let f32_rounding = (f32::EPSILON as f64 / 2.0) * gmax.abs().max(gmin.abs());
            let tol = (1e-5 * scale).max(f32_rounding);
            let mut sum = 0.0f64;
            let (mut mn, mut mx) = (f64::INFINITY, f64::NEG_INFINITY);
            for &v in row {
                let v = v as f64;
                sum += v;
                mn = mn.min(v);
                mx = mx.max(v);
            }
            let mean = sum / n.max(1) as f64;
            let var = row
                .iter()
                .map(|&v| (v as f64 - mean) * (v as f64 - mean))
                .sum::<f64>()
                / n.max(1) as f64;
            let std = var.sqrt();
            let mut checks = vec![
                ("mean", mean, f(&ds["mean"][c])),
                ("std", std, f(&ds["std"][c])),
                ("min", mn, gmin),
                ("max", mx, gmax),
            ];
            if let Some(first) = ds["first5"][c].as_array() {
                for (k, v) in first.iter().enumerate() {
                    checks.push((
                        "first5",
                        row.get(k).map(|x| *x as f64).unwrap_or(f64::NAN),
                        f(v),
                    ));
                }
            }
            for (what, ours, gold) in checks {
                let close = (ours - gold).abs() <= tol; // false for NaN
                if !close {
                    bad.push(format!(
                        "channel {:?} {what} {ours:e} != golden {gold:e} (tol {tol:e})",
                        info.channels[c].name
                    ));
                    break;
                }
            }
        }
    }
    Ok((bad, notes))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let shared = shared_dir(&args);
    let data = shared.join("data");
    let golden = shared.join("golden");
    if !data.is_dir() || !golden.is_dir() {
        let msg = format!("shared directory {} not found", shared.display());
        if std::env::var_os("CI").is_some() {
            eprintln!("FAIL: {msg} (CI is set)");
            return ExitCode::FAILURE;
        }
        println!("SKIP: {msg}; set NEUROFM_SHARED or pass --shared DIR");
        return ExitCode::SUCCESS;
    }
    let mut files = Vec::new();
    walk(&data, &mut files);
    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    for p in files {
        let Ok(rel) = p.strip_prefix(&data) else {
            continue;
        };
        let rel_s = rel.to_string_lossy().to_string();
        let gpath = golden.join(format!("{}.json", rel_s.replace('/', "__")));
        if !gpath.is_file() {
            continue;
        }
        if !handled(&p) {
            println!("SKIP (no reader) {rel_s}");
            skipped += 1;
            continue;
        }
        let g: Value = match std::fs::read_to_string(&gpath)
            .map_err(|e| e.to_string())
            .and_then(|s| serde_json::from_str(&s).map_err(|e| e.to_string()))
        {
            Ok(v) => v,
            Err(e) => {
                println!("FAIL {rel_s}: golden {}: {e}", gpath.display());
                failed += 1;
                continue;
            }
        };
        match compare(&p, &g) {
            Ok((bad, notes)) if bad.is_empty() => {
                passed += 1;
                if notes.is_empty() {
                    println!("PASS {rel_s}");
                } else {
                    println!("PASS {rel_s} ({})", notes.join(", "));
                }
            }
            Ok((bad, _)) => {
                failed += 1;
                println!("FAIL {rel_s}: {}", bad.join("; "));
            }
            Err(e) => {
                failed += 1;
                println!("FAIL {rel_s}: {e}");
            }
        }
    }
    println!("{passed} passed, {failed} failed, {skipped} skipped (no reader)");
    if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
