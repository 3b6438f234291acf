//! Synthetic multi-subject motor-imagery-like EEG with labelled trials.
//!
//! Every recording is built from the same ingredients, each drawn per subject so that subjects
//! differ the way real ones do:
//!
//! * **background**: one 1/f^β process per electrode (cascaded pole/zero sections, β drawn per
//!   subject in [1, 2]), spatially mixed by a Gaussian kernel of the inter-electrode distance so
//!   that neighbouring channels are correlated;
//! * **alpha**: two narrow-band sources (left and right parieto-occipital) at the subject's alpha
//!   peak frequency, strongest over O1/O2/Pz;
//! * **sensorimotor rhythms**: three sources under C3, C4 and Cz, each a mu (≈ alpha + 1 Hz) plus
//!   beta (18–24 Hz) rhythm whose amplitude waxes and wanes slowly;
//! * **trials**: class `left` desynchronizes the C4 source (and weakly C3), `right` C3 (and weakly
//!   C4), `feet` Cz, `rest` nothing; the desynchronization ramps in 0.3–1.0 s after the cue and
//!   recovers over 1 s after the trial; every trial is an [`Annotation`] (onset, duration, class);
//! * **line noise** at 50 or 60 Hz with a per-channel amplitude, and white **sensor noise**;
//! * **per-subject variability**: channel gains, background amplitude and exponent, alpha / mu /
//!   beta frequencies, desynchronization depth and noise level.
//!
//! The `difficulty` knob (0 = trivial, 1 = very hard) lowers the desynchronization depth and
//! raises the subject-to-subject variability; `docs/synth.md` gives the cross-subject accuracy
//! measured at each named level.
//!
//! Output is deterministic: the random numbers come from ChaCha8 streams keyed by the seed, and
//! every transcendental function on the way to a sample is computed here with `+ - * /` and
//! `sqrt` only (all IEEE-exact), so the same seed gives bit-identical recordings on every machine.

use std::collections::BTreeMap;

use neurofm_core::{
    Annotation, ChannelInfo, ChannelKind, CoreError, Info, Modality, Provenance, Recording, Signal,
    Unit,
};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// Errors of the synthetic generator.
#[derive(Debug, Error)]
pub enum SynthError {
    /// A configuration value is out of range.
    #[error("synth config: `{field}`: {reason}")]
    Config { field: String, reason: String },
    #[error("synth: {0}")]
    Core(#[from] CoreError),
}

fn cfg_err(field: &str, reason: impl Into<String>) -> SynthError {
    SynthError::Config {
        field: field.to_string(),
        reason: reason.into(),
    }
}

/// Class names in the order classes are enabled: 2 classes = left/right, 3 adds feet, 4 adds rest.
pub const CLASS_NAMES: [&str; 4] = ["left", "right", "feet", "rest"];

/// Named difficulty levels and their value of [`SynthConfig::difficulty`].
pub const DIFFICULTIES: [(&str, f64); 3] = [("easy", 0.25), ("medium", 0.5), ("hard", 0.75)];

/// Named presets accepted by [`SynthConfig::preset`].
pub const PRESETS: [&str; 2] = ["quickstart", "tiny"];

/// Parses `easy`, `medium`, `hard` or a number in [0, 1].
pub fn parse_difficulty(s: &str) -> Result<f64, SynthError> {
    let t = s.trim().to_ascii_lowercase();
    if let Some((_, v)) = DIFFICULTIES.iter().find(|(n, _)| *n == t) {
        return Ok(*v);
    }
    let v: f64 = t.parse().map_err(|_| {
        cfg_err(
            "difficulty",
            format!("`{s}` is neither easy, medium, hard nor a number in [0, 1]"),
        )
    })?;
    if !(0.0..=1.0).contains(&v) {
        return Err(cfg_err("difficulty", format!("{v} is outside [0, 1]")));
    }
    Ok(v)
}

/// What to generate. `Default` is the `quickstart` preset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SynthConfig {
    /// Seed of every random stream.
    pub seed: u64,
    /// Number of subjects ("01", "02", ...), one recording per subject and run.
    pub n_subjects: usize,
    /// Runs per subject.
    pub n_runs: usize,
    /// Electrode names (from the 10-20 subset of the 10-05 table, see [`CHANNELS_1020`]).
    pub channels: Vec<String>,
    pub sfreq_hz: f64,
    /// 2 to 4 classes: left, right, feet, rest (in that order).
    pub n_classes: usize,
    /// Trials of each class in each run.
    pub trials_per_class: usize,
    /// Duration of one trial (the annotation's duration).
    pub trial_s: f64,
    /// Pause between the end of a trial and the next cue, drawn uniformly in [min, max].
    pub iti_min_s: f64,
    pub iti_max_s: f64,
    /// 0 (trivial) to 1 (very hard): lowers the effect size and raises subject variability.
    pub difficulty: f64,
    /// Power-line frequency (50 or 60 Hz).
    pub line_freq_hz: f64,
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig {
            seed: 42,
            n_subjects: 8,
            n_runs: 1,
            channels: CHANNELS_1020.iter().map(|c| c.0.to_string()).collect(),
            sfreq_hz: 200.0,
            n_classes: 4,
            trials_per_class: 40,
            trial_s: 4.0,
            iti_min_s: 2.0,
            iti_max_s: 3.0,
            difficulty: 0.5,
            line_freq_hz: 50.0,
        }
    }
}

