//! Where evaluation windows come from, and how features are computed from them.

use crate::ea::Alignment;
use crate::error::EvalError;
use crate::protocol::WindowMeta;

/// Everything about a set of windows except their samples.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceInfo {
    pub windows: Vec<WindowMeta>,
    /// Class names; a window's label indexes this list.
    pub classes: Vec<String>,
    pub n_channels: usize,
    pub window_len: usize,
    pub sfreq_hz: f64,
    pub channel_names: Vec<String>,
}

/// A set of fixed-size windows `[n_channels, window_len]` (the store + window index in the CLI,
/// an in-memory array in tests).
pub trait WindowSource {
    fn info(&self) -> &SourceInfo;
    /// Copies window `i` into `out` (`[n_channels, window_len]`, row-major).
    fn read(&self, i: usize, out: &mut [f32]) -> Result<(), EvalError>;
}

/// Windows held in memory: `data` is `[n_windows, n_channels, window_len]`.
#[derive(Debug, Clone)]
pub struct MemorySource {
    pub info: SourceInfo,
    pub data: Vec<f32>,
}

impl WindowSource for MemorySource {
    fn info(&self) -> &SourceInfo {
        &self.info
    }
    fn read(&self, i: usize, out: &mut [f32]) -> Result<(), EvalError> {
        let sz = self.info.n_channels * self.info.window_len;
        let src = self
            .data
            .get(i * sz..(i + 1) * sz)
            .ok_or_else(|| EvalError::Source {
                index: i,
                reason: "window index out of range".into(),
            })?;
        if out.len() != sz {
            return Err(EvalError::Shape {
                what: "window buffer".into(),
                expected: sz,
                got: out.len(),
            });
        }
        out.copy_from_slice(src);
        Ok(())
    }
}

/// Turns a batch of windows into feature vectors.
pub trait FeatureExtractor {
    /// Short name used in reports (e.g. `bandpower`).
    fn name(&self) -> String;
    /// Feature vector length.
    fn dim(&self) -> usize;
    /// How many windows to hand to [`FeatureExtractor::extract`] at once.
    fn batch_size(&self) -> usize {
        64
    }
    /// `x` is `[batch, n_channels, window_len]`; returns `[batch, dim]`.
    fn extract(&mut self, x: &[f32], batch: usize) -> Result<Vec<f64>, EvalError>;
}

/// Features `[indices.len(), dim]` of the windows `indices`, Euclidean-aligned first when
/// `alignment` is given. `progress(done, total)` is called after each batch.
pub fn compute_features(
    source: &dyn WindowSource,
    extractor: &mut dyn FeatureExtractor,
    alignment: Option<&Alignment>,
    indices: &[usize],
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Vec<f64>, EvalError> {
    let info = source.info();
    let sz = info.n_channels * info.window_len;
    let dim = extractor.dim();
    let bs = extractor.batch_size().max(1);
    let mut out = Vec::with_capacity(indices.len() * dim);
    let mut buf = vec![0f32; bs * sz];
    let mut done = 0u64;
    for chunk in indices.chunks(bs) {
        for (j, &i) in chunk.iter().enumerate() {
            let w = &mut buf[j * sz..(j + 1) * sz];
            source.read(i, w)?;
            if let Some(a) = alignment {
                let subject = info
                    .windows
                    .get(i)
                    .and_then(|m| m.subject.as_deref())
                    .ok_or_else(|| EvalError::Source {
                        index: i,
                        reason: "Euclidean alignment needs the window's subject".into(),
                    })?;
                a.apply(subject, w, info.window_len)?;
            }
        }
        let f = extractor.extract(&buf[..chunk.len() * sz], chunk.len())?;
        if f.len() != chunk.len() * dim {
            return Err(EvalError::Shape {
                what: format!("{} features", extractor.name()),
                expected: chunk.len() * dim,
                got: f.len(),
            });
        }
        if let Some(p) = f.iter().position(|v| !v.is_finite()) {
            return Err(EvalError::Numerical {
                what: format!("{} features", extractor.name()),
                reason: format!("non-finite value for window {}", chunk[p / dim.max(1)]),
            });
        }
        out.extend_from_slice(&f);
        done += chunk.len() as u64;
        progress(done, indices.len() as u64);
    }
    Ok(out)
}
