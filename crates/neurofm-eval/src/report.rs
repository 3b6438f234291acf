//! Run reports: `report.json` (everything measured), `report.md` (tables) and PNG plots, all in
//! the run directory. `report.md` and the PNGs are re-rendered from `report.json` alone.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::EvalError;
use crate::metrics::mean_std;
use crate::probe::FoldResult;

pub const REPORT_FORMAT_VERSION: u32 = 1;

/// Whether a method is the thing being evaluated or a reference point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MethodKind {
    Model,
    Baseline,
}

/// All folds × seeds of one method (features + classifier), with or without EA.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodResult {
    /// e.g. `bandpower+logreg`, `mae-probe+logreg`.
    pub name: String,
    pub kind: MethodKind,
    /// Euclidean alignment applied to the windows before features.
    pub ea: bool,
    pub description: String,
    pub folds: Vec<FoldResult>,
}

impl MethodResult {
    pub fn label(&self) -> String {
        format!("{}{}", self.name, if self.ea { " +EA" } else { "" })
    }
}

/// Everything a run measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub format_version: u32,
    pub task: String,
    pub protocol: String,
    pub classes: Vec<String>,
    pub n_windows: usize,
    pub n_channels: usize,
    pub window_len: usize,
    pub sfreq_hz: f64,
    pub subjects: Vec<String>,
    pub seeds: Vec<u64>,
    /// The command line that produced the run.
    pub command: String,
    pub neurofm_version: String,
    pub methods: Vec<MethodResult>,
}

/// Mean ± std over every (fold, seed) of one metric.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MeanStd {
    pub mean: f64,
    pub std: f64,
    pub n: usize,
}

impl MeanStd {
    fn of(v: &[f64]) -> MeanStd {
        let (mean, std, n) = mean_std(v);
        MeanStd { mean, std, n }
    }
    fn show(&self) -> String {
        if self.n == 0 {
            "n/a".into()
        } else {
            format!("{:.3} ± {:.3}", self.mean, self.std)
        }
    }
}

/// Summary of one method.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub balanced_accuracy: MeanStd,
    pub accuracy: MeanStd,
    pub cohen_kappa: MeanStd,
    pub f1_weighted: MeanStd,
    pub auroc: MeanStd,
    pub pr_auc: MeanStd,
    pub chance_majority: MeanStd,
    pub chance_uniform: f64,
    /// Confusion matrix summed over folds and seeds.
    pub confusion: Vec<Vec<u64>>,
}

pub fn summarize(m: &MethodResult, n_classes: usize) -> Summary {
    let get = |f: &dyn Fn(&FoldResult) -> Option<f64>| -> MeanStd {
        let v: Vec<f64> = m.folds.iter().filter_map(f).collect();
        MeanStd::of(&v)
    };
    let mut confusion = vec![vec![0u64; n_classes]; n_classes];
    for f in &m.folds {
        for (i, row) in f.metrics.confusion.iter().enumerate().take(n_classes) {
            for (j, v) in row.iter().enumerate().take(n_classes) {
                confusion[i][j] += v;
            }
        }
    }
    Summary {
        balanced_accuracy: get(&|f| Some(f.metrics.balanced_accuracy)),
        accuracy: get(&|f| Some(f.metrics.accuracy)),
        cohen_kappa: get(&|f| Some(f.metrics.cohen_kappa)),
        f1_weighted: get(&|f| Some(f.metrics.f1_weighted)),
        auroc: get(&|f| f.metrics.auroc),
        pr_auc: get(&|f| f.metrics.pr_auc),
        chance_majority: get(&|f| Some(f.metrics.chance_majority)),
        chance_uniform: 1.0 / n_classes.max(1) as f64,
        confusion,
    }
}

/// Balanced accuracy of each test subject, mean over seeds (and folds, if a protocol tests a
/// subject more than once), with the subject's majority-class chance.
pub fn per_subject(m: &MethodResult) -> BTreeMap<String, (MeanStd, f64)> {
    let mut acc: BTreeMap<String, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
    for f in &m.folds {
        for s in &f.per_subject {
            let e = acc.entry(s.subject.clone()).or_default();
            e.0.push(s.metrics.balanced_accuracy);
            e.1.push(s.metrics.chance_majority);
        }
    }
    acc.into_iter()
        .map(|(s, (b, c))| (s, (MeanStd::of(&b), MeanStd::of(&c).mean)))
        .collect()
}

/// Writes `bytes` to `path` atomically (temporary name in the same directory, fsync, rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), EvalError> {
    let io = |source| EvalError::Io {
        path: path.to_path_buf(),
        source,
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io)?;
    Ok(())
}

