//! Fuzzes the MAT v5 parser (including zlib-compressed elements, cells and structs): any bytes
//! give a value tree or an `IoError`, never a panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = neurofm_io::mat::parse_mat5(Path::new("fuzz.mat"), data);
});
