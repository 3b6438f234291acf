//! Reading calibrated samples out of fixed-size data records (EDF, BDF and GDF share this).
//!
//! A file is a header followed by `n_records` records of `record_bytes` bytes; each signal
//! stores `n_per_record` samples per record at a fixed byte offset inside the record. Samples are
//! calibrated the way MNE does, in float64, and cast to f32 last:
//! `((digital * cal + offset) * gain)` with `cal = (phys_max - phys_min) / (dig_max - dig_min)`,
//! `offset = phys_min - dig_min * cal` and `gain` the unit's scale to SI.
//!
//! Signals with fewer samples per record than the fastest one are upsampled to it as MNE does:
//! FFT resampling of the whole channel (computed once, on first use, and kept), and zero-order
//! hold within each record for stimulus channels. Stimulus channels at the full rate are masked
//! to their lower 17 bits (`int(value) & (2**17 - 1)`), as MNE does.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::resample::resample_fft;
use crate::error::IoError;

/// Storage type of one sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SampleType {
    I8,
    U8,
    I16,
    U16,
    /// 24-bit little-endian two's complement (BDF).
    I24,
    I32,
    U32,
    I64,
    U64,
    F32,
    F64,
}

impl SampleType {
    pub(crate) fn size(self) -> usize {
        match self {
            SampleType::I8 | SampleType::U8 => 1,
            SampleType::I16 | SampleType::U16 => 2,
            SampleType::I24 => 3,
            SampleType::I32 | SampleType::U32 | SampleType::F32 => 4,
            SampleType::I64 | SampleType::U64 | SampleType::F64 => 8,
        }
    }
}

/// Where one output channel lives inside a record, and how to calibrate it.
#[derive(Debug, Clone)]
pub(crate) struct SignalLayout {
    pub n_per_record: usize,
    /// Byte offset of this signal's first sample inside a record.
    pub byte_offset: usize,
    pub dtype: SampleType,
    pub cal: f64,
    pub offset: f64,
    pub gain: f64,
    pub stim: bool,
}

/// Target size of one read (records are read in chunks of about this many bytes).
const CHUNK_BYTES: usize = 4 << 20;

pub(crate) struct RecordEngine {
    path: PathBuf,
    file: File,
    data_offset: u64,
    record_bytes: usize,
    n_records: usize,
    /// Samples per record of the output rate.
    buf_len: usize,
    signals: Vec<SignalLayout>,
    upsampled: Vec<Option<Vec<f32>>>,
    buf: Vec<u8>,
}

/// `out[i] = conv(raw(sample i))` over fixed-size little-endian samples. Generic over `N` and
/// the two closures so that each sample type gets its own straight-line loop that LLVM
/// vectorizes (no per-sample match or branch).
#[inline(always)]
fn decode_loop<const N: usize>(
    bytes: &[u8],
    out: &mut [f32],
    raw: impl Fn([u8; N]) -> f64,
    conv: impl Fn(f64) -> f32,
) {
    for (o, c) in out.iter_mut().zip(bytes.chunks_exact(N)) {
        let mut a = [0u8; N];
        a.copy_from_slice(c);
        *o = conv(raw(a));
    }
}

/// Decodes every sample type with one calibration closure.
#[inline(always)]
fn decode_with(bytes: &[u8], dtype: SampleType, out: &mut [f32], conv: impl Fn(f64) -> f32) {
    match dtype {
        SampleType::I8 => decode_loop::<1>(bytes, out, |c| c[0] as i8 as f64, conv),
        SampleType::U8 => decode_loop::<1>(bytes, out, |c| c[0] as f64, conv),
        SampleType::I16 => decode_loop::<2>(bytes, out, |c| i16::from_le_bytes(c) as f64, conv),
        SampleType::U16 => decode_loop::<2>(bytes, out, |c| u16::from_le_bytes(c) as f64, conv),
        SampleType::I24 => decode_loop::<3>(
            bytes,
            out,
            |c| (i32::from_le_bytes([0, c[0], c[1], c[2]]) >> 8) as f64,
            conv,
        ),
        SampleType::I32 => decode_loop::<4>(bytes, out, |c| i32::from_le_bytes(c) as f64, conv),
        SampleType::U32 => decode_loop::<4>(bytes, out, |c| u32::from_le_bytes(c) as f64, conv),
        SampleType::F32 => decode_loop::<4>(bytes, out, |c| f32::from_le_bytes(c) as f64, conv),
        SampleType::I64 => decode_loop::<8>(bytes, out, |c| i64::from_le_bytes(c) as f64, conv),
        SampleType::U64 => decode_loop::<8>(bytes, out, |c| u64::from_le_bytes(c) as f64, conv),
        SampleType::F64 => decode_loop::<8>(bytes, out, f64::from_le_bytes, conv),
    }
}

