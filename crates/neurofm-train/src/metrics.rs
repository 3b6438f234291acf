//! `metrics.jsonl`: one JSON object per optimizer step.

use std::fs::OpenOptions;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};
use crate::fsutil;

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Optimizer steps done after this one (1-based; checkpoint `step-N` follows record N).
    pub step: u64,
    /// Mean loss over the step's micro-batches.
    pub loss: f32,
    pub lr: f64,
    /// Global L2 norm of the gradient before clipping.
    pub grad_norm: f64,
    pub windows_per_s: f64,
    /// Training wall time since the run first started (resumes included).
    pub elapsed_s: f64,
    /// `loss` / the objective's trivial loss, when the run knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_over_trivial: Option<f64>,
}

/// Appends records to `<run>/metrics.jsonl`.
#[derive(Debug)]
pub struct MetricsLog {
    path: PathBuf,
    records: Vec<StepRecord>,
}

impl MetricsLog {
    /// Opens the log of a run that has done `done_steps` steps: records after that step (written
    /// by an interrupted attempt after its last checkpoint) are dropped, atomically.
    pub fn open(path: &Path, done_steps: u64) -> Result<MetricsLog> {
        let mut records = Vec::new();
        if path.is_file() {
            let f = std::fs::File::open(path).map_err(|e| TrainError::io(path, e))?;
            for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
                let line = line.map_err(|e| TrainError::io(path, e))?;
                if line.trim().is_empty() {
                    continue;
                }
                let r: StepRecord = serde_json::from_str(&line).map_err(|e| TrainError::Json {
                    path: path.to_path_buf(),
                    source: serde_json::Error::io(std::io::Error::other(format!(
                        "line {}: {e}",
                        i + 1
                    ))),
                })?;
                if r.step <= done_steps {
                    records.push(r);
                }
            }
        }
        let mut bytes = Vec::new();
        for r in &records {
            bytes.extend_from_slice(&line_of(path, r)?);
        }
        fsutil::write_atomic(path, &bytes)?;
        Ok(MetricsLog {
            path: path.to_path_buf(),
            records,
        })
    }

    /// Appends one record (flushed to the OS at once).
    pub fn append(&mut self, r: StepRecord) -> Result<()> {
        let line = line_of(&self.path, &r)?;
        let mut f = OpenOptions::new()
            .append(true)
            .create(true)
            .open(&self.path)
            .map_err(|e| TrainError::io(&self.path, e))?;
        f.write_all(&line)
            .map_err(|e| TrainError::io(&self.path, e))?;
        self.records.push(r);
        Ok(())
    }

    pub fn records(&self) -> &[StepRecord] {
        &self.records
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn line_of(path: &Path, r: &StepRecord) -> Result<Vec<u8>> {
    let mut v = serde_json::to_vec(r).map_err(|source| TrainError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    v.push(b'\n');
    Ok(v)
}
