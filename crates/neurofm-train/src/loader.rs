//! Background loader: windows are read on worker threads into host batches, in an order that is
//! a pure function of (seed, epoch), and handed to the training step through bounded channels.
//!
//! Micro-batch `g` (counted from 0 over the whole run) is batch `g mod B` of epoch `g div B`,
//! where `B = len / batch_size` (the last incomplete batch of an epoch is dropped). Epoch `e`
//! visits the windows in the permutation [`epoch_order`]`(len, seed, e)`. So a run resumed at
//! micro-batch `g` sees exactly the batches the uninterrupted run saw.

use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::error::{Result, TrainError};

/// Where training windows come from: `len()` windows of `[n_channels, window_len]` f32 samples.
pub trait WindowSource: Send + Sync {
    /// Number of windows.
    fn len(&self) -> usize;
    /// True when there is no window.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Channels per window.
    fn n_channels(&self) -> usize;
    /// Samples per window.
    fn window_len(&self) -> usize;
    /// Copies window `i` into `out` (`[n_channels, window_len]`, row-major).
    fn read(&self, i: usize, out: &mut [f32]) -> Result<()>;
    /// A human-readable name of window `i` (recording id and start) for error messages.
    fn describe(&self, i: usize) -> String;
}

/// SplitMix64: a tiny, well-mixed generator; the whole state is one u64 derived from the seeds.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }
    /// A generator for a stream identified by several integers (e.g. seed, purpose, epoch).
    pub fn from_parts(parts: &[u64]) -> Self {
        let mut s = SplitMix64(0x6A09_E667_F3BC_C908);
        let mut acc = 0u64;
        for &p in parts {
            s.0 ^= p.wrapping_add(acc);
            acc = s.next_u64();
        }
        SplitMix64(acc)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform integer in `0..n` (n > 0), by rejection so that there is no modulo bias.
    pub fn below(&mut self, n: u64) -> u64 {
        let zone = u64::MAX - (u64::MAX % n);
        loop {
            let x = self.next_u64();
            if x < zone {
                return x % n;
            }
        }
    }
    /// Uniform f64 in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

const DATA_ORDER_STREAM: u64 = 0x6461_7461; // "data"

/// The order in which epoch `epoch` visits windows `0..len` (Fisher–Yates from (seed, epoch)).
pub fn epoch_order(len: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..len).collect();
    let mut rng = SplitMix64::from_parts(&[seed, DATA_ORDER_STREAM, epoch]);
    for i in (1..len).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        order.swap(i, j);
    }
    order
}

/// One micro-batch on the host.
#[derive(Debug, Clone)]
pub struct HostBatch {
    /// Micro-batch counter over the run.
    pub index: u64,
    pub epoch: u64,
    /// Position of the batch's first window in the epoch order.
    pub position: usize,
    /// Window indices in the source.
    pub windows: Vec<usize>,
    /// `[batch, n_channels, window_len]`.
    pub shape: [usize; 3],
    pub data: Vec<f32>,
}

/// Loader settings.
#[derive(Debug, Clone, Copy)]
pub struct LoaderConfig {
    pub batch_size: usize,
    pub seed: u64,
    /// Batches each worker may have ready ahead of the step.
    pub prefetch: usize,
    /// Reader threads.
    pub workers: usize,
}

/// Batches per epoch for `len` windows.
pub fn batches_per_epoch(len: usize, batch_size: usize) -> usize {
    len.checked_div(batch_size).unwrap_or(0)
}

/// Builds micro-batch `index` synchronously.
pub fn make_batch(source: &dyn WindowSource, cfg: &LoaderConfig, index: u64) -> Result<HostBatch> {
    let bpe = batches_per_epoch(source.len(), cfg.batch_size) as u64;
    if bpe == 0 {
        return Err(TrainError::Config {
            field: "train.batch_size".into(),
            reason: format!(
                "batch size {} is larger than the number of windows ({})",
                cfg.batch_size,
                source.len()
            ),
        });
    }
    let epoch = index / bpe;
    let k = (index % bpe) as usize;
    let order = epoch_order(source.len(), cfg.seed, epoch);
    batch_from_order(source, cfg, index, epoch, k, &order)
}

fn batch_from_order(
    source: &dyn WindowSource,
    cfg: &LoaderConfig,
    index: u64,
    epoch: u64,
    k: usize,
    order: &[usize],
) -> Result<HostBatch> {
    let (c, t) = (source.n_channels(), source.window_len());
    let per = c * t;
    let position = k * cfg.batch_size;
    let windows: Vec<usize> = order
        .get(position..position + cfg.batch_size)
        .ok_or_else(|| TrainError::Data("batch outside the epoch order".into()))?
        .to_vec();
    let mut data = vec![0f32; cfg.batch_size * per];
    for (chunk, &w) in data.chunks_exact_mut(per.max(1)).zip(&windows) {
        source.read(w, chunk)?;
    }
    Ok(HostBatch {
        index,
        epoch,
        position,
        windows,
        shape: [cfg.batch_size, c, t],
        data,
    })
}

