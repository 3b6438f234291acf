//! Fuzzes the FIF tag parser, block tree, measurement info and raw buffer index, and reads the
//! data of whatever opens: an `IoError` or samples, never a panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use neurofm_io::RawReader;

fuzz_target!(|data: &[u8]| {
    if let Ok(mut r) = neurofm_io::fif::FifReader::from_bytes(Path::new("fuzz.fif"), data.to_vec()) {
        // Bound the work: only small recordings are read in full.
        if r.n_times().saturating_mul(r.info().n_channels()) <= 1 << 20 {
            let _ = r.read_all();
        }
    }
});
