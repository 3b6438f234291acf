//! The store: a directory with `manifest.json` and one safetensors file per recording.
//!
//! * Reads memory-map the data files lazily: opening a store parses only the manifest, and
//!   reading one window touches only that window's bytes.
//! * Writes are crash-safe: a data file is written under a temporary name, fsynced and renamed
//!   before the manifest (itself written the same way) lists it. A killed writer leaves a store
//!   that opens and lists only complete recordings; orphaned or temporary files are ignored.
//! * One writer at a time: writers hold an advisory lock on `<store>/.lock`.
//!
//! The format is documented in `docs/store-format.md`.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use neurofm_core::{Annotation, ChannelInfo, Info, Modality, Provenance, Recording, Signal};
use neurofm_io::{IoError, RawReader};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

/// Version of the on-disk format written by this crate. Stores with a newer version are refused.
pub const FORMAT_VERSION: u32 = 1;
const FORMAT_NAME: &str = "neurofm-store";
const MANIFEST: &str = "manifest.json";
const DATA_DIR: &str = "data";
const GRAPH_DIR: &str = "graphs";
const LOCK: &str = ".lock";
/// Floats per block when streaming from a reader (16 MiB of f32).
const BLOCK_FLOATS: usize = 4 << 20;

/// Everything that can go wrong with a store. Every variant names the path involved.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not a neurofm store: {reason}", path.display())]
    NotAStore { path: PathBuf, reason: String },
    #[error("{}: store format version {found} is newer than this neurofm supports ({supported}); upgrade neurofm", path.display())]
    NewerVersion {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("{}: invalid manifest: {source}", path.display())]
    Manifest {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{}: manifest field `{field}`: {reason}", path.display())]
    ManifestField {
        path: PathBuf,
        field: String,
        reason: String,
    },
    #[error("{}: bad data file: {reason}", path.display())]
    DataFile { path: PathBuf, reason: String },
    #[error("{}: no recording with id `{id}`", store.display())]
    UnknownRecording { store: PathBuf, id: String },
    #[error("{}: another process is writing this store (lock held on {LOCK})", path.display())]
    Locked { path: PathBuf },
    #[error("{}: recording is invalid: {reason}", store.display())]
    InvalidRecording { store: PathBuf, reason: String },
    #[error(transparent)]
    Reader(#[from] IoError),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// How a preprocessing recipe is recorded in each entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecipeRecord {
    /// The recipe in its canonical JSON form.
    pub recipe: Value,
    /// sha256 (hex) of the canonical JSON.
    pub hash: String,
}

/// An extra tensor stored beside `data` in a recording's file (masks, covariates, ...).
#[derive(Debug, Clone, PartialEq)]
pub struct ExtraTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// What the caller adds to a recording when storing it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewEntry {
    /// Labels usable as targets (condition, class, ...).
    pub labels: BTreeMap<String, Value>,
    /// Extra tensors stored in the same file.
    pub extras: Vec<ExtraTensor>,
    /// The recipe this recording was prepared with.
    pub recipe: Option<RecipeRecord>,
}

/// One recording in the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Unique id within the store; also the data file's stem.
    pub id: String,
    /// Data file, relative to the store root (`data/<id>.safetensors`).
    pub path: String,
    pub subject: Option<String>,
    pub session: Option<String>,
    pub task: Option<String>,
    pub run: Option<String>,
    pub modality: Modality,
    pub sfreq_hz: f64,
    /// Time points: samples (channel signals) or volumes (fMRI volumes).
    #[serde(rename = "n_samples")]
    pub n_times: usize,
    /// Shape of the `data` tensor: `[channels, samples]` or `[volumes, x, y, z]`.
    pub shape: Vec<usize>,
    /// safetensors dtype of `data` (`F32`).
    pub dtype: String,
    pub channels: Vec<ChannelInfo>,
    pub annotations: Vec<Annotation>,
    #[serde(default)]
    pub labels: BTreeMap<String, Value>,
    pub provenance: Provenance,
    #[serde(default)]
    pub meas_date: Option<String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    #[serde(default)]
    pub recipe: Option<Value>,
    #[serde(default)]
    pub recipe_hash: Option<String>,
    /// Voxel → world affine for volume signals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affine: Option<[[f64; 4]; 4]>,
    /// Names of the extra tensors in the data file.
    #[serde(default)]
    pub extras: Vec<String>,
}

impl Entry {
    /// The `Info` this entry was made from.
    pub fn info(&self) -> Info {
        Info {
            modality: self.modality,
            sfreq_hz: self.sfreq_hz,
            channels: self.channels.clone(),
            subject: self.subject.clone(),
            session: self.session.clone(),
            task: self.task.clone(),
            run: self.run.clone(),
            meas_date: self.meas_date.clone(),
            provenance: self.provenance.clone(),
            metadata: self.metadata.clone(),
        }
    }

    /// (subject, session, task, run): two entries with the same key are duplicates.
    pub fn key(&self) -> (Option<&str>, Option<&str>, Option<&str>, Option<&str>) {
        (
            self.subject.as_deref(),
            self.session.as_deref(),
            self.task.as_deref(),
            self.run.as_deref(),
        )
    }

    pub fn duration_s(&self) -> f64 {
        self.n_times as f64 / self.sfreq_hz
    }
}

/// A graph over named nodes (e.g. a connectome over the canonical neurons).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Graph {
    pub name: String,
    /// File relative to the store root (`graphs/<name>.safetensors`).
    pub path: String,
    pub nodes: Vec<String>,
    /// Tensor names in the file with their shapes.
    pub tensors: BTreeMap<String, Vec<usize>>,
    #[serde(default)]
    pub metadata: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Manifest {
    format: String,
    format_version: u32,
    #[serde(default)]
    written_by: String,
    recordings: Vec<Entry>,
    #[serde(default)]
    graphs: Vec<Graph>,
}

/// What a merge did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MergeReport {
    /// Ids added to the destination.
    pub added: Vec<String>,
    /// Ids skipped because the destination already holds the same source (same sha256 and recipe).
    pub skipped_same_source: Vec<String>,
    /// Ids whose (subject, session, task, run) already exists with another source: not added.
    pub duplicates: Vec<String>,
}

/// An opened store.
///
/// Writing methods take the store's writer lock on first use and keep it until the `Store` is
/// dropped. By default every `add` rewrites the manifest; [`Store::set_commit_every`] batches
/// manifest rewrites for large ingests (recordings not yet committed when a writer is killed are
/// simply absent, and a re-run adds them again).
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    manifest: Manifest,
    writer_lock: Option<File>,
    pending: usize,
    commit_every: usize,
    commit_interval: std::time::Duration,
    last_commit: std::time::Instant,
}

impl Drop for Store {
    fn drop(&mut self) {
        if self.pending > 0 {
            let _ = self.write_manifest();
        }
    }
}

