#![allow(clippy::unwrap_used)]
//! BIDS scanning and sidecars on a small tree built in a temporary folder.

mod vendor_common;

use std::path::Path;

use neurofm_core::{ChannelKind, Modality};
use neurofm_io::bids::{parse_entities, scan};
use neurofm_io::IoError;
use vendor_common::check_reader;

/// Writes a 3-channel, 100-sample INT_16 BrainVision triple named `<stem>.{vhdr,vmrk,eeg}`.
fn write_bv(dir: &Path, stem: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let mut eeg = Vec::new();
    for t in 0..100i16 {
        for c in 0..3i16 {
            eeg.extend_from_slice(&(t * (c + 1)).to_le_bytes());
        }
    }
    std::fs::write(dir.join(format!("{stem}.eeg")), eeg).unwrap();
    std::fs::write(
        dir.join(format!("{stem}.vhdr")),
        format!(
            "Brain Vision Data Exchange Header File Version 1.0\n[Common Infos]\nDataFile={stem}.eeg\nMarkerFile={stem}.vmrk\n\
             DataFormat=BINARY\nDataOrientation=MULTIPLEXED\nNumberOfChannels=3\nSamplingInterval=10000\n\
             [Binary Infos]\nBinaryFormat=INT_16\n[Channel Infos]\nCh1=Cz,,1,µV\nCh2=EOG1,,1,µV\nCh3=Trig,,1,µV\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join(format!("{stem}.vmrk")),
        format!(
            "Brain Vision Data Exchange Marker File Version 1.0\n[Common Infos]\nDataFile={stem}.eeg\n\
             [Marker Infos]\nMk1=New Segment,,1,1,0,20200101000000000000\nMk2=Stimulus,S  1,11,1,0\n"
        ),
    )
    .unwrap();
}

fn build(root: &Path) {
    std::fs::write(
        root.join("participants.tsv"),
        "participant_id\tage\tsex\nsub-01\t34\tF\nsub-02\tn/a\tM\n",
    )
    .unwrap();
    let d1 = root.join("sub-01/eeg");
    write_bv(&d1, "sub-01_task-rest_run-1_eeg");
    std::fs::write(
        d1.join("sub-01_task-rest_run-1_events.tsv"),
        "onset\tduration\ttrial_type\tvalue\n0.5\t0.25\tgo\t1\n0.7\tn/a\tn/a\t2\nn/a\t0\tlost\t3\n",
    )
    .unwrap();
    std::fs::write(
        d1.join("sub-01_task-rest_run-1_channels.tsv"),
        "name\ttype\tunits\tstatus\nCz\tEEG\tµV\tgood\nEOG1\tEOG\tµV\tbad\nTrig\tTRIG\tn/a\tgood\n",
    )
    .unwrap();
    std::fs::write(d1.join("sub-01_task-rest_run-1_eeg.json"), "{}").unwrap();
    let d2 = root.join("sub-02/ses-A/eeg");
    write_bv(&d2, "sub-02_ses-A_task-oddball_eeg");
    std::fs::create_dir_all(root.join("sub-02/ses-A/meg/sub-02_ses-A_task-oddball_meg.ds"))
        .unwrap();
    std::fs::create_dir_all(root.join("derivatives/sub-09/eeg")).unwrap();
    std::fs::create_dir_all(root.join("sub-03/anat")).unwrap();
}

#[test]
fn entities_from_file_names() {
    let (e, s) = parse_entities("sub-01_ses-2_task-rest_acq-hi_run-03_eeg.vhdr");
    assert_eq!(s, "eeg");
    let keys: Vec<&str> = e.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["sub", "ses", "task", "acq", "run"]);
    assert_eq!(e[4].1, "03");
}

