//! Recipes: an ordered list of [`Step`]s read from TOML, with a canonical JSON form and its
//! sha256 (`recipe_hash`), applied to every recording of a store.

use std::path::Path;
use std::sync::Mutex;

use neurofm_core::Recording;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::DataError;
use crate::steps::{volumes, ChannelChange, ImageLoader, Plan, Resolved, Step, StepFile};
use crate::store::{Entry, ExtraTensor, NewEntry, RecipeRecord, Store};
use crate::window::{LabelSource, WindowConfig};

/// How `prepare` carries an extra tensor of a recording with `C` channels and `T` samples
/// through a recipe (see `docs/recipes.md`, "Extra tensors").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtraRole {
    /// Neither per channel nor along time (e.g. a `[302, 302]` matrix): copied as is.
    Static,
    /// Shape `[C]` (e.g. the calcium `mask`): subset and reordered with the channels.
    PerChannel,
    /// Last dimension `T` (e.g. behaviour `covariates` `[k, T]`): resampled along it with the
    /// signal's resampler; every leading row separately.
    TimeAligned,
    /// Shape `[C]` with `C = T`: cannot tell; any step that changes channels or time fails.
    Ambiguous,
}

impl ExtraRole {
    /// The role of an extra of `shape` beside a `[n_channels, n_times]` signal.
    pub fn of(shape: &[usize], n_channels: usize, n_times: usize) -> ExtraRole {
        let per_channel = shape == [n_channels];
        let time = shape.last() == Some(&n_times);
        match (per_channel, time) {
            (true, true) => ExtraRole::Ambiguous,
            (true, false) => ExtraRole::PerChannel,
            (false, true) => ExtraRole::TimeAligned,
            (false, false) => ExtraRole::Static,
        }
    }
}

/// Why an extra cannot follow a step, if it cannot.
fn extra_conflict(
    role: ExtraRole,
    name: &str,
    shape: &[usize],
    change: &ChannelChange,
    time_changes: bool,
) -> Option<String> {
    let channels_change = *change != ChannelChange::Same;
    match role {
        ExtraRole::Ambiguous if channels_change || time_changes => Some(format!(
            "extra tensor `{name}` (shape {shape:?}) has as many values as the recording has both \
             channels and samples, so it cannot be told whether this step should select it by \
             channel or resample it"
        )),
        ExtraRole::PerChannel if *change == ChannelChange::Derived => Some(format!(
            "extra tensor `{name}` (shape {shape:?}) holds one value per channel, and this step \
             derives new channels from pairs, so it cannot be carried"
        )),
        _ => None,
    }
}

/// A preprocessing recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// Optional human-readable name.
    #[serde(default)]
    pub name: Option<String>,
    /// The steps, applied in order.
    pub steps: Vec<Step>,
    /// The files steps read (mask, atlas, labels), loaded by [`Recipe::resolve`].
    #[serde(skip)]
    resolved: Resolved,
}

/// What [`prepare_store`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PrepareReport {
    /// (input id, output id) of each prepared recording.
    pub prepared: Vec<(String, String)>,
    /// Input ids already present in the output with the same recipe (skipped).
    pub skipped: Vec<String>,
    /// Per input id, what steps reported (bad channels, clipped samples).
    pub notes: Vec<(String, String)>,
}

