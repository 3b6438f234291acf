//! The neurofm store.

pub mod dsp;
