//! The neurofm store (manifest + memory-mapped safetensors files), and everything that reads it:
//! preprocessing ([`recipe`], [`steps`], [`dsp`]) and windowing ([`window`]).
//!
//! See `docs/store-format.md` for the on-disk format and `docs/recipes.md` for recipes.

pub mod dsp;
pub mod error;
pub mod recipe;
pub mod steps;
pub mod store;
pub mod synth;
pub mod window;

pub use error::DataError;
pub use recipe::{prepare_store, PrepareReport, Recipe};
pub use steps::Step;
pub use store::{
    Entry, ExtraTensor, Graph, MergeReport, NewEntry, RecipeRecord, RecordingView, Store,
    StoreError, FORMAT_VERSION,
};
pub use window::{LabelSource, RejectReport, Window, WindowConfig, WindowIndex};
