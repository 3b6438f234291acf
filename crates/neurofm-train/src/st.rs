//! safetensors files of named f32 tensors with string metadata, written atomically.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use safetensors::tensor::{Dtype, TensorView};

use crate::error::{Result, TrainError};
use crate::fsutil;

/// One f32 tensor read from a file: shape + row-major data.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl HostTensor {
    /// Copies a candle tensor (any device, any float dtype) to the host as f32.
    pub fn from_tensor(t: &Tensor) -> Result<Self> {
        let shape = t.dims().to_vec();
        let data = t
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_device(&Device::Cpu)?
            .to_vec1::<f32>()?;
        Ok(HostTensor { shape, data })
    }

    /// A candle tensor on `device`.
    pub fn to_tensor(&self, device: &Device) -> Result<Tensor> {
        Ok(Tensor::from_slice(
            &self.data,
            self.shape.as_slice(),
            device,
        )?)
    }
}

/// Serializes named f32 tensors and metadata to safetensors bytes (tensor names sorted).
pub fn serialize(
    path: &Path,
    tensors: &BTreeMap<String, HostTensor>,
    metadata: &BTreeMap<String, String>,
) -> Result<Vec<u8>> {
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = tensors
        .iter()
        .map(|(k, t)| {
            let b: Vec<u8> = t.data.iter().flat_map(|x| x.to_le_bytes()).collect();
            (k.clone(), b, t.shape.clone())
        })
        .collect();
    let mut views = Vec::with_capacity(bytes.len());
    for (k, b, shape) in &bytes {
        let v =
            TensorView::new(Dtype::F32, shape.clone(), b).map_err(|e| TrainError::Safetensors {
                path: path.to_path_buf(),
                reason: format!("tensor `{k}`: {e}"),
            })?;
        views.push((k.clone(), v));
    }
    let meta: HashMap<String, String> = metadata.clone().into_iter().collect();
    let meta = if meta.is_empty() { None } else { Some(meta) };
    safetensors::serialize(views, meta).map_err(|e| TrainError::Safetensors {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Writes named f32 tensors and metadata to `path` atomically.
pub fn save(
    path: &Path,
    tensors: &BTreeMap<String, HostTensor>,
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    let bytes = serialize(path, tensors, metadata)?;
    fsutil::write_atomic(path, &bytes)
}

/// A safetensors file read into memory: tensors (as f32) and metadata.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    pub tensors: BTreeMap<String, HostTensor>,
    pub metadata: BTreeMap<String, String>,
}

/// Reads a safetensors file; every tensor must be F32 (F16/BF16/F64 are converted).
pub fn load(path: &Path) -> Result<Loaded> {
    let bytes = fsutil::read(path)?;
    parse(path, &bytes)
}

/// Parses safetensors bytes; `path` is only used in error messages.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<Loaded> {
    let bad = |reason: String| TrainError::Safetensors {
        path: path.to_path_buf(),
        reason,
    };
    let (_, meta) = safetensors::SafeTensors::read_metadata(bytes)
        .map_err(|e| bad(format!("not a safetensors file: {e}")))?;
    let st = safetensors::SafeTensors::deserialize(bytes)
        .map_err(|e| bad(format!("not a safetensors file: {e}")))?;
    let mut tensors = BTreeMap::new();
    for (name, view) in st.tensors() {
        let shape = view.shape().to_vec();
        let raw = view.data();
        let data: Vec<f32> = match view.dtype() {
            Dtype::F32 => raw
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::F64 => raw
                .chunks_exact(8)
                .map(|c| {
                    let mut a = [0u8; 8];
                    a.copy_from_slice(c);
                    f64::from_le_bytes(a) as f32
                })
                .collect(),
            other => {
                return Err(bad(format!(
                    "tensor `{name}` has dtype {other:?}; expected F32 or F64"
                )))
            }
        };
        tensors.insert(name, HostTensor { shape, data });
    }
    let metadata = meta
        .metadata()
        .clone()
        .map(|m| m.into_iter().collect())
        .unwrap_or_default();
    Ok(Loaded { tensors, metadata })
}
