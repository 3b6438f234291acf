//! Readers for neural recording formats.
//!
//! Every format returns the same [`RawReader`] (MNE's design: a format supplies its header parse
//! and "read this segment"; everything else is shared). [`open_raw`] picks the reader by file
//! extension and, when nothing can read the file, says which readers it tried and why each refused.

pub mod bids;
pub mod brainvision;
pub mod celegans;
mod channel_names;
pub mod check;
pub mod csv_series;
pub mod edf;
pub mod edf_write;
pub mod eeglab;
pub mod error;
pub mod fif;
pub mod gdf;
pub mod mat;
pub mod nifti;
pub mod npy;
pub mod reader;

pub use error::IoError;
pub use reader::{open_raw, read_recording, sha256_file, Format, RawReader, FORMATS};

/// Version recorded in every recording's provenance.
pub const READER_VERSION: &str = env!("CARGO_PKG_VERSION");
