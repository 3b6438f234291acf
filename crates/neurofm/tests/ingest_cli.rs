//! `neurofm ingest` end to end: file-name patterns, resume, duplicates, and BIDS roots; NIfTI
//! volumes ingested then prepared with the fMRI example recipe and a generated atlas.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use neurofm_core::{Info, Modality, Recording, Signal};
use neurofm_data::synth::{generate, SynthConfig};
use neurofm_data::Store;

const BIN: &str = env!("CARGO_BIN_EXE_neurofm");

fn neurofm(args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn write_edfs(dir: &Path, names: &[&str]) {
    std::fs::create_dir_all(dir).unwrap();
    for name in names {
        // A different seed per file name, so every file has its own content (and sha256).
        let mut cfg = SynthConfig::preset("tiny").unwrap();
        cfg.n_subjects = 1;
        cfg.seed = name
            .bytes()
            .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
        let rec = &generate(&cfg).unwrap()[0];
        neurofm_io::edf_write::write_edf_plus(&dir.join(name), rec).unwrap();
    }
}

#[test]
fn pattern_fills_entities_and_labels_and_reruns_skip() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    write_edfs(
        &src,
        &["Subject00_1.edf", "Subject00_2.edf", "Subject01_1.edf"],
    );
    let store = tmp.path().join("store");
    let args = [
        "ingest",
        src.to_str().unwrap(),
        "--out",
        store.to_str().unwrap(),
        "--pattern",
        r"Subject(?P<subject>\d+)_(?P<run>\d)(?P<condition>)\.edf",
        "--task",
        "arith",
        "--label",
        "dataset=demo",
    ];
    let out = neurofm(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = Store::open(&store).unwrap();
    assert_eq!(s.len(), 3);
    let e = &s.entries()[1];
    assert_eq!(e.subject.as_deref(), Some("00"));
    assert_eq!(e.task.as_deref(), Some("arith"));
    assert_eq!(e.run.as_deref(), Some("2"));
    assert_eq!(e.labels["condition"], "");
    assert_eq!(e.labels["dataset"], "demo");
    assert!(!e.annotations.is_empty());
    // Second run: everything already present.
    let out = neurofm(&args);
    assert!(String::from_utf8_lossy(&out.stderr).contains("0 added, 3 already present"));
    // A file that does not match the pattern is an error naming it.
    write_edfs(&tmp.path().join("other"), &["weird.edf"]);
    let mut bad = args;
    let other = tmp.path().join("other");
    bad[1] = other.to_str().unwrap();
    let out = neurofm(&bad);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("weird.edf: file name does not match"));
}

#[test]
fn same_subject_and_run_from_another_file_is_reported_as_duplicate() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    write_edfs(&a, &["x.edf", "y.edf"]);
    let store = tmp.path().join("store");
    let out = neurofm(&[
        "ingest",
        a.to_str().unwrap(),
        "--out",
        store.to_str().unwrap(),
        "--subject",
        "07",
        "--run",
        "1",
    ]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(err.contains("1 duplicate(s)"), "{err}");
    assert_eq!(Store::open(&store).unwrap().len(), 1);
}

