//! Windows of a store (the `prep` window index) as a [`WindowSource`].

use neurofm_data::window::WindowIndex;
use neurofm_data::Store;

use crate::error::EvalError;
use crate::protocol::WindowMeta;
use crate::source::{SourceInfo, WindowSource};
use crate::task::TaskConfig;

/// A store and its window index, labels mapped to the task's class order.
pub struct StoreWindows {
    store: Store,
    index: WindowIndex,
    info: SourceInfo,
}

impl StoreWindows {
    /// Cuts `store` into the task's windows. Every class the windows carry must be one of the
    /// task's classes.
    pub fn new(store: Store, task: &TaskConfig) -> Result<StoreWindows, EvalError> {
        let mut index = WindowIndex::build(&store, &task.windows)
            .map_err(|e| EvalError::config(format!("task {} windows", task.name), e.to_string()))?;
        if task.subjects.is_some() || !task.exclude_subjects.is_empty() {
            index
                .retain_subjects(task.subjects.as_deref(), &task.exclude_subjects)
                .map_err(|e| {
                    EvalError::config(
                        format!("task {} subjects / exclude_subjects", task.name),
                        e.to_string(),
                    )
                })?;
        }
        let mut remap = Vec::with_capacity(index.classes.len());
        for c in &index.classes {
            let pos = task.classes.iter().position(|t| t == c).ok_or_else(|| {
                EvalError::config(
                    format!("task {} classes", task.name),
                    format!(
                        "the windows carry class {c:?}, which is not in classes = {:?}",
                        task.classes
                    ),
                )
            })?;
            remap.push(pos);
        }
        let windows = index
            .windows
            .iter()
            .map(|w| WindowMeta {
                entry: w.entry,
                start: w.start,
                len: w.len,
                label: w.label.and_then(|l| remap.get(l).copied()),
                subject: w.subject.clone(),
            })
            .collect();
        let info = SourceInfo {
            windows,
            classes: task.classes.clone(),
            n_channels: index.n_channels,
            window_len: index.window_len,
            sfreq_hz: index.sfreq_hz,
            channel_names: index.channel_names.clone(),
        };
        Ok(StoreWindows { store, index, info })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }
}

impl WindowSource for StoreWindows {
    fn info(&self) -> &SourceInfo {
        &self.info
    }
    fn read(&self, i: usize, out: &mut [f32]) -> Result<(), EvalError> {
        self.index
            .read(&self.store, i, out)
            .map_err(|e| EvalError::Source {
                index: i,
                reason: e.to_string(),
            })
    }
}
