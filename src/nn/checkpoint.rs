//! Saving and loading a model's state — parameters and buffers — in the safetensors format, by
//! name.
//!
//! Names and layouts follow PyTorch (`0.weight` of shape [out, in], `1.running_mean`, …), so a
//! `state_dict` saved with `safetensors.torch.save_file` loads directly, and a file saved here
//! loads into the same PyTorch model with `load_file`. Loading checks everything before it changes
//! anything: a missing, extra or mis-shaped tensor, a wrong element type, two entries under one
//! name, or a corrupt or truncated file is an error and leaves the model as it was. Saving writes a
//! temporary file and renames it over the old one, so a failed save loses nothing.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use safetensors::tensor::{Dtype, SafeTensors, View};

use super::module::{Entry, Module, Visitor, check_unique_names};
use crate::element::Float;
use crate::error::{Error, Result};
use crate::kernels::pool;
use crate::tensor::Tensor;

/// Named tensors (and string metadata) in order: a model's `state_dict`, or anything else saved in
/// one safetensors file (an optimizer's moments, a training checkpoint).
#[derive(Clone, Debug, Default)]
pub struct StateDict<T: Float> {
    tensors: Vec<(String, Arc<Tensor<T>>)>,
    /// Free-form string entries saved in the file's header (step counts, settings).
    pub metadata: BTreeMap<String, String>,
}

impl<T: Float> StateDict<T> {
    /// An empty one.
    pub fn new() -> Self {
        StateDict {
            tensors: Vec::new(),
            metadata: BTreeMap::new(),
        }
    }

    /// The parameters and buffers of `model`, by their full names (snapshots, not copies).
    /// Fails with [`Error::DuplicateName`] if two entries share a name.
    pub fn of<M: Module<T> + ?Sized>(model: &M) -> Result<Self> {
        check_unique_names("state_dict", model)?;
        let mut sd = StateDict::new();
        model.visit(&mut Visitor::new(&mut |name, entry| {
            let value = match entry {
                Entry::Param(p) => p.value(),
                Entry::Buffer(b) => b.value(),
            };
            sd.tensors.push((name.to_string(), value));
        }));
        Ok(sd)
    }

