//! BIDS datasets (EEG, MEG, iEEG): [`scan`] finds `sub-*/[ses-*/]{eeg,meg,ieeg}/*` data files of
//! any registered format and [`BidsRecording::open`] opens one with its sidecars applied, as
//! mne-bids' `read_raw_bids` does:
//!
//! - subject / session / task / run come from the BIDS entities of the file name;
//! - `*_events.tsv` (onset, duration, `trial_type`, else `value`) *replaces* the annotations read
//!   from the data file; rows whose onset is `n/a` are dropped, an `n/a` duration is 0;
//! - `*_channels.tsv` sets channel types, units and bad channels (`status` = `bad`); when its
//!   names differ from the file's but the counts agree, the file's channels are renamed in order;
//! - the subject's row of `participants.tsv` goes to `Info.metadata` as `participant.<column>`.
//!
//! Only sidecars beside the data file are read (no BIDS inheritance from parent folders). CTF
//! `.ds` directories are listed by [`scan`] but refused by [`BidsRecording::open`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use neurofm_core::{Annotation, ChannelKind, Info, Modality, Recording, Unit};

use crate::error::IoError;
use crate::reader::{open_raw, RawReader, FORMATS};

/// Datatype folders scanned.
pub const DATATYPES: [&str; 3] = ["eeg", "meg", "ieeg"];

/// One data file of a BIDS dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct BidsRecording {
    /// The data file (or `.ds` directory).
    pub path: PathBuf,
    /// `eeg`, `meg` or `ieeg`.
    pub datatype: String,
    /// All `key-value` entities of the file name, in order (`sub`, `ses`, `task`, `run`, ...).
    pub entities: Vec<(String, String)>,
    pub subject: String,
    pub session: Option<String>,
    pub task: Option<String>,
    pub run: Option<String>,
    /// `*_events.tsv` beside the data file, when present.
    pub events_tsv: Option<PathBuf>,
    /// `*_channels.tsv` beside the data file, when present.
    pub channels_tsv: Option<PathBuf>,
    /// The subject's `participants.tsv` columns (except `participant_id`).
    pub participant: BTreeMap<String, String>,
}

/// A parsed TSV file: header and rows (each as long as the header).
#[derive(Debug, Clone, PartialEq)]
pub struct Tsv {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Tsv {
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }
}

/// Reads a tab-separated file with a header row.
pub fn read_tsv(path: &Path) -> Result<Tsv, IoError> {
    let text = std::fs::read_to_string(path).map_err(|e| IoError::io(path, e))?;
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header = lines
        .next()
        .ok_or_else(|| IoError::header(path, "header row", "the file is empty"))?;
    let columns: Vec<String> = header
        .trim_start_matches('\u{feff}')
        .split('\t')
        .map(|s| s.trim().to_string())
        .collect();
    let mut rows = Vec::new();
    for (i, line) in lines.enumerate() {
        let row: Vec<String> = line.split('\t').map(|s| s.trim().to_string()).collect();
        if row.len() != columns.len() {
            return Err(IoError::header(
                path,
                format!("row {}", i + 2),
                format!("{} values for {} columns", row.len(), columns.len()),
            ));
        }
        rows.push(row);
    }
    Ok(Tsv { columns, rows })
}

/// Splits a BIDS file name into its entities and suffix: `sub-01_task-rest_eeg.vhdr` →
/// `([("sub","01"),("task","rest")], "eeg")`.
pub fn parse_entities(file_name: &str) -> (Vec<(String, String)>, String) {
    let stem = file_name.split('.').next().unwrap_or(file_name);
    let mut entities = Vec::new();
    let mut suffix = String::new();
    for part in stem.split('_') {
        match part.split_once('-') {
            Some((k, v)) => entities.push((k.to_string(), v.to_string())),
            None => suffix = part.to_string(),
        }
    }
    (entities, suffix)
}

fn is_data_file(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    FORMATS
        .iter()
        .flat_map(|f| f.extensions.iter())
        .any(|e| lower.ends_with(&format!(".{e}")))
}

fn sorted_dir(path: &Path) -> Result<Vec<PathBuf>, IoError> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| IoError::io(path, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    v.sort();
    Ok(v)
}

fn name_of(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default()
}

