//! Fuzzes the BDF header parser and record reader: arbitrary bytes as a .bdf file must open
//! cleanly or fail with an error, never panic; whatever opens must read whole and lazily.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("neurofm-fuzz-{}.bdf", std::process::id()));
    if std::fs::write(&path, data).is_err() {
        return;
    }
    if let Ok(mut r) = neurofm_io::open_raw(&path) {
        let n = r.n_times();
        let nc = r.info().n_channels();
        if let Ok(rec) = r.read_all() {
            assert_eq!(rec.signal.data().len(), n * nc);
        }
        if n > 1 {
            let mut out = vec![0f32; nc * (n - 1)];
            let _ = r.read_segment(1, n, &mut out);
        }
    }
});
