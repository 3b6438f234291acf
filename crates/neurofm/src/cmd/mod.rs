//! One module per subcommand: each has an `Args` (clap) and a `run(args, global)`.

pub mod export;
pub mod finetune;
pub mod ingest;
pub mod ingest_connectome;
pub mod inspect;
pub mod merge;
pub mod prepare;
pub mod pretrain;
pub mod probe;
pub mod report;
pub mod synth;
pub mod tokenizer;
