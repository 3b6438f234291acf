//! C. elegans: generic neuron matrices (CSV / NPY), homogenization onto the 302 canonical
//! neurons, unknown names, NaN handling, connectomes. Fixtures are generated here.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use neurofm_core::neurons::{neuron_index, NEURONS_302};
use neurofm_io::celegans::{
    homogenize, read_connectome, read_neuron_matrix, HomogenizeOptions, TimeAxis, UnknownNames,
};
use neurofm_io::npy::write_npy_f64;

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn csv_matrix_homogenized_onto_302_rows() {
    let dir = tempfile::tempdir().unwrap();
    // 5 samples at 2 Hz; columns: AVAL, an unidentified ROI, va01 (-> VA1)
    let p = write(
        dir.path(),
        "m.csv",
        "AVAL,,va01\n0,5,1\n1,5,NaN\n2,5,3\n3,5,4\n4,5,5\n",
    );
    let rec = read_neuron_matrix(&p, None, None, TimeAxis::Rate(2.0), UnknownNames::Error).unwrap();
    assert_eq!(rec.recording.info.n_channels(), 3);
    assert_eq!(rec.time_s, vec![0.0, 0.5, 1.0, 1.5, 2.0]);
    let h = homogenize(
        &rec,
        &HomogenizeOptions {
            dt_s: 0.25,
            smooth_samples: None,
            zscore: false,
        },
    )
    .unwrap();
    assert_eq!(h.recording.signal.shape(), vec![302, 9]);
    assert_eq!(h.recording.info.sfreq_hz, 4.0);
    let aval = neuron_index("AVAL").unwrap();
    let va1 = neuron_index("VA1").unwrap();
    assert_eq!(h.mask.iter().filter(|&&m| m == 1.0).count(), 2);
    assert_eq!(h.mask[aval], 1.0);
    assert_eq!(h.mask[va1], 1.0);
    // AVAL goes 0..4 over 2 s: at 0.25 s steps it is 0, 0.5, 1, ...
    let row = h.recording.signal.channel(aval).unwrap();
    for (k, v) in row.iter().enumerate() {
        assert!((v - k as f32 * 0.5).abs() < 1e-6, "{row:?}");
    }
    // VA1's NaN at t=0.5 is filled by interpolation (1 -> 3): 2, reported
    let row = h.recording.signal.channel(va1).unwrap();
    assert!((row[2] - 2.0).abs() < 1e-6, "{row:?}");
    assert!(h.report.iter().any(|r| r.contains("NaN samples filled")));
    assert!(h
        .report
        .iter()
        .any(|r| r.contains("1 of 3 ROIs unidentified")));
    // absent rows are exactly 0, marked by the mask and flagged bad
    let other = neuron_index("ADAL").unwrap();
    assert!(h
        .recording
        .signal
        .channel(other)
        .unwrap()
        .iter()
        .all(|&v| v == 0.0));
    assert!(h.recording.info.channels[other].bad);
    assert!(!h.recording.info.channels[aval].bad);
    assert!(h.recording.signal.data().iter().all(|v| v.is_finite()));
}

#[test]
fn zscore_and_smoothing() {
    let dir = tempfile::tempdir().unwrap();
    let n = 50;
    let mut text = String::from("AVAR,RIML\n");
    for i in 0..n {
        text.push_str(&format!(
            "{},{}\n",
            (i as f64 * 0.3).sin() * 10.0 + 3.0,
            7.0
        ));
    }
    let p = write(dir.path(), "z.csv", &text);
    let rec = read_neuron_matrix(&p, None, None, TimeAxis::Rate(1.0), UnknownNames::Error).unwrap();
    let h = homogenize(
        &rec,
        &HomogenizeOptions {
            dt_s: 1.0,
            smooth_samples: Some(3),
            zscore: true,
        },
    )
    .unwrap();
    let row = h
        .recording
        .signal
        .channel(neuron_index("AVAR").unwrap())
        .unwrap();
    let m: f64 = row.iter().map(|&v| v as f64).sum::<f64>() / row.len() as f64;
    let sd = (row.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / row.len() as f64).sqrt();
    assert!(
        m.abs() < 1e-6 && (sd - 1.0).abs() < 1e-5,
        "mean {m} std {sd}"
    );
    // constant RIML: zeros, reported, still recorded
    let riml = neuron_index("RIML").unwrap();
    assert_eq!(h.mask[riml], 1.0);
    assert!(h.report.iter().any(|r| r.contains("RIML: constant")));
    // even smoothing width is refused
    let e = homogenize(
        &rec,
        &HomogenizeOptions {
            dt_s: 1.0,
            smooth_samples: Some(4),
            zscore: false,
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("smooth_samples"), "{e}");
}

#[test]
fn unknown_names_error_or_reported() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "u.csv", "AVAL,NOTANEURON\n1,2\n3,4\n");
    let e =
        read_neuron_matrix(&p, None, None, TimeAxis::Rate(1.0), UnknownNames::Error).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("NOTANEURON") && msg.contains("u.csv"), "{msg}");
    let rec = read_neuron_matrix(&p, None, None, TimeAxis::Rate(1.0), UnknownNames::Drop).unwrap();
    assert!(rec.recording.info.metadata["calcium.read_report"].contains("NOTANEURON"));
    assert_eq!(rec.recording.info.channels[1].standard_name, None);
}

