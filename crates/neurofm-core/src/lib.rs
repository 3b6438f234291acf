//! Domain types shared by every neurofm crate: a [`Recording`] is [`Info`] + [`Signal`] +
//! [`Annotation`]s, whatever file format it came from (MNE's design: one Raw for every reader).
//!
//! This crate does no I/O and knows nothing about models.

pub mod allocator;
pub mod channels;
pub mod error;
pub mod neurons;
pub mod recording;
pub mod threads;

pub use error::CoreError;
pub use recording::{
    Annotation, ChannelInfo, ChannelKind, Info, Modality, Provenance, Recording, Signal, Unit,
};
