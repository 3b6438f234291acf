//! `neurofm ingest` for calcium imaging (Dag et al. 2023 HDF5, generic neuron matrices), ROI
//! series (`--as fmri-roi`) and `neurofm ingest-connectome`. Fixtures are written here; the Dag
//! files are used from `$NEUROFM_SHARED` (else `<repo>/../shared`) when present.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use neurofm_core::neurons::neuron_index;
use neurofm_core::Modality;
use neurofm_data::Store;

const BIN: &str = env!("CARGO_BIN_EXE_neurofm");

fn neurofm(args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn ok(args: &[&str]) -> String {
    let out = neurofm(args);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{args:?}: {err}");
    err
}

fn fails(args: &[&str]) -> String {
    let out = neurofm(args);
    assert_eq!(out.status.code(), Some(2), "{args:?} should fail");
    String::from_utf8_lossy(&out.stderr).to_string()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn calcium_csv_matrix_homogenized_with_mask() {
    let tmp = tempfile::tempdir().unwrap();
    let csv = tmp.path().join("worm.csv");
    // 5 samples at 2 Hz: AVAL ramps 0..4, an unnamed ROI, va01 (= VA1) with a NaN
    std::fs::write(&csv, "AVAL,,va01\n0,5,1\n1,5,NaN\n2,5,3\n3,5,4\n4,5,5\n").unwrap();
    let store = tmp.path().join("store");
    // without --as the CSV is refused with the reason
    let e = fails(&["ingest", s(&csv), "--out", s(&store)]);
    assert!(e.contains("worm.csv") && e.contains("--as"), "{e}");
    // --as without a rate is refused, naming the file
    let e = fails(&["ingest", s(&csv), "--as", "calcium", "--out", s(&store)]);
    assert!(e.contains("worm.csv") && e.contains("--sfreq"), "{e}");
    let err = ok(&[
        "ingest",
        s(&csv),
        "--as",
        "calcium",
        "--sfreq",
        "2",
        "--dt",
        "0.25",
        "--subject",
        "w1",
        "--out",
        s(&store),
    ]);
    assert!(err.contains("2 of 302 rows recorded"), "{err}");
    assert!(err.contains("1 of 3 ROIs unidentified"), "{err}");
    let st = Store::open(&store).unwrap();
    let e = &st.entries()[0];
    assert_eq!(e.modality, Modality::Calcium);
    assert_eq!(e.subject.as_deref(), Some("w1"));
    assert_eq!(e.sfreq_hz, 4.0);
    let v = st.view(&e.id).unwrap();
    assert_eq!(v.shape(), &[302, 9]);
    let (mshape, mask) = v.extra("mask").unwrap();
    assert_eq!(mshape, vec![302]);
    let (aval, va1) = (neuron_index("AVAL").unwrap(), neuron_index("VA1").unwrap());
    assert_eq!(mask.iter().filter(|&&m| m == 1.0).count(), 2);
    assert_eq!((mask[aval], mask[va1]), (1.0, 1.0));
    let row = v.row(aval).unwrap();
    for (k, x) in row.iter().enumerate() {
        assert!((x - k as f32 * 0.5).abs() < 1e-6, "{row:?}");
    }
    // VA1's NaN at 0.5 s is interpolated between 1 and 3
    assert!((v.row(va1).unwrap()[2] - 2.0).abs() < 1e-6);
    // absent neurons: zero rows, mask 0, flagged bad
    let other = neuron_index("ADAL").unwrap();
    assert!(v.row(other).unwrap().iter().all(|&x| x == 0.0));
    assert!(e.channels[other].bad && !e.channels[aval].bad);
    assert!(e.metadata["calcium.homogenize_report"].contains("NaN samples filled"));
}

#[test]
fn unknown_neuron_names_error_or_drop_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let npy = tmp.path().join("m.npy");
    // 3 neurons x 4 samples (channels first)
    neurofm_io::npy::write_npy_f64(
        &npy,
        &[3, 4],
        &[0.0, 1.0, 2.0, 3.0, 5.0, 5.0, 5.0, 5.0, 9.0, 8.0, 7.0, 6.0],
    )
    .unwrap();
    let names = tmp.path().join("names.txt");
    std::fs::write(&names, "SMDVL\nNOTANEURON\nRIML\n").unwrap();
    let store = tmp.path().join("store");
    let base = [
        "ingest",
        s(&npy),
        "--as",
        "calcium",
        "--sfreq",
        "1",
        "--dt",
        "1",
        "--channels-first",
        "--names",
        s(&names),
        "--out",
        s(&store),
    ];
    let e = fails(&base);
    assert!(e.contains("NOTANEURON") && e.contains("m.npy"), "{e}");
    let mut drop = base.to_vec();
    drop.extend(["--unknown-neurons", "drop"]);
    let err = ok(&drop);
    assert!(err.contains("NOTANEURON"), "{err}");
    let st = Store::open(&store).unwrap();
    let e = &st.entries()[0];
    assert!(e.metadata["calcium.read_report"].contains("NOTANEURON"));
    let v = st.view(&e.id).unwrap();
    assert_eq!(v.shape(), &[302, 4]);
    assert_eq!(
        v.row(neuron_index("RIML").unwrap()).unwrap().to_vec(),
        vec![9.0, 8.0, 7.0, 6.0]
    );
    let (_, mask) = v.extra("mask").unwrap();
    assert_eq!(mask.iter().sum::<f32>(), 2.0);

    // a comma-separated --names list, z-scored: each recorded row has mean 0, std 1
    let store2 = tmp.path().join("store2");
    ok(&[
        "ingest",
        s(&npy),
        "--as",
        "calcium",
        "--sfreq",
        "1",
        "--dt",
        "1",
        "--channels-first",
        "--names",
        "SMDVL,,RIML",
        "--normalize",
        "zscore",
        "--out",
        s(&store2),
    ]);
    let st = Store::open(&store2).unwrap();
    let v = st.view(&st.entries()[0].id).unwrap();
    let row = v.row(neuron_index("SMDVL").unwrap()).unwrap();
    let m = row.iter().sum::<f32>() / 4.0;
    let sd = (row.iter().map(|x| (x - m) * (x - m)).sum::<f32>() / 4.0).sqrt();
    assert!(m.abs() < 1e-6 && (sd - 1.0).abs() < 1e-5, "{row:?}");
}

#[test]
fn roi_series_npy_and_csv_as_fmri_roi() {
    let tmp = tempfile::tempdir().unwrap();
    let npy = tmp.path().join("roi.npy");
    // time x ROI: 3 TRs x 2 ROIs
    neurofm_io::npy::write_npy_f64(&npy, &[3, 2], &[1.0, 10.0, 2.0, 20.0, 3.0, 30.0]).unwrap();
    let csv = tmp.path().join("roi.csv");
    std::fs::write(&csv, "V1,MT\n1,2\n3,4\n").unwrap();
    let store = tmp.path().join("store");
    ok(&[
        "ingest",
        tmp.path().to_str().unwrap(),
        "--as",
        "fmri-roi",
        "--tr",
        "2.0",
        "--pattern",
        r"roi\.(?P<run>\w+)",
        "--subject",
        "01",
        "--out",
        s(&store),
    ]);
    let st = Store::open(&store).unwrap();
    assert_eq!(st.len(), 2);
    for e in st.entries() {
        assert_eq!(e.modality, Modality::FmriRoi);
        assert_eq!(e.sfreq_hz, 0.5);
        let v = st.view(&e.id).unwrap();
        match e.run.as_deref() {
            Some("npy") => {
                assert_eq!(e.channels[0].name, "roi0");
                assert_eq!(v.row(1).unwrap().to_vec(), vec![10.0, 20.0, 30.0]);
            }
            Some("csv") => {
                assert_eq!(e.channels[1].name, "MT");
                assert_eq!(v.row(1).unwrap().to_vec(), vec![2.0, 4.0]);
            }
            other => panic!("run {other:?}"),
        }
    }
    // --names with the wrong count names the problem
    let e = fails(&[
        "ingest",
        s(&npy),
        "--as",
        "fmri-roi",
        "--tr",
        "2",
        "--names",
        "a,b,c",
        "--out",
        s(&tmp.path().join("s2")),
    ]);
    assert!(
        e.contains("roi.npy") && e.contains("3 names for 2 channels"),
        "{e}"
    );
}

#[test]
fn connectome_edge_list_and_matrix_into_a_graph() {
    let tmp = tempfile::tempdir().unwrap();
    let chem = tmp.path().join("chem.csv");
    std::fs::write(
        &chem,
        "pre,post,weight\nAVAL,AVAR,3\nAVAL,AVAR,2\nRIML,AVAL,1\n",
    )
    .unwrap();
    let gap = tmp.path().join("gap.csv");
    std::fs::write(&gap, ",AVAL,AVAR\nAVAL,0,4\nAVAR,0,0\n").unwrap();
    let store = tmp.path().join("store");
    let err = ok(&[
        "ingest-connectome",
        "--chemical",
        s(&chem),
        "--gap",
        s(&gap),
        "--out",
        s(&store),
    ]);
    assert!(
        err.contains("2 chemical edges, 1 gap-junction pairs") && err.contains("summed"),
        "{err}"
    );
    let st = Store::open(&store).unwrap();
    let g = &st.graphs()[0];
    assert_eq!(g.name, "connectome");
    assert_eq!(g.nodes.len(), 302);
    let (aval, avar, riml) = (
        neuron_index("AVAL").unwrap(),
        neuron_index("AVAR").unwrap(),
        neuron_index("RIML").unwrap(),
    );
    let c = st.graph_tensor("connectome", "chemical").unwrap();
    assert_eq!(c[aval * 302 + avar], 5.0);
    assert_eq!(c[riml * 302 + aval], 1.0);
    assert_eq!(c[avar * 302 + aval], 0.0);
    let gj = st.graph_tensor("connectome", "gap").unwrap();
    assert_eq!((gj[aval * 302 + avar], gj[avar * 302 + aval]), (4.0, 4.0));
    assert!(g.metadata["chemical"]["source_sha256"].is_string());
    // inspect lists the graph
    let out = neurofm(&["inspect", s(&store)]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("graph         connectome over 302"));
    // unknown names: refused by default, dropped and reported on request
    std::fs::write(&chem, "pre,post,weight\nAVAL,XYZ1,1\n").unwrap();
    let e = fails(&[
        "ingest-connectome",
        "--chemical",
        s(&chem),
        "--out",
        s(&store),
    ]);
    assert!(e.contains("XYZ1") && e.contains("chem.csv"), "{e}");
    ok(&[
        "ingest-connectome",
        "--chemical",
        s(&chem),
        "--name",
        "dropped",
        "--unknown-neurons",
        "drop",
        "--out",
        s(&store),
    ]);
    let st = Store::open(&store).unwrap();
    let g = st.graphs().iter().find(|g| g.name == "dropped").unwrap();
    assert!(g.metadata["report"].to_string().contains("XYZ1"));
    let e = fails(&["ingest-connectome", "--out", s(&store)]);
    assert!(e.contains("--chemical"), "{e}");
}

#[test]
fn hdf5_without_dag_layout_is_explained() {
    let tmp = tempfile::tempdir().unwrap();
    let h5 = tmp.path().join("x.h5");
    std::fs::write(&h5, b"not hdf5 at all").unwrap();
    let e = fails(&["ingest", s(&h5), "--out", s(&tmp.path().join("st"))]);
    assert!(e.contains("x.h5") && e.contains("Dag"), "{e}");
}

fn shared() -> PathBuf {
    std::env::var_os("NEUROFM_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
}

#[test]
fn dag2023_files_rois_and_canonical_with_labels() {
    let dir = shared().join("data/celegans-dag2023");
    if !dir.is_dir() {
        eprintln!("skipped: {} not found (set NEUROFM_SHARED)", dir.display());
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    // the files store no neuron names: canonical rows are refused with the way out
    let e = fails(&["ingest", s(&dir), "--out", s(&store)]);
    assert!(
        e.contains("--neuropal-labels") && e.contains("--calcium-rows rois"),
        "{e}"
    );
    // whole directory, ROIs kept, subject from the file name
    ok(&[
        "ingest",
        s(&dir),
        "--calcium-rows",
        "rois",
        "--pattern",
        r"(?P<subject>[0-9-]+)-data\.h5",
        "--out",
        s(&store),
    ]);
    let st = Store::open(&store).unwrap();
    assert_eq!(st.len(), 5);
    for e in st.entries() {
        assert_eq!(e.modality, Modality::Calcium);
        assert_eq!(e.sfreq_hz, 2.0);
        let v = st.view(&e.id).unwrap();
        let (n_roi, n_t) = (v.shape()[0], v.shape()[1]);
        assert!(n_roi > 100, "{e:?}");
        let (cs, _) = v.extra("covariates").unwrap();
        assert_eq!(cs[1], n_t);
        assert!(cs[0] >= 5, "covariates {cs:?}");
        assert!(v.data().iter().all(|x| x.is_finite()));
    }

    // canonical rows from a NeuroPAL label table: two uniquely matched NeuroPAL ROIs
    let f = dir.join("swf702_with_id/2022-07-26-31-data.h5");
    let (_, rm) =
        neurofm_io::celegans::read_h5_dataset_f64(&f, "neuropal_registration/roi_match").unwrap();
    let (tshape, tr) = neurofm_io::celegans::read_h5_dataset_f64(&f, "gcamp/trace_array").unwrap();
    let uniq: Vec<(usize, usize)> = rm
        .iter()
        .enumerate()
        .filter(|(_, &g)| g >= 1.0 && rm.iter().filter(|&&h| h == g).count() == 1)
        .map(|(i, &g)| (i + 1, g as usize))
        .take(2)
        .collect();
    let [(n1, g1), (n2, g2)] = uniq[..] else {
        panic!("fewer than 2 uniquely matched NeuroPAL ROIs");
    };
    let labels = tmp.path().join("labels.csv");
    std::fs::write(
        &labels,
        format!("neuropal_roi,neuron\n{n1},AVAL\n{n2},avar\n"),
    )
    .unwrap();
    let store2 = tmp.path().join("store2");
    let err = ok(&[
        "ingest",
        s(&f),
        "--neuropal-labels",
        s(&labels),
        "--out",
        s(&store2),
    ]);
    assert!(err.contains("2 of 302 rows recorded"), "{err}");
    let st = Store::open(&store2).unwrap();
    let e = &st.entries()[0];
    let v = st.view(&e.id).unwrap();
    assert_eq!(v.shape()[0], 302);
    let (_, mask) = v.extra("mask").unwrap();
    let (aval, avar) = (neuron_index("AVAL").unwrap(), neuron_index("AVAR").unwrap());
    assert_eq!(mask.iter().sum::<f32>(), 2.0);
    assert_eq!((mask[aval], mask[avar]), (1.0, 1.0));
    // t = 0 is the first timestamp: the stored value is the file's first sample of that ROI
    // (h5py's time x ROI layout)
    let n_roi = tshape[1];
    for (idx, g) in [(aval, g1), (avar, g2)] {
        let want = tr[g - 1] as f32;
        let got = v.row(idx).unwrap()[0];
        assert!(
            (got - want).abs() <= 1e-6 * want.abs().max(1.0),
            "{got} vs {want}"
        );
        assert!(g <= n_roi);
    }
    assert!(e.labels["covariates"].to_string().contains("velocity"));
    // an unknown name in the label table is refused, naming it
    std::fs::write(&labels, "neuropal_roi,neuron\n1,NOTANEURON\n").unwrap();
    let e = fails(&[
        "ingest",
        s(&f),
        "--neuropal-labels",
        s(&labels),
        "--out",
        s(&tmp.path().join("store3")),
    ]);
    assert!(e.contains("NOTANEURON"), "{e}");
}