#[test]
fn scan_finds_recordings_and_applies_sidecars() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path());
    let recs = scan(dir.path()).unwrap();
    let names: Vec<String> = recs
        .iter()
        .map(|r| r.path.file_name().unwrap().to_string_lossy().to_string())
        .collect();
    assert_eq!(
        names,
        [
            "sub-01_task-rest_run-1_eeg.vhdr",
            "sub-02_ses-A_task-oddball_eeg.vhdr",
            "sub-02_ses-A_task-oddball_meg.ds"
        ]
    );
    let r1 = &recs[0];
    assert_eq!(
        (
            r1.subject.as_str(),
            r1.task.as_deref(),
            r1.run.as_deref(),
            r1.session.as_deref()
        ),
        ("01", Some("rest"), Some("1"), None)
    );
    assert!(r1.events_tsv.is_some() && r1.channels_tsv.is_some());

    let mut reader = r1.open().unwrap();
    let rec = check_reader(reader.as_mut());
    assert_eq!(rec.info.subject.as_deref(), Some("01"));
    assert_eq!(rec.info.task.as_deref(), Some("rest"));
    assert_eq!(
        rec.info.metadata.get("participant.age").map(String::as_str),
        Some("34")
    );
    assert_eq!(
        rec.info.metadata.get("participant.sex").map(String::as_str),
        Some("F")
    );
    let kinds: Vec<ChannelKind> = rec.info.channels.iter().map(|c| c.kind).collect();
    assert_eq!(
        kinds,
        [ChannelKind::Eeg, ChannelKind::Eog, ChannelKind::Stim]
    );
    assert!(rec.info.channels[1].bad && !rec.info.channels[0].bad);
    // events.tsv replaces the marker-file annotations; n/a onset dropped; value used when
    // trial_type is n/a.
    let a = &rec.annotations;
    assert_eq!(a.len(), 2);
    assert_eq!(
        (a[0].onset_s, a[0].duration_s, a[0].description.as_str()),
        (0.5, 0.25, "go")
    );
    assert_eq!((a[1].duration_s, a[1].description.as_str()), (0.0, "2"));
    // Data are the file's.
    assert_eq!(rec.signal.channel(2).unwrap()[10], 30e-6);

    // No sidecars: the file's own annotations stay.
    let r2 = &recs[1];
    assert_eq!(r2.session.as_deref(), Some("A"));
    let rec2 = r2.read().unwrap();
    assert_eq!(rec2.annotations.len(), 1);
    assert_eq!(rec2.annotations[0].description, "Stimulus/S  1");
    assert_eq!(
        rec2.info
            .metadata
            .get("participant.sex")
            .map(String::as_str),
        Some("M")
    );
    assert_eq!(rec2.info.modality, Modality::Eeg);

    // CTF .ds directories are listed but refused clearly.
    let err = recs[2].open().err().unwrap();
    assert!(matches!(err, IoError::Unsupported { .. }), "{err}");
    assert!(err.to_string().contains(".ds"));
}

#[test]
fn renamed_channels_and_bad_sidecars() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path());
    let d1 = dir.path().join("sub-01/eeg");
    let ch = d1.join("sub-01_task-rest_run-1_channels.tsv");
    // Same count, other names: renamed in order.
    std::fs::write(
        &ch,
        "name\ttype\tunits\nA\tEEG\tV\nB\tEEG\tV\nC\tMISC\tn/a\n",
    )
    .unwrap();
    let rec = scan(dir.path()).unwrap()[0].read().unwrap();
    let names: Vec<&str> = rec.info.channels.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["A", "B", "C"]);
    // Different count and unknown names: an error naming the file and the column.
    std::fs::write(&ch, "name\ttype\nA\tEEG\n").unwrap();
    let err = scan(dir.path()).unwrap()[0].open().err().unwrap();
    assert!(
        matches!(err, IoError::Header { ref field, .. } if field == "name"),
        "{err}"
    );
    assert!(err.to_string().contains("channels.tsv"));
    // A row with the wrong number of values.
    std::fs::write(&ch, "name\ttype\nCz\n").unwrap();
    let err = scan(dir.path()).unwrap()[0].open().err().unwrap();
    assert!(err.to_string().contains("row 2"), "{err}");
    // Non-numeric onset.
    std::fs::write(&ch, "name\ttype\nCz\tEEG\n").unwrap();
    std::fs::write(
        d1.join("sub-01_task-rest_run-1_events.tsv"),
        "onset\tduration\nsoon\t1\n",
    )
    .unwrap();
    let err = scan(dir.path()).unwrap()[0].open().err().unwrap();
    assert!(
        matches!(err, IoError::Header { ref field, .. } if field.starts_with("onset")),
        "{err}"
    );
    // Not a directory.
    assert!(scan(&dir.path().join("nope")).is_err());
}
