//! EDF/EDF+/BDF fixtures built byte by byte in the tests: calibration (negative gain), sub-second
//! start, UTF-8 TALs, several annotation channels, mixed rates, discontinuous files, and bad input
//! that must give an error naming the file and the field (never a panic).

#![allow(clippy::unwrap_used)] // test helpers: a failed setup step should just fail the test

use std::path::{Path, PathBuf};

use neurofm_core::{ChannelKind, Unit};
use neurofm_io::check::check_reader;
use neurofm_io::edf::stim_events;
use neurofm_io::{open_raw, IoError};

#[derive(Clone)]
struct Sig {
    label: String,
    dim: String,
    pmin: String,
    pmax: String,
    dmin: String,
    dmax: String,
    n: usize,
}

fn sig(label: &str, dim: &str, p: (f64, f64), d: (i64, i64), n: usize) -> Sig {
    Sig {
        label: label.into(),
        dim: dim.into(),
        pmin: p.0.to_string(),
        pmax: p.1.to_string(),
        dmin: d.0.to_string(),
        dmax: d.1.to_string(),
        n,
    }
}

fn tal_sig(n: usize, bdf: bool) -> Sig {
    sig(
        if bdf {
            "BDF Annotations"
        } else {
            "EDF Annotations"
        },
        "",
        (-1.0, 1.0),
        if bdf {
            (-8388608, 8388607)
        } else {
            (-32768, 32767)
        },
        n,
    )
}

fn field(s: &str, w: usize) -> Vec<u8> {
    let mut b = s.as_bytes().to_vec();
    b.resize(w, b' ');
    b
}

struct Edf {
    bdf: bool,
    reserved: String,
    n_records: String,
    record_s: String,
    recording: String,
    date: String,
    time: String,
    sigs: Vec<Sig>,
}

enum Samples {
    Digital(Vec<i32>),
    Tal(String),
}

impl Edf {
    fn new(bdf: bool, sigs: Vec<Sig>, n_records: usize) -> Self {
        Edf {
            bdf,
            reserved: if bdf { "BDF+C".into() } else { "EDF+C".into() },
            n_records: n_records.to_string(),
            record_s: "1".into(),
            recording: "Startdate 02-MAR-2021 X X X".into(),
            date: "02.03.21".into(),
            time: "10.20.30".into(),
            sigs,
        }
    }

    fn header(&self) -> Vec<u8> {
        let ns = self.sigs.len();
        let mut h = Vec::new();
        if self.bdf {
            h.push(0xff);
            h.extend_from_slice(b"BIOSEMI");
        } else {
            h.extend(field("0", 8));
        }
        h.extend(field("X X X X", 80));
        h.extend(field(&self.recording, 80));
        h.extend(field(&self.date, 8));
        h.extend(field(&self.time, 8));
        h.extend(field(&(256 * (ns + 1)).to_string(), 8));
        h.extend(field(&self.reserved, 44));
        h.extend(field(&self.n_records, 8));
        h.extend(field(&self.record_s, 8));
        h.extend(field(&ns.to_string(), 4));
        let s = &self.sigs;
        s.iter().for_each(|x| h.extend(field(&x.label, 16)));
        s.iter().for_each(|_| h.extend(field("", 80)));
        s.iter().for_each(|x| h.extend(field(&x.dim, 8)));
        s.iter().for_each(|x| h.extend(field(&x.pmin, 8)));
        s.iter().for_each(|x| h.extend(field(&x.pmax, 8)));
        s.iter().for_each(|x| h.extend(field(&x.dmin, 8)));
        s.iter().for_each(|x| h.extend(field(&x.dmax, 8)));
        s.iter().for_each(|_| h.extend(field("", 80)));
        s.iter().for_each(|x| h.extend(field(&x.n.to_string(), 8)));
        s.iter().for_each(|_| h.extend(field("", 32)));
        h
    }

