//! GDF 1.x / 2.x fixtures built byte by byte: data types, units, event table → annotations, and
//! bad input (unknown data types, truncation) that must give an error naming the file and the
//! field, never a panic.

#![allow(clippy::unwrap_used)] // test helpers: a failed setup step should just fail the test

use std::path::{Path, PathBuf};

use neurofm_core::Unit;
use neurofm_io::check::check_reader;
use neurofm_io::{open_raw, IoError};

struct Ch {
    label: &'static str,
    unit_code: u16,
    unit_str: &'static str,
    phys: (f64, f64),
    dig: (f64, f64),
    n: i32,
    dtype: i32,
}

fn put(b: &mut [u8], o: usize, v: &[u8]) {
    b[o..o + v.len()].copy_from_slice(v);
}

/// GDF bytes: `v2` picks the 2.20 layout, else 1.25. Samples are given as f64 and encoded per
/// channel data type (3 = int16, 16 = float32).
fn gdf(v2: bool, chans: &[Ch], n_records: i64, samples: &[Vec<f64>], events: &[u8]) -> Vec<u8> {
    let ns = chans.len();
    let mut h = vec![0u8; 256 * (ns + 1)];
    put(&mut h, 0, if v2 { b"GDF 2.20" } else { b"GDF 1.25" });
    if v2 {
        // 2021-03-02 00:00: days since 0001-01-01 (+367, which MNE subtracts), in 2^-32 units
        let days = 737_850.0 + 367.0;
        put(&mut h, 168, &((days * 2f64.powi(32)) as u64).to_le_bytes());
        put(&mut h, 184, &((ns + 1) as u16).to_le_bytes());
        put(&mut h, 252, &(ns as u16).to_le_bytes());
    } else {
        put(&mut h, 168, b"2021030210203000");
        put(&mut h, 184, &((256 * (ns + 1)) as i64).to_le_bytes());
        put(&mut h, 252, &(ns as u32).to_le_bytes());
    }
    put(&mut h, 236, &n_records.to_le_bytes());
    put(&mut h, 244, &1u32.to_le_bytes());
    put(&mut h, 248, &4u32.to_le_bytes()); // records of 1/4 s
    for (i, c) in chans.iter().enumerate() {
        let o = |start: usize, w: usize| 256 + start * ns + i * w;
        put(&mut h, o(0, 16), c.label.as_bytes());
        if v2 {
            put(&mut h, o(102, 2), &c.unit_code.to_le_bytes());
            put(&mut h, o(120, 8), &c.dig.0.to_le_bytes());
            put(&mut h, o(128, 8), &c.dig.1.to_le_bytes());
        } else {
            put(&mut h, o(96, 8), c.unit_str.as_bytes());
            put(&mut h, o(120, 8), &(c.dig.0 as i64).to_le_bytes());
            put(&mut h, o(128, 8), &(c.dig.1 as i64).to_le_bytes());
        }
        put(&mut h, o(104, 8), &c.phys.0.to_le_bytes());
        put(&mut h, o(112, 8), &c.phys.1.to_le_bytes());
        put(&mut h, o(216, 4), &c.n.to_le_bytes());
        put(&mut h, o(220, 4), &c.dtype.to_le_bytes());
    }
    for r in 0..n_records as usize {
        for (i, c) in chans.iter().enumerate() {
            for k in 0..c.n as usize {
                let v = samples[i][r * c.n as usize + k];
                match c.dtype {
                    3 => h.extend_from_slice(&(v as i16).to_le_bytes()),
                    16 => h.extend_from_slice(&(v as f32).to_le_bytes()),
                    _ => h.extend_from_slice(&(v as i16).to_le_bytes()),
                }
            }
        }
    }
    h.extend_from_slice(events);
    h
}

/// Event table, mode 3 (position, type, channel, duration).
fn events_v2(ev: &[(u32, u16, u32)]) -> Vec<u8> {
    let n = ev.len() as u32;
    let mut b = vec![3u8, n as u8, (n >> 8) as u8, (n >> 16) as u8];
    b.extend_from_slice(&250f32.to_le_bytes());
    ev.iter()
        .for_each(|e| b.extend_from_slice(&e.0.to_le_bytes()));
    ev.iter()
        .for_each(|e| b.extend_from_slice(&e.1.to_le_bytes()));
    ev.iter()
        .for_each(|_| b.extend_from_slice(&0u16.to_le_bytes()));
    ev.iter()
        .for_each(|e| b.extend_from_slice(&e.2.to_le_bytes()));
    b
}

fn write(dir: &Path, name: &str, b: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, b).unwrap();
    p
}

fn two_channels() -> Vec<Ch> {
    vec![
        Ch {
            label: "C3",
            unit_code: 4275,
            unit_str: "uV",
            phys: (-500.0, 500.0),
            dig: (-1000.0, 1000.0),
            n: 2,
            dtype: 3,
        },
        Ch {
            label: "Trigger",
            unit_code: 512,
            unit_str: "",
            phys: (0.0, 1.0),
            dig: (0.0, 1.0),
            n: 1,
            dtype: 16,
        },
    ]
}

fn samples() -> Vec<Vec<f64>> {
    vec![
        (0..8).map(|k| (k * 100 - 400) as f64).collect(),
        vec![0.0, 5.0, 5.0, 0.0],
    ]
}