/// Decodes and calibrates the samples in `bytes` into `out` (f32, stim channels masked).
/// The arithmetic is MNE's, in float64: `(digital * cal + offset) * gain`, then cast.
///
/// The same loop is compiled for AVX-512, AVX2 and the baseline target and picked at run time.
/// Every lane does the same IEEE multiply, add, multiply and rounding as the scalar code (Rust
/// never contracts them into fused multiply-adds), so all three give identical bits.
fn decode_into(bytes: &[u8], sig: &SignalLayout, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
        {
            // SAFETY: the CPU supports the features the function is compiled for.
            return unsafe { decode_into_avx512(bytes, sig, out) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: as above.
            return unsafe { decode_into_avx2(bytes, sig, out) };
        }
    }
    decode_into_generic(bytes, sig, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx2")]
unsafe fn decode_into_avx512(bytes: &[u8], sig: &SignalLayout, out: &mut [f32]) {
    decode_into_generic(bytes, sig, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn decode_into_avx2(bytes: &[u8], sig: &SignalLayout, out: &mut [f32]) {
    decode_into_generic(bytes, sig, out)
}

#[inline(always)]
fn decode_into_generic(bytes: &[u8], sig: &SignalLayout, out: &mut [f32]) {
    let (cal, off, gain) = (sig.cal, sig.offset, sig.gain);
    if sig.stim {
        decode_with(bytes, sig.dtype, out, |d| {
            ((((d * cal + off) * gain) as i64) & 0x1FFFF) as f32
        });
    } else {
        decode_with(bytes, sig.dtype, out, |d| ((d * cal + off) * gain) as f32);
    }
}

/// Calibrated float64 values (no stim mask), for resampling.
fn decode_f64(bytes: &[u8], sig: &SignalLayout, out: &mut Vec<f64>) {
    let n = bytes.len() / sig.dtype.size();
    let raw = |c: &[u8]| -> f64 {
        match sig.dtype {
            SampleType::I8 => c[0] as i8 as f64,
            SampleType::U8 => c[0] as f64,
            SampleType::I16 => i16::from_le_bytes([c[0], c[1]]) as f64,
            SampleType::U16 => u16::from_le_bytes([c[0], c[1]]) as f64,
            SampleType::I24 => (i32::from_le_bytes([0, c[0], c[1], c[2]]) >> 8) as f64,
            SampleType::I32 => i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64,
            SampleType::U32 => u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64,
            SampleType::F32 => f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64,
            SampleType::I64 => {
                i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f64
            }
            SampleType::U64 => {
                u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f64
            }
            SampleType::F64 => f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]),
        }
    };
    out.reserve(n);
    for c in bytes.chunks_exact(sig.dtype.size()) {
        out.push((raw(c) * sig.cal + sig.offset) * sig.gain);
    }
}

/// Index of the source sample that scipy's `interp1d(linspace(0, 1, n + 1), ..., kind="zero")`
/// picks for output sample `j` of `buf_len` (MNE's stim channel upsampling).
fn zero_hold_index(j: usize, buf_len: usize, n: usize) -> usize {
    let t = j as f64 * (1.0 / buf_len as f64);
    let step = 1.0 / n as f64;
    // largest i in 0..n with i * step <= t (the last grid point is exactly 1.0 > t)
    let mut i = ((t / step) as usize).min(n.saturating_sub(1));
    while i + 1 < n && ((i + 1) as f64) * step <= t {
        i += 1;
    }
    while i > 0 && (i as f64) * step > t {
        i -= 1;
    }
    i
}

impl RecordEngine {
    /// `buf_len` is the number of output samples per record; every non-stim signal must have
    /// `n_per_record <= buf_len` and `n_per_record > 0`.
    pub(crate) fn new(
        path: &Path,
        file: File,
        data_offset: u64,
        record_bytes: usize,
        n_records: usize,
        buf_len: usize,
        signals: Vec<SignalLayout>,
    ) -> Self {
        let n = signals.len();
        RecordEngine {
            path: path.to_path_buf(),
            file,
            data_offset,
            record_bytes,
            n_records,
            buf_len,
            signals,
            upsampled: vec![None; n],
            buf: Vec::new(),
        }
    }

    pub(crate) fn n_times(&self) -> usize {
        self.n_records * self.buf_len
    }

    pub(crate) fn n_records(&self) -> usize {
        self.n_records
    }

    /// Reads `n` whole records starting at `first` into `self.buf`.
    fn load_records(&mut self, first: usize, n: usize) -> Result<(), IoError> {
        let bytes = n * self.record_bytes;
        let pos = self.data_offset + (first as u64) * (self.record_bytes as u64);
        self.file
            .seek(SeekFrom::Start(pos))
            .map_err(|e| IoError::io(&self.path, e))?;
        // `read_to_end` fills the spare capacity without zeroing it first.
        self.buf.clear();
        self.buf.reserve_exact(bytes);
        (&mut self.file)
            .take(bytes as u64)
            .read_to_end(&mut self.buf)
            .map_err(|e| IoError::io(&self.path, e))?;
        if self.buf.len() != bytes {
            return Err(IoError::Truncated {
                path: self.path.clone(),
                what: format!("data records {first}..{}", first + n),
                expected: pos + bytes as u64,
                got: std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0),
            });
        }
        Ok(())
    }

    /// Reads raw bytes `[offset, offset + len)` of record `rec` (annotation channels).
    pub(crate) fn record_bytes_at(
        &mut self,
        rec: usize,
        offset: usize,
        len: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), IoError> {
        let pos = self.data_offset + (rec as u64) * (self.record_bytes as u64) + offset as u64;
        let start = out.len();
        out.resize(start + len, 0);
        self.file
            .seek(SeekFrom::Start(pos))
            .map_err(|e| IoError::io(&self.path, e))?;
        self.file
            .read_exact(&mut out[start..])
            .map_err(|e| IoError::io(&self.path, e))
    }

    fn records_per_chunk(&self) -> usize {
        (CHUNK_BYTES / self.record_bytes.max(1)).max(1)
    }

    /// Whether some channel is stored at a lower rate and FFT-upsampled.
    pub(crate) fn needs_upsampling(&self) -> bool {
        (0..self.signals.len()).any(|c| self.needs_fft(c))
    }

    fn needs_fft(&self, c: usize) -> bool {
        let s = &self.signals[c];
        !s.stim && s.n_per_record != self.buf_len
    }

    /// Computes (once) the upsampled full-length channel `c`.
    fn ensure_upsampled(&mut self, c: usize) -> Result<(), IoError> {
        if self.upsampled[c].is_some() {
            return Ok(());
        }
        let sig = self.signals[c].clone();
        let size = sig.dtype.size();
        let mut x = Vec::with_capacity(self.n_records * sig.n_per_record);
        let per = self.records_per_chunk();
        let mut r = 0;
        while r < self.n_records {
            let n = per.min(self.n_records - r);
            self.load_records(r, n)?;
            for k in 0..n {
                let a = k * self.record_bytes + sig.byte_offset;
                let b = a + sig.n_per_record * size;
                decode_f64(&self.buf[a..b], &sig, &mut x);
            }
            r += n;
        }
        let y = resample_fft(&x, self.n_records * self.buf_len);
        self.upsampled[c] = Some(y.into_iter().map(|v| v as f32).collect());
        Ok(())
    }

    /// Decodes every sample into `out` (`[n_signals, n_times]`) from `file`, the bytes of the
    /// whole file, one rayon task per channel. Returns `Ok(false)` (nothing done) when a channel
    /// needs FFT upsampling: [`RecordEngine::read_segment`] handles those.
    pub(crate) fn decode_all_from(&self, file: &[u8], out: &mut [f32]) -> Result<bool, IoError> {
        let n_sig = self.signals.len();
        if self.needs_upsampling() {
            return Ok(false);
        }
        let n_times = self.n_times();
        if out.len() != n_sig * n_times {
            return Err(IoError::Segment {
                path: self.path.clone(),
                start: 0,
                stop: n_times,
                n_times,
            });
        }
        if n_times == 0 || n_sig == 0 {
            return Ok(true);
        }
        let first = self.data_offset as usize;
        let end = first + self.n_records * self.record_bytes;
        let data = file.get(first..end).ok_or_else(|| IoError::Truncated {
            path: self.path.clone(),
            what: format!("data records 0..{}", self.n_records),
            expected: end as u64,
            got: file.len() as u64,
        })?;
        let chunk = ChunkView {
            buf: data,
            record_bytes: self.record_bytes,
            first_rec: 0,
            n_recs: self.n_records,
            buf_len: self.buf_len,
            start: 0,
            stop: n_times,
        };
        out.par_chunks_mut(n_times)
            .zip(&self.signals)
            .for_each_init(Vec::new, |scratch, (row, sig)| {
                chunk.decode_channel(sig, row, scratch)
            });
        Ok(true)
    }

    /// Reads output samples `[start, stop)` of every signal into `out` (`[n_signals, stop-start]`).
    pub(crate) fn read_segment(
        &mut self,
        start: usize,
        stop: usize,
        out: &mut [f32],
    ) -> Result<(), IoError> {
        let n_times = self.n_times();
        let n_sig = self.signals.len();
        let len = stop.saturating_sub(start);
        if start > stop || stop > n_times || out.len() != n_sig * len {
            return Err(IoError::Segment {
                path: self.path.clone(),
                start,
                stop,
                n_times,
            });
        }
        if len == 0 {
            return Ok(());
        }
        // Channels resampled as a whole.
        for c in 0..n_sig {
            if self.needs_fft(c) {
                self.ensure_upsampled(c)?;
                if let Some(full) = &self.upsampled[c] {
                    out[c * len..(c + 1) * len].copy_from_slice(&full[start..stop]);
                }
            }
        }
        let direct: Vec<bool> = (0..n_sig).map(|c| !self.needs_fft(c)).collect();
        if !direct.contains(&true) {
            return Ok(());
        }
        let bl = self.buf_len;
        let first_rec = start / bl;
        let last_rec = (stop - 1) / bl; // inclusive
        let per = self.records_per_chunk();
        let mut r = first_rec;
        while r <= last_rec {
            let n = per.min(last_rec + 1 - r);
            self.load_records(r, n)?;
            let chunk = ChunkView {
                buf: &self.buf,
                record_bytes: self.record_bytes,
                first_rec: r,
                n_recs: n,
                buf_len: bl,
                start,
                stop,
            };
            let signals = &self.signals;
            // Channels are independent rows of `out`: decode them on the rayon pool when the
            // chunk is big enough to pay for it.
            if n * self.record_bytes >= PARALLEL_BYTES {
                out.par_chunks_mut(len)
                    .zip(signals)
                    .zip(&direct)
                    .for_each_init(Vec::new, |scratch, ((row, sig), &d)| {
                        if d {
                            chunk.decode_channel(sig, row, scratch);
                        }
                    });
            } else {
                let mut scratch = Vec::new();
                for ((row, sig), &d) in out.chunks_mut(len).zip(signals).zip(&direct) {
                    if d {
                        chunk.decode_channel(sig, row, &mut scratch);
                    }
                }
            }
            r += n;
        }
        Ok(())
    }
}

/// Chunks of at least this many bytes are decoded with one rayon task per channel.
const PARALLEL_BYTES: usize = 256 << 10;

/// Records `first_rec..first_rec + n_recs`, loaded in `buf`, and the output window
/// `[start, stop)` they are decoded into.
struct ChunkView<'a> {
    buf: &'a [u8],
    record_bytes: usize,
    first_rec: usize,
    n_recs: usize,
    buf_len: usize,
    start: usize,
    stop: usize,
}