impl Store {
    /// Creates an empty store at `dir`. Fails if `dir` exists and is not empty.
    pub fn create(dir: &Path) -> Result<Store, StoreError> {
        if dir.exists() && !only_leftovers(dir).map_err(io_err(dir))? {
            return Err(StoreError::NotAStore {
                path: dir.to_path_buf(),
                reason: "the directory exists and is not empty (refusing to create a store in it)"
                    .into(),
            });
        }
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let mut store = Store::from_manifest(
            dir,
            Manifest {
                format: FORMAT_NAME.into(),
                format_version: FORMAT_VERSION,
                written_by: writer_name(),
                recordings: Vec::new(),
                graphs: Vec::new(),
            },
        );
        store.write_manifest()?;
        fs::create_dir_all(dir.join(DATA_DIR)).map_err(io_err(dir))?;
        Ok(store)
    }

    /// Opens an existing store (parses the manifest only).
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let mpath = dir.join(MANIFEST);
        if !dir.is_dir() {
            return Err(StoreError::NotAStore {
                path: dir.to_path_buf(),
                reason: if dir.exists() {
                    "not a directory".into()
                } else {
                    "no such directory".into()
                },
            });
        }
        let bytes = match fs::read(&mpath) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::NotAStore {
                    path: dir.to_path_buf(),
                    reason: format!("{MANIFEST} is missing"),
                })
            }
            Err(e) => return Err(io_err(&mpath)(e)),
        };
        // Check format and version before the full parse so a newer store gets the right error
        // (this pass skips every other value without allocating).
        #[derive(Deserialize)]
        struct Head {
            #[serde(default)]
            format: Option<String>,
            #[serde(default)]
            format_version: Option<u64>,
        }
        let head: Head = serde_json::from_slice(&bytes).map_err(|source| StoreError::Manifest {
            path: mpath.clone(),
            source,
        })?;
        if head.format.as_deref() != Some(FORMAT_NAME) {
            return Err(StoreError::NotAStore {
                path: dir.to_path_buf(),
                reason: format!("{MANIFEST} does not say \"format\": \"{FORMAT_NAME}\""),
            });
        }
        let found = head
            .format_version
            .ok_or_else(|| StoreError::ManifestField {
                path: mpath.clone(),
                field: "format_version".into(),
                reason: "missing or not an integer".into(),
            })?;
        if found > u64::from(FORMAT_VERSION) {
            return Err(StoreError::NewerVersion {
                path: mpath,
                found: u32::try_from(found).unwrap_or(u32::MAX),
                supported: FORMAT_VERSION,
            });
        }
        let manifest: Manifest =
            serde_json::from_slice(&bytes).map_err(|source| StoreError::Manifest {
                path: mpath.clone(),
                source,
            })?;
        let store = Store::from_manifest(dir, manifest);
        store.validate_manifest()?;
        Ok(store)
    }

    fn from_manifest(dir: &Path, manifest: Manifest) -> Store {
        Store {
            root: dir.to_path_buf(),
            manifest,
            writer_lock: None,
            pending: 0,
            commit_every: 1,
            commit_interval: std::time::Duration::ZERO,
            last_commit: std::time::Instant::now(),
        }
    }

    /// Rewrite the manifest only every `n` added recordings or when `interval` has passed since
    /// the last rewrite (whichever comes first), and on [`Store::commit`] / drop. `n = 1` (the
    /// default) commits every recording.
    pub fn set_commit_every(&mut self, n: usize, interval: std::time::Duration) {
        self.commit_every = n.max(1);
        self.commit_interval = interval;
    }

    /// Writes the manifest if recordings were added since the last write.
    pub fn commit(&mut self) -> Result<(), StoreError> {
        if self.pending > 0 {
            self.write_manifest()?;
        }
        Ok(())
    }

    /// Takes the writer lock (once) and re-reads the manifest under it.
    fn ensure_writer(&mut self) -> Result<(), StoreError> {
        if self.writer_lock.is_none() {
            let lock = self.lock()?;
            self.reload()?;
            self.writer_lock = Some(lock);
        }
        Ok(())
    }

    /// Opens `dir` if it is a store, creates it if it does not exist or is empty.
    pub fn open_or_create(dir: &Path) -> Result<Store, StoreError> {
        if dir.join(MANIFEST).exists() {
            Store::open(dir)
        } else {
            Store::create(dir)
        }
    }

    fn validate_manifest(&self) -> Result<(), StoreError> {
        let mpath = self.root.join(MANIFEST);
        let mut ids = std::collections::HashSet::new();
        for (i, e) in self.manifest.recordings.iter().enumerate() {
            let bad = |field: &str, reason: String| StoreError::ManifestField {
                path: mpath.clone(),
                field: format!("recordings[{i}].{field}"),
                reason,
            };
            if !ids.insert(e.id.as_str()) {
                return Err(bad("id", format!("`{}` appears twice", e.id)));
            }
            if !valid_id(&e.id) {
                return Err(bad("id", format!("`{}` is not a valid id", e.id)));
            }
            if !valid_relative_path(&e.path) {
                return Err(bad(
                    "path",
                    format!("`{}` must be a relative path inside the store", e.path),
                ));
            }
            if !(e.sfreq_hz.is_finite() && e.sfreq_hz > 0.0) {
                return Err(bad(
                    "sfreq_hz",
                    format!("{} is not a positive rate", e.sfreq_hz),
                ));
            }
            if e.dtype != "F32" {
                return Err(bad(
                    "dtype",
                    format!("`{}` is not supported (F32)", e.dtype),
                ));
            }
            match e.shape.as_slice() {
                [c, t] if e.affine.is_none() => {
                    if *c != e.channels.len() || *t != e.n_times {
                        return Err(bad(
                            "shape",
                            format!(
                                "{:?} disagrees with {} channels x {} samples",
                                e.shape,
                                e.channels.len(),
                                e.n_times
                            ),
                        ));
                    }
                }
                [t, _, _, _] if e.affine.is_some() => {
                    if *t != e.n_times {
                        return Err(bad(
                            "shape",
                            format!("{:?} disagrees with n_samples", e.shape),
                        ));
                    }
                }
                _ => return Err(bad("shape", format!("{:?} is not a valid shape", e.shape))),
            }
        }
        for (i, g) in self.manifest.graphs.iter().enumerate() {
            if !valid_relative_path(&g.path) {
                return Err(StoreError::ManifestField {
                    path: mpath.clone(),
                    field: format!("graphs[{i}].path"),
                    reason: format!("`{}` must be a relative path inside the store", g.path),
                });
            }
        }
        Ok(())
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn format_version(&self) -> u32 {
        self.manifest.format_version
    }

    pub fn entries(&self) -> &[Entry] {
        &self.manifest.recordings
    }

    pub fn len(&self) -> usize {
        self.manifest.recordings.len()
    }

    pub fn is_empty(&self) -> bool {
        self.manifest.recordings.is_empty()
    }

    pub fn entry(&self, id: &str) -> Option<&Entry> {
        self.manifest.recordings.iter().find(|e| e.id == id)
    }

    pub fn graphs(&self) -> &[Graph] {
        &self.manifest.graphs
    }

    /// The entry already holding this source file (same sha256) prepared with this recipe hash.
    pub fn find_source(&self, sha256: &str, recipe_hash: Option<&str>) -> Option<&Entry> {
        self.manifest.recordings.iter().find(|e| {
            e.provenance.source_sha256 == sha256 && e.recipe_hash.as_deref() == recipe_hash
        })
    }

    /// The entry with the same (subject, session, task, run), when a subject is known.
    pub fn find_duplicate_key(&self, info: &Info) -> Option<&Entry> {
        info.subject.as_ref()?;
        let key = (
            info.subject.as_deref(),
            info.session.as_deref(),
            info.task.as_deref(),
            info.run.as_deref(),
        );
        self.manifest.recordings.iter().find(|e| e.key() == key)
    }

    fn lock(&self) -> Result<File, StoreError> {
        let p = self.root.join(LOCK);
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(io_err(&p))?;
        match f.try_lock() {
            Ok(()) => {
                self.remove_stale_temp_files();
                Ok(f)
            }
            Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked {
                path: self.root.clone(),
            }),
            Err(std::fs::TryLockError::Error(e)) => Err(io_err(&p)(e)),
        }
    }

    /// Removes temporary files left by a writer that was killed (we hold the lock, so no live
    /// writer owns them).
    fn remove_stale_temp_files(&self) {
        for dir in [
            self.root.clone(),
            self.root.join(DATA_DIR),
            self.root.join(GRAPH_DIR),
        ] {
            let Ok(rd) = fs::read_dir(&dir) else { continue };
            for ent in rd.flatten() {
                let name = ent.file_name().to_string_lossy().to_string();
                if name.starts_with('.') && name.contains(".tmp-") {
                    let _ = fs::remove_file(ent.path());
                }
            }
        }
    }

    /// Re-reads the manifest from disk (another writer may have appended since we opened).
    fn reload(&mut self) -> Result<(), StoreError> {
        let mut fresh = Store::open(&self.root)?;
        std::mem::swap(&mut self.manifest, &mut fresh.manifest);
        Ok(())
    }

    fn unique_id(&self, info: &Info) -> String {
        let base = base_id(info);
        let taken = |id: &str| self.manifest.recordings.iter().any(|e| e.id == id);
        if !taken(&base) {
            return base;
        }
        (2..)
            .map(|k| format!("{base}-{k}"))
            .find(|id| !taken(id))
            .unwrap_or(base)
    }

    /// Adds an in-memory recording. Returns its id.
    pub fn add(&mut self, rec: &Recording, new: NewEntry) -> Result<String, StoreError> {
        let mut source = MemorySource { rec };
        self.add_source(&mut source, new, &mut |_, _| {})
    }

    /// Adds a recording streamed block by block from a reader (bounded memory).
    /// `progress(done, total)` is called after each block with time points written.
    pub fn add_from_reader(
        &mut self,
        reader: &mut dyn RawReader,
        new: NewEntry,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<String, StoreError> {
        let mut source = ReaderSource { reader };
        self.add_source(&mut source, new, progress)
    }

    fn add_source(
        &mut self,
        src: &mut dyn Source,
        new: NewEntry,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<String, StoreError> {
        self.ensure_writer()?;
        let info = src.info().clone();
        let n_times = src.n_times();
        let geometry = src.volume_geometry();
        let shape: Vec<usize> = match geometry {
            Some((d, _)) => vec![n_times, d[0], d[1], d[2]],
            None => vec![info.channels.len(), n_times],
        };
        if !(info.sfreq_hz.is_finite() && info.sfreq_hz > 0.0) {
            return Err(StoreError::InvalidRecording {
                store: self.root.clone(),
                reason: format!(
                    "{}: sampling rate {} is not positive",
                    info.provenance.source_path, info.sfreq_hz
                ),
            });
        }
        for x in &new.extras {
            let n: usize = x.shape.iter().product();
            if n != x.data.len() || x.name == "data" || x.name.starts_with("__") {
                return Err(StoreError::InvalidRecording {
                    store: self.root.clone(),
                    reason: format!(
                        "extra tensor `{}`: shape {:?} holds {n} values, data has {} (or the name is reserved)",
                        x.name,
                        x.shape,
                        x.data.len()
                    ),
                });
            }
        }
        let id = self.unique_id(&info);
        let rel = format!("{DATA_DIR}/{id}.safetensors");
        let final_path = self.root.join(&rel);
        let tmp_path = self
            .root
            .join(DATA_DIR)
            .join(format!(".{id}.safetensors.tmp-{}", std::process::id()));
        fs::create_dir_all(self.root.join(DATA_DIR)).map_err(io_err(&self.root))?;
        let result = write_tensor_file(&tmp_path, &id, &shape, src, &new.extras, progress);
        if let Err(e) = result {
            let _ = fs::remove_file(&tmp_path);
            return Err(e);
        }
        fs::rename(&tmp_path, &final_path).map_err(io_err(&final_path))?;
        sync_dir(&self.root.join(DATA_DIR))?;

        let (recipe, recipe_hash) = match new.recipe {
            Some(r) => (Some(r.recipe), Some(r.hash)),
            None => (None, None),
        };
        self.manifest.recordings.push(Entry {
            id: id.clone(),
            path: rel,
            subject: info.subject.clone(),
            session: info.session.clone(),
            task: info.task.clone(),
            run: info.run.clone(),
            modality: info.modality,
            sfreq_hz: info.sfreq_hz,
            n_times,
            shape,
            dtype: "F32".into(),
            channels: info.channels.clone(),
            annotations: src.annotations().to_vec(),
            labels: new.labels,
            provenance: info.provenance.clone(),
            meas_date: info.meas_date.clone(),
            metadata: info.metadata.clone(),
            recipe,
            recipe_hash,
            affine: geometry.map(|(_, a)| a),
            extras: new.extras.iter().map(|x| x.name.clone()).collect(),
        });
        self.pending += 1;
        if self.pending >= self.commit_every || self.last_commit.elapsed() >= self.commit_interval {
            if let Err(e) = self.write_manifest() {
                self.manifest.recordings.pop();
                self.pending -= 1;
                return Err(e);
            }
        }
        Ok(id)
    }

    /// Adds a graph over named nodes (e.g. a connectome). Replaces a graph of the same name.
    pub fn add_graph(
        &mut self,
        name: &str,
        nodes: Vec<String>,
        tensors: Vec<ExtraTensor>,
        metadata: BTreeMap<String, Value>,
    ) -> Result<(), StoreError> {
        if !valid_id(name) {
            return Err(StoreError::InvalidRecording {
                store: self.root.clone(),
                reason: format!("graph name `{name}` must be [A-Za-z0-9._-]+"),
            });
        }
        self.ensure_writer()?;
        let dir = self.root.join(GRAPH_DIR);
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let rel = format!("{GRAPH_DIR}/{name}.safetensors");
        let final_path = self.root.join(&rel);
        let tmp = dir.join(format!(".{name}.safetensors.tmp-{}", std::process::id()));
        let mut shapes = BTreeMap::new();
        for t in &tensors {
            if t.shape.iter().product::<usize>() != t.data.len() {
                return Err(StoreError::InvalidRecording {
                    store: self.root.clone(),
                    reason: format!("graph tensor `{}`: shape/data length mismatch", t.name),
                });
            }
            shapes.insert(t.name.clone(), t.shape.clone());
        }
        let views: Vec<(String, Vec<usize>, &[f32])> = tensors
            .iter()
            .map(|t| (t.name.clone(), t.shape.clone(), t.data.as_slice()))
            .collect();
        write_small_tensors(&tmp, &views, &[("graph".into(), name.into())])?;
        fs::rename(&tmp, &final_path).map_err(io_err(&final_path))?;
        sync_dir(&dir)?;
        self.manifest.graphs.retain(|g| g.name != name);
        self.manifest.graphs.push(Graph {
            name: name.into(),
            path: rel,
            nodes,
            tensors: shapes,
            metadata,
        });
        self.write_manifest()
    }

    /// Reads one tensor of a graph.
    pub fn graph_tensor(&self, name: &str, tensor: &str) -> Result<Vec<f32>, StoreError> {
        let g = self
            .manifest
            .graphs
            .iter()
            .find(|g| g.name == name)
            .ok_or_else(|| StoreError::UnknownRecording {
                store: self.root.clone(),
                id: format!("graph {name}"),
            })?;
        let file = TensorFile::open(&self.root.join(&g.path))?;
        let (_, data) = file.tensor(tensor)?;
        Ok(data.into_owned())
    }

    fn write_manifest(&mut self) -> Result<(), StoreError> {
        self.write_manifest_file()?;
        self.pending = 0;
        self.last_commit = std::time::Instant::now();
        Ok(())
    }

    fn write_manifest_file(&self) -> Result<(), StoreError> {
        let path = self.root.join(MANIFEST);
        let tmp = self
            .root
            .join(format!(".{MANIFEST}.tmp-{}", std::process::id()));
        let mut m = self.manifest.clone();
        m.written_by = writer_name();
        let bytes = serde_json::to_vec(&m).map_err(|source| StoreError::Manifest {
            path: path.clone(),
            source,
        })?;
        {
            let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
            f.write_all(&bytes).map_err(io_err(&tmp))?;
            f.write_all(b"\n").map_err(io_err(&tmp))?;
            f.sync_all().map_err(io_err(&tmp))?;
        }
        fs::rename(&tmp, &path).map_err(io_err(&path))?;
        sync_dir(&self.root)
    }

    /// Memory-maps one recording's data file.
    pub fn view(&self, id: &str) -> Result<RecordingView, StoreError> {
        let e = self.entry(id).ok_or_else(|| StoreError::UnknownRecording {
            store: self.root.clone(),
            id: id.into(),
        })?;
        self.view_entry(e)
    }

    /// Memory-maps the data file of the `i`-th entry.
    pub fn view_index(&self, i: usize) -> Result<RecordingView, StoreError> {
        let e = self
            .manifest
            .recordings
            .get(i)
            .ok_or_else(|| StoreError::UnknownRecording {
                store: self.root.clone(),
                id: format!("#{i}"),
            })?;
        self.view_entry(e)
    }

    /// Where recording `i`'s `data` tensor lies in its file, for reading many windows with
    /// positioned reads ([`DataLayout::window_into`]) instead of mapping the file for each.
    pub fn data_layout(&self, i: usize) -> Result<DataLayout, StoreError> {
        let view = self.view_index(i)?;
        Ok(DataLayout {
            path: view.file.path.clone(),
            shape: view.shape.clone(),
            offset: view.offset,
        })
    }

    fn view_entry(&self, e: &Entry) -> Result<RecordingView, StoreError> {
        let path = self.root.join(&e.path);
        let file = TensorFile::open(&path)?;
        let (shape, offset) = file.locate("data")?;
        if shape != e.shape {
            return Err(StoreError::DataFile {
                path,
                reason: format!(
                    "tensor `data` has shape {shape:?}, the manifest says {:?}",
                    e.shape
                ),
            });
        }
        Ok(RecordingView {
            file,
            shape,
            offset,
        })
    }

    /// Reads a whole recording back into memory.
    pub fn read_recording(&self, id: &str) -> Result<Recording, StoreError> {
        let e = self.entry(id).ok_or_else(|| StoreError::UnknownRecording {
            store: self.root.clone(),
            id: id.into(),
        })?;
        let view = self.view_entry(e)?;
        let data = view.data().into_owned();
        let signal = match e.affine {
            Some(affine) => Signal::Volumes {
                n_volumes: e.shape[0],
                dims: [e.shape[1], e.shape[2], e.shape[3]],
                affine,
                data,
            },
            None => Signal::Channels {
                n_channels: e.shape[0],
                n_samples: e.shape[1],
                data,
            },
        };
        Recording::new(e.info(), signal, e.annotations.clone()).map_err(|err| {
            StoreError::InvalidRecording {
                store: self.root.clone(),
                reason: format!("{id}: {err}"),
            }
        })
    }

    /// Copies every recording and graph of `other` into this store.
    ///
    /// Recordings whose source (sha256 + recipe hash) is already here are skipped; recordings
    /// whose (subject, session, task, run) is already here with another source are reported as
    /// duplicates and not added.
    pub fn merge_from(
        &mut self,
        other: &Store,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<MergeReport, StoreError> {
        let mut report = MergeReport::default();
        let total = other.len() as u64;
        for (k, e) in other.entries().iter().enumerate() {
            if self
                .find_source(&e.provenance.source_sha256, e.recipe_hash.as_deref())
                .is_some()
                && !e.provenance.source_sha256.is_empty()
            {
                report.skipped_same_source.push(e.id.clone());
            } else if self.find_duplicate_key(&e.info()).is_some() {
                report.duplicates.push(e.id.clone());
            } else {
                let rec = other.read_recording(&e.id)?;
                let view = other.view_entry(e)?;
                let mut extras = Vec::new();
                for name in &e.extras {
                    let (shape, data) = view.extra(name)?;
                    extras.push(ExtraTensor {
                        name: name.clone(),
                        shape,
                        data,
                    });
                }
                let recipe = match (&e.recipe, &e.recipe_hash) {
                    (Some(r), Some(h)) => Some(RecipeRecord {
                        recipe: r.clone(),
                        hash: h.clone(),
                    }),
                    _ => None,
                };
                let id = self.add(
                    &rec,
                    NewEntry {
                        labels: e.labels.clone(),
                        extras,
                        recipe,
                    },
                )?;
                report.added.push(id);
            }
            progress(k as u64 + 1, total);
        }
        for g in other.graphs() {
            let file = TensorFile::open(&other.root.join(&g.path))?;
            let mut tensors = Vec::new();
            for (name, _) in g.tensors.iter() {
                let (shape, data) = file.tensor(name)?;
                tensors.push(ExtraTensor {
                    name: name.clone(),
                    shape,
                    data: data.into_owned(),
                });
            }
            self.add_graph(&g.name, g.nodes.clone(), tensors, g.metadata.clone())?;
        }
        Ok(report)
    }
}

fn writer_name() -> String {
    format!("neurofm-data {}", env!("CARGO_PKG_VERSION"))
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn valid_relative_path(p: &str) -> bool {
    let path = Path::new(p);
    !p.is_empty()
        && path
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)))
}