#[test]
fn npy_matrix_with_names_and_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.npy");
    // 4 samples x 2 neurons, irregular timestamps
    write_npy_f64(&p, &[4, 2], &[0.0, 10.0, 1.0, 10.0, 2.0, 10.0, 3.0, 10.0]).unwrap();
    let names = Some(vec!["SMDVL".to_string(), "SMDVR".to_string()]);
    let rec = read_neuron_matrix(
        &p,
        None,
        names.clone(),
        TimeAxis::Timestamps(vec![100.0, 100.5, 101.5, 103.0]),
        UnknownNames::Error,
    )
    .unwrap();
    let h = homogenize(
        &rec,
        &HomogenizeOptions {
            dt_s: 0.5,
            smooth_samples: None,
            zscore: false,
        },
    )
    .unwrap();
    // 0..3 s at 0.5 s: 7 samples; value 1 at t=0.5, 2 at t=1.5, 3 at t=3
    let row = h
        .recording
        .signal
        .channel(neuron_index("SMDVL").unwrap())
        .unwrap();
    assert_eq!(row.len(), 7);
    assert!(
        (row[1] - 1.0).abs() < 1e-6 && (row[3] - 2.0).abs() < 1e-6 && (row[6] - 3.0).abs() < 1e-6,
        "{row:?}"
    );
    assert!((row[2] - 1.5).abs() < 1e-6, "{row:?}");
    // non-increasing timestamps are an error naming the parameter
    let e = read_neuron_matrix(
        &p,
        None,
        names,
        TimeAxis::Timestamps(vec![0.0, 1.0, 1.0, 2.0]),
        UnknownNames::Error,
    )
    .unwrap_err();
    assert!(e.to_string().contains("timestamps"), "{e}");
}

#[test]
fn connectome_edge_list_and_matrix() {
    let dir = tempfile::tempdir().unwrap();
    let chem = write(
        dir.path(),
        "chem.csv",
        "pre,post,weight\nAVAL,AVAR,3\nAVAL,AVAR,2\nRIML,AVAL,1\n",
    );
    // square matrix for gap junctions, only one direction given
    let gap = write(
        dir.path(),
        "gap.csv",
        ",AVAL,AVAR,RIML\nAVAL,0,4,0\nAVAR,0,0,0\nRIML,1,0,0\n",
    );
    let c = read_connectome(Some(&chem), Some(&gap), UnknownNames::Error).unwrap();
    let (a, b, r) = (
        neuron_index("AVAL").unwrap(),
        neuron_index("AVAR").unwrap(),
        neuron_index("RIML").unwrap(),
    );
    assert_eq!(c.nodes.len(), 302);
    assert_eq!(c.nodes[a], NEURONS_302[a]);
    assert_eq!(c.chemical[a * 302 + b], 5.0); // repeated edge summed
    assert_eq!(c.chemical[b * 302 + a], 0.0); // directed
    assert_eq!(c.chemical[r * 302 + a], 1.0);
    assert_eq!(c.gap[a * 302 + b], 4.0);
    assert_eq!(c.gap[b * 302 + a], 4.0); // symmetric
    assert_eq!(c.gap[a * 302 + r], 1.0);
    assert_eq!(c.chemical.iter().sum::<f32>(), 6.0);
    assert!(c.report.iter().any(|m| m.contains("repeated")));

    let bad = write(dir.path(), "bad.csv", "pre,post,weight\nAVAL,XXX,1\n");
    let e = read_connectome(Some(&bad), None, UnknownNames::Error).unwrap_err();
    assert!(e.to_string().contains("XXX"), "{e}");
    let c = read_connectome(Some(&bad), None, UnknownNames::Drop).unwrap();
    assert_eq!(c.chemical.iter().sum::<f32>(), 0.0);
    assert!(c.report[0].contains("XXX"));
    let ragged = write(dir.path(), "r.csv", ",AVAL,AVAR\nAVAL,1\n");
    assert!(read_connectome(None, Some(&ragged), UnknownNames::Error).is_err());
}

#[test]
fn resample_rois_keeps_file_order_and_flags_all_nan() {
    let dir = tempfile::tempdir().unwrap();
    // 3 unnamed ROIs at 1 Hz: a ramp, an all-NaN ROI, a constant with one NaN
    let p = write(dir.path(), "r.csv", "a,b,c\n0,NaN,2\n2,NaN,NaN\n4,NaN,2\n");
    let names = Some(vec![String::new(); 3]);
    let rec =
        read_neuron_matrix(&p, None, names, TimeAxis::Rate(1.0), UnknownNames::Error).unwrap();
    let opts = HomogenizeOptions {
        dt_s: 0.5,
        smooth_samples: None,
        zscore: false,
    };
    let h = neurofm_io::celegans::resample_rois(&rec, &opts).unwrap();
    assert_eq!(h.recording.signal.shape(), vec![3, 5]);
    assert_eq!(h.mask, vec![1.0, 0.0, 1.0]);
    assert_eq!(
        h.recording.signal.channel(0).unwrap(),
        &[0.0, 1.0, 2.0, 3.0, 4.0]
    );
    assert!(h
        .recording
        .signal
        .channel(1)
        .unwrap()
        .iter()
        .all(|&v| v == 0.0));
    assert!(h.recording.info.channels[1].bad && !h.recording.info.channels[0].bad);
    assert_eq!(h.recording.signal.channel(2).unwrap(), &[2.0; 5]);
    assert!(
        h.report.iter().any(|r| r.contains("all NaN")),
        "{:?}",
        h.report
    );
    // the canonical mapping of the same (unnamed) ROIs places nothing
    let c = homogenize(&rec, &opts).unwrap();
    assert!(c.mask.iter().all(|&m| m == 0.0));
}