/// Finds every EEG / MEG / iEEG data file of the BIDS dataset at `root`.
pub fn scan(root: &Path) -> Result<Vec<BidsRecording>, IoError> {
    if !root.is_dir() {
        return Err(IoError::io(
            root,
            std::io::Error::new(std::io::ErrorKind::NotFound, "not a directory"),
        ));
    }
    let participants = {
        let p = root.join("participants.tsv");
        if p.is_file() {
            Some(read_tsv(&p)?)
        } else {
            None
        }
    };
    let mut out = Vec::new();
    for sub in sorted_dir(root)? {
        let sub_name = name_of(&sub);
        if !sub.is_dir() || !sub_name.starts_with("sub-") {
            continue;
        }
        // sub-X/{eeg,meg,ieeg} and sub-X/ses-Y/{eeg,meg,ieeg}
        let mut parents = vec![sub.clone()];
        for ses in sorted_dir(&sub)? {
            if ses.is_dir() && name_of(&ses).starts_with("ses-") {
                parents.push(ses);
            }
        }
        for parent in parents {
            for datatype in DATATYPES {
                let dir = parent.join(datatype);
                if !dir.is_dir() {
                    continue;
                }
                for file in sorted_dir(&dir)? {
                    let name = name_of(&file);
                    let is_ds = file.is_dir() && name.to_ascii_lowercase().ends_with(".ds");
                    let is_file = file.is_file() && is_data_file(&name);
                    if !(is_ds || is_file) {
                        continue;
                    }
                    let (entities, suffix) = parse_entities(&name);
                    if suffix != datatype {
                        continue;
                    }
                    let get = |k: &str| {
                        entities
                            .iter()
                            .find(|(a, _)| a == k)
                            .map(|(_, v)| v.clone())
                    };
                    let Some(subject) = get("sub") else {
                        continue;
                    };
                    let prefix = name
                        .rsplit_once(&format!("_{suffix}"))
                        .map(|(a, _)| a.to_string())
                        .unwrap_or_default();
                    let side = |s: &str| {
                        let p = dir.join(format!("{prefix}_{s}.tsv"));
                        p.is_file().then_some(p)
                    };
                    let mut participant = BTreeMap::new();
                    if let Some(t) = &participants {
                        if let Some(id) = t.column("participant_id") {
                            if let Some(row) =
                                t.rows.iter().find(|r| r[id] == format!("sub-{subject}"))
                            {
                                for (c, v) in t.columns.iter().zip(row) {
                                    if c != "participant_id" {
                                        participant.insert(c.clone(), v.clone());
                                    }
                                }
                            }
                        }
                    }
                    out.push(BidsRecording {
                        path: file.clone(),
                        datatype: datatype.to_string(),
                        subject,
                        session: get("ses"),
                        task: get("task"),
                        run: get("run"),
                        events_tsv: side("events"),
                        channels_tsv: side("channels"),
                        entities,
                        participant,
                    });
                }
            }
        }
    }
    Ok(out)
}

/// BIDS channel type → kind (and the SI unit when the type implies one).
fn bids_kind(t: &str) -> Option<ChannelKind> {
    Some(match t.to_ascii_uppercase().as_str() {
        "EEG" => ChannelKind::Eeg,
        "EOG" | "VEOG" | "HEOG" => ChannelKind::Eog,
        "ECG" => ChannelKind::Ecg,
        "EMG" => ChannelKind::Emg,
        "SEEG" => ChannelKind::Seeg,
        "ECOG" => ChannelKind::Ecog,
        "TRIG" => ChannelKind::Stim,
        "RESP" => ChannelKind::Resp,
        "MEGMAG" => ChannelKind::MegMag,
        "MEGGRADAXIAL" | "MEGGRADPLANAR" => ChannelKind::MegGrad,
        "MEGREFMAG" | "MEGREFGRADAXIAL" | "MEGREFGRADPLANAR" | "MEGOTHER" => ChannelKind::MegRef,
        "MISC" | "OTHER" | "SYSCLOCK" | "AUDIO" | "PD" | "EYEGAZE" | "PUPIL" | "GSR" | "TEMP"
        | "PPG" => ChannelKind::Misc,
        _ => return None,
    })
}

/// The SI unit a `units` entry means once the reader has scaled the data.
fn bids_unit(u: &str) -> Option<Unit> {
    Some(match u {
        "V" | "mV" | "uV" | "µV" | "μV" | "nV" => Unit::Volt,
        "T" | "fT" | "pT" => Unit::Tesla,
        "T/m" | "fT/cm" | "fT/m" => Unit::TeslaPerMeter,
        _ => return None,
    })
}

impl BidsRecording {
    /// Opens the data file with its sidecars applied.
    pub fn open(&self) -> Result<Box<dyn RawReader>, IoError> {
        if self.path.is_dir() {
            return Err(IoError::Unsupported {
                path: self.path.clone(),
                what: "CTF .ds directories are not read; convert the recording to FIF".into(),
            });
        }
        let inner = open_raw(&self.path)?;
        let mut info = inner.info().clone();
        let mut annotations = inner.annotations().to_vec();
        info.subject = Some(self.subject.clone());
        info.session = self.session.clone();
        info.task = self.task.clone();
        info.run = self.run.clone();
        info.modality = match self.datatype.as_str() {
            "meg" => Modality::Meg,
            "ieeg" => Modality::Ieeg,
            _ => Modality::Eeg,
        };
        for (k, v) in &self.participant {
            info.metadata.insert(format!("participant.{k}"), v.clone());
        }
        if let Some(ch) = &self.channels_tsv {
            apply_channels(ch, &mut info)?;
        }
        if let Some(ev) = &self.events_tsv {
            annotations = read_events(ev)?;
        }
        Ok(Box::new(BidsReader {
            inner,
            info,
            annotations,
        }))
    }

