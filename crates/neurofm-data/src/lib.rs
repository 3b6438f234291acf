//! The neurofm store (manifest + memory-mapped safetensors files), and everything that reads it.
//!
//! See `docs/store-format.md` for the on-disk format.

pub mod calcium;
pub mod fmri;
pub mod store;
pub mod synth;

pub use store::{
    Entry, ExtraTensor, Graph, MergeReport, NewEntry, RecipeRecord, RecordingView, Store,
    StoreError, FORMAT_VERSION,
};