fn sanitize(s: &str) -> String {
    let out: String = s
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let t = out.trim_matches('-').to_string();
    if t.is_empty() {
        "x".into()
    } else {
        t
    }
}

/// `sub-01_ses-1_task-rest_run-1` when a subject is known, else the source file stem.
fn base_id(info: &Info) -> String {
    if let Some(sub) = &info.subject {
        let mut id = format!("sub-{}", sanitize(sub));
        for (k, v) in [
            ("ses", &info.session),
            ("task", &info.task),
            ("run", &info.run),
        ] {
            if let Some(v) = v {
                id.push_str(&format!("_{k}-{}", sanitize(v)));
            }
        }
        return id;
    }
    let stem = Path::new(&info.provenance.source_path)
        .file_name()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    let stem = stem.split('.').next().unwrap_or_default().to_string();
    if stem.is_empty() {
        "recording".into()
    } else {
        sanitize(&stem)
    }
}

/// True when `dir` holds nothing but what a writer killed while creating the store can leave:
/// the lock file, temporary files, and an empty `data/` directory.
fn only_leftovers(dir: &Path) -> std::io::Result<bool> {
    for ent in fs::read_dir(dir)? {
        let ent = ent?;
        let name = ent.file_name().to_string_lossy().to_string();
        let ok = name == LOCK
            || (name.starts_with('.') && name.contains(".tmp-"))
            || (name == DATA_DIR
                && ent.path().is_dir()
                && fs::read_dir(ent.path())?.next().is_none());
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// Something that yields time blocks of a recording.
trait Source {
    fn info(&self) -> &Info;
    fn annotations(&self) -> &[Annotation];
    fn n_times(&self) -> usize;
    fn volume_geometry(&self) -> Option<([usize; 3], [[f64; 4]; 4])>;
    fn read_segment(
        &mut self,
        start: usize,
        stop: usize,
        out: &mut [f32],
    ) -> Result<(), StoreError>;
}

struct ReaderSource<'a> {
    reader: &'a mut dyn RawReader,
}

impl Source for ReaderSource<'_> {
    fn info(&self) -> &Info {
        self.reader.info()
    }
    fn annotations(&self) -> &[Annotation] {
        self.reader.annotations()
    }
    fn n_times(&self) -> usize {
        self.reader.n_times()
    }
    fn volume_geometry(&self) -> Option<([usize; 3], [[f64; 4]; 4])> {
        self.reader.volume_geometry()
    }
    fn read_segment(
        &mut self,
        start: usize,
        stop: usize,
        out: &mut [f32],
    ) -> Result<(), StoreError> {
        Ok(self.reader.read_segment(start, stop, out)?)
    }
}

