//! The store's windows as a [`WindowSource`]: windows of a [`WindowIndex`], optionally restricted
//! to a subset of channels, read from the store's data files with positioned reads.

use std::sync::OnceLock;

use neurofm_data::store::{DataLayout, Store};
use neurofm_data::window::WindowIndex;

use crate::error::{Result, TrainError};
use crate::loader::WindowSource;

/// Windows of a store.
pub struct StoreWindows {
    store: Store,
    index: WindowIndex,
    /// Rows of the full window that the model sees, in order (None = all).
    rows: Option<Vec<usize>>,
    channel_names: Vec<String>,
    /// Each recording's data layout, looked up on its first window (positioned reads after
    /// that; no file mapping per window).
    layouts: Vec<OnceLock<DataLayout>>,
}

impl StoreWindows {
    /// `channels`: the channels the model uses, by (standard) name, in the model's order; `None`
    /// for all channels of the store. An unknown name fails naming `data.channels`.
    pub fn new(store: Store, index: WindowIndex, channels: Option<&[String]>) -> Result<Self> {
        let (rows, channel_names) = match channels {
            None => (None, index.channel_names.clone()),
            Some(names) => {
                let mut rows = Vec::with_capacity(names.len());
                for n in names {
                    let row = index
                        .channel_names
                        .iter()
                        .position(|c| c.eq_ignore_ascii_case(n))
                        .ok_or_else(|| TrainError::Config {
                            field: "data.channels".into(),
                            reason: format!(
                                "channel `{n}` is not in the store (it has {})",
                                index.channel_names.join(", ")
                            ),
                        })?;
                    rows.push(row);
                }
                if rows.is_empty() {
                    return Err(TrainError::Config {
                        field: "data.channels".into(),
                        reason: "the list is empty".into(),
                    });
                }
                let names = rows
                    .iter()
                    .filter_map(|&r| index.channel_names.get(r).cloned())
                    .collect();
                (Some(rows), names)
            }
        };
        let layouts = (0..store.entries().len())
            .map(|_| OnceLock::new())
            .collect();
        Ok(StoreWindows {
            store,
            index,
            rows,
            channel_names,
            layouts,
        })
    }

    pub fn index(&self) -> &WindowIndex {
        &self.index
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Channel names in model order.
    pub fn channel_names(&self) -> &[String] {
        &self.channel_names
    }

    /// The data layout of recording `entry` (window `i` names it in errors).
    fn layout(&self, entry: usize, i: usize) -> Result<&DataLayout> {
        let cell = self
            .layouts
            .get(entry)
            .ok_or_else(|| TrainError::Data(format!("{}: no such recording", self.describe(i))))?;
        if let Some(l) = cell.get() {
            return Ok(l);
        }
        let l = self
            .store
            .data_layout(entry)
            .map_err(|e| TrainError::Data(format!("{}: {e}", self.describe(i))))?;
        // Another thread may have set it meanwhile: either value is the same layout.
        Ok(cell.get_or_init(|| l))
    }

    /// The recipe hash shared by every entry (None when entries were not prepared or differ).
    pub fn recipe_hash(&self) -> Option<String> {
        let mut hashes = self.store.entries().iter().map(|e| e.recipe_hash.clone());
        let first = hashes.next()??;
        hashes
            .all(|h| h.as_deref() == Some(first.as_str()))
            .then_some(first)
    }
}

impl WindowSource for StoreWindows {
    fn len(&self) -> usize {
        self.index.windows.len()
    }

    fn n_channels(&self) -> usize {
        self.channel_names.len()
    }

    fn window_len(&self) -> usize {
        self.index.window_len
    }

    fn read(&self, i: usize, out: &mut [f32]) -> Result<()> {
        let t = self.index.window_len;
        let w =
            self.index.windows.get(i).ok_or_else(|| {
                TrainError::Data(format!("window {i} out of range ({})", self.len()))
            })?;
        let layout = self.layout(w.entry, i)?;
        let read = |buf: &mut [f32]| {
            layout
                .window_into(w.start, w.len, buf)
                .map_err(|e| TrainError::Data(format!("{}: {e}", self.describe(i))))
        };
        match &self.rows {
            None => read(out),
            Some(rows) => {
                let mut full = vec![0f32; self.index.n_channels * t];
                read(&mut full)?;
                for (dst, &r) in out.chunks_exact_mut(t.max(1)).zip(rows) {
                    let src = full
                        .get(r * t..(r + 1) * t)
                        .ok_or_else(|| TrainError::Data(format!("row {r} outside the window")))?;
                    dst.copy_from_slice(src);
                }
                Ok(())
            }
        }
    }

    fn describe(&self, i: usize) -> String {
        match self.index.windows.get(i) {
            Some(w) => {
                let id = self
                    .store
                    .entries()
                    .get(w.entry)
                    .map(|e| e.id.as_str())
                    .unwrap_or("?");
                format!("{id}[{}..{}]", w.start, w.start + w.len)
            }
            None => format!("window {i}"),
        }
    }
}
