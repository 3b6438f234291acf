//! Kills `neurofm ingest` at several moments and checks that the store still opens, lists only
//! complete recordings whose data equal the sources, and that a second run resumes.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use neurofm_data::Store;

const BIN: &str = env!("CARGO_BIN_EXE_neurofm");

fn run_ok(args: &[&str]) {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "neurofm {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every listed recording is complete and equals its source file.
fn check_store(store_dir: &Path) -> usize {
    let store = Store::open(store_dir).expect("a killed ingest must leave a store that opens");
    for e in store.entries() {
        let view = store.view(&e.id).expect("listed recordings are complete");
        let src = neurofm_io::read_recording(Path::new(&e.provenance.source_path)).unwrap();
        assert_eq!(view.shape(), src.signal.shape().as_slice(), "{}", e.id);
        assert!(
            view.data().as_ref() == src.signal.data(),
            "{}: data differ",
            e.id
        );
        assert_eq!(e.annotations, src.annotations);
    }
    store.len()
}

#[test]
fn killed_ingest_leaves_a_valid_store_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let edf = tmp.path().join("edf");
    let edf_s = edf.to_str().unwrap();
    run_ok(&[
        "synth",
        "--quiet",
        "--preset",
        "tiny",
        "--subjects",
        "10",
        "--out",
        tmp.path().join("synth").to_str().unwrap(),
        "--edf-dir",
        edf_s,
    ]);
    let n_files = std::fs::read_dir(&edf).unwrap().count();
    assert_eq!(n_files, 10);

    let mut saw_partial = false;
    for (k, delay_ms) in [5u64, 30, 80, 150, 300, 600].into_iter().enumerate() {
        let store_dir = tmp.path().join(format!("store-{k}"));
        let store_s = store_dir.to_str().unwrap();
        let mut child = Command::new(BIN)
            .args([
                "ingest",
                "--quiet",
                "--commit-every",
                "1",
                edf_s,
                "--out",
                store_s,
            ])
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill(); // SIGKILL; the child may already have finished
        let _ = child.wait();
        let listed = if store_dir.join("manifest.json").exists() {
            check_store(&store_dir)
        } else {
            0
        };
        saw_partial |= listed < n_files;
        // A second run completes the store, skipping what is already there.
        run_ok(&["ingest", "--quiet", edf_s, "--out", store_s]);
        assert_eq!(check_store(&store_dir), n_files);
        let leftovers: Vec<_> = std::fs::read_dir(store_dir.join("data"))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    }
    assert!(
        saw_partial,
        "no kill landed mid-ingest; the test did not exercise a crash"
    );
}

#[test]
fn errors_name_the_path_and_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["inspect", tmp.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is not a neurofm store") && err.contains("manifest.json is missing"),
        "{err}"
    );

    // A truncated data file: inspect still works from the manifest, reading reports the file.
    let store = tmp.path().join("s");
    run_ok(&[
        "synth",
        "--quiet",
        "--preset",
        "tiny",
        "--subjects",
        "1",
        "--out",
        store.to_str().unwrap(),
    ]);
    let s = Store::open(&store).unwrap();
    let e = &s.entries()[0];
    let p = store.join(&e.path);
    let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
    f.set_len(100).unwrap();
    run_ok(&["inspect", store.to_str().unwrap()]);
    let err = s.view(&e.id).unwrap_err().to_string();
    assert!(err.contains(&e.path), "{err}");

    // Newer format version.
    let m = store.join("manifest.json");
    let text = std::fs::read_to_string(&m).unwrap().replacen(
        "\"format_version\":1",
        "\"format_version\":7",
        1,
    );
    std::fs::write(&m, text).unwrap();
    let out = Command::new(BIN)
        .args(["inspect", store.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("format version 7 is newer"));
}
