//! The tokenizer file format, training configuration, fitting and evaluation.
//!
//! A fitted tokenizer is one JSON object tagged by `type` with a format `version`:
//! `{"type": "patch", "version": 1, "patch_len": 200, "scale": 1.0}` or
//! `{"type": "mulaw", "version": 1, "mu": 255.0, "levels": 256, "max_abs": 1e-4}`.
//! Training runs the data through the same stages as inference: fit the statistics the
//! stages need, then evaluate the round trip.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{check, TokenizeError};
use crate::metrics::{Reconstruction, ReconstructionAcc, VocabAcc, VocabStats};
use crate::mulaw::{abs_quantile, MulawQuantizer};
use crate::patch::PatchTokenizer;

/// Version of the tokenizer JSON format written by this crate.
pub const FORMAT_VERSION: u64 = 1;

/// A fitted tokenizer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[allow(clippy::large_enum_variant)] // one value per fitted tokenizer; boxing buys nothing
pub enum Tokenizer {
    /// Continuous patches (for the masked autoencoder).
    Patch(PatchTokenizer),
    /// µ-law quantization to discrete tokens (for the GPT).
    Mulaw(MulawQuantizer),
}

/// How a patch tokenizer scales the signal.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Normalize {
    /// Keep the stored units.
    #[default]
    None,
    /// Divide by the standard deviation of the training data (all channels pooled).
    Std,
}

fn default_mu() -> f64 {
    255.0
}
fn default_levels() -> usize {
    256
}
fn default_quantile() -> f64 {
    0.999
}

/// What `neurofm tokenizer train` reads from `configs/tokenizer/<name>.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum TokenizerConfig {
    Patch {
        patch_len: usize,
        #[serde(default)]
        normalize: Normalize,
    },
    Mulaw {
        #[serde(default = "default_mu")]
        mu: f64,
        #[serde(default = "default_levels")]
        levels: usize,
        /// Fixed scale; when absent it is fitted as the `max_abs_quantile` of |x|.
        #[serde(default)]
        max_abs: Option<f64>,
        #[serde(default = "default_quantile")]
        max_abs_quantile: f64,
        /// Learn BPE merges up to this many tokens (absent = no BPE).
        #[serde(default)]
        bpe_vocab_size: Option<usize>,
        /// Levels per BPE word.
        #[serde(default = "default_word_len")]
        bpe_word_len: usize,
    },
}

fn default_word_len() -> usize {
    32
}

impl TokenizerConfig {
    pub fn validate(&self) -> Result<(), TokenizeError> {
        match self {
            TokenizerConfig::Patch { patch_len, .. } => {
                check(*patch_len > 0, "patch_len", || "must be > 0".into())
            }
            TokenizerConfig::Mulaw {
                mu,
                levels,
                max_abs,
                max_abs_quantile,
                bpe_vocab_size,
                bpe_word_len,
            } => {
                MulawQuantizer::new(*mu, *levels, max_abs.unwrap_or(1.0))?;
                check(
                    *max_abs_quantile > 0.0 && *max_abs_quantile <= 1.0,
                    "max_abs_quantile",
                    || format!("must be in (0, 1], got {max_abs_quantile}"),
                )?;
                if let Some(v) = bpe_vocab_size {
                    check(*levels <= crate::bpe::MAX_LEVELS, "levels", || {
                        format!(
                            "BPE needs at most {} levels, got {levels}",
                            crate::bpe::MAX_LEVELS
                        )
                    })?;
                    check(*v >= *levels, "bpe_vocab_size", || {
                        format!("must be >= levels ({levels}), got {v}")
                    })?;
                    check(*bpe_word_len >= 2, "bpe_word_len", || {
                        format!("must be >= 2, got {bpe_word_len}")
                    })?;
                }
                Ok(())
            }
        }
    }
}

/// Streaming statistics for fitting: moments and a deterministic subsample for quantiles.
#[derive(Debug, Clone)]
pub struct Fitter {
    cfg: TokenizerConfig,
    n: u64,
    sum: f64,
    sum_sq: f64,
    sample: Vec<f32>,
    stride: u64,
    seen: u64,
    /// Whole channels kept for BPE training (up to `MAX_BPE_SAMPLES` values).
    streams: Vec<Vec<f32>>,
    stream_values: usize,
}

/// Most values kept (whole channels) to train BPE merges on.
const MAX_BPE_SAMPLES: usize = 1 << 22;

/// Largest subsample kept for quantiles.
const MAX_SAMPLE: usize = 1 << 21;