#[test]
fn bids_root_is_ingested_with_entities_events_and_participants() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("bids");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(
        root.join("dataset_description.json"),
        r#"{"Name": "demo", "BIDSVersion": "1.9.0"}"#,
    )
    .unwrap();
    std::fs::write(
        root.join("participants.tsv"),
        "participant_id\tage\nsub-01\t31\nsub-02\t45\n",
    )
    .unwrap();
    for sub in ["01", "02"] {
        let d = root.join(format!("sub-{sub}/ses-a/eeg"));
        let stem = format!("sub-{sub}_ses-a_task-mi_run-1");
        write_edfs(&d, &[&format!("{stem}_eeg.edf")]);
        std::fs::write(
            d.join(format!("{stem}_events.tsv")),
            "onset\tduration\ttrial_type\n1.0\t2.0\tleft\n5.5\t2.0\tright\n",
        )
        .unwrap();
    }
    let store = tmp.path().join("store");
    let out = neurofm(&[
        "ingest",
        root.to_str().unwrap(),
        "--out",
        store.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = Store::open(&store).unwrap();
    assert_eq!(s.len(), 2);
    let e = s
        .entry("sub-02_ses-a_task-mi_run-1")
        .expect("BIDS entities give the id");
    assert_eq!(e.session.as_deref(), Some("a"));
    assert_eq!(e.metadata["participant.age"], "45");
    let descs: Vec<&str> = e
        .annotations
        .iter()
        .map(|a| a.description.as_str())
        .collect();
    assert_eq!(descs, ["left", "right"]);
    assert_eq!(e.annotations[1].onset_s, 5.5);
}

#[test]
fn prefetched_and_streamed_ingest_store_the_same_data() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    write_edfs(&src, &["a.edf", "b.edf", "c.edf"]);
    let mut data = Vec::new();
    for mib in ["64", "0"] {
        let store = tmp.path().join(format!("store{mib}"));
        let out = neurofm(&[
            "ingest",
            src.to_str().unwrap(),
            "--out",
            store.to_str().unwrap(),
            "--prefetch-mib",
            mib,
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let s = Store::open(&store).unwrap();
        assert_eq!(s.len(), 3);
        let all: Vec<(String, Vec<f32>)> = s
            .entries()
            .iter()
            .map(|e| (e.id.clone(), s.view(&e.id).unwrap().data().to_vec()))
            .collect();
        data.push(all);
    }
    assert_eq!(data[0], data[1]);
}

/// A `[12, 10, 12, 8]` BOLD-like run at TR 2.5 s: background 2, a brain box whose intensity
/// varies with position, time and subject.
fn bold(subject: usize) -> Recording {
    let (nt, dims) = (12, [10usize, 12, 8]);
    let mut data = Vec::with_capacity(nt * dims.iter().product::<usize>());
    for t in 0..nt {
        for x in 0..dims[0] {
            for y in 0..dims[1] {
                for z in 0..dims[2] {
                    let brain = (2..8).contains(&x) && (2..10).contains(&y) && (1..7).contains(&z);
                    data.push(if brain {
                        600.0
                            + (x * 5 + y * 3 + z) as f32
                            + ((t as f32 * 0.9 + x as f32) * (subject as f32 + 1.0)).sin() * 20.0
                    } else {
                        2.0
                    });
                }
            }
        }
    }
    let affine = [
        [-3.0, 0.0, 0.0, 30.0],
        [0.0, 3.0, 0.0, -40.0],
        [0.0, 0.0, 3.0, -20.0],
        [0.0, 0.0, 0.0, 1.0],
    ];
    Recording::new(
        Info::new(Modality::FmriVolume, 1.0 / 2.5, vec![]),
        Signal::Volumes {
            n_volumes: nt,
            dims,
            affine,
            data,
        },
        vec![],
    )
    .unwrap()
}

#[test]
fn fmri_volumes_ingested_then_prepared_to_roi_series_with_an_atlas_file() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    for s in [1, 2] {
        neurofm_io::nifti::write_nifti1(&src.join(format!("sub-0{s}_bold.nii.gz")), &bold(s))
            .unwrap();
    }
    let store = tmp.path().join("store");
    let out = neurofm(&[
        "ingest",
        src.to_str().unwrap(),
        "--out",
        store.to_str().unwrap(),
        "--pattern",
        r"sub-(?P<subject>\d+)_bold\.nii\.gz",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        Store::open(&store).unwrap().entries()[0].shape,
        vec![12, 10, 12, 8]
    );

    // The committed example recipe, next to a generated atlas on the 96³ grid the recipe makes:
    // the bold grid padded (one volume), labels 1..3 by x inside the brain box.
    let recipes = tmp.path().join("recipes");
    std::fs::create_dir_all(&recipes).unwrap();
    let example =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/recipes/fmri-roi-example.toml");
    let recipe = recipes.join("fmri-roi-example.toml");
    std::fs::copy(&example, &recipe).unwrap();
    let mut one = bold(1);
    if let Signal::Volumes {
        n_volumes, data, ..
    } = &mut one.signal
    {
        *n_volumes = 1;
        data.truncate(10 * 12 * 8);
    }
    let mut atlas = neurofm_data::fmri::crop_or_pad(&one, [96, 96, 96], 0.0).unwrap();
    for (i, v) in atlas.signal.data_mut().iter_mut().enumerate() {
        let x = i / (96 * 96);
        *v = if *v > 100.0 { (1 + x % 3) as f32 } else { 0.0 };
    }
    neurofm_io::nifti::write_nifti1(&recipes.join("atlas-96.nii.gz"), &atlas).unwrap();
    std::fs::write(recipes.join("atlas-96.tsv"), "1\tA\n2\tB\n3\tC\n").unwrap();

    let prepared = tmp.path().join("prepared");
    let args = [
        "prepare",
        "--recipe",
        recipe.to_str().unwrap(),
        "--input",
        store.to_str().unwrap(),
        "--output",
        prepared.to_str().unwrap(),
    ];
    let out = neurofm(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = Store::open(&prepared).unwrap();
    assert_eq!(s.len(), 2);
    for e in s.entries() {
        assert_eq!(e.modality, Modality::FmriRoi);
        // 12 volumes at TR 2.5 s span 27.5 s: 14 time points at TR 2 s
        assert_eq!(e.shape, vec![3, 14]);
        assert!((e.sfreq_hz - 0.5).abs() < 1e-12);
        let names: Vec<&str> = e.channels.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["A", "B", "C"]);
        assert!(e.affine.is_none());
        let files = e.recipe.as_ref().unwrap()["files"]
            .as_array()
            .unwrap()
            .clone();
        let keys: Vec<&str> = files.iter().map(|f| f["key"].as_str().unwrap()).collect();
        assert_eq!(keys, ["atlas", "labels"]);
        assert!(e.metadata.contains_key("fmri.parcellate"));
    }
    assert_eq!(s.entries()[0].subject.as_deref(), Some("01"));
    // resumed: nothing to do
    let out = neurofm(&args);
    assert!(String::from_utf8_lossy(&out.stderr).contains("prepared 0 recordings"));

    // a missing atlas fails before any work, naming the step and the file
    std::fs::remove_file(recipes.join("atlas-96.nii.gz")).unwrap();
    let fresh = tmp.path().join("fresh");
    let mut bad = args;
    bad[6] = fresh.to_str().unwrap();
    let out = neurofm(&bad);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("step 3 (`parcellate`): atlas") && err.contains("atlas-96.nii.gz"),
        "{err}"
    );
    assert!(!fresh.exists());

    // a channel step on volumes is refused by --check
    let filter = tmp.path().join("filter.toml");
    std::fs::write(&filter, "[[steps]]\ntype = \"filter\"\nh_freq = 0.1\n").unwrap();
    let out = neurofm(&[
        "prepare",
        "--recipe",
        filter.to_str().unwrap(),
        "--input",
        store.to_str().unwrap(),
        "--output",
        fresh.to_str().unwrap(),
        "--check",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("step 0 (`filter`): needs a channel recording; this one is volumes [t, x, y, z] = [12, 10, 12, 8] — parcellate first"), "{err}");
}
