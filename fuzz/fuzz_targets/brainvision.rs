//! Fuzzes the BrainVision header and marker parsers: any bytes give a header/markers or an
//! `IoError`, never a panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let p = Path::new("fuzz.vhdr");
    let _ = neurofm_io::brainvision::parse_vhdr(p, data);
    let _ = neurofm_io::brainvision::parse_markers(Path::new("fuzz.vmrk"), data);
});