#[test]
fn gdf2_types_units_events() {
    let dir = tempfile::tempdir().unwrap();
    let ev = events_v2(&[(3, 0x300, 2), (1, 769, 0)]);
    let p = write(
        dir.path(),
        "a.gdf",
        &gdf(true, &two_channels(), 4, &samples(), &ev),
    );
    let mut r = open_raw(&p).unwrap();
    let info = r.info().clone();
    assert_eq!(info.sfreq_hz, 8.0);
    assert_eq!(r.n_times(), 8);
    assert_eq!(info.channels[0].unit, Unit::Volt);
    assert_eq!(info.channels[0].standard_name.as_deref(), Some("C3"));
    assert_eq!(info.meas_date.as_deref(), Some("2021-03-02T00:00:00+00:00"));
    let a: Vec<(f64, f64, &str)> = r
        .annotations()
        .iter()
        .map(|a| (a.onset_s, a.duration_s, a.description.as_str()))
        .collect();
    // onset (pos - 1) / sfreq, duration max(dur, 1) / sfreq, type code in decimal
    assert_eq!(a, vec![(0.0, 0.125, "769"), (0.25, 0.25, "768")]);
    let rec = r.read_all().unwrap();
    let x = rec.signal.data();
    let cal: f64 = 1000.0 / 2000.0;
    let off = -500.0 - -1000.0 * cal;
    assert_eq!(x[1], ((-300.0 * cal + off) * 1e-6) as f32);
    // Trigger at half rate, held per record; stim channels are not rescaled
    assert_eq!(&x[8..16], &[0.0, 0.0, 5.0, 5.0, 5.0, 5.0, 0.0, 0.0]);
    let rep = check_reader(&p).unwrap();
    assert!(rep.ok(), "{:?}", rep.problems);
}

#[test]
fn gdf1_events_mode1() {
    let dir = tempfile::tempdir().unwrap();
    let mut ev = vec![1u8, 0, 0, 0];
    ev.extend_from_slice(&2u32.to_le_bytes());
    ev.extend_from_slice(&5u32.to_le_bytes());
    ev.extend_from_slice(&0u32.to_le_bytes()); // position 0 wraps (MNE) and is dropped
    ev.extend_from_slice(&1u16.to_le_bytes());
    ev.extend_from_slice(&2u16.to_le_bytes());
    let p = write(
        dir.path(),
        "b.gdf",
        &gdf(false, &two_channels(), 4, &samples(), &ev),
    );
    let r = open_raw(&p).unwrap();
    assert_eq!(
        r.info().meas_date.as_deref(),
        Some("2021-03-02T10:20:30+00:00")
    );
    assert_eq!(r.info().channels[0].unit, Unit::Volt);
    let a: Vec<(f64, &str)> = r
        .annotations()
        .iter()
        .map(|a| (a.onset_s, a.description.as_str()))
        .collect();
    assert_eq!(a, vec![(0.5, "1")]);
    let rep = check_reader(&p).unwrap();
    assert!(rep.ok(), "{:?}", rep.problems);
}

fn refused_with(p: &Path, field: &str) {
    match open_raw(p) {
        Err(IoError::NoReader { tried, .. }) => {
            let why = &tried[0].1;
            assert!(why.contains(&*p.to_string_lossy()), "{why}");
            assert!(why.contains(field), "expected {field:?} in {why}");
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("opened"),
    }
}

#[test]
fn bad_gdf_input() {
    let dir = tempfile::tempdir().unwrap();
    let mut chans = two_channels();
    chans[0].dtype = 279;
    let p = write(
        dir.path(),
        "type.gdf",
        &gdf(true, &chans, 4, &samples(), &[]),
    );
    refused_with(&p, "data type (channel 1, `C3`)");

    let good = gdf(
        true,
        &two_channels(),
        4,
        &samples(),
        &events_v2(&[(3, 1, 1), (4, 2, 1)]),
    );
    let p = write(dir.path(), "ev.gdf", &good[..good.len() - 5]);
    refused_with(&p, "event table");
    let p = write(dir.path(), "data.gdf", &good[..256 * 3 + 10]);
    refused_with(&p, "number of data records");
    let p = write(dir.path(), "hdr.gdf", &good[..300]);
    refused_with(&p, "signal headers");
    let mut bad = good.clone();
    bad[0..8].copy_from_slice(b"GDF x.yz");
    let p = write(dir.path(), "ver.gdf", &bad);
    refused_with(&p, "version");
}

#[test]
fn gdf_prefixes_and_byte_flips_do_not_panic() {
    let dir = tempfile::tempdir().unwrap();
    let good = gdf(
        true,
        &two_channels(),
        4,
        &samples(),
        &events_v2(&[(3, 1, 1), (4, 2, 1)]),
    );
    let p = dir.path().join("x.gdf");
    for len in (0..good.len()).step_by(5) {
        std::fs::write(&p, &good[..len]).unwrap();
        if let Ok(mut r) = open_raw(&p) {
            let _ = r.read_all();
        }
    }
    for i in 0..good.len() {
        for v in [0u8, 0x7f, 0xff] {
            let mut b = good.clone();
            b[i] = v;
            std::fs::write(&p, &b).unwrap();
            if let Ok(mut r) = open_raw(&p) {
                let _ = r.read_all();
            }
        }
    }
}
