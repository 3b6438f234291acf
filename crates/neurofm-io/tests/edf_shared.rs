//! The conformance check (`check_reader`) on the real EDF/BDF/GDF recordings in the shared data
//! directory (`$NEUROFM_SHARED`, else `<repo root>/../shared`). Without it the test is skipped,
//! except under CI (env `CI` set), where a missing directory fails.

#![allow(clippy::unwrap_used)] // test helpers: a failed setup step should just fail the test

use std::path::{Path, PathBuf};

use neurofm_io::check::check_reader;
use neurofm_io::edf::stim_events;
use neurofm_io::open_raw;

fn shared() -> Option<PathBuf> {
    let dir = std::env::var_os("NEUROFM_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    if dir.join("data").is_dir() {
        Some(dir)
    } else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but the shared data directory {} is missing",
            dir.display()
        );
        eprintln!("skipped: no shared data at {}", dir.display());
        None
    }
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else if let Some(ext) = p.extension() {
            let ext = ext.to_string_lossy().to_ascii_lowercase();
            if ["edf", "bdf", "gdf"].contains(&ext.as_str()) {
                out.push(p);
            }
        }
    }
}

#[test]
fn real_edf_bdf_gdf_files_conform() {
    let Some(dir) = shared() else { return };
    let mut all = Vec::new();
    files(&dir.join("data"), &mut all);
    all.sort();
    // skip the big EEGMAT set in debug test runs except two files; the conformance example
    // covers every file against the golden values
    let mut n = 0;
    for p in all.iter().filter(|p| {
        let s = p.to_string_lossy();
        !s.contains("eegmat") || s.ends_with("Subject00_1.edf") || s.ends_with("Subject13_2.edf")
    }) {
        let rep = check_reader(p).unwrap_or_else(|e| panic!("{e}"));
        assert!(rep.ok(), "{}: {:?}", p.display(), rep.problems);
        n += 1;
    }
    assert!(n >= 10, "only {n} files found under {}", dir.display());
}

#[test]
fn bdf_status_events_match_mne() {
    let Some(dir) = shared() else { return };
    let p = dir.join("data/formats/mne-testing-data/BDF/test_bdf_stim_channel.bdf");
    let mut r = open_raw(&p).unwrap();
    let rec = r.read_all().unwrap();
    let i = rec.info.channel_index("Status").unwrap();
    let ev = stim_events(rec.signal.channel(i).unwrap());
    // mne.find_events(mne.io.read_raw_bdf(p, preload=True), shortest_event=1), MNE 1.13.2
    let mne = [
        (242, 4),
        (310, 2),
        (952, 1),
        (1606, 1),
        (2249, 1),
        (2900, 1),
        (3537, 1),
        (4162, 1),
        (4790, 1),
    ];
    let got: Vec<(usize, i64)> = ev.iter().map(|e| (e.0, e.2)).collect();
    assert_eq!(got, mne);
}

#[test]
fn edf_status_events_match_mne() {
    let Some(dir) = shared() else { return };
    let p = dir.join("data/formats/mne-testing-data/EDF/test_reduced.edf");
    let mut r = open_raw(&p).unwrap();
    let rec = r.read_all().unwrap();
    let i = rec.info.channel_index("Status").unwrap();
    let ev = stim_events(rec.signal.channel(i).unwrap());
    // mne.find_events(mne.io.read_raw_edf(p, preload=True), shortest_event=1), MNE 1.13.2
    let mne = [
        (512, 4096),
        (1603, 4100),
        (1624, 4096),
        (1859, 4100),
        (1881, 4096),
        (2116, 4100),
        (2137, 4096),
        (2372, 4100),
        (2393, 4096),
        (2628, 4100),
        (2649, 4096),
        (2884, 4100),
        (2906, 4096),
    ];
    let got: Vec<(usize, i64)> = ev.iter().map(|e| (e.0, e.2)).collect();
    assert_eq!(got, mne);
}