    /// `data(record, signal)`: digital samples, or TAL text for annotation signals (zero padded).
    fn bytes(&self, n_records: usize, data: impl Fn(usize, usize) -> Samples) -> Vec<u8> {
        let mut b = self.header();
        let size = if self.bdf { 3 } else { 2 };
        for r in 0..n_records {
            for (i, s) in self.sigs.iter().enumerate() {
                match data(r, i) {
                    Samples::Digital(v) => {
                        assert_eq!(v.len(), s.n);
                        for x in v {
                            b.extend_from_slice(&x.to_le_bytes()[..size]);
                        }
                    }
                    Samples::Tal(t) => {
                        let mut t = t.into_bytes();
                        assert!(t.len() <= s.n * size, "TAL too long");
                        t.resize(s.n * size, 0);
                        b.extend(t);
                    }
                }
            }
        }
        b
    }
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn assert_conforms(p: &Path) {
    let rep = check_reader(p).unwrap();
    assert!(rep.ok(), "{}: {:?}", p.display(), rep.problems);
}

#[test]
fn negative_gain_and_units() {
    let dir = tempfile::tempdir().unwrap();
    let e = Edf::new(
        false,
        vec![
            sig("EEG Fp1-Ref", "uV", (100.0, -100.0), (-32768, 32767), 4),
            sig("ECG", "mV", (-5.0, 5.0), (-2048, 2047), 4),
            sig("Temp", "degC", (0.0, 50.0), (0, 500), 4),
        ],
        2,
    );
    let d = |r: usize, i: usize| {
        let base = (r * 4) as i32;
        Samples::Digital(
            (0..4)
                .map(|k| (base + k) * 100 * (i as i32 + 1) - 300)
                .collect(),
        )
    };
    let p = write(dir.path(), "neg.edf", &e.bytes(2, d));
    let mut r = open_raw(&p).unwrap();
    let info = r.info().clone();
    assert_eq!(info.sfreq_hz, 4.0);
    assert_eq!(r.n_times(), 8);
    assert_eq!(info.channels[0].standard_name.as_deref(), Some("Fp1"));
    assert!(info.channels[0].position.is_some());
    assert_eq!(info.channels[1].kind, ChannelKind::Ecg);
    assert_eq!(info.channels[2].unit, Unit::Other("degC".into()));
    assert_eq!(info.meas_date.as_deref(), Some("2021-03-02T10:20:30+00:00"));
    let rec = r.read_all().unwrap();
    let data = rec.signal.data();
    // MNE: cal = (pmax - pmin) / (dmax - dmin); offset = pmin - dmin * cal; (d*cal + offset)*gain
    let expect = |d: i32, pmin: f64, pmax: f64, dmin: f64, dmax: f64, gain: f64| {
        let cal = (pmax - pmin) / (dmax - dmin);
        let off = pmin - dmin * cal;
        ((d as f64 * cal + off) * gain) as f32
    };
    for s in 0..8 {
        let dig0 = s as i32 * 100 - 300;
        assert_eq!(
            data[s],
            expect(dig0, 100.0, -100.0, -32768.0, 32767.0, 1e-6)
        );
        let dig1 = s as i32 * 200 - 300;
        assert_eq!(data[8 + s], expect(dig1, -5.0, 5.0, -2048.0, 2047.0, 1e-3));
    }
    // negative gain: larger digital values give smaller physical values
    assert!(data[1] < data[0]);
    assert_conforms(&p);
}

#[test]
fn subsecond_start_and_utf8_annotations() {
    let dir = tempfile::tempdir().unwrap();
    let e = Edf::new(
        false,
        vec![
            sig("Cz", "uV", (-100.0, 100.0), (-100, 100), 10),
            tal_sig(30, false),
        ],
        3,
    );
    let d = |r: usize, i: usize| {
        if i == 0 {
            Samples::Digital(vec![r as i32; 10])
        } else {
            let mut t = format!("+{r}.25\x14\x14\x00");
            if r == 1 {
                t.push_str("+1.75\x150.5\x14K\u{e4}se \u{4e2d}\u{6587}\x14\x00");
            }
            Samples::Tal(t)
        }
    };
    let p = write(dir.path(), "sub.edf", &e.bytes(3, d));
    let r = open_raw(&p).unwrap();
    assert_eq!(
        r.info().n_channels(),
        1,
        "annotation channel is not a signal"
    );
    assert_eq!(
        r.info().meas_date.as_deref(),
        Some("2021-03-02T10:20:30.250000+00:00")
    );
    let a = r.annotations();
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].description, "K\u{e4}se \u{4e2d}\u{6587}");
    assert!((a[0].onset_s - 1.5).abs() < 1e-9);
    assert!((a[0].duration_s - 0.5).abs() < 1e-9);
    assert_conforms(&p);
}

