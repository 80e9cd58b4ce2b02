//! Saving and loading a model's parameters in the safetensors format, by name.
//!
//! Names and layouts follow PyTorch (`0.weight` of shape [out, in], …), so a `state_dict` saved with
//! `safetensors.torch.save_file` loads directly, and a file saved here loads into the same PyTorch
//! model with `load_file`. Loading checks everything before it changes anything: a missing, extra or
//! mis-shaped tensor, a wrong element type, or a corrupt or truncated file is an error and leaves the
//! model as it was.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, View};

use super::Module;
use crate::element::Float;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

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

/// Fails with [`Error::DuplicateName`] if two of `names` are equal.
fn check_unique<'a>(op: &'static str, names: impl IntoIterator<Item = &'a str>) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for name in names {
        if !seen.insert(name) {
            return Err(Error::DuplicateName {
                op,
                name: name.to_string(),
            });
        }
    }
    Ok(())
}

/// The model's parameters as safetensors bytes. Fails with [`Error::DuplicateName`] if two
/// parameters share a name (a file cannot hold both).
pub fn to_safetensors_bytes<T: Float, M: Module<T> + ?Sized>(model: &M) -> Result<Vec<u8>> {
    let params = model.named_params();
    check_unique("save_safetensors", params.iter().map(|(n, _)| n.as_str()))?;
    let mut tensors: Vec<(String, Bytes)> = Vec::with_capacity(params.len());
    for (name, p) in params {
        let bytes = p.value().numel().saturating_mul(T::BYTES);
        let mut data = Vec::new();
        data.try_reserve_exact(bytes)
            .map_err(|_| Error::OutOfMemory {
                op: "save_safetensors",
                bytes: bytes as u128,
            })?;
        p.value()
            .data()
            .iter()
            .for_each(|&x| x.extend_le_bytes(&mut data));
        let shape = p.value().dims().to_vec();
        tensors.push((
            name,
            Bytes {
                dtype: dtype_of::<T>(),
                shape,
                data,
            },
        ));
    }
    safetensors::tensor::serialize(tensors, None).map_err(format_error)
}

/// Writes the model's parameters to a safetensors file, atomically: the bytes go to a temporary
/// file in the same directory, which is synced and then renamed over `path`. If anything fails
/// (a full disk, say), the old file is left exactly as it was; a reader never sees a partial file.
pub fn save_safetensors<T: Float, M: Module<T> + ?Sized>(
    model: &M,
    path: impl AsRef<Path>,
) -> Result<()> {
    let bytes = to_safetensors_bytes(model)?;
    crate::io::atomic_write("save_safetensors", path.as_ref(), &bytes)
}

/// Loads parameters by name from safetensors bytes. All-or-nothing: on any error the model is
/// unchanged.
pub fn load_safetensors_bytes<T: Float, M: Module<T> + ?Sized>(
    model: &mut M,
    bytes: &[u8],
) -> Result<()> {
    let file = SafeTensors::deserialize(bytes).map_err(format_error)?;
    let params = model.named_params();
    check_unique("load_safetensors", params.iter().map(|(n, _)| n.as_str()))?;
    let mut loaded: HashMap<String, Tensor<T>> = HashMap::new();
    for (name, param) in params {
        let view = file
            .tensor(&name)
            .map_err(|_| Error::CheckpointMissing { name: name.clone() })?;
        if view.dtype() != dtype_of::<T>() {
            return Err(Error::CheckpointDtype {
                name,
                expected: T::DTYPE,
                found: format!("{:?}", view.dtype()),
            });
        }
        if view.shape() != param.value().dims() {
            return Err(Error::CheckpointShape {
                name,
                expected: param.value().shape().clone(),
                found: view.shape().to_vec(),
            });
        }
        let numel = param.value().numel();
        if view.data().len() != numel.saturating_mul(T::BYTES) {
            return Err(Error::CheckpointFormat {
                reason: format!(
                    "tensor `{name}` holds {} bytes, its shape needs {}",
                    view.data().len(),
                    numel.saturating_mul(T::BYTES)
                ),
            });
        }
        let data = crate::kernels::pool::try_collect(
            "load_safetensors",
            numel,
            view.data().chunks_exact(T::BYTES).map(T::from_le_slice),
        )?;
        let tensor = Tensor::from_shape_vec(data, param.value().shape().clone())?;
        loaded.insert(name, tensor);
    }
    if let Some(extra) = file.names().into_iter().find(|n| !loaded.contains_key(*n)) {
        return Err(Error::CheckpointUnexpected {
            name: extra.to_string(),
        });
    }
    // Everything checked: now, and only now, change the model.
    for (name, param) in model.named_params_mut() {
        if let Some(tensor) = loaded.remove(&name) {
            *param.value_mut() = tensor;
        }
    }
    Ok(())
}

/// Loads parameters by name from a safetensors file (see [`load_safetensors_bytes`]).
pub fn load_safetensors<T: Float, M: Module<T> + ?Sized>(
    model: &mut M,
    path: impl AsRef<Path>,
) -> Result<()> {
    let bytes = std::fs::read(path.as_ref()).map_err(|source| Error::Io {
        op: "load_safetensors",
        path: path.as_ref().display().to_string(),
        source,
    })?;
    load_safetensors_bytes(model, &bytes)
}
