//! The common reader interface and extension dispatch.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use neurofm_core::{Annotation, Info, Recording, Signal};
use sha2::{Digest, Sha256};

use crate::error::IoError;

/// An opened recording whose samples are read on demand, segment by segment, so that ingest
/// runs in bounded memory.
pub trait RawReader: Send {
    /// Header information; `info().provenance` is filled in.
    fn info(&self) -> &Info;
    /// Annotations (events, markers), onsets relative to the first sample.
    fn annotations(&self) -> &[Annotation];
    /// Number of time points: samples (channel signals) or volumes (fMRI).
    fn n_times(&self) -> usize;
    /// For volume signals: `(dims [nx, ny, nz], affine)`. `None` for channel signals.
    fn volume_geometry(&self) -> Option<([usize; 3], [[f64; 4]; 4])> {
        None
    }
    /// Reads time points `[start, stop)` in SI units into `out`.
    ///
    /// Channel signals: `out` is `[n_channels, stop - start]`, row-major.
    /// Volume signals: `out` is `[stop - start, nx, ny, nz]`, row-major.
    fn read_segment(&mut self, start: usize, stop: usize, out: &mut [f32]) -> Result<(), IoError>;

    /// Number of channels, from the header, without the deferred work (the provenance hash)
    /// that [`RawReader::info`] may do on first use.
    fn n_channels(&self) -> usize {
        self.info().n_channels()
    }

    /// Reports a failure of work a reader deferred (the provenance sha256 of EDF/BDF files is
    /// computed on first use). [`RawReader::read_all`] calls it after reading the samples.
    fn finish(&mut self) -> Result<(), IoError> {
        Ok(())
    }

    /// Reads the whole recording into memory.
    fn read_all(&mut self) -> Result<Recording, IoError> {
        read_all_by_segments(self)
    }
}

/// [`RawReader::read_all`]'s default: one [`RawReader::read_segment`] over the whole recording.
pub(crate) fn read_all_by_segments<R: RawReader + ?Sized>(r: &mut R) -> Result<Recording, IoError> {
    let n = r.n_times();
    let signal = match r.volume_geometry() {
        Some((dims, affine)) => {
            let mut data = vec![0f32; n * dims[0] * dims[1] * dims[2]];
            r.read_segment(0, n, &mut data)?;
            Signal::Volumes {
                n_volumes: n,
                dims,
                affine,
                data,
            }
        }
        None => {
            let nc = r.n_channels();
            let mut data = vec![0f32; nc * n];
            r.read_segment(0, n, &mut data)?;
            Signal::channels(nc, n, data).map_err(|source| IoError::Core {
                path: r.info().provenance.source_path.clone().into(),
                source,
            })?
        }
    };
    r.finish()?;
    let path = std::path::PathBuf::from(&r.info().provenance.source_path);
    Recording::new(r.info().clone(), signal, r.annotations().to_vec())
        .map_err(|source| IoError::Core { path, source })
}

/// One file format known to the dispatcher.
pub struct Format {
    /// Short name, recorded as `provenance.reader`.
    pub name: &'static str,
    /// Lower-case extensions without the dot; multi-part ones like "nii.gz" allowed.
    pub extensions: &'static [&'static str],
    /// Opens a file of this format.
    pub open: fn(&Path) -> Result<Box<dyn RawReader>, IoError>,
}

/// Every format, in the order they are tried.
pub static FORMATS: &[Format] = &[
    Format {
        name: "edf",
        extensions: &["edf"],
        open: crate::edf::open_edf,
    },
    Format {
        name: "bdf",
        extensions: &["bdf"],
        open: crate::edf::open_bdf,
    },
    Format {
        name: "gdf",
        extensions: &["gdf"],
        open: crate::gdf::open_gdf,
    },
    Format {
        name: crate::brainvision::NAME,
        extensions: &["vhdr", "ahdr"],
        open: crate::brainvision::open,
    },
    Format {
        name: crate::eeglab::NAME,
        extensions: &["set"],
        open: crate::eeglab::open,
    },
    Format {
        name: crate::fif::NAME,
        extensions: &["fif", "fif.gz"],
        open: crate::fif::open,
    },
    Format {
        name: crate::nifti::READER_NAME,
        extensions: &["nii", "nii.gz"],
        open: crate::nifti::open_boxed,
    },
];

fn matches_extension(path: &Path, ext: &str) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    name.ends_with(&format!(".{ext}"))
}

/// Opens `path` with the reader its extension names. When no reader accepts it, the error lists
/// the readers tried and why each refused.
pub fn open_raw(path: &Path) -> Result<Box<dyn RawReader>, IoError> {
    let mut tried = Vec::new();
    for f in FORMATS {
        if f.extensions.iter().any(|e| matches_extension(path, e)) {
            match (f.open)(path) {
                Ok(r) => return Ok(r),
                Err(e) => tried.push((f.name.to_string(), e.to_string())),
            }
        }
    }
    if tried.is_empty() && !path.exists() {
        return Err(IoError::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        ));
    }
    Err(IoError::NoReader {
        path: path.to_path_buf(),
        tried,
    })
}

/// Reads a whole recording into memory.
pub fn read_recording(path: &Path) -> Result<Recording, IoError> {
    open_raw(path)?.read_all()
}

/// The provenance sha256 of a file, computed when first asked for (streaming the file), unless
/// a reader that holds the whole file in memory supplies it first ([`LazyHash::set_from_bytes`]).
pub(crate) struct LazyHash {
    path: PathBuf,
    result: OnceLock<Result<String, String>>,
}

impl LazyHash {
    pub(crate) fn new(path: &Path) -> LazyHash {
        LazyHash {
            path: path.to_path_buf(),
            result: OnceLock::new(),
        }
    }

    /// Whether the hash is known already.
    pub(crate) fn is_known(&self) -> bool {
        self.result.get().is_some()
    }

    /// Records the hash of `bytes`, the whole file as read now (no effect if already known).
    pub(crate) fn set_from_bytes(&self, bytes: &[u8]) {
        self.result
            .get_or_init(|| Ok(hex::encode(Sha256::digest(bytes))));
    }

    /// The hash; a failure is kept as text and repeated on every call.
    pub(crate) fn get(&self) -> Result<&str, IoError> {
        let r = self
            .result
            .get_or_init(|| sha256_file(&self.path).map_err(|e| e.to_string()));
        r.as_deref().map_err(|reason| IoError::Hash {
            path: self.path.clone(),
            reason: reason.clone(),
        })
    }
}

/// Lower-case hex sha256 of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<String, IoError> {
    let mut f = File::open(path).map_err(|e| IoError::io(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| IoError::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_extension_lists_nothing_tried() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.unknownext");
        std::fs::write(&p, b"abc").unwrap();
        let err = open_raw(&p).err().unwrap();
        assert!(matches!(err, IoError::NoReader { .. }));
        assert!(err.to_string().contains("x.unknownext"));
    }

    #[test]
    fn sha256_of_known_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a");
        std::fs::write(&p, b"abc").unwrap();
        assert_eq!(
            sha256_file(&p).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