    /// Adds (or replaces) a tensor.
    pub fn insert(&mut self, name: impl Into<String>, value: Arc<Tensor<T>>) {
        let name = name.into();
        match self.tensors.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.tensors.push((name, value)),
        }
    }

    /// The tensor under `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Tensor<T>>> {
        self.tensors.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }

    /// The names in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.iter().map(|(n, _)| n.as_str())
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// Whether it holds no tensor.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// The entries whose names start with `prefix`, with the prefix removed (the model's part of a
    /// training checkpoint, say).
    pub fn strip_prefix(&self, prefix: &str) -> StateDict<T> {
        StateDict {
            tensors: self
                .tensors
                .iter()
                .filter_map(|(n, t)| Some((n.strip_prefix(prefix)?.to_string(), Arc::clone(t))))
                .collect(),
            metadata: BTreeMap::new(),
        }
    }

    /// Every entry of `other`, its names prefixed.
    pub fn extend_prefixed(&mut self, prefix: &str, other: &StateDict<T>) {
        for (n, t) in &other.tensors {
            self.insert(format!("{prefix}{n}"), Arc::clone(t));
        }
    }

    /// Loads the entries into `model`'s parameters and buffers by name, all or nothing: every
    /// name of the model must be present with its shape, and no other name may be (strict, as
    /// PyTorch's `load_state_dict` by default).
    pub fn load_into<M: Module<T> + ?Sized>(&self, model: &M) -> Result<()> {
        check_unique_names("load_state_dict", model)?;
        let mut missing = None;
        let mut mismatch = None;
        let mut wanted = HashSet::new();
        model.visit(&mut Visitor::new(&mut |name, entry| {
            wanted.insert(name.to_string());
            let shape = match &entry {
                Entry::Param(p) => p.shape(),
                Entry::Buffer(b) => b.shape(),
            };
            match self.get(name) {
                None if missing.is_none() => missing = Some(name.to_string()),
                Some(t) if t.shape() != &shape && mismatch.is_none() => {
                    mismatch = Some(Error::CheckpointShape {
                        name: name.to_string(),
                        expected: shape,
                        found: t.dims().to_vec(),
                    })
                }
                _ => {}
            }
        }));
        if let Some(name) = missing {
            return Err(Error::CheckpointMissing { name });
        }
        if let Some(e) = mismatch {
            return Err(e);
        }
        if let Some((extra, _)) = self.tensors.iter().find(|(n, _)| !wanted.contains(n)) {
            return Err(Error::CheckpointUnexpected {
                name: extra.clone(),
            });
        }
        // Everything checked: now, and only now, change the model.
        model.visit(&mut Visitor::new(&mut |name, entry| {
            if let Some(t) = self.get(name) {
                match entry {
                    Entry::Param(p) => p.set_shared(Arc::clone(t)),
                    Entry::Buffer(b) => b.set_shared(Arc::clone(t)),
                }
            }
        }));
        Ok(())
    }

    /// The safetensors bytes. Fails with [`Error::DuplicateName`] if two entries share a name.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut seen = HashSet::new();
        if let Some((dup, _)) = self.tensors.iter().find(|(n, _)| !seen.insert(n.as_str())) {
            return Err(Error::DuplicateName {
                op: "save_safetensors",
                name: dup.clone(),
            });
        }
        let mut views = Vec::with_capacity(self.tensors.len());
        for (name, t) in &self.tensors {
            let bytes = t.numel().saturating_mul(T::BYTES);
            let mut data = Vec::new();
            data.try_reserve_exact(bytes)
                .map_err(|_| Error::OutOfMemory {
                    op: "save_safetensors",
                    bytes: bytes as u128,
                })?;
            t.data().iter().for_each(|&x| x.extend_le_bytes(&mut data));
            views.push((
                name.clone(),
                Bytes {
                    dtype: dtype_of::<T>(),
                    shape: t.dims().to_vec(),
                    data,
                },
            ));
        }
        let metadata: HashMap<String, String> = self
            .metadata
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let metadata = (!metadata.is_empty()).then_some(metadata);
        safetensors::tensor::serialize(views, metadata).map_err(format_error)
    }

    /// Reads safetensors bytes; every tensor must be of element type `T`, or int64 with values
    /// that `T` holds exactly (PyTorch saves BatchNorm's `num_batches_tracked` as int64).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let (_, header) = SafeTensors::read_metadata(bytes).map_err(format_error)?;
        let file = SafeTensors::deserialize(bytes).map_err(format_error)?;
        let mut sd = StateDict::new();
        if let Some(meta) = header.metadata() {
            sd.metadata = meta.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        }
        let mut names: Vec<String> = file.names().into_iter().map(str::to_string).collect();
        names.sort();
        for name in names {
            let view = file.tensor(&name).map_err(format_error)?;
            if view.dtype() == Dtype::I64 && dtype_of::<T>() != Dtype::I64 {
                let tensor = int64_tensor(&name, view.shape(), view.data())?;
                sd.tensors.push((name, Arc::new(tensor)));
                continue;
            }
            if view.dtype() != dtype_of::<T>() {
                return Err(Error::CheckpointDtype {
                    name,
                    expected: T::DTYPE,
                    found: format!("{:?}", view.dtype()),
                });
            }
            let shape = crate::shape::Shape::new(view.shape())?;
            if view.data().len() != shape.numel().saturating_mul(T::BYTES) {
                return Err(Error::CheckpointFormat {
                    reason: format!(
                        "tensor `{name}` holds {} bytes, its shape {shape} needs {}",
                        view.data().len(),
                        shape.numel().saturating_mul(T::BYTES)
                    ),
                });
            }
            let data = pool::try_collect(
                "load_safetensors",
                shape.numel(),
                view.data().chunks_exact(T::BYTES).map(T::from_le_slice),
            )?;
            sd.tensors
                .push((name, Arc::new(Tensor::from_shape_vec(data, shape)?)));
        }
        Ok(sd)
    }

    /// Writes the safetensors file atomically (a temporary file, synced, renamed over `path`).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        crate::io::atomic_write("save_safetensors", path.as_ref(), &self.to_bytes()?)
    }

    /// Reads a safetensors file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let bytes = std::fs::read(path.as_ref()).map_err(|source| Error::Io {
            op: "load_safetensors",
            path: path.as_ref().display().to_string(),
            source,
        })?;
        Self::from_bytes(&bytes)
    }
}