impl Recipe {
    /// Parses a recipe from TOML text; `origin` names the source in errors.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Recipe, DataError> {
        let r: Recipe = toml::from_str(text).map_err(|e| DataError::RecipeFile {
            path: origin.to_string(),
            reason: e.to_string(),
        })?;
        r.check().map_err(|reason| DataError::RecipeFile {
            path: origin.to_string(),
            reason,
        })?;
        Ok(r)
    }

    /// Reads a recipe file.
    pub fn from_path(path: &Path) -> Result<Recipe, DataError> {
        let text = std::fs::read_to_string(path).map_err(|e| DataError::RecipeFile {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Recipe::from_toml_str(&text, &path.display().to_string())
    }

    /// Checks what does not depend on a recording.
    fn check(&self) -> Result<(), String> {
        if self.steps.is_empty() {
            return Err("a recipe needs at least one step".into());
        }
        for (i, s) in self.steps.iter().enumerate() {
            if matches!(s, Step::Window(_)) && i + 1 != self.steps.len() {
                return Err(format!("step {i} (`window`) must be the last step"));
            }
        }
        Ok(())
    }

    /// Loads the files the steps read (a `zscore_in_mask` `mask`, a `parcellate` `atlas` and
    /// `labels`) with `loader`, once each, paths relative to `base_dir` (the recipe file's
    /// directory) unless absolute, and records each file's sha256 in the recipe
    /// ([`Recipe::files`], part of the canonical JSON and so of the hash). Must run before
    /// validating or applying a recipe that has such steps; a recipe without them is unchanged.
    /// Fails before any work on a missing or unusable file, naming the step and the file.
    pub fn resolve(&mut self, base_dir: &Path, loader: &dyn ImageLoader) -> Result<(), DataError> {
        self.resolved = volumes::resolve(&self.steps, base_dir, loader)?;
        Ok(())
    }

    /// The files the steps read, with their sha256 (empty until [`Recipe::resolve`]).
    pub fn files(&self) -> &[StepFile] {
        &self.resolved.files
    }

    /// The canonical JSON form: every field spelled out (defaults included), object keys sorted,
    /// no whitespace. When steps read files, a `files` list (step, key, path as written,
    /// sha256) is added, so that another atlas or mask gives another hash.
    pub fn canonical_json(&self) -> serde_json::Value {
        // serde_json's map is a BTreeMap (no preserve_order feature): keys come out sorted.
        let mut v = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        if !self.resolved.files.is_empty() {
            if let (Some(obj), Ok(files)) = (
                v.as_object_mut(),
                serde_json::to_value(&self.resolved.files),
            ) {
                obj.insert("files".into(), files);
            }
        }
        v
    }

    /// Lower-case hex sha256 of the canonical JSON text.
    pub fn hash(&self) -> String {
        let text = self.canonical_json().to_string();
        hex::encode(Sha256::digest(text.as_bytes()))
    }

    /// The manifest record of this recipe.
    pub fn record(&self) -> RecipeRecord {
        RecipeRecord {
            recipe: self.canonical_json(),
            hash: self.hash(),
        }
    }

    /// The window step, when the recipe ends with one.
    pub fn window(&self) -> Option<&WindowConfig> {
        match self.steps.last() {
            Some(Step::Window(w)) => Some(w),
            _ => None,
        }
    }

    /// Checks that every step applies to a recording described by `entry`, without reading
    /// samples.
    pub fn validate_entry(&self, entry: &Entry) -> Result<Plan, DataError> {
        let err = |index: usize, step: &str, reason: String| DataError::Step {
            recording: entry.id.clone(),
            index,
            step: step.to_string(),
            reason,
        };
        let mut plan = Plan::of_entry(entry)
            .map_err(|r| err(0, self.steps.first().map_or("", Step::name), r))?;
        for (i, s) in self.steps.iter().enumerate() {
            s.plan_with(&mut plan, self.resolved.inputs.get(&i))
                .map_err(|r| err(i, s.name(), r))?;
            if let Step::Window(WindowConfig {
                labels: LabelSource::Recording { key, mapping },
                ..
            }) = s
            {
                let v = crate::window::recording_value(entry, key)
                    .ok_or_else(|| err(i, s.name(), format!("the recording has no `{key}`")))?;
                if !mapping.contains_key(&v) {
                    return Err(err(
                        i,
                        s.name(),
                        format!("{key} = `{v}` is not in the label mapping"),
                    ));
                }
            }
        }
        Ok(plan)
    }

    /// Checks that every extra tensor (name, shape) of the recording described by `entry` can
    /// be carried through the recipe (see [`ExtraRole`]), without reading samples.
    pub fn validate_extras(
        &self,
        entry: &Entry,
        extras: &[(String, Vec<usize>)],
    ) -> Result<(), DataError> {
        if extras.is_empty() {
            return Ok(());
        }
        let roles: Vec<ExtraRole> = extras
            .iter()
            .map(|(_, shape)| ExtraRole::of(shape, entry.channels.len(), entry.n_times))
            .collect();
        let mut plan = Plan::of_entry(entry).map_err(|reason| DataError::Step {
            recording: entry.id.clone(),
            index: 0,
            step: self.steps.first().map_or("", Step::name).to_string(),
            reason,
        })?;
        for (i, s) in self.steps.iter().enumerate() {
            let err = |reason: String| DataError::Step {
                recording: entry.id.clone(),
                index: i,
                step: s.name().to_string(),
                reason,
            };
            let change = s.channel_change(&plan.channels).map_err(err)?;
            let time_changes = s.resampler(plan.sfreq_hz).map_err(err)?.is_some()
                || matches!(s, Step::ResampleTr { .. });
            for ((name, shape), role) in extras.iter().zip(&roles) {
                if let Some(reason) = extra_conflict(*role, name, shape, &change, time_changes) {
                    return Err(err(reason));
                }
            }
            s.plan_with(&mut plan, self.resolved.inputs.get(&i))
                .map_err(err)?;
        }
        Ok(())
    }

    /// Validates the recipe against every entry of `store`, extra tensors included; the first
    /// failure is returned.
    pub fn validate_store(&self, store: &Store) -> Result<(), DataError> {
        for e in store.entries() {
            self.validate_entry(e)?;
            if !e.extras.is_empty() {
                let view = store.view(&e.id)?;
                let mut shapes = Vec::with_capacity(e.extras.len());
                for name in &e.extras {
                    shapes.push((name.clone(), view.extra(name)?.0));
                }
                self.validate_extras(e, &shapes)?;
            }
        }
        Ok(())
    }

    /// Applies every step to one recording. `id` names it in errors. Returns the notes steps
    /// made (e.g. bad channels found).
    pub fn apply(&self, rec: Recording, id: &str) -> Result<(Recording, Vec<String>), DataError> {
        let (rec, _, notes) = self.apply_with_extras(rec, Vec::new(), id)?;
        Ok((rec, notes))
    }

    /// Applies every step to one recording and carries its extra tensors along (see
    /// [`ExtraRole`]): per-channel extras follow channel selections, time-aligned extras are
    /// resampled with the signal, the others are copied.
    pub fn apply_with_extras(
        &self,
        rec: Recording,
        extras: Vec<ExtraTensor>,
        id: &str,
    ) -> Result<(Recording, Vec<ExtraTensor>, Vec<String>), DataError> {
        let roles: Vec<ExtraRole> = extras
            .iter()
            .map(|x| ExtraRole::of(&x.shape, rec.info.channels.len(), rec.signal.n_times()))
            .collect();
        let mut rec = rec;
        let mut extras = extras;
        let mut notes = Vec::new();
        for (i, s) in self.steps.iter().enumerate() {
            let err = |reason: String| DataError::Step {
                recording: id.to_string(),
                index: i,
                step: s.name().to_string(),
                reason,
            };
            let change = s.channel_change(&rec.info.channels).map_err(err)?;
            let resampler = s.resampler(rec.info.sfreq_hz).map_err(err)?;
            // `resample_tr`: (rate before, target TR) for time-aligned extras
            let linear = match s {
                Step::ResampleTr { tr_s } => Some((rec.info.sfreq_hz, *tr_s)),
                _ => None,
            };
            let time_changes = resampler.is_some() || linear.is_some();
            for (x, role) in extras.iter().zip(&roles) {
                if let Some(reason) =
                    extra_conflict(*role, &x.name, &x.shape, &change, time_changes)
                {
                    return Err(err(reason));
                }
            }
            let (out, note) = s
                .apply_with(rec, self.resolved.inputs.get(&i))
                .map_err(err)?;
            rec = out;
            if let Some(n) = note {
                notes.push(format!("{}: {n}", s.name()));
            }
            for (x, role) in extras.iter_mut().zip(&roles) {
                match (role, &change, &resampler) {
                    (ExtraRole::PerChannel, ChannelChange::Select(idx), _) => {
                        let mut data = Vec::with_capacity(idx.len());
                        for &k in idx {
                            let v = x.data.get(k).ok_or_else(|| {
                                err(format!("extra tensor `{}` has no value {k}", x.name))
                            })?;
                            data.push(*v);
                        }
                        x.shape = vec![idx.len()];
                        x.data = data;
                    }
                    (ExtraRole::TimeAligned, _, Some(r)) => {
                        let n = x.shape.last().copied().unwrap_or(0);
                        let n_out = r.output_len(n);
                        let mut data = Vec::with_capacity(x.data.len() / n.max(1) * n_out);
                        for row in x.data.chunks(n.max(1)) {
                            let row: Vec<f64> = row.iter().map(|v| f64::from(*v)).collect();
                            data.extend(r.apply(&row).iter().map(|v| *v as f32));
                        }
                        if let Some(last) = x.shape.last_mut() {
                            *last = n_out;
                        }
                        x.data = data;
                    }
                    (ExtraRole::TimeAligned, _, None) => {
                        if let Some((sfreq_hz, tr_s)) = linear {
                            let n = x.shape.last().copied().unwrap_or(0);
                            let (n_out, data) =
                                crate::fmri::resample_tr_rows(&x.data, n, sfreq_hz, tr_s)
                                    .ok_or_else(|| {
                                        err(format!(
                                            "extra tensor `{}` cannot be resampled",
                                            x.name
                                        ))
                                    })?;
                            if let Some(last) = x.shape.last_mut() {
                                *last = n_out;
                            }
                            x.data = data;
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok((rec, extras, notes))
    }
}

/// Applies `recipe` to every recording of `input` and adds the results to `output`, recording
/// the recipe and its hash in each new entry. The recipe is validated against every entry before
/// any work. Recordings are processed in parallel (rayon), one whole recording per worker at a
/// time, and added in input order (one batch is written while the next is computed), with their extra tensors carried along
/// ([`Recipe::apply_with_extras`]). Inputs already in `output` with the same recipe hash are
/// skipped, so an interrupted run can be resumed. `progress(done, total)` is called after each
/// recording. A recipe whose steps read files (mask, atlas) must be [resolved](Recipe::resolve)
/// first: the files are then in memory once, shared by all workers, and their sha256 are part
/// of the recorded recipe and its hash.
pub fn prepare_store(
    recipe: &Recipe,
    input: &Store,
    output: &mut Store,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<PrepareReport, DataError> {
    recipe.validate_store(input)?;
    let record = recipe.record();
    let mut report = PrepareReport::default();
    let todo: Vec<&Entry> = input
        .entries()
        .iter()
        .filter(|e| {
            let done = output
                .find_source(&e.provenance.source_sha256, Some(&record.hash))
                .is_some_and(|o| {
                    o.subject == e.subject
                        && o.run == e.run
                        && o.task == e.task
                        && o.session == e.session
                });
            if done {
                report.skipped.push(e.id.clone());
            }
            !done
        })
        .collect();
    let total = input.entries().len();
    let done = Mutex::new(report.skipped.len());
    let chunk = rayon::current_num_threads().max(1);
    type Prepared = Result<(Recording, Vec<ExtraTensor>, Vec<String>), DataError>;
    let compute = |batch: &[&Entry]| -> Vec<Prepared> {
        batch
            .par_iter()
            .map(|e| {
                let rec = input.read_recording(&e.id)?;
                let mut extras = Vec::with_capacity(e.extras.len());
                if !e.extras.is_empty() {
                    let view = input.view(&e.id)?;
                    for name in &e.extras {
                        let (shape, data) = view.extra(name)?;
                        extras.push(ExtraTensor {
                            name: name.clone(),
                            shape,
                            data,
                        });
                    }
                }
                let out = recipe.apply_with_extras(rec, extras, &e.id);
                if let Ok(mut n) = done.lock() {
                    *n += 1;
                    progress(*n, total);
                }
                out
            })
            .collect()
    };
    let write = |batch: &[&Entry],
                 results: Vec<Prepared>,
                 output: &mut Store,
                 report: &mut PrepareReport|
     -> Result<(), DataError> {
        for (e, r) in batch.iter().zip(results) {
            let (rec, extras, notes) = r?;
            let new = NewEntry {
                labels: e.labels.clone(),
                extras,
                recipe: Some(record.clone()),
            };
            let id = output.add(&rec, new)?;
            for n in notes {
                report.notes.push((e.id.clone(), n));
            }
            report.prepared.push((e.id.clone(), id));
        }
        Ok(())
    };
    // batch k is written while batch k + 1 is computed: at most two batches in memory
    let mut pending: Option<(&[&Entry], Vec<Prepared>)> = None;
    for batch in todo.chunks(chunk) {
        let previous = pending.take();
        let (written, results) = rayon::join(
            || match previous {
                Some((b, r)) => write(b, r, output, &mut report),
                None => Ok(()),
            },
            || compute(batch),
        );
        written?;
        pending = Some((batch, results));
    }
    if let Some((b, r)) = pending {
        write(b, r, output, &mut report)?;
    }
    output.commit()?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_named() {
        let err = Recipe::from_toml_str(
            "[[steps]]\ntype = \"notch\"\nfreqs = [50.0]\nwidth = 2\n",
            "r.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("r.toml") && err.contains("width"), "{err}");
        let err = Recipe::from_toml_str("[[steps]]\ntype = \"smooth\"\n", "r.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("smooth"), "{err}");
    }

    #[test]
    fn hash_is_canonical() {
        let a = Recipe::from_toml_str(
            "[[steps]]\ntype = \"filter\"\nl_freq = 1.0\nh_freq = 40.0\n",
            "a",
        )
        .unwrap();
        let b = Recipe::from_toml_str(
            "[[steps]]\nh_freq = 40.0\ntype = \"filter\"\nl_freq = 1.0\n# comment\n",
            "b",
        )
        .unwrap();
        assert_eq!(a.hash(), b.hash());
        let c = Recipe::from_toml_str(
            "[[steps]]\ntype = \"filter\"\nl_freq = 1.0\nh_freq = 45.0\n",
            "c",
        )
        .unwrap();
        assert_ne!(a.hash(), c.hash());
        assert_eq!(a.hash().len(), 64);
    }

    #[test]
    fn window_must_be_last() {
        let err = Recipe::from_toml_str(
            "[[steps]]\ntype = \"window\"\nlength_s = 5.0\nstride_s = 5.0\n[[steps]]\ntype = \"zscore\"\n",
            "w",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("last"), "{err}");
    }

    /// The hashes of the committed EEG recipes, as computed before the fMRI steps existed
    /// (commit 89bf952): adding step types must not change them, or every prepared store would
    /// be prepared again on resume.
    #[test]
    fn eeg_recipe_hashes_are_stable() {
        for (file, hash) in [
            (
                "eegmat-200hz.toml",
                "4a60ea5cf535d341eb8f7442073d6c85ed630a66b72206089ad1726b829ed45c",
            ),
            (
                "synth-200hz.toml",
                "470ee3ee87fbdeada338b039dd6858910ac61e86368c7ec4967f0bef5eafde4b",
            ),
        ] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../configs/recipes")
                .join(file);
            let mut r = Recipe::from_path(&path).unwrap();
            assert_eq!(r.hash(), hash, "{file}");
            // resolving a recipe that reads no file changes nothing
            r.resolve(Path::new("."), &|p: &Path| {
                Err(format!("{} read", p.display()))
            })
            .unwrap();
            assert!(r.files().is_empty());
            assert_eq!(r.hash(), hash, "{file}");
        }
    }

    #[test]
    fn eegmat_recipe_parses() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/recipes/eegmat-200hz.toml");
        let r = Recipe::from_path(&path).unwrap();
        assert_eq!(r.steps.len(), 6);
        let w = r.window().unwrap();
        assert_eq!(w.samples(200.0).unwrap(), (1000, 1000));
    }
}