impl Report {
    pub fn load(path: &Path) -> Result<Report, EvalError> {
        let bytes = std::fs::read(path).map_err(|source| EvalError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let r: Report = serde_json::from_slice(&bytes).map_err(|source| EvalError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        if r.format_version != REPORT_FORMAT_VERSION {
            return Err(EvalError::config(
                format!("{}: format_version", path.display()),
                format!("expected {REPORT_FORMAT_VERSION}, got {}", r.format_version),
            ));
        }
        Ok(r)
    }

    pub fn save_json(&self, path: &Path) -> Result<(), EvalError> {
        let json = serde_json::to_vec_pretty(self).map_err(|source| EvalError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        write_atomic(path, &json)
    }

    /// Writes `report.json`, `report.md` and the plots into `dir`; returns the files written.
    pub fn write_all(&self, dir: &Path) -> Result<Vec<PathBuf>, EvalError> {
        std::fs::create_dir_all(dir).map_err(|source| EvalError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let json = dir.join("report.json");
        self.save_json(&json)?;
        let mut files = vec![json];
        files.extend(self.render(dir)?);
        Ok(files)
    }

    /// Writes `report.md` and the PNG plots into `dir` (from this report only).
    pub fn render(&self, dir: &Path) -> Result<Vec<PathBuf>, EvalError> {
        let plots = crate::plot::draw_all(self, dir)?;
        let md = dir.join("report.md");
        let names: Vec<String> = plots
            .iter()
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        write_atomic(&md, self.markdown(&names).as_bytes())?;
        let mut files = vec![md];
        files.extend(plots);
        Ok(files)
    }

    /// The Markdown report; `plots` are file names (relative to the run directory) to link.
    pub fn markdown(&self, plots: &[String]) -> String {
        let k = self.classes.len();
        let mut s = String::new();
        let _ = writeln!(s, "# Evaluation report: {}\n", self.task);
        let _ = writeln!(s, "- protocol: {}", self.protocol);
        let _ = writeln!(s, "- classes: {}", self.classes.join(", "));
        let _ = writeln!(
            s,
            "- windows: {} ({} channels × {} samples at {} Hz)",
            self.n_windows, self.n_channels, self.window_len, self.sfreq_hz
        );
        let _ = writeln!(
            s,
            "- subjects ({}): {}",
            self.subjects.len(),
            self.subjects.join(", ")
        );
        let seeds: Vec<String> = self.seeds.iter().map(|v| v.to_string()).collect();
        let _ = writeln!(s, "- seeds: {}", seeds.join(", "));
        let _ = writeln!(s, "- command: `{}`", self.command);
        let _ = writeln!(s, "- neurofm {}\n", self.neurofm_version);

        let summaries: Vec<Summary> = self.methods.iter().map(|m| summarize(m, k)).collect();
        let n_runs = self.methods.first().map(|m| m.folds.len()).unwrap_or(0);
        let _ = writeln!(
            s,
            "## Summary (mean ± std over {n_runs} fold × seed runs)\n"
        );
        let _ = writeln!(
            s,
            "| method | kind | EA | balanced acc. | accuracy | Cohen's κ | F1 (weighted) | AUROC | PR-AUC | chance (majority) | chance (1/K) |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|");
        for (m, sm) in self.methods.iter().zip(&summaries) {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.3} |",
                m.name,
                match m.kind {
                    MethodKind::Model => "model",
                    MethodKind::Baseline => "baseline",
                },
                if m.ea { "on" } else { "off" },
                sm.balanced_accuracy.show(),
                sm.accuracy.show(),
                sm.cohen_kappa.show(),
                sm.f1_weighted.show(),
                sm.auroc.show(),
                sm.pr_auc.show(),
                sm.chance_majority.show(),
                sm.chance_uniform
            );
        }
        s.push('\n');

        let _ = writeln!(s, "## Model vs baselines (balanced accuracy)\n");
        let models: Vec<usize> = (0..self.methods.len())
            .filter(|&i| self.methods[i].kind == MethodKind::Model)
            .collect();
        if models.is_empty() {
            let _ = writeln!(s, "No model in this run: baselines only.\n");
        }
        for &i in &models {
            let m = &self.methods[i];
            for (j, b) in self.methods.iter().enumerate() {
                // Compared at the same alignment setting only.
                if b.kind != MethodKind::Baseline || b.ea != m.ea {
                    continue;
                }
                let (mm, bm) = (
                    summaries[i].balanced_accuracy.mean,
                    summaries[j].balanced_accuracy.mean,
                );
                let verdict = if mm > bm {
                    "beats"
                } else {
                    "**does NOT beat**"
                };
                let _ = writeln!(
                    s,
                    "- {} ({mm:.3}) {verdict} {} ({bm:.3})",
                    m.label(),
                    b.label()
                );
            }
        }
        for (m, sm) in self.methods.iter().zip(&summaries) {
            if sm.balanced_accuracy.mean <= sm.chance_uniform {
                let _ = writeln!(
                    s,
                    "- {} is **at or below chance** ({:.3} ≤ {:.3})",
                    m.label(),
                    sm.balanced_accuracy.mean,
                    sm.chance_uniform
                );
            }
        }
        s.push('\n');

        // Per fold: balanced accuracy, mean over seeds.
        let _ = writeln!(s, "## Per fold (balanced accuracy, mean over seeds)\n");
        let mut header = String::from("| fold | test subjects | test windows |");
        let mut rule = String::from("|---|---|---|");
        for m in &self.methods {
            let _ = write!(header, " {} |", m.label());
            rule.push_str("---|");
        }
        let _ = writeln!(s, "{header}\n{rule}");
        let mut fold_names: Vec<String> = Vec::new();
        for m in &self.methods {
            for f in &m.folds {
                if !fold_names.contains(&f.fold) {
                    fold_names.push(f.fold.clone());
                }
            }
        }
        for name in &fold_names {
            let first = self
                .methods
                .iter()
                .flat_map(|m| &m.folds)
                .find(|f| &f.fold == name);
            let (subj, n_test) = first
                .map(|f| (f.test_subjects.join(", "), f.n_test))
                .unwrap_or_default();
            let _ = write!(s, "| {name} | {subj} | {n_test} |");
            for m in &self.methods {
                let v: Vec<f64> = m
                    .folds
                    .iter()
                    .filter(|f| &f.fold == name)
                    .map(|f| f.metrics.balanced_accuracy)
                    .collect();
                let ms = MeanStd::of(&v);
                let _ = write!(
                    s,
                    " {} |",
                    if ms.n == 0 {
                        "n/a".into()
                    } else {
                        format!("{:.3}", ms.mean)
                    }
                );
            }
            s.push('\n');
        }
        s.push('\n');

        // Per subject.
        let _ = writeln!(s, "## Per subject (balanced accuracy, mean over seeds)\n");
        let per: Vec<BTreeMap<String, (MeanStd, f64)>> =
            self.methods.iter().map(per_subject).collect();
        let subjects: BTreeSet<String> = per.iter().flat_map(|p| p.keys().cloned()).collect();
        let mut header = String::from("| subject | chance (majority) |");
        let mut rule = String::from("|---|---|");
        for m in &self.methods {
            let _ = write!(header, " {} |", m.label());
            rule.push_str("---|");
        }
        let _ = writeln!(s, "{header}\n{rule}");
        for subj in &subjects {
            let chance = per
                .iter()
                .find_map(|p| p.get(subj).map(|v| v.1))
                .unwrap_or(f64::NAN);
            let _ = write!(s, "| {subj} | {chance:.3} |");
            for p in &per {
                match p.get(subj) {
                    Some((ms, _)) => {
                        let _ = write!(s, " {:.3} |", ms.mean);
                    }
                    None => s.push_str(" n/a |"),
                }
            }
            s.push('\n');
        }
        s.push('\n');

        let _ = writeln!(
            s,
            "## Confusion matrices (rows: true class, columns: predicted; summed over folds and seeds)\n"
        );
        for (m, sm) in self.methods.iter().zip(&summaries) {
            let _ = writeln!(s, "**{}**\n", m.label());
            let _ = writeln!(s, "| true \\ predicted | {} |", self.classes.join(" | "));
            let _ = writeln!(s, "|---|{}", "---|".repeat(k));
            for (i, row) in sm.confusion.iter().enumerate() {
                let cells: Vec<String> = row.iter().map(|v| v.to_string()).collect();
                let _ = writeln!(
                    s,
                    "| {} | {} |",
                    self.classes.get(i).map(String::as_str).unwrap_or("?"),
                    cells.join(" | ")
                );
            }
            s.push('\n');
        }

        let _ = writeln!(
            s,
            "## Chosen C (inner cross-validation over training subjects)\n"
        );
        for m in &self.methods {
            let cs: Vec<String> = m
                .folds
                .iter()
                .filter_map(|f| f.c.map(|c| format!("{c}")))
                .collect();
            if !cs.is_empty() {
                let _ = writeln!(s, "- {}: {}", m.label(), cs.join(", "));
            }
        }
        s.push('\n');

        if !plots.is_empty() {
            let _ = writeln!(s, "## Plots\n");
            for p in plots {
                let _ = writeln!(s, "![{p}]({p})\n");
            }
        }
        s
    }
}
