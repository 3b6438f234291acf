//! neurofm training engine.
//!
//! * [`optim::AdamW`]: own AdamW with moments keyed by variable name, saved to
//!   `optimizer.safetensors`.
//! * [`schedule::CosineSchedule`]: linear warmup then cosine decay.
//! * [`loader::Loader`]: background threads read windows into batches in an order derived from
//!   (seed, epoch), through bounded channels.
//! * [`trainer::Trainer`]: accumulation, global-norm clipping, NaN/Inf guard, metrics, plots,
//!   checkpoints, exact resume.
//! * [`checkpoint`]: atomic checkpoint directories, keep-last-N, [`checkpoint::load_strict`].

pub mod checkpoint;
pub mod data;
pub mod error;
pub mod export;
pub mod finetune;
pub mod fsutil;
pub mod init;
pub mod loader;
pub mod metrics;
pub mod optim;
pub mod plot;
pub mod pretrain;
pub mod schedule;
pub mod st;
pub mod trainer;

pub use checkpoint::{load_strict, Checkpoint, CheckpointFiles, LoadReport, TrainerState};
pub use error::{Result, TrainError};
pub use loader::{Loader, LoaderConfig, WindowSource};
pub use metrics::StepRecord;
pub use optim::{AdamW, AdamWConfig};
pub use schedule::CosineSchedule;
pub use trainer::{Objective, RunInfo, RunSummary, TrainConfig, Trainer};