#[test]
fn several_annotation_channels() {
    let dir = tempfile::tempdir().unwrap();
    let e = Edf::new(
        false,
        vec![
            tal_sig(12, false),
            sig("C3", "uV", (-100.0, 100.0), (-100, 100), 5),
            tal_sig(12, false),
        ],
        2,
    );
    let d = |r: usize, i: usize| match i {
        0 => Samples::Tal(format!("+{r}\x14\x14\x00")),
        1 => Samples::Digital(vec![1; 5]),
        _ => Samples::Tal(if r == 1 {
            "+1.2\x14B\x14\x00".into()
        } else {
            "+0.4\x14A\x14\x00".into()
        }),
    };
    let p = write(dir.path(), "multi.edf", &e.bytes(2, d));
    let r = open_raw(&p).unwrap();
    let got: Vec<(f64, &str)> = r
        .annotations()
        .iter()
        .map(|a| (a.onset_s, a.description.as_str()))
        .collect();
    assert_eq!(got, vec![(0.4, "A"), (1.2, "B")]);
    assert_eq!(r.info().channels[0].name, "C3");
    assert_conforms(&p);
}

#[test]
fn mixed_rates_are_upsampled_like_mne() {
    let dir = tempfile::tempdir().unwrap();
    let e = Edf::new(
        false,
        vec![
            sig("Fast", "V", (-32768.0, 32767.0), (-32768, 32767), 4),
            sig("Slow", "V", (-32768.0, 32767.0), (-32768, 32767), 2),
            sig("Status", "", (-32768.0, 32767.0), (-32768, 32767), 2),
        ],
        2,
    );
    let d = |r: usize, i: usize| match i {
        0 => Samples::Digital(vec![7; 4]),
        1 => Samples::Digital(vec![1 + 2 * r as i32, 2 + 2 * r as i32]),
        _ => Samples::Digital(vec![3 + r as i32, 0]),
    };
    let p = write(dir.path(), "mixed.edf", &e.bytes(2, d));
    let mut r = open_raw(&p).unwrap();
    assert_eq!(r.info().sfreq_hz, 4.0);
    assert_eq!(r.n_times(), 8);
    assert_eq!(r.info().channels[2].kind, ChannelKind::Stim);
    assert_eq!(r.info().channels[2].unit, Unit::Arbitrary);
    let rec = r.read_all().unwrap();
    let data = rec.signal.data();
    // mne.filter.resample(np.array([1., 2, 3, 4]), 8, 4, npad=0) with MNE 1.13.2
    let want = [
        1.0,
        1.085786437626905,
        2.0,
        2.5,
        3.0,
        3.914213562373095,
        4.0,
        2.5,
    ];
    for k in 0..8 {
        assert!(
            (data[8 + k] as f64 - want[k]).abs() < 1e-6,
            "{:?}",
            &data[8..16]
        );
    }
    // stim channel at half rate: each sample held for two output samples
    assert_eq!(&data[16..24], &[3.0, 3.0, 0.0, 0.0, 4.0, 4.0, 0.0, 0.0]);
    assert_eq!(stim_events(&data[16..24]), vec![(4, 0, 4)]);
    assert_conforms(&p);
}

#[test]
fn bdf_24bit_and_status() {
    let dir = tempfile::tempdir().unwrap();
    let e = Edf::new(
        true,
        vec![
            sig("A1", "uV", (-262144.0, 262143.0), (-8388608, 8388607), 3),
            sig(
                "Status",
                "Boolean",
                (-8388608.0, 8388607.0),
                (-8388608, 8388607),
                3,
            ),
            tal_sig(4, true),
        ],
        2,
    );
    let d = |r: usize, i: usize| match i {
        0 => Samples::Digital(vec![-8388608, -1, 8388607]),
        // 0xFF0000 | x as a negative 24-bit value: MNE keeps the lower 17 bits
        1 => Samples::Digital(vec![0, (0xFF0000 | (r as i32 * 2)) - 0x1000000, 0x20001]),
        _ => Samples::Tal(format!("+{r}\x14\x14\x00")),
    };
    let p = write(dir.path(), "t.bdf", &e.bytes(2, d));
    let mut r = open_raw(&p).unwrap();
    assert_eq!(r.info().provenance.reader, "bdf");
    let rec = r.read_all().unwrap();
    let x = rec.signal.data();
    let cal = (262143.0 + 262144.0) / (8388607.0 + 8388608.0);
    let off = -262144.0 - -8388608.0 * cal;
    assert_eq!(x[0], ((-8388608.0 * cal + off) * 1e-6) as f32);
    assert_eq!(x[1], ((-cal + off) * 1e-6) as f32);
    let status = &x[6..12];
    assert_eq!(
        status,
        &[0.0, 0x10000 as f32, 1.0, 0.0, 0x10002 as f32, 1.0]
    );
    assert_conforms(&p);
}