struct MemorySource<'a> {
    rec: &'a Recording,
}

impl Source for MemorySource<'_> {
    fn info(&self) -> &Info {
        &self.rec.info
    }
    fn annotations(&self) -> &[Annotation] {
        &self.rec.annotations
    }
    fn n_times(&self) -> usize {
        self.rec.signal.n_times()
    }
    fn volume_geometry(&self) -> Option<([usize; 3], [[f64; 4]; 4])> {
        match &self.rec.signal {
            Signal::Volumes { dims, affine, .. } => Some((*dims, *affine)),
            Signal::Channels { .. } => None,
        }
    }
    fn read_segment(
        &mut self,
        start: usize,
        stop: usize,
        out: &mut [f32],
    ) -> Result<(), StoreError> {
        match &self.rec.signal {
            Signal::Channels {
                n_channels,
                n_samples,
                data,
            } => {
                let len = stop - start;
                for c in 0..*n_channels {
                    let row = &data[c * n_samples..(c + 1) * n_samples];
                    out[c * len..(c + 1) * len].copy_from_slice(&row[start..stop]);
                }
            }
            Signal::Volumes { dims, data, .. } => {
                let vol = dims[0] * dims[1] * dims[2];
                out.copy_from_slice(&data[start * vol..stop * vol]);
            }
        }
        Ok(())
    }
}