/// A tensor's bytes, ready for the serializer.
struct Bytes {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl View for Bytes {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

/// An int64 tensor (PyTorch's `num_batches_tracked` counter) as `T`, if `T` holds every value
/// exactly; otherwise [`Error::CheckpointDtype`] naming the value.
fn int64_tensor<T: Float>(name: &str, dims: &[usize], bytes: &[u8]) -> Result<Tensor<T>> {
    let shape = crate::shape::Shape::new(dims)?;
    if bytes.len() != shape.numel().saturating_mul(8) {
        return Err(Error::CheckpointFormat {
            reason: format!(
                "tensor `{name}` holds {} bytes, its shape {shape} needs {}",
                bytes.len(),
                shape.numel().saturating_mul(8)
            ),
        });
    }
    let mut inexact = None;
    let data = pool::try_collect(
        "load_safetensors",
        shape.numel(),
        bytes.chunks_exact(8).map(|b| {
            let mut le = [0u8; 8];
            le.copy_from_slice(b);
            let v = i64::from_le_bytes(le);
            let t = T::from_f64(v as f64);
            // Every integer up to 2⁵³ in magnitude is an exact f64; within that, exact in `T`
            // iff it survives the round trip.
            if v.unsigned_abs() > 1 << 53 || t.to_f64() as i64 != v {
                inexact.get_or_insert(v);
            }
            t
        }),
    )?;
    if let Some(v) = inexact {
        return Err(Error::CheckpointDtype {
            name: name.to_string(),
            expected: T::DTYPE,
            found: format!(
                "I64 (holding {v}, which {} does not represent exactly)",
                T::DTYPE
            ),
        });
    }
    Tensor::from_shape_vec(data, shape)
}

fn dtype_of<T: Float>() -> Dtype {
    if T::BYTES == 4 {
        Dtype::F32
    } else {
        Dtype::F64
    }
}

fn format_error(e: impl std::fmt::Display) -> Error {
    Error::CheckpointFormat {
        reason: e.to_string(),
    }
}

/// The model's parameters and buffers as safetensors bytes.
pub fn to_safetensors_bytes<T: Float, M: Module<T> + ?Sized>(model: &M) -> Result<Vec<u8>> {
    StateDict::of(model)?.to_bytes()
}

/// Writes the model's parameters and buffers to a safetensors file, atomically: the bytes go to a
/// temporary file in the same directory, which is synced and then renamed over `path`. If
/// anything fails (a full disk, say), the old file is left exactly as it was; a reader never sees a
/// partial file.
pub fn save_safetensors<T: Float, M: Module<T> + ?Sized>(
    model: &M,
    path: impl AsRef<Path>,
) -> Result<()> {
    StateDict::of(model)?.save(path)
}

/// Loads parameters and buffers by name from safetensors bytes. All-or-nothing: on any error the
/// model is unchanged.
pub fn load_safetensors_bytes<T: Float, M: Module<T> + ?Sized>(
    model: &M,
    bytes: &[u8],
) -> Result<()> {
    StateDict::from_bytes(bytes)?.load_into(model)
}

/// Loads parameters and buffers by name from a safetensors file (see [`load_safetensors_bytes`]).
pub fn load_safetensors<T: Float, M: Module<T> + ?Sized>(
    model: &M,
    path: impl AsRef<Path>,
) -> Result<()> {
    StateDict::load(path)?.load_into(model)
}