impl SynthConfig {
    /// A named preset: `quickstart` (8 subjects × 160 trials, 19 channels, 200 Hz) or `tiny`
    /// (3 subjects × 24 trials, for tests and quick checks).
    pub fn preset(name: &str) -> Result<Self, SynthError> {
        match name {
            "quickstart" => Ok(SynthConfig::default()),
            "tiny" => Ok(SynthConfig {
                n_subjects: 3,
                trials_per_class: 6,
                ..SynthConfig::default()
            }),
            other => Err(cfg_err(
                "preset",
                format!("unknown preset `{other}` (known: {})", PRESETS.join(", ")),
            )),
        }
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<(), SynthError> {
        if self.n_subjects == 0 || self.n_subjects > 999 {
            return Err(cfg_err("n_subjects", "must be in 1..=999"));
        }
        if self.n_runs == 0 || self.n_runs > 99 {
            return Err(cfg_err("n_runs", "must be in 1..=99"));
        }
        if !(2..=4).contains(&self.n_classes) {
            return Err(cfg_err(
                "n_classes",
                format!("{} is not in 2..=4", self.n_classes),
            ));
        }
        if self.trials_per_class == 0 {
            return Err(cfg_err("trials_per_class", "must be at least 1"));
        }
        if !(self.sfreq_hz.is_finite() && (64.0..=4096.0).contains(&self.sfreq_hz)) {
            return Err(cfg_err(
                "sfreq_hz",
                format!("{} is not in [64, 4096]", self.sfreq_hz),
            ));
        }
        if !(self.line_freq_hz.is_finite()
            && self.line_freq_hz > 0.0
            && self.line_freq_hz < 0.5 * self.sfreq_hz)
        {
            return Err(cfg_err(
                "line_freq_hz",
                format!(
                    "{} must be positive and below Nyquist ({} Hz)",
                    self.line_freq_hz,
                    0.5 * self.sfreq_hz
                ),
            ));
        }
        if !(self.trial_s.is_finite() && (1.0..=60.0).contains(&self.trial_s)) {
            return Err(cfg_err(
                "trial_s",
                format!("{} is not in [1, 60]", self.trial_s),
            ));
        }
        if !(self.iti_min_s.is_finite()
            && self.iti_min_s >= 0.0
            && self.iti_max_s.is_finite()
            && self.iti_max_s >= self.iti_min_s
            && self.iti_max_s <= 60.0)
        {
            return Err(cfg_err(
                "iti_min_s/iti_max_s",
                "need 0 <= iti_min_s <= iti_max_s <= 60",
            ));
        }
        if !(self.difficulty.is_finite() && (0.0..=1.0).contains(&self.difficulty)) {
            return Err(cfg_err(
                "difficulty",
                format!("{} is outside [0, 1]", self.difficulty),
            ));
        }
        if self.channels.is_empty() {
            return Err(cfg_err("channels", "at least one channel is needed"));
        }
        for (i, c) in self.channels.iter().enumerate() {
            if channel_position(c).is_none() {
                return Err(cfg_err(
                    "channels",
                    format!(
                        "`{c}` is not a known 10-20 electrode (known: {})",
                        CHANNELS_1020
                            .iter()
                            .map(|c| c.0)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
            if self.channels[..i].iter().any(|o| o.eq_ignore_ascii_case(c)) {
                return Err(cfg_err("channels", format!("`{c}` is listed twice")));
            }
        }
        Ok(())
    }

    /// Number of samples of one run (whole seconds: lead-in, trials, pauses, tail).
    pub fn n_samples_upper_bound(&self) -> usize {
        let n_trials = self.n_classes * self.trials_per_class;
        let secs = LEAD_IN_S + n_trials as f64 * (self.trial_s + self.iti_max_s) + TAIL_S;
        (secs.ceil() * self.sfreq_hz).ceil() as usize
    }
}

/// The 19 electrodes of the 10-20 system (10-05 names), with EEGLAB-style polar coordinates:
/// (name, azimuth in degrees from the nose, positive to the right; polar angle / 180°).
pub const CHANNELS_1020: [(&str, f64, f64); 19] = [
    ("Fp1", -18.0, 0.511),
    ("Fp2", 18.0, 0.511),
    ("F7", -54.0, 0.511),
    ("F3", -39.0, 0.333),
    ("Fz", 0.0, 0.256),
    ("F4", 39.0, 0.333),
    ("F8", 54.0, 0.511),
    ("T7", -90.0, 0.511),
    ("C3", -90.0, 0.256),
    ("Cz", 0.0, 0.0),
    ("C4", 90.0, 0.256),
    ("T8", 90.0, 0.511),
    ("P7", -126.0, 0.511),
    ("P3", -141.0, 0.333),
    ("Pz", 180.0, 0.256),
    ("P4", 141.0, 0.333),
    ("P8", 126.0, 0.511),
    ("O1", -162.0, 0.511),
    ("O2", 162.0, 0.511),
];

/// Head radius used for the electrode positions (metres).
const HEAD_RADIUS_M: f64 = 0.095;
const LEAD_IN_S: f64 = 3.0;
const TAIL_S: f64 = 3.0;
/// Discarded start of every filtered process (filter transients).
const BURN_IN_S: f64 = 5.0;

/// Position (metres, x right, y anterior, z up) of a 10-20 electrode, case-insensitive.
pub fn channel_position(name: &str) -> Option<[f64; 3]> {
    let (_, az, r) = CHANNELS_1020
        .iter()
        .find(|c| c.0.eq_ignore_ascii_case(name))?;
    // azimuth from +x (right), counter-clockwise: the nose (+y) is at 90°.
    let phi_cycles = (90.0 - az) / 360.0;
    let theta_cycles = r * 0.5; // polar angle: r * 180°
    let st = detmath::sin_cycles(theta_cycles);
    let ct = detmath::cos_cycles(theta_cycles);
    Some([
        HEAD_RADIUS_M * st * detmath::cos_cycles(phi_cycles),
        HEAD_RADIUS_M * st * detmath::sin_cycles(phi_cycles),
        HEAD_RADIUS_M * ct,
    ])
}

fn canonical_name(name: &str) -> Option<&'static str> {
    CHANNELS_1020
        .iter()
        .find(|c| c.0.eq_ignore_ascii_case(name))
        .map(|c| c.0)
}

/// The parameters drawn for one subject (also written to the recording's metadata as `synth.*`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubjectParams {
    pub alpha_hz: f64,
    pub mu_hz: f64,
    pub beta_hz: f64,
    /// Spectral exponent β of the background (power ∝ 1/f^β).
    pub spectral_exponent: f64,
    /// Background standard deviation per channel before gains (µV).
    pub background_uv: f64,
    /// Alpha source standard deviation (µV).
    pub alpha_uv: f64,
    /// Mu and beta source standard deviations (µV).
    pub mu_uv: f64,
    pub beta_uv: f64,
    /// Mean fraction of the mu/beta amplitude removed during a trial of the source's class.
    pub erd_depth: f64,
    /// White sensor noise standard deviation (µV).
    pub noise_uv: f64,
    /// Line-noise amplitude scale (µV).
    pub line_uv: f64,
    /// Per-channel multiplicative gains (in the order of the config's channels).
    pub gains: Vec<f64>,
}

/// A trial as scheduled: cue sample, class index, trial-specific depth multiplier.
#[derive(Debug, Clone, Copy)]
struct Trial {
    onset: usize,
    class: usize,
    depth_scale: f64,
}

/// Generates every recording (subjects × runs), subject-major.
pub fn generate(cfg: &SynthConfig) -> Result<Vec<Recording>, SynthError> {
    cfg.validate()?;
    let mut out = Vec::with_capacity(cfg.n_subjects * cfg.n_runs);
    for s in 0..cfg.n_subjects {
        out.extend(generate_subject(cfg, s)?);
    }
    Ok(out)
}

/// Generates the runs of subject `index` (0-based; the subject id is `index + 1`, two digits).
/// `generate(cfg)` is the concatenation of this for every subject.
pub fn generate_subject(cfg: &SynthConfig, index: usize) -> Result<Vec<Recording>, SynthError> {
    cfg.validate()?;
    if index >= cfg.n_subjects {
        return Err(cfg_err(
            "subject index",
            format!("{index} >= n_subjects {}", cfg.n_subjects),
        ));
    }
    let params = subject_params(cfg, index);
    (0..cfg.n_runs)
        .map(|run| generate_run(cfg, index, run, &params))
        .collect()
}

/// Subject id of subject `index`: "01", "02", ... (three digits from 100 subjects on).
pub fn subject_id(cfg: &SynthConfig, index: usize) -> String {
    if cfg.n_subjects >= 100 {
        format!("{:03}", index + 1)
    } else {
        format!("{:02}", index + 1)
    }
}

/// Draws subject `index`'s parameters.
pub fn subject_params(cfg: &SynthConfig, index: usize) -> SubjectParams {
    let d = cfg.difficulty;
    let mut rng = Rand::new(cfg.seed, index as u64, 0xFF, 0);
    let var = 0.15 + 0.5 * d; // subject variability (log-scale standard deviation)
    let alpha_hz = (10.0 + 0.8 * rng.normal()).clamp(8.5, 12.0);
    let mu_hz = (alpha_hz + 0.5 + rng.uniform()).clamp(9.0, 13.0);
    let beta_hz = 18.0 + 6.0 * rng.uniform();
    let spectral_exponent = (1.5 + 0.2 * rng.normal()).clamp(1.0, 2.0);
    let background_uv = 15.0 * detmath::exp(var * rng.normal());
    let alpha_uv = 10.0 * detmath::exp(0.5 * var * rng.normal());
    let mu_uv = 7.0 * detmath::exp(0.5 * var * rng.normal());
    let beta_uv = 2.5 * detmath::exp(0.5 * var * rng.normal());
    let erd_depth = ((0.8 - 0.6 * d) * detmath::exp(0.8 * var * rng.normal())).clamp(0.0, 0.9);
    let noise_uv = 1.5 * detmath::exp(var * rng.normal());
    let line_uv = 2.0 * detmath::exp(0.5 * rng.normal());
    let gain_sd = 0.05 + 0.3 * d;
    let gains = cfg
        .channels
        .iter()
        .map(|_| detmath::exp(gain_sd * rng.normal()))
        .collect();
    SubjectParams {
        alpha_hz,
        mu_hz,
        beta_hz,
        spectral_exponent,
        background_uv,
        alpha_uv,
        mu_uv,
        beta_uv,
        erd_depth,
        noise_uv,
        line_uv,
        gains,
    }
}

/// Random-stream components of one run.
const C_TRIALS: u64 = 1;
const C_BACKGROUND: u64 = 2;
const C_ALPHA: u64 = 3;
const C_SMR: u64 = 4;
const C_NOISE: u64 = 5;
const C_LINE: u64 = 6;

fn schedule(cfg: &SynthConfig, subject: usize, run: usize) -> (Vec<Trial>, usize) {
    let fs = cfg.sfreq_hz;
    let mut rng = Rand::new(cfg.seed, subject as u64, run as u64, C_TRIALS);
    let mut classes: Vec<usize> = (0..cfg.n_classes)
        .flat_map(|c| std::iter::repeat_n(c, cfg.trials_per_class))
        .collect();
    // Fisher-Yates with an exact integer draw.
    for i in (1..classes.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        classes.swap(i, j);
    }
    let mut t = LEAD_IN_S;
    let mut trials = Vec::with_capacity(classes.len());
    for class in classes {
        let onset = (t * fs).round() as usize;
        let depth_scale = detmath::exp(0.25 * rng.normal());
        trials.push(Trial {
            onset,
            class,
            depth_scale,
        });
        let iti = cfg.iti_min_s + (cfg.iti_max_s - cfg.iti_min_s) * rng.uniform();
        t += cfg.trial_s + iti;
    }
    // Whole seconds, so that EDF records of 1 s hold the run exactly.
    let total_s = (t + TAIL_S).ceil();
    (trials, (total_s * fs).round() as usize)
}

fn generate_run(
    cfg: &SynthConfig,
    subject: usize,
    run: usize,
    p: &SubjectParams,
) -> Result<Recording, SynthError> {
    let fs = cfg.sfreq_hz;
    let nc = cfg.channels.len();
    let (trials, n) = schedule(cfg, subject, run);
    let pos: Vec<[f64; 3]> = cfg
        .channels
        .iter()
        .map(|c| channel_position(c).unwrap_or([0.0, 0.0, HEAD_RADIUS_M]))
        .collect();
    let mut x = vec![0f64; nc * n];

    // Background: independent 1/f^β per electrode, mixed by a Gaussian distance kernel.
    {
        let mut rng = Rand::new(cfg.seed, subject as u64, run as u64, C_BACKGROUND);
        let mut pink = Vec::with_capacity(nc);
        for _ in 0..nc {
            pink.push(pink_noise(&mut rng, n, fs, p.spectral_exponent));
        }
        let lambda = 0.045; // metres
        for i in 0..nc {
            let mut w: Vec<f64> = (0..nc)
                .map(|j| detmath::exp(-dist2(&pos[i], &pos[j]) / (2.0 * lambda * lambda)))
                .collect();
            let norm = w.iter().map(|v| v * v).sum::<f64>().sqrt();
            for v in &mut w {
                *v *= p.background_uv / norm;
            }
            let row = &mut x[i * n..(i + 1) * n];
            for (j, pj) in pink.iter().enumerate() {
                let wj = w[j];
                for (o, s) in row.iter_mut().zip(pj) {
                    *o += wj * s;
                }
            }
        }
    }

    // Alpha: two parieto-occipital narrow-band sources.
    {
        let mut rng = Rand::new(cfg.seed, subject as u64, run as u64, C_ALPHA);
        let centres = [
            mid(&[pos_of("O1"), pos_of("O1"), pos_of("Pz")]),
            mid(&[pos_of("O2"), pos_of("O2"), pos_of("Pz")]),
        ];
        for centre in centres {
            let src = narrowband(&mut rng, n, fs, p.alpha_hz, 1.5);
            let am = slow_modulation(&mut rng, n, fs, 1.0, 0.3);
            for i in 0..nc {
                let w = p.alpha_uv * detmath::exp(-dist2(&pos[i], &centre) / (2.0 * 0.04 * 0.04));
                let row = &mut x[i * n..(i + 1) * n];
                for ((o, s), a) in row.iter_mut().zip(&src).zip(&am) {
                    *o += w * s * a;
                }
            }
        }
    }

    // Sensorimotor rhythms under C3, C4, Cz with class-dependent desynchronization.
    {
        let mut rng = Rand::new(cfg.seed, subject as u64, run as u64, C_SMR);
        let sites = ["C3", "C4", "Cz"];
        for (k, site) in sites.iter().enumerate() {
            let centre = pos_of(site);
            let mu = narrowband(&mut rng, n, fs, p.mu_hz, 1.5);
            let beta = narrowband(&mut rng, n, fs, p.beta_hz, 3.0);
            let am = slow_modulation(&mut rng, n, fs, 0.7, 0.35);
            let env = erd_envelope(cfg, &trials, n, k, p.erd_depth);
            for i in 0..nc {
                let w = detmath::exp(-dist2(&pos[i], &centre) / (2.0 * 0.03 * 0.03));
                if w < 1e-6 {
                    continue;
                }
                let row = &mut x[i * n..(i + 1) * n];
                for t in 0..n {
                    row[t] += w * am[t] * env[t] * (p.mu_uv * mu[t] + p.beta_uv * beta[t]);
                }
            }
        }
    }

    // Channel gains apply to everything that comes through the scalp.
    for (i, g) in p.gains.iter().enumerate() {
        for v in &mut x[i * n..(i + 1) * n] {
            *v *= g;
        }
    }

    // Line noise: one phase per run, a per-channel amplitude and small phase offset.
    {
        let mut rng = Rand::new(cfg.seed, subject as u64, run as u64, C_LINE);
        let phase0 = rng.uniform();
        for i in 0..nc {
            let amp = p.line_uv * detmath::exp(0.6 * rng.normal());
            let ph = phase0 + 0.02 * rng.normal();
            let row = &mut x[i * n..(i + 1) * n];
            for (t, o) in row.iter_mut().enumerate() {
                let c = cfg.line_freq_hz * t as f64 / fs + ph;
                *o += amp * detmath::sin_cycles(c);
            }
        }
    }

    // Sensor noise.
    {
        let mut rng = Rand::new(cfg.seed, subject as u64, run as u64, C_NOISE);
        for o in x.iter_mut() {
            *o += p.noise_uv * rng.normal();
        }
    }

    let data: Vec<f32> = x.iter().map(|v| (v * 1e-6) as f32).collect();
    drop(x);

    let channels = cfg
        .channels
        .iter()
        .zip(&pos)
        .map(|(name, p)| {
            let mut c = ChannelInfo::new(
                canonical_name(name).unwrap_or(name.as_str()),
                ChannelKind::Eeg,
                Unit::Volt,
            );
            c.standard_name = canonical_name(name).map(str::to_string);
            c.position = Some(*p);
            c
        })
        .collect();
    let mut info = Info::new(Modality::Eeg, fs, channels);
    info.subject = Some(subject_id(cfg, subject));
    info.task = Some("synth".to_string());
    info.run = Some(format!("{:02}", run + 1));
    info.meas_date = Some(format!(
        "2020-01-{:02}T{:02}:00:00Z",
        subject % 28 + 1,
        (9 + run) % 24
    ));
    let cfg_json = serde_json::to_string(cfg).unwrap_or_default();
    info.provenance = Provenance {
        source_path: format!("synth:seed={}", cfg.seed),
        source_sha256: hex::encode(Sha256::digest(cfg_json.as_bytes())),
        reader: "synth".to_string(),
        reader_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    info.metadata = metadata(cfg, p);

    let annotations = trials
        .iter()
        .map(|t| Annotation {
            onset_s: t.onset as f64 / fs,
            duration_s: cfg.trial_s,
            description: CLASS_NAMES[t.class].to_string(),
        })
        .collect();
    let signal = Signal::channels(nc, n, data)?;
    Ok(Recording::new(info, signal, annotations)?)
}

fn metadata(cfg: &SynthConfig, p: &SubjectParams) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    let mut put = |k: &str, v: String| {
        m.insert(format!("synth.{k}"), v);
    };
    put("seed", cfg.seed.to_string());
    put("difficulty", cfg.difficulty.to_string());
    put("n_classes", cfg.n_classes.to_string());
    put("line_freq_hz", cfg.line_freq_hz.to_string());
    put("alpha_hz", p.alpha_hz.to_string());
    put("mu_hz", p.mu_hz.to_string());
    put("beta_hz", p.beta_hz.to_string());
    put("spectral_exponent", p.spectral_exponent.to_string());
    put("background_uv", p.background_uv.to_string());
    put("alpha_uv", p.alpha_uv.to_string());
    put("mu_uv", p.mu_uv.to_string());
    put("beta_uv", p.beta_uv.to_string());
    put("erd_depth", p.erd_depth.to_string());
    put("noise_uv", p.noise_uv.to_string());
    put("line_uv", p.line_uv.to_string());
    m
}

fn pos_of(name: &str) -> [f64; 3] {
    channel_position(name).unwrap_or([0.0, 0.0, HEAD_RADIUS_M])
}

fn mid(ps: &[[f64; 3]]) -> [f64; 3] {
    let mut m = [0.0; 3];
    for p in ps {
        for k in 0..3 {
            m[k] += p[k] / ps.len() as f64;
        }
    }
    m
}

fn dist2(a: &[f64; 3], b: &[f64; 3]) -> f64 {
    (a[0] - b[0]) * (a[0] - b[0]) + (a[1] - b[1]) * (a[1] - b[1]) + (a[2] - b[2]) * (a[2] - b[2])
}

/// Multiplicative envelope of SMR source `k` (0 = C3, 1 = C4, 2 = Cz): 1 outside trials,
/// 1 - depth during a desynchronizing trial, with smooth ramps.
fn erd_envelope(cfg: &SynthConfig, trials: &[Trial], n: usize, k: usize, depth: f64) -> Vec<f64> {
    let fs = cfg.sfreq_hz;
    let mut env = vec![1f64; n];
    let rise0 = (0.3 * fs).round() as usize;
    let rise = ((0.7 * fs).round() as usize).max(1);
    let hold = (cfg.trial_s * fs).round() as usize;
    let fall = (1.0 * fs).round() as usize;
    for t in trials {
        // weight of this trial's class on source k
        let w = match (t.class, k) {
            (0, 1) | (1, 0) | (2, 2) => 1.0, // left → C4, right → C3, feet → Cz
            (0, 0) | (1, 1) => 0.15,         // weak ipsilateral desynchronization
            _ => 0.0,
        };
        if w == 0.0 {
            continue;
        }
        let d = (depth * w * t.depth_scale).clamp(0.0, 0.95);
        let end = (t.onset + hold + fall).min(n);
        for (s, e) in env.iter_mut().enumerate().take(end).skip(t.onset) {
            let rel = s - t.onset;
            let shape = if rel < rise0 {
                0.0
            } else if rel < rise0 + rise {
                smoothstep((rel - rise0) as f64 / rise as f64)
            } else if rel < hold {
                1.0
            } else {
                1.0 - smoothstep((rel - hold) as f64 / fall as f64)
            };
            *e = e.min(1.0 - d * shape);
        }
    }
    env
}

fn smoothstep(u: f64) -> f64 {
    let u = u.clamp(0.0, 1.0);
    u * u * (3.0 - 2.0 * u)
}

/// 1/f^β noise (0.5 Hz to Nyquist) of unit standard deviation: white noise through cascaded
/// first-order pole/zero sections one octave apart, each pole followed by a zero 2^(β/2) higher.
fn pink_noise(rng: &mut Rand, n: usize, fs: f64, beta: f64) -> Vec<f64> {
    let burn = (BURN_IN_S * fs) as usize;
    let mut sections = Vec::new();
    let mut fp = 0.5;
    let ratio = detmath::exp(0.5 * beta * std::f64::consts::LN_2);
    while fp < 0.45 * fs {
        let p = detmath::exp(-2.0 * std::f64::consts::PI * fp / fs);
        let z = detmath::exp(-2.0 * std::f64::consts::PI * (fp * ratio).min(0.49 * fs) / fs);
        sections.push((p, z, 0.0f64, 0.0f64)); // (pole, zero, x[n-1], y[n-1])
        fp *= 2.0;
    }
    let mut out = Vec::with_capacity(n);
    for i in 0..burn + n {
        let mut v = rng.normal();
        for s in sections.iter_mut() {
            let y = v - s.1 * s.2 + s.0 * s.3;
            s.2 = v;
            s.3 = y;
            v = y;
        }
        if i >= burn {
            out.push(v);
        }
    }
    standardize(&mut out);
    out
}

/// Narrow-band noise of unit standard deviation: white noise through a two-pole resonator at
/// `f_hz` with bandwidth `bw_hz`.
fn narrowband(rng: &mut Rand, n: usize, fs: f64, f_hz: f64, bw_hz: f64) -> Vec<f64> {
    let burn = (BURN_IN_S * fs) as usize;
    let r = detmath::exp(-std::f64::consts::PI * bw_hz / fs);
    let a1 = 2.0 * r * detmath::cos_cycles(f_hz / fs);
    let a2 = -r * r;
    let (mut y1, mut y2) = (0.0f64, 0.0f64);
    let mut out = Vec::with_capacity(n);
    for i in 0..burn + n {
        let y = rng.normal() + a1 * y1 + a2 * y2;
        y2 = y1;
        y1 = y;
        if i >= burn {
            out.push(y);
        }
    }
    standardize(&mut out);
    out
}

/// Slow positive amplitude modulation exp(sd · z(t)), z a unit-variance AR(1) with time constant
/// `tau_s`.
fn slow_modulation(rng: &mut Rand, n: usize, fs: f64, tau_s: f64, sd: f64) -> Vec<f64> {
    let a = detmath::exp(-1.0 / (tau_s * fs));
    let b = (1.0 - a * a).sqrt();
    let mut z = rng.normal();
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(detmath::exp(sd * z - 0.5 * sd * sd));
        z = a * z + b * rng.normal();
    }
    out
}

fn standardize(v: &mut [f64]) {
    if v.is_empty() {
        return;
    }
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
    let sd = var.sqrt();
    let inv = if sd > 0.0 { 1.0 / sd } else { 0.0 };
    for x in v.iter_mut() {
        *x = (*x - mean) * inv;
    }
}

/// ChaCha8 stream keyed by the seed, one stream per (subject, run, component).
struct Rand {
    rng: ChaCha8Rng,
    spare: Option<f64>,
}

impl Rand {
    fn new(seed: u64, subject: u64, run: u64, component: u64) -> Self {
        let mut key = [0u8; 32];
        let mut state = seed;
        for chunk in key.chunks_exact_mut(8) {
            chunk.copy_from_slice(&splitmix64(&mut state).to_le_bytes());
        }
        let mut rng = ChaCha8Rng::from_seed(key);
        rng.set_stream((subject << 24) | ((run & 0xFF) << 16) | (component & 0xFFFF));
        Rand { rng, spare: None }
    }

    /// Uniform in [0, 1) with 53 random bits.
    fn uniform(&mut self) -> f64 {
        (self.rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform integer in [0, n) without modulo bias.
    fn below(&mut self, n: u64) -> u64 {
        let zone = u64::MAX - u64::MAX % n;
        loop {
            let v = self.rng.next_u64();
            if v < zone {
                return v % n;
            }
        }
    }

    /// Standard normal (Box–Muller with this module's deterministic ln/sin/cos).
    fn normal(&mut self) -> f64 {
        if let Some(z) = self.spare.take() {
            return z;
        }
        let u1 = 1.0 - self.uniform(); // (0, 1]
        let u2 = self.uniform();
        let r = (-2.0 * detmath::ln(u1)).sqrt();
        self.spare = Some(r * detmath::sin_cycles(u2));
        r * detmath::cos_cycles(u2)
    }
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// exp, ln, sin and cos from `+ - * /` only, so that results do not depend on the platform's
/// libm. Accurate to a few ulp over the ranges used here.
pub mod detmath {
    const LN2_HI: f64 = f64::from_bits(0x3FE6_2E42_FEE0_0000); // fdlibm ln2_hi
    const LN2_LO: f64 = f64::from_bits(0x3DEA_39EF_3579_3C76); // fdlibm ln2_lo
    const INV_LN2: f64 = std::f64::consts::LOG2_E;

    /// e^x.
    pub fn exp(x: f64) -> f64 {
        if x.is_nan() {
            return x;
        }
        if x > 709.0 {
            return f64::INFINITY;
        }
        if x < -708.0 {
            return 0.0;
        }
        let k = (x * INV_LN2 + 0.5).floor();
        let r = (x - k * LN2_HI) - k * LN2_LO; // |r| <= ln2 / 2
                                               // Taylor series to r^14 / 14!, Horner form.
        let mut s = 1.0;
        for i in (1..=14).rev() {
            s = 1.0 + s * r / i as f64;
        }
        s * f64::from_bits(((k as i64 + 1023) as u64) << 52)
    }

    /// Natural logarithm (x > 0, normal numbers; NaN otherwise).
    pub fn ln(x: f64) -> f64 {
        if x.is_nan() || x <= 0.0 || x < f64::MIN_POSITIVE {
            return f64::NAN;
        }
        if x.is_infinite() {
            return x;
        }
        let bits = x.to_bits();
        let mut e = ((bits >> 52) & 0x7FF) as i64 - 1023;
        let mut m = f64::from_bits((bits & 0x000F_FFFF_FFFF_FFFF) | 0x3FF0_0000_0000_0000);
        if m > std::f64::consts::SQRT_2 {
            m *= 0.5;
            e += 1;
        }
        // ln m = 2 atanh(s), s = (m - 1) / (m + 1), |s| <= 0.1716.
        let s = (m - 1.0) / (m + 1.0);
        let s2 = s * s;
        let mut sum = 0.0;
        for k in (0..=11).rev() {
            sum = 1.0 / (2 * k + 1) as f64 + s2 * sum;
        }
        let e = e as f64;
        e * LN2_HI + (2.0 * s * sum + e * LN2_LO)
    }

    /// (sin, cos) of 2π·c, c in cycles: the argument is reduced exactly to a quarter cycle.
    fn sincos_cycles(c: f64) -> (f64, f64) {
        let f = c - c.floor(); // [0, 1)
        let t = f * 4.0;
        let q = (t + 0.5).floor();
        let r = (t - q) * std::f64::consts::FRAC_PI_2; // |r| <= π/4
        let r2 = r * r;
        // Taylor series to degree 17 / 18.
        let mut s = 0.0;
        let mut co = 0.0;
        for k in (0..=8).rev() {
            let ks = (2 * k + 2) * (2 * k + 3);
            let kc = (2 * k + 1) * (2 * k + 2);
            s = 1.0 - r2 * s / ks as f64;
            co = 1.0 - r2 * co / kc as f64;
        }
        let s = r * s;
        match (q as i64) & 3 {
            0 => (s, co),
            1 => (co, -s),
            2 => (-s, -co),
            _ => (-co, s),
        }
    }

    /// sin(2π·c).
    pub fn sin_cycles(c: f64) -> f64 {
        sincos_cycles(c).0
    }

    /// cos(2π·c).
    pub fn cos_cycles(c: f64) -> f64 {
        sincos_cycles(c).1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detmath_matches_std() {
        for i in -2000..2000 {
            let x = i as f64 * 0.01737;
            let (a, b) = (detmath::exp(x), x.exp());
            assert!(((a - b) / b).abs() < 4e-16, "exp({x}): {a} vs {b}");
            let c = i as f64 * 0.000_731 + 0.123;
            let s = detmath::sin_cycles(c);
            let co = detmath::cos_cycles(c);
            let arg = 2.0 * std::f64::consts::PI * c;
            // both sides carry argument rounding (std: 2πc; ours: reducing c to [0, 1)).
            let tol = 1e-15 * arg.abs().max(1.0);
            assert!((s - arg.sin()).abs() < tol, "sin {c}");
            assert!(
                (co - arg.cos()).abs() < tol,
                "cos {c}: {co} vs {}",
                arg.cos()
            );
        }
        for x in [
            1e-300, 1e-17, 0.1, 0.5, 0.7, 1.0, 1.5, 2.0, 10.0, 1e10, 1e300,
        ] {
            let (a, b) = (detmath::ln(x), x.ln());
            assert!(
                (a - b).abs() <= 2e-16 * b.abs().max(1.0),
                "ln({x}): {a} vs {b}"
            );
        }
        assert!(detmath::ln(0.0).is_nan());
    }

    #[test]
    fn difficulty_parses_names_and_numbers() {
        assert_eq!(parse_difficulty("Medium").unwrap(), 0.5);
        assert_eq!(parse_difficulty("0.3").unwrap(), 0.3);
        assert!(parse_difficulty("1.5").is_err());
        assert!(parse_difficulty("impossible").is_err());
    }

    #[test]
    fn config_validation_names_the_field() {
        let bad = SynthConfig {
            n_classes: 5,
            ..SynthConfig::default()
        };
        let e = bad.validate().unwrap_err().to_string();
        assert!(e.contains("n_classes"), "{e}");
        let bad = SynthConfig {
            channels: vec!["Cz".into(), "XYZ".into()],
            ..SynthConfig::default()
        };
        assert!(bad.validate().unwrap_err().to_string().contains("XYZ"));
        let bad = SynthConfig {
            line_freq_hz: 60.0,
            sfreq_hz: 100.0,
            ..SynthConfig::default()
        };
        assert!(bad.validate().is_err());
        assert!(SynthConfig::preset("huge").is_err());
        for p in PRESETS {
            SynthConfig::preset(p).unwrap().validate().unwrap();
        }
    }

    #[test]
    fn positions_are_on_the_head_sphere() {
        let cz = channel_position("cz").unwrap();
        assert!((cz[2] - HEAD_RADIUS_M).abs() < 1e-12);
        let c3 = channel_position("C3").unwrap();
        let c4 = channel_position("C4").unwrap();
        assert!(c3[0] < 0.0 && c4[0] > 0.0, "C3 left, C4 right");
        let fp1 = channel_position("Fp1").unwrap();
        let o1 = channel_position("O1").unwrap();
        assert!(fp1[1] > 0.0 && o1[1] < 0.0, "Fp1 front, O1 back");
        for (name, _, _) in CHANNELS_1020 {
            let p = channel_position(name).unwrap();
            let r = (p[0] * p[0] + p[1] * p[1] + p[2] * p[2]).sqrt();
            assert!((r - HEAD_RADIUS_M).abs() < 1e-12);
        }
    }

    #[test]
    fn schedule_is_balanced_and_spaced() {
        let cfg = SynthConfig::preset("tiny").unwrap();
        let (trials, n) = schedule(&cfg, 0, 0);
        assert_eq!(trials.len(), cfg.n_classes * cfg.trials_per_class);
        for c in 0..cfg.n_classes {
            assert_eq!(
                trials.iter().filter(|t| t.class == c).count(),
                cfg.trials_per_class
            );
        }
        let fs = cfg.sfreq_hz;
        for w in trials.windows(2) {
            let gap = (w[1].onset - w[0].onset) as f64 / fs;
            assert!(gap >= cfg.trial_s + cfg.iti_min_s - 1.0 / fs);
            assert!(gap <= cfg.trial_s + cfg.iti_max_s + 1.0 / fs);
        }
        assert_eq!(n % fs as usize, 0, "whole seconds");
        assert!(n <= cfg.n_samples_upper_bound());
    }
}
