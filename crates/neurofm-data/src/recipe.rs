//! Recipes: an ordered list of [`Step`]s read from TOML, with a canonical JSON form and its
//! sha256 (`recipe_hash`), applied to every recording of a store.

use std::path::Path;
use std::sync::Mutex;

use neurofm_core::Recording;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::DataError;
use crate::steps::{Plan, Step};
use crate::store::{Entry, NewEntry, RecipeRecord, Store};
use crate::window::WindowConfig;

/// A preprocessing recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// Optional human-readable name.
    #[serde(default)]
    pub name: Option<String>,
    /// The steps, applied in order.
    pub steps: Vec<Step>,
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

    /// The canonical JSON form: every field spelled out (defaults included), object keys sorted,
    /// no whitespace.
    pub fn canonical_json(&self) -> serde_json::Value {
        // serde_json's map is a BTreeMap (no preserve_order feature): keys come out sorted.
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
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
        if entry.shape.len() != 2 {
            return Err(err(
                0,
                self.steps.first().map_or("", Step::name),
                format!(
                    "needs a [channels, samples] recording, this one is {:?}",
                    entry.shape
                ),
            ));
        }
        let mut plan = Plan {
            sfreq_hz: entry.sfreq_hz,
            channels: entry.channels.clone(),
            n_times: entry.n_times,
        };
        for (i, s) in self.steps.iter().enumerate() {
            s.plan(&mut plan).map_err(|r| err(i, s.name(), r))?;
        }
        Ok(plan)
    }

    /// Validates the recipe against every entry of `store`; the first failure is returned.
    pub fn validate_store(&self, store: &Store) -> Result<(), DataError> {
        for e in store.entries() {
            self.validate_entry(e)?;
        }
        Ok(())
    }

    /// Applies every step to one recording. `id` names it in errors. Returns the notes steps
    /// made (e.g. bad channels found).
    pub fn apply(&self, rec: Recording, id: &str) -> Result<(Recording, Vec<String>), DataError> {
        let mut rec = rec;
        let mut notes = Vec::new();
        for (i, s) in self.steps.iter().enumerate() {
            let (out, note) = s.apply(rec).map_err(|reason| DataError::Step {
                recording: id.to_string(),
                index: i,
                step: s.name().to_string(),
                reason,
            })?;
            rec = out;
            if let Some(n) = note {
                notes.push(format!("{}: {n}", s.name()));
            }
        }
        Ok((rec, notes))
    }
}

/// Applies `recipe` to every recording of `input` and adds the results to `output`, recording
/// the recipe and its hash in each new entry. The recipe is validated against every entry before
/// any work. Recordings are processed in parallel (rayon), one whole recording per worker at a
/// time, and added in input order. Inputs already in `output` with the same recipe hash are
/// skipped, so an interrupted run can be resumed. `progress(done, total)` is called after each
/// recording.
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
    for batch in todo.chunks(chunk) {
        let results: Vec<Result<(Recording, Vec<String>), DataError>> = batch
            .par_iter()
            .map(|e| {
                let rec = input.read_recording(&e.id)?;
                let out = recipe.apply(rec, &e.id);
                if let Ok(mut n) = done.lock() {
                    *n += 1;
                    progress(*n, total);
                }
                out
            })
            .collect();
        for (e, r) in batch.iter().zip(results) {
            let (rec, notes) = r?;
            let new = NewEntry {
                labels: e.labels.clone(),
                extras: Vec::new(),
                recipe: Some(record.clone()),
            };
            let id = output.add(&rec, new)?;
            for n in notes {
                report.notes.push((e.id.clone(), n));
            }
            report.prepared.push((e.id.clone(), id));
        }
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
