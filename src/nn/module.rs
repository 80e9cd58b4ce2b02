//! What every model is: [`Module`] (its parameters and buffers, visited once), [`Forward`] (a
//! step from one `Var` to the next), [`Context`] (train or eval, and the random generator), and
//! [`Layer`] (a `Forward` that `Sequential` can hold, clone and hand back by type).

use std::any::Any;
use std::collections::HashSet;

use rand::Rng;

use crate::element::Float;
use crate::error::{Error, Result};
use crate::param::{Buffer, Param};
use crate::tape::Var;

/// One entry a module shows its visitor.
#[derive(Debug)]
pub enum Entry<'a, T: Float> {
    /// A trained parameter.
    Param(&'a Param<T>),
    /// A buffer: saved and loaded, not trained.
    Buffer(&'a Buffer<T>),
}

/// Walks a module tree, naming each parameter and buffer by its path (`0.weight`,
/// `blocks.1.attn.qkv.bias`), as PyTorch's `state_dict` does.
pub struct Visitor<'a, T: Float> {
    prefix: String,
    seen: &'a mut dyn FnMut(&str, Entry<'_, T>),
}

impl<'a, T: Float> Visitor<'a, T> {
    /// A visitor calling `seen` with each entry's full name.
    pub fn new(seen: &'a mut dyn FnMut(&str, Entry<'_, T>)) -> Self {
        Visitor {
            prefix: String::new(),
            seen,
        }
    }

    /// A parameter of the module being visited, under its local name.
    pub fn param(&mut self, name: &str, param: &Param<T>) {
        let full = format!("{}{name}", self.prefix);
        (self.seen)(&full, Entry::Param(param));
    }

    /// An optional parameter (a bias that may be absent).
    pub fn param_opt(&mut self, name: &str, param: Option<&Param<T>>) {
        if let Some(p) = param {
            self.param(name, p);
        }
    }

    /// A buffer of the module being visited.
    pub fn buffer(&mut self, name: &str, buffer: &Buffer<T>) {
        let full = format!("{}{name}", self.prefix);
        (self.seen)(&full, Entry::Buffer(buffer));
    }

    /// A sub-module, whose entries are named `{name}.{theirs}`. Deeply nested modules grow the
    /// stack as needed instead of overflowing it.
    pub fn module<M: Module<T> + ?Sized>(&mut self, name: &str, module: &M) {
        let saved = self.prefix.len();
        self.prefix.push_str(name);
        self.prefix.push('.');
        nested(|| module.visit(self));
        self.prefix.truncate(saved);
    }
}

/// Runs `f` with room for one more level of nesting: a module inside a module inside … many
/// thousand deep asks for more stack when little is left instead of overflowing it.
pub(crate) fn nested<R>(f: impl FnOnce() -> R) -> R {
    stacker::maybe_grow(64 * 1024, 1024 * 1024, f)
}

/// A model or a part of one: its parameters and buffers, each visited once under its name.
///
/// Implementing it means listing the fields once:
///
/// ```
/// use tapegrad::nn::{Context, Forward, Linear, Module, Visitor};
/// use tapegrad::{Float, Result, Var};
///
/// #[derive(Clone, Debug)]
/// struct TwoLayers<T: Float> {
///     first: Linear<T>,
///     second: Linear<T>,
/// }
///
/// impl<T: Float> Module<T> for TwoLayers<T> {
///     fn visit(&self, v: &mut Visitor<'_, T>) {
///         v.module("first", &self.first);
///         v.module("second", &self.second);
///     }
/// }
///
/// impl<T: Float> Forward<T> for TwoLayers<T> {
///     fn forward<'t>(&self, cx: &mut Context<'_>, x: Var<'t, T>) -> Result<Var<'t, T>> {
///         let h = self.first.forward(cx, x)?.relu()?;
///         self.second.forward(cx, h)
///     }
/// }
///
/// let mut rng = <rand_pcg::Pcg64 as rand::SeedableRng>::seed_from_u64(0);
/// let model = TwoLayers::<f32> { first: Linear::new(4, 8, &mut rng)?, second: Linear::new(8, 2, &mut rng)? };
/// let names: Vec<String> = model.named_params().into_iter().map(|(n, _)| n).collect();
/// assert_eq!(names, ["first.weight", "first.bias", "second.weight", "second.bias"]);
/// assert_eq!(model.num_params(), 4 * 8 + 8 + 8 * 2 + 2);
/// # Ok::<(), tapegrad::Error>(())
/// ```
pub trait Module<T: Float> {
    /// Shows the visitor every parameter, buffer and sub-module, each under its local name.
    fn visit(&self, v: &mut Visitor<'_, T>);

    /// Handles to the parameters, with their full names, in visiting order.
    fn named_params(&self) -> Vec<(String, Param<T>)> {
        let mut out = Vec::new();
        self.visit(&mut Visitor::new(&mut |name, entry| {
            if let Entry::Param(p) = entry {
                out.push((name.to_string(), p.share()));
            }
        }));
        out
    }

    /// Handles to the parameters, in visiting order (what an optimizer takes).
    fn params(&self) -> Vec<Param<T>> {
        self.named_params().into_iter().map(|(_, p)| p).collect()
    }

    /// Handles to the buffers, with their full names.
    fn named_buffers(&self) -> Vec<(String, Buffer<T>)> {
        let mut out = Vec::new();
        self.visit(&mut Visitor::new(&mut |name, entry| {
            if let Entry::Buffer(b) = entry {
                out.push((name.to_string(), b.share()));
            }
        }));
        out
    }

    /// Number of trained scalars.
    fn num_params(&self) -> usize {
        self.named_params()
            .iter()
            .map(|(_, p)| p.shape().numel())
            .sum()
    }
}

impl<T: Float, M: Module<T> + ?Sized> Module<T> for Box<M> {
    fn visit(&self, v: &mut Visitor<'_, T>) {
        (**self).visit(v)
    }
}

/// Fails with [`Error::DuplicateName`] if two entries of `module` share a name (a custom module
/// that names two fields alike): a state dict could hold only one of them.
pub(crate) fn check_unique_names<T: Float, M: Module<T> + ?Sized>(
    op: &'static str,
    module: &M,
) -> Result<()> {
    let mut seen = HashSet::new();
    let mut duplicate = None;
    module.visit(&mut Visitor::new(&mut |name, _| {
        if !seen.insert(name.to_string()) && duplicate.is_none() {
            duplicate = Some(name.to_string());
        }
    }));
    match duplicate {
        Some(name) => Err(Error::DuplicateName { op, name }),
        None => Ok(()),
    }
}

/// Train or eval mode, and the generator dropout draws from: what a forward pass needs besides
/// its input. A model in eval mode draws no random numbers.
///
/// ```
/// use rand::SeedableRng;
/// use tapegrad::nn::Context;
/// let mut rng = rand_pcg::Pcg64::seed_from_u64(0);
/// let train = Context::train(&mut rng);
/// assert!(train.is_training());
/// assert!(!Context::eval().is_training());
/// ```
pub struct Context<'r> {
    training: bool,
    rng: Option<&'r mut dyn Rng>,
}

