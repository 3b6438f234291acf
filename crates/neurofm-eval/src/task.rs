//! Task files (`configs/tasks/*.toml`): which store, how it is cut into labelled windows, the
//! classes, the protocol and the probe settings.

use std::path::{Path, PathBuf};

use neurofm_data::window::WindowConfig;
use serde::{Deserialize, Serialize};

use crate::error::EvalError;
use crate::probe::ProbeConfig;
use crate::protocol::Protocol;

/// Band-power baseline settings (TOML `[bandpower]`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BandPowerConfig {
    /// Welch segment length in samples (default: 2 s, at most the window length).
    pub nperseg: Option<usize>,
}

fn default_protocol() -> Protocol {
    Protocol::Loso
}

/// One evaluation task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskConfig {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Store directory (relative paths are relative to the current directory).
    pub store: PathBuf,
    /// The recipe the store was prepared with (documentation; not applied here).
    #[serde(default)]
    pub recipe: Option<PathBuf>,
    /// Class names in label order.
    pub classes: Vec<String>,
    pub windows: WindowConfig,
    /// Evaluate only these subjects (default: every subject with labelled windows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subjects: Option<Vec<String>>,
    /// Leave these subjects out of the evaluation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_subjects: Vec<String>,
    #[serde(default = "default_protocol")]
    pub protocol: Protocol,
    #[serde(default)]
    pub probe: ProbeConfig,
    #[serde(default)]
    pub bandpower: BandPowerConfig,
}

impl TaskConfig {
    pub fn load(path: &Path) -> Result<TaskConfig, EvalError> {
        let text = std::fs::read_to_string(path).map_err(|source| EvalError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let task: TaskConfig = toml::from_str(&text).map_err(|e| EvalError::Toml {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        task.validate()
            .map_err(|e| EvalError::config(format!("{}", path.display()), e.to_string()))?;
        Ok(task)
    }

    pub fn validate(&self) -> Result<(), EvalError> {
        if self.classes.len() < 2 {
            return Err(EvalError::config("classes", "need at least 2 classes"));
        }
        let mut sorted = self.classes.clone();
        sorted.sort();
        sorted.dedup();
        if sorted.len() != self.classes.len() {
            return Err(EvalError::config("classes", "class names repeat"));
        }
        if self.probe.cs.iter().any(|c| !(c.is_finite() && *c > 0.0)) || self.probe.cs.is_empty() {
            return Err(EvalError::config("probe.cs", "need one or more C > 0"));
        }
        Ok(())
    }
}