/// Reads micro-batches `start, start+1, …` on background threads; [`Loader::next_batch`] returns
/// them in order. Worker `w` builds batches `start + w + k·workers` into its own bounded channel.
pub struct Loader {
    receivers: Vec<Receiver<Result<HostBatch>>>,
    handles: Vec<JoinHandle<()>>,
    next: u64,
    start: u64,
}

impl Loader {
    /// Starts the workers at micro-batch `start`.
    pub fn start(source: Arc<dyn WindowSource>, cfg: LoaderConfig, start: u64) -> Result<Loader> {
        let bpe = batches_per_epoch(source.len(), cfg.batch_size);
        if bpe == 0 {
            return Err(TrainError::Config {
                field: "train.batch_size".into(),
                reason: format!(
                    "batch size {} is larger than the number of windows ({})",
                    cfg.batch_size,
                    source.len()
                ),
            });
        }
        let workers = cfg.workers.max(1);
        let mut receivers = Vec::with_capacity(workers);
        let mut handles = Vec::with_capacity(workers);
        for w in 0..workers {
            let (tx, rx) = sync_channel::<Result<HostBatch>>(cfg.prefetch.max(1));
            let source = Arc::clone(&source);
            let handle = std::thread::Builder::new()
                .name(format!("neurofm-loader-{w}"))
                .spawn(move || {
                    let mut cached: Option<(u64, Vec<usize>)> = None;
                    let mut index = start + w as u64;
                    loop {
                        let epoch = index / bpe as u64;
                        let k = (index % bpe as u64) as usize;
                        if cached.as_ref().map(|c| c.0) != Some(epoch) {
                            cached = Some((epoch, epoch_order(source.len(), cfg.seed, epoch)));
                        }
                        let order = cached.as_ref().map(|c| c.1.as_slice()).unwrap_or(&[]);
                        let batch = batch_from_order(source.as_ref(), &cfg, index, epoch, k, order);
                        let failed = batch.is_err();
                        if tx.send(batch).is_err() || failed {
                            return;
                        }
                        index += workers as u64;
                    }
                })
                .map_err(|e| TrainError::io("loader thread", e))?;
            receivers.push(rx);
            handles.push(handle);
        }
        Ok(Loader {
            receivers,
            handles,
            next: start,
            start,
        })
    }

    /// The next micro-batch, in order.
    pub fn next_batch(&mut self) -> Result<HostBatch> {
        let n = self.receivers.len() as u64;
        let w = ((self.next - self.start) % n) as usize;
        let rx = self
            .receivers
            .get(w)
            .ok_or_else(|| TrainError::Data("loader has no worker".into()))?;
        let batch = rx
            .recv()
            .map_err(|_| TrainError::Data("loader worker stopped".into()))??;
        self.next += 1;
        Ok(batch)
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        // Dropping the receivers makes every blocked `send` fail, so the workers return.
        self.receivers.clear();
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Ramp {
        n: usize,
    }
    impl WindowSource for Ramp {
        fn len(&self) -> usize {
            self.n
        }
        fn n_channels(&self) -> usize {
            2
        }
        fn window_len(&self) -> usize {
            3
        }
        fn read(&self, i: usize, out: &mut [f32]) -> Result<()> {
            for (j, o) in out.iter_mut().enumerate() {
                *o = (i * 10 + j) as f32;
            }
            Ok(())
        }
        fn describe(&self, i: usize) -> String {
            format!("ramp#{i}")
        }
    }

    #[test]
    fn order_is_a_permutation_that_depends_on_seed_and_epoch() {
        let a = epoch_order(100, 7, 0);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        assert_eq!(a, epoch_order(100, 7, 0));
        assert_ne!(a, epoch_order(100, 7, 1));
        assert_ne!(a, epoch_order(100, 8, 0));
    }

    #[test]
    fn background_loader_matches_synchronous_batches_from_any_start() -> Result<()> {
        let source: Arc<dyn WindowSource> = Arc::new(Ramp { n: 10 });
        let cfg = LoaderConfig {
            batch_size: 3,
            seed: 42,
            prefetch: 2,
            workers: 3,
        };
        for start in [0u64, 5] {
            let mut loader = Loader::start(Arc::clone(&source), cfg, start)?;
            for g in start..start + 9 {
                let b = loader.next_batch()?;
                let want = make_batch(source.as_ref(), &cfg, g)?;
                assert_eq!(b.index, g);
                assert_eq!(b.windows, want.windows);
                assert_eq!(b.data, want.data);
                assert_eq!(b.epoch, g / 3);
            }
        }
        // each epoch (3 batches of 3 out of 10 windows) visits 9 distinct windows
        let mut seen: Vec<usize> = (0..3)
            .flat_map(|g| {
                make_batch(source.as_ref(), &cfg, g)
                    .map(|b| b.windows)
                    .unwrap_or_default()
            })
            .collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 9);
        Ok(())
    }

    #[test]
    fn batch_larger_than_data_is_refused() {
        let source: Arc<dyn WindowSource> = Arc::new(Ramp { n: 2 });
        let cfg = LoaderConfig {
            batch_size: 3,
            seed: 0,
            prefetch: 1,
            workers: 1,
        };
        let err = Loader::start(source, cfg, 0)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("train.batch_size"), "{err}");
    }
}