impl Fitter {
    pub fn new(cfg: &TokenizerConfig) -> Result<Self, TokenizeError> {
        cfg.validate()?;
        Ok(Self {
            cfg: cfg.clone(),
            n: 0,
            sum: 0.0,
            sum_sq: 0.0,
            sample: Vec::new(),
            stride: 1,
            seen: 0,
            streams: Vec::new(),
            stream_values: 0,
        })
    }

    /// Adds one channel's contiguous samples.
    pub fn add_channel(&mut self, x: &[f32]) {
        self.add(x);
        if matches!(
            self.cfg,
            TokenizerConfig::Mulaw {
                bpe_vocab_size: Some(_),
                ..
            }
        ) && self.stream_values + x.len() <= MAX_BPE_SAMPLES
        {
            self.streams.push(x.to_vec());
            self.stream_values += x.len();
        }
    }

    /// Adds training values (any layout: the fitted statistics pool all channels; BPE
    /// training needs [`add_channel`](Self::add_channel)).
    pub fn add(&mut self, x: &[f32]) {
        for &v in x {
            if !v.is_finite() {
                continue;
            }
            self.n += 1;
            self.sum += v as f64;
            self.sum_sq += (v as f64) * (v as f64);
            if self.seen.is_multiple_of(self.stride) {
                self.sample.push(v);
                if self.sample.len() >= MAX_SAMPLE {
                    // keep every other value, halve the rate from now on
                    let kept: Vec<f32> = self.sample.iter().step_by(2).copied().collect();
                    self.sample = kept;
                    self.stride *= 2;
                }
            }
            self.seen += 1;
        }
    }

    pub fn finish(&self) -> Result<Tokenizer, TokenizeError> {
        match &self.cfg {
            TokenizerConfig::Patch {
                patch_len,
                normalize,
            } => {
                let scale = match normalize {
                    Normalize::None => 1.0,
                    Normalize::Std => {
                        let n = self.n as f64;
                        let var = if self.n > 1 {
                            (self.sum_sq - self.sum * self.sum / n) / (n - 1.0)
                        } else {
                            0.0
                        };
                        if var.is_nan() || var <= 0.0 {
                            return Err(TokenizeError::Input(
                                "cannot fit the scale: training data has zero variance (or no finite values)".into(),
                            ));
                        }
                        1.0 / var.sqrt()
                    }
                };
                Ok(Tokenizer::Patch(PatchTokenizer::new(*patch_len, scale)?))
            }
            TokenizerConfig::Mulaw {
                mu,
                levels,
                max_abs,
                max_abs_quantile,
                bpe_vocab_size,
                bpe_word_len,
            } => {
                let m = match max_abs {
                    Some(m) => *m,
                    None => abs_quantile(&self.sample, *max_abs_quantile)
                        .filter(|m| *m > 0.0)
                        .ok_or_else(|| {
                            TokenizeError::Input(
                                "cannot fit max_abs: training data is all zero (or empty)".into(),
                            )
                        })?,
                };
                let mut q = MulawQuantizer::new(*mu, *levels, m)?;
                if let Some(v) = bpe_vocab_size {
                    if self.streams.is_empty() {
                        return Err(TokenizeError::Input(
                            "BPE needs whole channels of training data (none was given)".into(),
                        ));
                    }
                    let levels: Vec<Vec<u32>> = self.streams.iter().map(|s| q.encode(s)).collect();
                    q.bpe = Some(crate::bpe::BpeStage::train(
                        levels.iter().map(|l| l.as_slice()),
                        q.levels,
                        *v,
                        *bpe_word_len,
                    )?);
                }
                Ok(Tokenizer::Mulaw(q))
            }
        }
    }
}

/// Round-trip quality of a tokenizer on some data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenizerReport {
    pub reconstruction: Reconstruction,
    /// For discrete tokenizers.
    pub vocab: Option<VocabStats>,
    /// Samples not covered (a channel's tail shorter than a patch).
    pub dropped_samples: u64,
}

/// Streaming evaluation of [`TokenizerReport`].
#[derive(Debug, Clone)]
pub struct Evaluator<'a> {
    tok: &'a Tokenizer,
    rec: ReconstructionAcc,
    vocab: Option<VocabAcc>,
    dropped: u64,
}

impl<'a> Evaluator<'a> {
    pub fn new(tok: &'a Tokenizer) -> Self {
        let vocab = tok.vocab_size().map(VocabAcc::new);
        Self {
            tok,
            rec: ReconstructionAcc::default(),
            vocab,
            dropped: 0,
        }
    }