#[test]
fn stim_events_follow_mne_find_events() {
    // by hand from mne/event.py `_find_events` (consecutive="increasing"):
    // 0 -> 3 onset, 3 -> 5 onset (larger), 5 -> 2 neither, 2 -> 0 offset
    let x = [0.0, 3.0, 3.0, 5.0, 2.0, 0.0, 0.0, 1.0];
    assert_eq!(stim_events(&x), vec![(1, 0, 3), (3, 3, 5), (7, 0, 1)]);
    // a non-zero first sample is no event (initial_event=False); negatives use |value|
    assert_eq!(stim_events(&[4.0, 0.0, -2.0, 0.0]), vec![(2, 0, 2)]);
    assert!(stim_events(&[0.0, 0.0]).is_empty());
    assert!(stim_events(&[]).is_empty());
}

#[test]
fn discontinuous_edf_plus() {
    let dir = tempfile::tempdir().unwrap();
    let mk = |starts: [f64; 3]| {
        let mut e = Edf::new(
            false,
            vec![sig("O1", "uV", (-1.0, 1.0), (-1, 1), 2), tal_sig(10, false)],
            3,
        );
        e.reserved = "EDF+D".into();
        e.bytes(3, move |r, i| {
            if i == 0 {
                Samples::Digital(vec![0, 1])
            } else {
                Samples::Tal(format!("+{}\x14\x14\x00", starts[r]))
            }
        })
    };
    let ok = write(dir.path(), "contig.edf", &mk([0.0, 1.0, 2.0]));
    assert_eq!(open_raw(&ok).unwrap().n_times(), 6);
    assert_conforms(&ok);
    let gap = write(dir.path(), "gap.edf", &mk([0.0, 1.0, 5.0]));
    let msg = open_raw(&gap).err().unwrap().to_string();
    assert!(
        msg.contains("gap.edf") && msg.contains("discontinuous"),
        "{msg}"
    );
}

#[test]
fn unknown_record_count_is_inferred() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = Edf::new(false, vec![sig("Pz", "uV", (-1.0, 1.0), (-1, 1), 3)], 4);
    let bytes = e.bytes(4, |_, _| Samples::Digital(vec![1, 0, -1]));
    e.n_records = "-1".into();
    let mut b = e.header();
    b.extend_from_slice(&bytes[512..]);
    let p = write(dir.path(), "unk.edf", &b);
    assert_eq!(open_raw(&p).unwrap().n_times(), 12);
}

fn good_file() -> Vec<u8> {
    let e = Edf::new(
        false,
        vec![
            sig("Fz", "uV", (-100.0, 100.0), (-2048, 2047), 8),
            tal_sig(10, false),
        ],
        3,
    );
    e.bytes(3, |r, i| {
        if i == 0 {
            Samples::Digital((0..8).collect())
        } else {
            Samples::Tal(format!("+{r}\x14\x14\x00"))
        }
    })
}

