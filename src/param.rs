//! Parameters and buffers: the tensors a model keeps from one step to the next.
//!
//! A [`Param`] is what an optimizer updates (weights, biases); a [`Buffer`] is state that is not
//! trained but saved and loaded with the model (BatchNorm's running mean and variance, counters).
//! Both are **handles**: a module holds one, [`Module::named_params`](crate::nn::Module) hands out
//! more handles to the same tensor (for an optimizer, a checkpoint, a data-parallel wrapper), and
//! an update through any of them is seen by all — the way a PyTorch `nn.Parameter` is shared
//! between its module and its optimizer. Reading takes a snapshot (an `Arc` of the current value,
//! no copy); writing replaces or updates the value under a lock, copying it first only if a live
//! tape still holds the old one.
//!
//! `Clone` makes an independent copy (a new parameter with its own identity and its own data), so
//! `#[derive(Clone)]` on a model deep-copies it; [`Param::share`] makes another handle to the same
//! parameter.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::element::Float;
use crate::error::Result;
use crate::shape::Shape;
use crate::tensor::Tensor;

static NEXT_PARAM_ID: AtomicU64 = AtomicU64::new(0);

/// Identity of a [`Param`] (or [`Buffer`]), unique within the process.
#[derive(Copy, Clone, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct ParamId(u64);

impl ParamId {
    fn fresh() -> ParamId {
        ParamId(NEXT_PARAM_ID.fetch_add(1, Ordering::Relaxed))
    }
}

/// The shared cell behind a handle: identity, name and the current value.
#[derive(Debug)]
struct Cell<T: Float> {
    id: ParamId,
    name: String,
    value: RwLock<Arc<Tensor<T>>>,
}

impl<T: Float> Cell<T> {
    fn new(name: String, value: Tensor<T>) -> Arc<Self> {
        Arc::new(Cell {
            id: ParamId::fresh(),
            name,
            value: RwLock::new(Arc::new(value)),
        })
    }

    /// The lock, even if a thread panicked while holding it (the value is a whole tensor either
    /// way: every write replaces it or finishes an element-wise update).
    fn read(&self) -> RwLockReadGuard<'_, Arc<Tensor<T>>> {
        self.value.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Arc<Tensor<T>>> {
        self.value.write().unwrap_or_else(|e| e.into_inner())
    }

    fn deep_copy(&self) -> Result<Arc<Self>> {
        let value = self.read().try_clone()?;
        Ok(Cell::new(self.name.clone(), value))
    }
}

macro_rules! handle {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name<T: Float> {
            cell: Arc<Cell<T>>,
        }

        impl<T: Float> $name<T> {
            /// A new one with a fresh identity. `name` is its own name (`weight`); a module's
            /// visitor prefixes it with the path (`0.weight`).
            pub fn new(name: impl Into<String>, value: Tensor<T>) -> Self {
                $name {
                    cell: Cell::new(name.into(), value),
                }
            }

            /// Its identity: the same for every handle to it.
            pub fn id(&self) -> ParamId {
                self.cell.id
            }

            /// Its own name (PyTorch style, e.g. `weight`).
            pub fn name(&self) -> &str {
                &self.cell.name
            }

            /// Its current value: a snapshot, shared rather than copied. A later update does not
            /// change a snapshot already taken.
            pub fn value(&self) -> Arc<Tensor<T>> {
                Arc::clone(&self.cell.read())
            }

            /// Its shape.
            pub fn shape(&self) -> Shape {
                self.cell.read().shape().clone()
            }

            /// Replaces the value (of any shape).
            pub fn set(&self, value: Tensor<T>) {
                *self.cell.write() = Arc::new(value);
            }

            /// Replaces the value with a shared one (copy-on-write: a later `update` copies it
            /// first if it is still shared).
            pub(crate) fn set_shared(&self, value: Arc<Tensor<T>>) {
                *self.cell.write() = value;
            }

            /// Updates the value in place. If a snapshot of the old value is still held (by a
            /// live tape, say), the data is copied first, so the snapshot keeps what it saw.
            pub fn update<R>(&self, f: impl FnOnce(&mut Tensor<T>) -> R) -> R {
                let mut guard = self.cell.write();
                f(Arc::make_mut(&mut guard))
            }

            /// Another handle to the same one (same identity, same data).
            pub fn share(&self) -> Self {
                $name {
                    cell: Arc::clone(&self.cell),
                }
            }

            /// An independent copy with a fresh identity, or [`Error::OutOfMemory`](crate::Error)
            /// (what `Clone` does, without aborting when memory runs out).
            pub fn try_clone(&self) -> Result<Self> {
                Ok($name {
                    cell: self.cell.deep_copy()?,
                })
            }

            /// Whether two handles are to the same one.
            pub fn same_as(&self, other: &Self) -> bool {
                Arc::ptr_eq(&self.cell, &other.cell)
            }
        }

        impl<T: Float> Clone for $name<T> {
            /// An independent copy: a new identity and its own data (a deep copy), so that a
            /// cloned model trains separately. Use `share` for another handle to the same one.
            /// Like `Tensor`'s `Clone`, aborts if memory runs out; see `try_clone`.
            fn clone(&self) -> Self {
                let value = (**self.cell.read()).clone();
                $name {
                    cell: Cell::new(self.cell.name.clone(), value),
                }
            }
        }
    };
}

handle!(
    /// A named tensor that is trained: recorded on a tape with
    /// [`Tape::param`](crate::Tape::param) as a leaf that requires a gradient, looked up in the
    /// [`Gradients`](crate::Gradients) by the parameter itself, and updated by an optimizer.
    ///
    /// ```
    /// use tapegrad::{Param, Tape, Tensor};
    /// let w = Param::new("w", Tensor::from_vec(vec![3.0f64], &[1])?);
    /// let tape = Tape::new();
    /// let x = tape.param(&w);
    /// let grads = x.mul(x)?.sum()?.backward()?;          // d(w²)/dw = 2w
    /// let g = grads.param(&w).expect("w is on the tape").data()[0];
    /// w.update(|t| t.data_mut()[0] -= 0.25 * g);          // 3 − 0.25·6
    /// assert_eq!(w.value().data(), &[1.5]);
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    Param
);

handle!(
    /// A named tensor that is part of a model's state but not trained: saved and loaded with the
    /// parameters, updated by the model itself (BatchNorm's running statistics).
    ///
    /// PyTorch equivalent: a tensor registered with `register_buffer`.
    Buffer
);

impl<T: Float> Param<T> {
    pub(crate) fn shared_value(&self) -> Arc<Tensor<T>> {
        self.value()
    }
}

impl<T: Float> Buffer<T> {
    /// Records the buffer's current value on `tape` as a constant (no gradient).
    pub fn on<'t>(&self, tape: &'t crate::Tape<T>) -> crate::Var<'t, T> {
        tape.constant_shared(self.value())
    }
}