    /// Adds one channel's samples.
    pub fn add_channel(&mut self, x: &[f32]) -> Result<(), TokenizeError> {
        match self.tok {
            Tokenizer::Patch(p) => {
                let names = ["x".to_string()];
                let patches = p.encode(x, 1, &names)?;
                let back = p.decode(&patches);
                self.rec.add(&x[..back.len()], &back);
                self.dropped += patches.dropped as u64;
            }
            Tokenizer::Mulaw(q) => {
                let t = q.tokens(x)?;
                self.rec.add(x, &q.detokenize(&t)?);
                if let Some(v) = &mut self.vocab {
                    v.add(&t, x.len());
                }
            }
        }
        Ok(())
    }

    pub fn finish(&self) -> TokenizerReport {
        TokenizerReport {
            reconstruction: self.rec.finish(),
            vocab: self.vocab.as_ref().map(|v| v.finish()),
            dropped_samples: self.dropped,
        }
    }
}

impl Tokenizer {
    /// Number of discrete tokens, for discrete tokenizers.
    pub fn vocab_size(&self) -> Option<usize> {
        match self {
            Tokenizer::Patch(_) => None,
            Tokenizer::Mulaw(q) => Some(q.vocab_size()),
        }
    }

    /// Discrete tokens of one channel (`None` for continuous tokenizers).
    pub fn tokens(&self, x: &[f32]) -> Result<Option<Vec<u32>>, TokenizeError> {
        match self {
            Tokenizer::Patch(_) => Ok(None),
            Tokenizer::Mulaw(q) => q.tokens(x).map(Some),
        }
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            Tokenizer::Patch(_) => "patch",
            Tokenizer::Mulaw(_) => "mulaw",
        }
    }

    /// The JSON object (with `type` and `version`).
    pub fn to_json(&self) -> Result<serde_json::Value, TokenizeError> {
        let mut v = serde_json::to_value(self)
            .map_err(|e| TokenizeError::Input(format!("serialize: {e}")))?;
        if let Some(o) = v.as_object_mut() {
            o.insert("version".into(), FORMAT_VERSION.into());
        }
        Ok(v)
    }

    /// Parses a tokenizer JSON (`path` names the source in errors).
    pub fn from_json_str(text: &str, path: &Path) -> Result<Self, TokenizeError> {
        let mut v: serde_json::Value =
            serde_json::from_str(text).map_err(|source| TokenizeError::Json {
                path: path.to_path_buf(),
                source,
            })?;
        let field = |field: &'static str, reason: String| TokenizeError::Field {
            path: path.to_path_buf(),
            field,
            reason,
        };
        let o = v
            .as_object_mut()
            .ok_or_else(|| field("(root)", "expected a JSON object".into()))?;
        match o.remove("version") {
            Some(serde_json::Value::Number(n)) if n.as_u64() == Some(FORMAT_VERSION) => {}
            Some(other) => {
                return Err(field(
                    "version",
                    format!("unsupported version {other}, this build reads {FORMAT_VERSION}"),
                ))
            }
            None => return Err(field("version", "missing".into())),
        }
        match o.get("type").and_then(|t| t.as_str()) {
            Some("patch") | Some("mulaw") => {}
            Some(t) => {
                return Err(field(
                    "type",
                    format!("unknown tokenizer type `{t}` (known: patch, mulaw)"),
                ))
            }
            None => return Err(field("type", "missing or not a string".into())),
        }
        let tok: Tokenizer = serde_json::from_value(v).map_err(|source| TokenizeError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        match &tok {
            Tokenizer::Patch(p) => p.validate(),
            Tokenizer::Mulaw(q) => q.validate(),
        }
        .map_err(|e| match e {
            TokenizeError::Config { field: f, reason } => field(f, reason),
            other => other,
        })?;
        Ok(tok)
    }

    pub fn load(path: &Path) -> Result<Self, TokenizeError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokenizeError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_json_str(&text, path)
    }

    /// Writes the JSON atomically (temporary file in the same directory, fsync, rename).
    pub fn save(&self, path: &Path) -> Result<(), TokenizeError> {
        let text = serde_json::to_string_pretty(&self.to_json()?)
            .map_err(|e| TokenizeError::Input(format!("serialize: {e}")))?;
        write_atomic(path, text.as_bytes())
    }
}