    /// Reads the whole recording with its sidecars applied.
    pub fn read(&self) -> Result<Recording, IoError> {
        self.open()?.read_all()
    }
}

fn apply_channels(path: &Path, info: &mut Info) -> Result<(), IoError> {
    let t = read_tsv(path)?;
    let name = t
        .column("name")
        .ok_or_else(|| IoError::header(path, "name", "column missing"))?;
    let names: Vec<&str> = t.rows.iter().map(|r| r[name].as_str()).collect();
    let all_known = names
        .iter()
        .all(|n| info.channels.iter().any(|c| c.name == *n));
    let index: Vec<usize> = if all_known {
        names
            .iter()
            .map(|n| info.channels.iter().position(|c| c.name == *n).unwrap_or(0))
            .collect()
    } else if names.len() == info.channels.len() {
        // mne-bids renames the file's channels to the sidecar's names, in order.
        for (c, n) in info.channels.iter_mut().zip(&names) {
            c.name = n.to_string();
        }
        (0..names.len()).collect()
    } else {
        let missing: Vec<&str> = names
            .iter()
            .filter(|n| !info.channels.iter().any(|c| c.name == **n))
            .copied()
            .collect();
        return Err(IoError::header(
            path,
            "name",
            format!(
                "{} channels listed, the data file has {}, and {missing:?} are not in it",
                names.len(),
                info.channels.len()
            ),
        ));
    };
    let ty = t.column("type");
    let units = t.column("units");
    let status = t.column("status");
    for (row, &i) in t.rows.iter().zip(&index) {
        let ch = &mut info.channels[i];
        if let Some(k) = ty.and_then(|c| bids_kind(&row[c])) {
            ch.kind = k;
        }
        if let Some(u) = units.and_then(|c| bids_unit(&row[c])) {
            ch.unit = u;
        }
        if let Some(s) = status {
            match row[s].to_ascii_lowercase().as_str() {
                "bad" => ch.bad = true,
                "good" => ch.bad = false,
                _ => {}
            }
        }
    }
    Ok(())
}

/// Reads `*_events.tsv` as mne-bids does.
pub fn read_events(path: &Path) -> Result<Vec<Annotation>, IoError> {
    let t = read_tsv(path)?;
    let onset = t
        .column("onset")
        .ok_or_else(|| IoError::header(path, "onset", "column missing"))?;
    let duration = t.column("duration");
    let trial_type = t.column("trial_type");
    let value = t.column("value");
    let mut out = Vec::new();
    for (i, row) in t.rows.iter().enumerate() {
        let o = &row[onset];
        if o == "n/a" {
            continue;
        }
        let onset_s: f64 = o.parse().map_err(|_| {
            IoError::header(
                path,
                format!("onset (row {})", i + 2),
                format!("not a number: `{o}`"),
            )
        })?;
        let duration_s = match duration.map(|c| row[c].as_str()) {
            None | Some("n/a") | Some("") => 0.0,
            Some(d) => d.parse().map_err(|_| {
                IoError::header(
                    path,
                    format!("duration (row {})", i + 2),
                    format!("not a number: `{d}`"),
                )
            })?,
        };
        let description = trial_type
            .map(|c| row[c].as_str())
            .filter(|s| *s != "n/a" && !s.is_empty())
            .or_else(|| {
                value
                    .map(|c| row[c].as_str())
                    .filter(|s| *s != "n/a" && !s.is_empty())
            })
            .unwrap_or("n/a")
            .to_string();
        out.push(Annotation {
            onset_s,
            duration_s,
            description,
        });
    }
    Ok(out)
}

/// A reader whose info and annotations come from the BIDS sidecars.
struct BidsReader {
    inner: Box<dyn RawReader>,
    info: Info,
    annotations: Vec<Annotation>,
}

impl RawReader for BidsReader {
    fn info(&self) -> &Info {
        &self.info
    }
    fn annotations(&self) -> &[Annotation] {
        &self.annotations
    }
    fn n_times(&self) -> usize {
        self.inner.n_times()
    }
    fn volume_geometry(&self) -> Option<([usize; 3], [[f64; 4]; 4])> {
        self.inner.volume_geometry()
    }
    fn read_segment(&mut self, start: usize, stop: usize, out: &mut [f32]) -> Result<(), IoError> {
        self.inner.read_segment(start, stop, out)
    }
}