/// Builds a safetensors header: tensors laid out in the given order after the header.
fn safetensors_header(
    tensors: &[(String, Vec<usize>)],
    metadata: &[(String, String)],
) -> Result<(Vec<u8>, Vec<u64>), serde_json::Error> {
    let mut map = serde_json::Map::new();
    let meta: serde_json::Map<String, Value> = metadata
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    if !meta.is_empty() {
        map.insert("__metadata__".into(), Value::Object(meta));
    }
    let mut offsets = Vec::new();
    let mut at: u64 = 0;
    for (name, shape) in tensors {
        let n: u64 = shape.iter().map(|&d| d as u64).product::<u64>() * 4;
        offsets.push(at);
        map.insert(
            name.clone(),
            serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [at, at + n]}),
        );
        at += n;
    }
    let mut header = serde_json::to_vec(&Value::Object(map))?;
    // Pad with spaces so the data starts 8-byte aligned (as the safetensors crate does).
    while (header.len() + 8) % 8 != 0 {
        header.push(b' ');
    }
    let mut out = Vec::with_capacity(header.len() + 8);
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(&header);
    Ok((out, offsets))
}

fn f32_bytes(data: &[f32]) -> Vec<u8> {
    let mut b = Vec::with_capacity(data.len() * 4);
    for v in data {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b
}

/// Streams a recording's `data` tensor plus extras into `path`, then fsyncs.
fn write_tensor_file(
    path: &Path,
    id: &str,
    shape: &[usize],
    src: &mut dyn Source,
    extras: &[ExtraTensor],
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(), StoreError> {
    let mut names: Vec<(String, Vec<usize>)> = vec![("data".into(), shape.to_vec())];
    names.extend(extras.iter().map(|x| (x.name.clone(), x.shape.clone())));
    let meta = vec![
        ("format".to_string(), "neurofm".to_string()),
        ("id".to_string(), id.to_string()),
    ];
    let (header, offsets) =
        safetensors_header(&names, &meta).map_err(|e| StoreError::DataFile {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    let base = header.len() as u64;
    let f = File::create(path).map_err(io_err(path))?;
    f.write_all_at(&header, 0).map_err(io_err(path))?;

    let n_times = src.n_times();
    let is_volume = src.volume_geometry().is_some();
    let per_time: usize = if is_volume {
        shape[1..].iter().product()
    } else {
        shape[0]
    };
    let block = (BLOCK_FLOATS / per_time.max(1)).max(1);
    let mut buf = vec![0f32; block.min(n_times.max(1)) * per_time];
    let mut bytes = Vec::new();
    let mut t0 = 0;
    while t0 < n_times {
        let t1 = (t0 + block).min(n_times);
        let len = t1 - t0;
        let out = &mut buf[..len * per_time];
        src.read_segment(t0, t1, out)?;
        if is_volume {
            bytes.clear();
            bytes.extend(out.iter().flat_map(|v| v.to_le_bytes()));
            f.write_all_at(&bytes, base + (t0 * per_time) as u64 * 4)
                .map_err(io_err(path))?;
        } else {
            for c in 0..per_time {
                bytes.clear();
                bytes.extend(
                    out[c * len..(c + 1) * len]
                        .iter()
                        .flat_map(|v| v.to_le_bytes()),
                );
                let at = base + ((c * n_times + t0) as u64) * 4;
                f.write_all_at(&bytes, at).map_err(io_err(path))?;
            }
        }
        progress(t1 as u64, n_times as u64);
        t0 = t1;
    }
    // Zero-length or the tail: make sure the file has its full size.
    let data_len: u64 = shape.iter().map(|&d| d as u64).product::<u64>() * 4;
    f.set_len(base + data_len).map_err(io_err(path))?;
    for (x, off) in extras.iter().zip(offsets.iter().skip(1)) {
        f.write_all_at(&f32_bytes(&x.data), base + off)
            .map_err(io_err(path))?;
    }
    f.sync_all().map_err(io_err(path))
}

/// Writes small in-memory tensors as one safetensors file (then fsync).
fn write_small_tensors(
    path: &Path,
    tensors: &[(String, Vec<usize>, &[f32])],
    metadata: &[(String, String)],
) -> Result<(), StoreError> {
    let names: Vec<(String, Vec<usize>)> = tensors
        .iter()
        .map(|(n, s, _)| (n.clone(), s.clone()))
        .collect();
    let (header, _) = safetensors_header(&names, metadata).map_err(|e| StoreError::DataFile {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let f = File::create(path).map_err(io_err(path))?;
    let mut w = BufWriter::new(&f);
    w.write_all(&header).map_err(io_err(path))?;
    for (_, _, d) in tensors {
        w.write_all(&f32_bytes(d)).map_err(io_err(path))?;
    }
    w.flush().map_err(io_err(path))?;
    drop(w);
    f.sync_all().map_err(io_err(path))
}

/// A memory-mapped safetensors file, validated.
#[derive(Debug)]
struct TensorFile {
    path: PathBuf,
    mmap: Mmap,
    /// name → (shape, absolute byte offset, byte length)
    tensors: BTreeMap<String, (Vec<usize>, usize, usize)>,
}

impl TensorFile {
    fn open(path: &Path) -> Result<TensorFile, StoreError> {
        let f = File::open(path).map_err(|e| StoreError::DataFile {
            path: path.to_path_buf(),
            reason: format!("cannot open: {e}"),
        })?;
        // SAFETY: the store's data files are written once (under a temporary name, then renamed)
        // and never modified in place afterwards, so the mapping does not change under us.
        let mmap = unsafe { Mmap::map(&f) }.map_err(io_err(path))?;
        let (n, meta) =
            safetensors::SafeTensors::read_metadata(&mmap).map_err(|e| StoreError::DataFile {
                path: path.to_path_buf(),
                reason: format!("not a valid safetensors file ({e}); truncated or corrupted?"),
            })?;
        let base = 8 + n;
        let mut tensors = BTreeMap::new();
        for (name, info) in meta.tensors() {
            if info.dtype != safetensors::Dtype::F32 {
                return Err(StoreError::DataFile {
                    path: path.to_path_buf(),
                    reason: format!("tensor `{name}` has dtype {:?}, expected F32", info.dtype),
                });
            }
            let (a, b) = info.data_offsets;
            tensors.insert(name, (info.shape.clone(), base + a, b - a));
        }
        Ok(TensorFile {
            path: path.to_path_buf(),
            mmap,
            tensors,
        })
    }

    fn locate(&self, name: &str) -> Result<(Vec<usize>, usize), StoreError> {
        let (shape, off, len) = self.tensors.get(name).ok_or_else(|| StoreError::DataFile {
            path: self.path.clone(),
            reason: format!("no tensor `{name}`"),
        })?;
        if off + len > self.mmap.len() {
            return Err(StoreError::DataFile {
                path: self.path.clone(),
                reason: format!("tensor `{name}` runs past the end of the file (truncated)"),
            });
        }
        Ok((shape.clone(), *off))
    }

    fn floats(&self, off: usize, n: usize) -> std::borrow::Cow<'_, [f32]> {
        let bytes = &self.mmap[off..off + n * 4];
        match bytemuck::try_cast_slice::<u8, f32>(bytes) {
            Ok(s) if cfg!(target_endian = "little") => std::borrow::Cow::Borrowed(s),
            _ => std::borrow::Cow::Owned(
                bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ),
        }
    }

    fn tensor(&self, name: &str) -> Result<(Vec<usize>, std::borrow::Cow<'_, [f32]>), StoreError> {
        let (shape, off) = self.locate(name)?;
        let n = shape.iter().product();
        Ok((shape, self.floats(off, n)))
    }
}

/// `(channels, samples)` of a `[channels, samples]` tensor, after checking that the window
/// `[start, start + len)` lies inside it and that the output buffer holds `channels * len`
/// values; the error names the file.
fn check_window(
    path: &Path,
    shape: &[usize],
    start: usize,
    len: usize,
    out_len: usize,
) -> Result<(usize, usize), StoreError> {
    let (c, t) = match shape {
        [c, t] => (*c, *t),
        _ => {
            return Err(StoreError::DataFile {
                path: path.to_path_buf(),
                reason: "a window needs a [channels, samples] tensor".into(),
            })
        }
    };
    if start.checked_add(len).is_none_or(|e| e > t) || out_len != c * len {
        return Err(StoreError::DataFile {
            path: path.to_path_buf(),
            reason: format!(
                "window [{start}, {}) of {t} samples into a buffer of {out_len} (need {})",
                start.saturating_add(len),
                c * len
            ),
        });
    }
    Ok((c, t))
}

/// The place of one recording's `data` tensor (`[channels, samples]`) in its file, checked
/// once ([`Store::data_layout`]): a data loader reads window after window through it with
/// positioned reads. Mapping the file for every window, as [`RecordingView`] does, spent most
/// of the loader's time in the kernel (mapping, page faults, unmapping and the TLB shootdowns
/// that come with it).
#[derive(Debug, Clone)]
pub struct DataLayout {
    path: PathBuf,
    shape: Vec<usize>,
    offset: usize,
}

impl DataLayout {
    /// `[channels, samples]` (or the tensor's shape for other modalities).
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Samples `[start, start + len)` of every channel into `out` (`[channels, len]`), read
    /// from the file (one positioned read per channel). A file that is shorter than its header
    /// says fails naming the file.
    pub fn window_into(&self, start: usize, len: usize, out: &mut [f32]) -> Result<(), StoreError> {
        let (c, t) = check_window(&self.path, &self.shape, start, len, out.len())?;
        let f = File::open(&self.path).map_err(|e| StoreError::DataFile {
            path: self.path.clone(),
            reason: format!("cannot open: {e}"),
        })?;
        for (ch, dst) in out.chunks_exact_mut(len.max(1)).enumerate().take(c) {
            let at = (self.offset + (ch * t + start) * 4) as u64;
            f.read_exact_at(bytemuck::cast_slice_mut(dst), at)
                .map_err(|e| StoreError::DataFile {
                    path: self.path.clone(),
                    reason: format!(
                        "reading channel {ch}, samples {start}..{}: {e}",
                        start + len
                    ),
                })?;
        }
        // The file is little-endian f32.
        if cfg!(target_endian = "big") {
            for v in out.iter_mut() {
                *v = f32::from_bits(u32::from_le(v.to_bits()));
            }
        }
        Ok(())
    }
}

/// A memory-mapped view of one recording's `data` tensor.
#[derive(Debug)]
pub struct RecordingView {
    file: TensorFile,
    shape: Vec<usize>,
    offset: usize,
}

impl RecordingView {
    /// `[channels, samples]` or `[volumes, x, y, z]`.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn row_len(&self) -> usize {
        self.shape[1..].iter().product()
    }

    /// The whole tensor (zero copy on little-endian hosts).
    pub fn data(&self) -> std::borrow::Cow<'_, [f32]> {
        self.file.floats(self.offset, self.shape.iter().product())
    }

    /// One channel's samples (or one volume), zero copy on little-endian hosts.
    pub fn row(&self, i: usize) -> Option<std::borrow::Cow<'_, [f32]>> {
        if i >= self.shape[0] {
            return None;
        }
        let n = self.row_len();
        Some(self.file.floats(self.offset + i * n * 4, n))
    }

    /// Copies samples `[start, start + len)` of every channel into `out` (`[channels, len]`),
    /// touching only those bytes of the file.
    pub fn window_into(&self, start: usize, len: usize, out: &mut [f32]) -> Result<(), StoreError> {
        let (c, t) = check_window(&self.file.path, &self.shape, start, len, out.len())?;
        for ch in 0..c {
            let src = self.file.floats(self.offset + (ch * t + start) * 4, len);
            out[ch * len..(ch + 1) * len].copy_from_slice(&src);
        }
        Ok(())
    }

    /// Samples `[start, start + len)` of every channel, `[channels, len]`.
    pub fn window(&self, start: usize, len: usize) -> Result<Vec<f32>, StoreError> {
        let mut out = vec![0f32; self.shape.first().copied().unwrap_or(0) * len];
        self.window_into(start, len, &mut out)?;
        Ok(out)
    }

    /// An extra tensor stored beside `data`.
    pub fn extra(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>), StoreError> {
        let (shape, data) = self.file.tensor(name)?;
        Ok((shape, data.into_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use neurofm_core::{ChannelKind, Unit};

    fn rec(subject: &str, run: &str, n_ch: usize, n: usize) -> Recording {
        let chans = (0..n_ch)
            .map(|i| ChannelInfo::new(format!("C{i}"), ChannelKind::Eeg, Unit::Volt))
            .collect();
        let mut info = Info::new(Modality::Eeg, 100.0, chans);
        info.subject = Some(subject.into());
        info.run = Some(run.into());
        info.provenance.source_sha256 = format!("sha-{subject}-{run}");
        info.provenance.source_path = format!("/x/{subject}_{run}.edf");
        let data = (0..n_ch * n).map(|i| i as f32 * 1e-6).collect();
        Recording::new(
            info,
            Signal::channels(n_ch, n, data).unwrap(),
            vec![Annotation {
                onset_s: 0.5,
                duration_s: 1.0,
                description: "left".into(),
            }],
        )
        .unwrap()
    }

    #[test]
    fn round_trip_equals_written_data() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::create(&dir.path().join("s")).unwrap();
        let r = rec("01", "1", 3, 1000);
        let mut labels = BTreeMap::new();
        labels.insert("condition".to_string(), Value::from("rest"));
        let id = s
            .add(
                &r,
                NewEntry {
                    labels,
                    extras: vec![ExtraTensor {
                        name: "mask".into(),
                        shape: vec![3],
                        data: vec![1.0, 0.0, 1.0],
                    }],
                    recipe: None,
                },
            )
            .unwrap();
        assert_eq!(id, "sub-01_run-1");
        let s2 = Store::open(&dir.path().join("s")).unwrap();
        let back = s2.read_recording(&id).unwrap();
        assert_eq!(back.signal, r.signal);
        assert_eq!(back.annotations, r.annotations);
        let v = s2.view(&id).unwrap();
        assert_eq!(v.shape(), &[3, 1000]);
        assert_eq!(v.window(10, 5).unwrap()[5..10], r.signal.data()[1010..1015]);
        assert_eq!(v.row(2).unwrap()[..], r.signal.data()[2000..3000]);
        assert_eq!(v.extra("mask").unwrap().1, vec![1.0, 0.0, 1.0]);
        assert_eq!(
            s2.entry(&id).unwrap().labels["condition"],
            Value::from("rest")
        );
        assert!(v.window(998, 5).is_err());
    }

    #[test]
    fn data_layout_reads_the_same_windows_as_the_view() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::create(dir.path()).unwrap();
        let r = rec("03", "1", 3, 500);
        let id = s.add(&r, NewEntry::default()).unwrap();
        let layout = s.data_layout(0).unwrap();
        let view = s.view(&id).unwrap();
        assert_eq!(layout.shape(), &[3, 500]);
        for (start, len) in [(0, 500), (10, 7), (493, 7), (250, 0)] {
            let mut a = vec![f32::NAN; 3 * len];
            layout.window_into(start, len, &mut a).unwrap();
            assert_eq!(a, view.window(start, len).unwrap(), "window {start}+{len}");
        }
        let mut out = vec![0f32; 3 * 8];
        assert!(layout.window_into(493, 8, &mut out).is_err());
        assert!(layout.window_into(0, 7, &mut out).is_err());
        // A data file cut short after the layout was taken: an error naming the file.
        let path = dir.path().join(&s.entry(&id).unwrap().path);
        let bytes = fs::read(&path).unwrap();
        fs::write(&path, &bytes[..bytes.len() - 40]).unwrap();
        let mut out = vec![0f32; 3 * 10];
        let err = layout
            .window_into(490, 10, &mut out)
            .unwrap_err()
            .to_string();
        assert!(err.contains(path.to_str().unwrap()), "{err}");
    }

    #[test]
    fn file_is_readable_by_the_safetensors_crate() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::create(dir.path()).unwrap();
        let r = rec("02", "1", 2, 7);
        let id = s.add(&r, NewEntry::default()).unwrap();
        let bytes = fs::read(dir.path().join(&s.entry(&id).unwrap().path)).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let t = st.tensor("data").unwrap();
        assert_eq!(t.shape(), &[2, 7]);
        assert_eq!(t.data(), f32_bytes(r.signal.data()).as_slice());
    }

    #[test]
    fn ids_are_unique_and_duplicates_are_found() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::create(dir.path()).unwrap();
        let a = s.add(&rec("01", "1", 1, 10), NewEntry::default()).unwrap();
        let b = s.add(&rec("01", "1", 1, 10), NewEntry::default()).unwrap();
        assert_ne!(a, b);
        assert!(s.find_duplicate_key(&rec("01", "1", 1, 1).info).is_some());
        assert!(s.find_duplicate_key(&rec("01", "2", 1, 1).info).is_none());
        assert!(s.find_source("sha-01-1", None).is_some());
    }

    #[test]
    fn merge_skips_same_source_and_reports_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = Store::create(&dir.path().join("a")).unwrap();
        let mut b = Store::create(&dir.path().join("b")).unwrap();
        a.add(&rec("01", "1", 2, 10), NewEntry::default()).unwrap();
        b.add(&rec("01", "1", 2, 10), NewEntry::default()).unwrap();
        b.add(&rec("02", "1", 2, 10), NewEntry::default()).unwrap();
        let mut other = rec("02", "1", 2, 10);
        other.info.provenance.source_sha256 = "different".into();
        b.add(&other, NewEntry::default()).unwrap();
        let rep = a.merge_from(&b, &mut |_, _| {}).unwrap();
        assert_eq!(rep.added, vec!["sub-02_run-1".to_string()]);
        assert_eq!(rep.skipped_same_source.len(), 1);
        assert_eq!(rep.duplicates.len(), 1);
        assert_eq!(a.len(), 2);
    }

    #[test]
    fn bad_stores_give_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        // not a store
        let e = Store::open(dir.path()).unwrap_err();
        assert!(e.to_string().contains("manifest.json is missing"), "{e}");
        // newer version
        fs::write(
            dir.path().join(MANIFEST),
            r#"{"format":"neurofm-store","format_version":99,"recordings":[]}"#,
        )
        .unwrap();
        let e = Store::open(dir.path()).unwrap_err();
        assert!(
            matches!(e, StoreError::NewerVersion { found: 99, .. }),
            "{e}"
        );
        // garbage
        fs::write(dir.path().join(MANIFEST), "{not json").unwrap();
        assert!(matches!(
            Store::open(dir.path()).unwrap_err(),
            StoreError::Manifest { .. }
        ));
        // create refuses a non-empty dir
        assert!(Store::create(dir.path()).is_err());
    }

    #[test]
    fn truncated_or_missing_data_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::create(dir.path()).unwrap();
        let id = s.add(&rec("01", "1", 4, 100), NewEntry::default()).unwrap();
        let p = dir.path().join(&s.entry(&id).unwrap().path);
        let len = fs::metadata(&p).unwrap().len();
        let f = OpenOptions::new().write(true).open(&p).unwrap();
        f.set_len(len - 10).unwrap();
        drop(f);
        let e = s.view(&id).unwrap_err();
        assert!(e.to_string().contains("safetensors"), "{e}");
        fs::remove_file(&p).unwrap();
        let e = s.view(&id).unwrap_err();
        assert!(e.to_string().contains("cannot open"), "{e}");
    }

    #[test]
    fn second_writer_is_refused_while_the_first_holds_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = Store::create(dir.path()).unwrap();
        a.add(&rec("01", "1", 1, 3), NewEntry::default()).unwrap();
        let mut b = Store::open(dir.path()).unwrap();
        let e = b
            .add(&rec("02", "1", 1, 3), NewEntry::default())
            .unwrap_err();
        assert!(matches!(e, StoreError::Locked { .. }), "{e}");
        drop(a);
        b.add(&rec("02", "1", 1, 3), NewEntry::default()).unwrap();
        assert_eq!(Store::open(dir.path()).unwrap().len(), 2);
    }

    #[test]
    fn batched_commits_reach_disk_on_commit_and_drop() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::create(dir.path()).unwrap();
        s.set_commit_every(10, std::time::Duration::from_secs(3600));
        for k in 0..3 {
            s.add(&rec(&format!("{k}"), "1", 1, 3), NewEntry::default())
                .unwrap();
        }
        assert_eq!(Store::open(dir.path()).unwrap().len(), 0);
        s.commit().unwrap();
        assert_eq!(Store::open(dir.path()).unwrap().len(), 3);
        s.add(&rec("9", "1", 1, 3), NewEntry::default()).unwrap();
        drop(s);
        assert_eq!(Store::open(dir.path()).unwrap().len(), 4);
    }

    #[test]
    fn path_traversal_in_manifest_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::create(dir.path()).unwrap();
        s.add(&rec("01", "1", 1, 3), NewEntry::default()).unwrap();
        let mpath = dir.path().join(MANIFEST);
        let text = fs::read_to_string(&mpath)
            .unwrap()
            .replace("data/sub-01_run-1.safetensors", "../../etc/passwd");
        fs::write(&mpath, text).unwrap();
        let e = Store::open(dir.path()).unwrap_err();
        assert!(e.to_string().contains("recordings[0].path"), "{e}");
    }

    #[test]
    fn volumes_and_graphs_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::create(dir.path()).unwrap();
        let mut info = Info::new(Modality::FmriVolume, 0.5, vec![]);
        info.provenance.source_path = "/x/bold.nii.gz".into();
        let affine = [
            [2.0, 0.0, 0.0, -10.0],
            [0.0, 2.0, 0.0, -20.0],
            [0.0, 0.0, 2.0, -30.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
        let data: Vec<f32> = (0..3 * 2 * 3 * 4).map(|i| i as f32).collect();
        let r = Recording::new(
            info,
            Signal::Volumes {
                n_volumes: 3,
                dims: [2, 3, 4],
                affine,
                data,
            },
            vec![],
        )
        .unwrap();
        let id = s.add(&r, NewEntry::default()).unwrap();
        assert_eq!(id, "bold");
        let back = s.read_recording(&id).unwrap();
        assert_eq!(back.signal, r.signal);
        s.add_graph(
            "chemical",
            vec!["AVAL".into(), "AVAR".into()],
            vec![ExtraTensor {
                name: "adjacency".into(),
                shape: vec![2, 2],
                data: vec![0.0, 3.0, 1.0, 0.0],
            }],
            BTreeMap::new(),
        )
        .unwrap();
        let s2 = Store::open(dir.path()).unwrap();
        assert_eq!(s2.graphs()[0].nodes.len(), 2);
        assert_eq!(
            s2.graph_tensor("chemical", "adjacency").unwrap(),
            vec![0.0, 3.0, 1.0, 0.0]
        );
    }
}