/// `open_raw` refuses the file with a message naming the file and `field`.
fn expect_refused(p: &Path, field: &str) {
    match open_raw(p) {
        Err(IoError::NoReader { tried, .. }) => {
            let why = &tried[0].1;
            assert!(why.contains(&*p.to_string_lossy()), "{why}");
            assert!(why.contains(field), "expected {field:?} in {why}");
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("{} opened", p.display()),
    }
}

#[test]
fn bad_input_names_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let good = good_file();

    // truncated in the middle of a record
    let p = write(dir.path(), "trunc.edf", &good[..good.len() - 7]);
    expect_refused(&p, "number of data records");
    // shorter than the fixed header
    let p = write(dir.path(), "tiny.edf", &good[..100]);
    expect_refused(&p, "fixed header");
    // signal headers cut
    let p = write(dir.path(), "sh.edf", &good[..300]);
    expect_refused(&p, "signal headers");
    // more records in the file than the header says
    let mut more = good.clone();
    more.extend_from_slice(&good[good.len() - 36..]);
    let p = write(dir.path(), "more.edf", &more);
    expect_refused(&p, "number of data records");
    // non-numeric fields
    for (i, (offset, width, field_name)) in [
        (236usize, 8usize, "number of data records"),
        (244, 8, "duration of a data record"),
        (252, 4, "number of signals"),
        (184, 8, "number of bytes in header record"),
        (256 + 104 * 2, 8, "physical minimum (signal 1, `Fz`)"),
        (256 + 120 * 2, 8, "digital minimum (signal 1, `Fz`)"),
        (
            256 + 216 * 2,
            8,
            "number of samples in each data record (signal 1, `Fz`)",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let mut b = good.clone();
        b[offset..offset + width].copy_from_slice(&field("x1", width));
        let p = write(dir.path(), &format!("nonnum{i}.edf"), &b);
        expect_refused(&p, field_name);
    }
    // header byte count that disagrees with the number of signals
    let mut b = good.clone();
    b[184..192].copy_from_slice(&field("1024", 8));
    let p = write(dir.path(), "hdr.edf", &b);
    expect_refused(&p, "number of bytes in header record");
    // a sample count the file cannot hold
    let mut b = good.clone();
    b[256 + 216 * 2..256 + 216 * 2 + 8].copy_from_slice(&field("99999999", 8));
    let p = write(dir.path(), "huge.edf", &b);
    expect_refused(&p, "number of data records");
}

#[test]
fn every_prefix_and_byte_flip_is_handled_without_panic() {
    let dir = tempfile::tempdir().unwrap();
    let good = good_file();
    let p = dir.path().join("x.edf");
    for len in (0..good.len()).step_by(7) {
        std::fs::write(&p, &good[..len]).unwrap();
        if let Ok(mut r) = open_raw(&p) {
            let _ = r.read_all();
        }
    }
    for i in 0..768 {
        for v in [0u8, b'9', b'-', 0xff] {
            let mut b = good.clone();
            b[i] = v;
            std::fs::write(&p, &b).unwrap();
            if let Ok(mut r) = open_raw(&p) {
                let _ = r.read_all();
            }
        }
    }
}

/// `read_all` reads files up to 256 MiB in one piece, hashing on one thread while the channels
/// are decoded in parallel from the same bytes; `read_segment` streams chunks of about 4 MiB and
/// decodes big chunks in parallel too. Both must give the same bits, and the hash computed from
/// the bytes must be the file's sha256 (read_all before info, so the bytes supply it).
#[test]
fn whole_file_and_streamed_reads_agree() {
    let dir = tempfile::tempdir().unwrap();
    let (n_ch, n_per, n_rec) = (16usize, 1000usize, 160usize); // 5.1 MB of samples: two chunks
    let mut sigs: Vec<Sig> = (0..n_ch)
        .map(|c| {
            let gain = if c % 2 == 0 { 1.0 } else { -1.0 };
            sig(
                &format!("E{c}"),
                "uV",
                (-300.0 * gain - c as f64, 300.0 * gain + 0.5),
                (-32768, 32767),
                n_per,
            )
        })
        .collect();
    sigs.push(tal_sig(10, false));
    let e = Edf::new(false, sigs, n_rec);
    let bytes = e.bytes(n_rec, |r, i| {
        if i == n_ch {
            Samples::Tal(format!("+{r}\x14\x14\x00"))
        } else {
            Samples::Digital(
                (0..n_per)
                    .map(|k| ((r * 7919 + k * 104_729 + i * 13) % 65536) as i32 - 32768)
                    .collect(),
            )
        }
    });
    let p = write(dir.path(), "big.edf", &bytes);

    let whole = open_raw(&p).unwrap().read_all().unwrap();
    assert_eq!(
        whole.info.provenance.source_sha256,
        neurofm_io::sha256_file(&p).unwrap()
    );
    let mut r = open_raw(&p).unwrap();
    let n = r.n_times();
    assert_eq!(n, n_per * n_rec);
    let mut streamed = vec![0f32; n_ch * n];
    r.read_segment(0, n, &mut streamed).unwrap();
    assert!(whole.signal.data() == streamed.as_slice());
    // a segment crossing the chunk boundary, decoded in parallel, equals the same columns
    let (a, b) = (1000 * 120 + 17, 1000 * 150 + 3);
    let mut seg = vec![0f32; n_ch * (b - a)];
    r.read_segment(a, b, &mut seg).unwrap();
    for c in 0..n_ch {
        assert!(seg[c * (b - a)..(c + 1) * (b - a)] == streamed[c * n + a..c * n + b]);
    }
    // the calibration of one sample by hand (MNE's float64 arithmetic, then f32)
    let d = ((7919 + 3 * 104_729 + 13) % 65536) as f64 - 32768.0; // record 1, sample 3, ch 1
    let (pmin, pmax) = (300.0 - 1.0, -300.0 + 0.5);
    let cal = (pmax - pmin) / 65535.0;
    let off = pmin - -32768.0 * cal;
    assert_eq!(streamed[n + n_per + 3], ((d * cal + off) * 1e-6) as f32);
    assert_conforms(&p);

    // the file shrinks after open: an error naming the file, not a panic or short data
    let mut r = open_raw(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() - 5000]).unwrap();
    let err = r.read_all().unwrap_err().to_string();
    assert!(
        err.contains("big.edf") && err.contains("truncated"),
        "{err}"
    );
}
