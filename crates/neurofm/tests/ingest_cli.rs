//! `neurofm ingest` end to end: file-name patterns, resume, duplicates, and BIDS roots.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

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