/// Atomic file write: `<path>.tmp-<pid>`, fsync, rename, fsync of the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TokenizeError> {
    let io = |source| TokenizeError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut tmp = PathBuf::from(path.as_os_str());
    tmp.as_mut_os_string()
        .push(format!(".tmp-{}", std::process::id()));
    {
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(bytes).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, path).map_err(io)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(n: usize, amp: f32) -> Vec<f32> {
        (0..n)
            .map(|i| amp * (i as f32 * 0.05).sin() + 0.3 * amp * (i as f32 * 0.31).cos())
            .collect()
    }

    #[test]
    fn json_round_trip_and_version() -> Result<(), TokenizeError> {
        let dir = tempfile::tempdir().map_err(|e| TokenizeError::Input(e.to_string()))?;
        for tok in [
            Tokenizer::Patch(PatchTokenizer::new(200, 2.5)?),
            Tokenizer::Mulaw(MulawQuantizer::new(255.0, 256, 1e-4)?),
        ] {
            let p = dir.path().join(format!("{}.json", tok.type_name()));
            tok.save(&p)?;
            let text =
                std::fs::read_to_string(&p).map_err(|e| TokenizeError::Input(e.to_string()))?;
            assert!(text.contains("\"version\": 1"), "{text}");
            assert!(text.contains(&format!("\"type\": \"{}\"", tok.type_name())));
            assert_eq!(Tokenizer::load(&p)?, tok);
        }
        Ok(())
    }

    #[test]
    fn bad_files_name_the_field() {
        let p = Path::new("tok.json");
        let err = |s: &str| {
            Tokenizer::from_json_str(s, p)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert!(err(r#"{"type":"mulaw","mu":255,"levels":256,"max_abs":1}"#).contains("`version`"));
        assert!(
            err(r#"{"type":"mulaw","version":2,"mu":255,"levels":256,"max_abs":1}"#)
                .contains("unsupported version")
        );
        assert!(err(r#"{"type":"vq","version":1}"#).contains("`type`"));
        assert!(
            err(r#"{"type":"mulaw","version":1,"mu":255,"levels":1,"max_abs":1}"#)
                .contains("`levels`")
        );
        assert!(
            err(r#"{"type":"patch","version":1,"patch_len":4,"scale":1,"extra":0}"#)
                .contains("tok.json")
        );
        assert!(err("[1]").contains("(root)"));
        assert!(err("{").contains("tok.json"));
    }

    #[test]
    fn fit_and_evaluate_mulaw() -> Result<(), TokenizeError> {
        let cfg: TokenizerConfig = toml_like(r#"{"type":"mulaw","max_abs_quantile":1.0}"#);
        let x = sine(5000, 3.0);
        let mut f = Fitter::new(&cfg)?;
        f.add(&x);
        let tok = f.finish()?;
        let Tokenizer::Mulaw(q) = &tok else {
            return Err(TokenizeError::Input("wrong type".into()));
        };
        let max = x.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
        assert!((q.max_abs - max).abs() < 1e-6);
        let mut ev = Evaluator::new(&tok);
        ev.add_channel(&x)?;
        let r = ev.finish();
        assert!(r.reconstruction.snr_db > 30.0, "{r:?}");
        let v = r
            .vocab
            .ok_or_else(|| TokenizeError::Input("no vocab".into()))?;
        assert_eq!(v.vocab_size, 256);
        assert!(v.used > 100 && v.used <= 256);
        assert!((v.fixed_bits_per_sample - 8.0).abs() < 1e-9);
        assert!(v.entropy_bits_per_sample < 8.0);
        Ok(())
    }

    #[test]
    fn fit_patch_std() -> Result<(), TokenizeError> {
        let cfg: TokenizerConfig =
            toml_like(r#"{"type":"patch","patch_len":100,"normalize":"std"}"#);
        let x = sine(1050, 1e-5);
        let mut f = Fitter::new(&cfg)?;
        f.add(&x);
        let tok = f.finish()?;
        let Tokenizer::Patch(p) = &tok else {
            return Err(TokenizeError::Input("wrong type".into()));
        };
        let patches = p.encode(&x, 1, &["Cz".into()])?;
        let n = patches.data.len() as f64;
        let mean = patches.data.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = patches
            .data
            .iter()
            .map(|&v| (v as f64 - mean).powi(2))
            .sum::<f64>()
            / n;
        assert!(
            (var.sqrt() - 1.0).abs() < 0.02,
            "std after scaling {}",
            var.sqrt()
        );
        let mut ev = Evaluator::new(&tok);
        ev.add_channel(&x)?;
        let r = ev.finish();
        assert_eq!(r.dropped_samples, 50);
        assert!(r.reconstruction.nmse < 1e-10);
        assert!(r.vocab.is_none());
        Ok(())
    }

    #[test]
    fn config_rejects_unknown_fields() {
        assert!(serde_json::from_str::<TokenizerConfig>(
            r#"{"type":"patch","patch_len":4,"typo":1}"#
        )
        .is_err());
        assert!(Fitter::new(&toml_like(r#"{"type":"patch","patch_len":0}"#)).is_err());
    }

    fn toml_like(s: &str) -> TokenizerConfig {
        serde_json::from_str(s).unwrap_or(TokenizerConfig::Patch {
            patch_len: 0,
            normalize: Normalize::None,
        })
    }
}