impl ChunkView<'_> {
    /// Decodes one signal of every record of the chunk into its output row (`stop - start`
    /// samples); `scratch` serves signals stored at a lower rate than `buf_len` (stim channels,
    /// held within each record).
    fn decode_channel(&self, sig: &SignalLayout, row: &mut [f32], scratch: &mut Vec<f32>) {
        let bl = self.buf_len;
        let size = sig.dtype.size();
        for k in 0..self.n_recs {
            let rec_start = (self.first_rec + k) * bl;
            let a = self.start.max(rec_start) - rec_start; // first sample within record
            let b = self.stop.min(rec_start + bl) - rec_start; // end within record
            let dst0 = rec_start + a - self.start;
            let dst = &mut row[dst0..dst0 + (b - a)];
            let o = k * self.record_bytes + sig.byte_offset;
            if sig.n_per_record == bl {
                decode_into(&self.buf[o + a * size..o + b * size], sig, dst);
            } else {
                // stim channel at another rate: zero-order hold within the record
                let m = sig.n_per_record;
                scratch.resize(m, 0.0);
                let unmasked = SignalLayout {
                    stim: false,
                    ..sig.clone()
                };
                decode_into(&self.buf[o..o + m * size], &unmasked, scratch);
                for (j, d) in (a..b).zip(dst.iter_mut()) {
                    *d = scratch[zero_hold_index(j, bl, m)];
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_hold_repeats_samples() {
        // 2 samples per record held over 6 output samples: 0,0,0,1,1,1
        let idx: Vec<usize> = (0..6).map(|j| zero_hold_index(j, 6, 2)).collect();
        assert_eq!(idx, vec![0, 0, 0, 1, 1, 1]);
        let idx: Vec<usize> = (0..4).map(|j| zero_hold_index(j, 4, 1)).collect();
        assert_eq!(idx, vec![0, 0, 0, 0]);
    }

    #[test]
    fn int24_sign_extension() {
        let sig = SignalLayout {
            n_per_record: 2,
            byte_offset: 0,
            dtype: SampleType::I24,
            cal: 1.0,
            offset: 0.0,
            gain: 1.0,
            stim: false,
        };
        let mut out = [0f32; 2];
        decode_into(&[0xff, 0xff, 0xff, 0x01, 0x00, 0x80], &sig, &mut out);
        assert_eq!(out, [-1.0, -8388607.0]);
    }
}
