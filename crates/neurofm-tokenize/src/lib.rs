//! Tokenizers for continuous neural signals.
//!
//! - [`patch::PatchTokenizer`]: per-channel patches with channel identity (10-05 index) and
//!   time index — the masked autoencoder's input.
//! - [`mulaw::MulawQuantizer`]: µ-law companding + uniform quantization to discrete tokens —
//!   the GPT's input.
//!
//! A fitted tokenizer is one versioned JSON file ([`tokenizer::Tokenizer::save`]); training
//! ([`tokenizer::Fitter`]) and evaluation ([`tokenizer::Evaluator`], reconstruction NMSE /
//! SNR, vocabulary usage, bits per sample) run the same stages as inference.

pub mod bpe;
pub mod channels;
pub mod error;
pub mod metrics;
pub mod mulaw;
pub mod patch;
pub mod tokenizer;

pub use error::TokenizeError;
pub use tokenizer::{Evaluator, Fitter, Tokenizer, TokenizerConfig, TokenizerReport};