impl<'r> Context<'r> {
    /// Training mode (dropout active), drawing from `rng`.
    pub fn train(rng: &'r mut dyn Rng) -> Self {
        Context {
            training: true,
            rng: Some(rng),
        }
    }

    /// Eval mode: dropout is the identity, normalisation uses running statistics, nothing random.
    pub fn eval() -> Context<'static> {
        Context {
            training: false,
            rng: None,
        }
    }

    /// Training mode without a generator, for models with nothing random in them; a dropout
    /// asked to draw fails with [`Error::InvalidArgument`].
    pub fn train_deterministic() -> Context<'static> {
        Context {
            training: true,
            rng: None,
        }
    }

    /// Whether this is training mode.
    pub fn is_training(&self) -> bool {
        self.training
    }

    /// The generator, for a layer that draws (dropout); `op` names it in the error if there is
    /// none.
    pub fn rng(&mut self, op: &'static str) -> Result<&mut dyn Rng> {
        match self.rng.as_deref_mut() {
            Some(rng) => Ok(rng),
            None => Err(Error::InvalidArgument {
                op,
                reason: "this context has no random generator (make it with Context::train(rng))"
                    .into(),
            }),
        }
    }
}

impl std::fmt::Debug for Context<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Context({}, {})",
            if self.training { "train" } else { "eval" },
            if self.rng.is_some() {
                "with rng"
            } else {
                "no rng"
            }
        )
    }
}

/// A module that maps one `Var` to one `Var`: what [`Sequential`](crate::nn::Sequential) chains.
/// Modules with other inputs (token ids, several tensors) have a `forward` method of their own
/// taking what they need.
pub trait Forward<T: Float>: Module<T> {
    /// Records the forward pass of `x` on its tape, in the context's mode.
    fn forward<'t>(&self, cx: &mut Context<'_>, x: Var<'t, T>) -> Result<Var<'t, T>>;
}

/// A module whose input is integer ids (token ids, class ids) rather than a `Var`: an
/// [`Embedding`](crate::nn::Embedding), or a language model that starts with one. Ids carry no
/// tape, so the tape the output is recorded on is passed with them.
///
/// A second trait rather than a generic input type on [`Forward`]: `Forward` stays object-safe
/// and unambiguous for `Sequential` (a `dyn Layer` chains `Var → Var`), and a model can implement
/// both (`forward_ids` for the ids, `forward` for embedded inputs) without the caller naming which.
pub trait ForwardIds<T: Float>: Module<T> {
    /// Records the forward pass of `ids` on `tape`, in the context's mode.
    fn forward_ids<'t>(
        &self,
        cx: &mut Context<'_>,
        tape: &'t crate::Tape<T>,
        ids: &crate::Indices,
    ) -> Result<Var<'t, T>>;
}

/// A [`Forward`] module that a `Sequential` can own: cloneable behind a `Box`, sendable, and
/// recoverable by its concrete type. Implemented for every `Forward + Clone + Send + Sync`
/// module.
pub trait Layer<T: Float>: Forward<T> + Send + Sync {
    /// A deep copy behind a `Box`.
    fn clone_layer(&self) -> Box<dyn Layer<T>>;
    /// The layer as `Any`, to get its concrete type back (`Sequential::get`).
    fn as_any(&self) -> &dyn Any;
}

impl<T: Float, M: Forward<T> + Clone + Send + Sync + 'static> Layer<T> for M {
    fn clone_layer(&self) -> Box<dyn Layer<T>> {
        Box::new(self.clone())
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
