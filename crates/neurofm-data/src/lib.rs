//! The neurofm store.
