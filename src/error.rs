//! The one error type of the crate.
//!
//! Every fallible call returns [`Result<T>`]. Each variant names the operation that failed and the
//! shapes or values that made it fail, so a message reads like `matmul: incompatible shapes [128, 20]
//! and [64, 5]` rather than a bare panic.

use crate::shape::Shape;

/// Shorthand for `std::result::Result<T, tapegrad::Error>`.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong in tapegrad.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Two operands whose shapes do not fit the operation (not broadcastable, inner dimensions differ, …).
    #[error("{op}: incompatible shapes {lhs} and {rhs}")]
    ShapeMismatch {
        /// The operation.
        op: &'static str,
        /// Shape of the left operand.
        lhs: Shape,
        /// Shape of the right operand.
        rhs: Shape,
    },
    /// An operand of the wrong rank (matmul wants 2-D, NLL wants [N, C], …).
    #[error("{op}: expected {expected}, got shape {shape}")]
    BadRank {
        /// The operation.
        op: &'static str,
        /// What the operation accepts, in words.
        expected: &'static str,
        /// The shape it was given.
        shape: Shape,
    },
    /// A shape whose element count overflows `usize`.
    #[error("shape {dims:?} has more elements than fit in usize")]
    ShapeOverflow {
        /// The offending dimensions.
        dims: Vec<usize>,
    },
    /// A tensor, mask or buffer too large to allocate: the allocator refused it (or its size in bytes
    /// overflows). Nothing was changed.
    #[error("{op}: cannot allocate {bytes} bytes")]
    OutOfMemory {
        /// The operation that needed the memory.
        op: &'static str,
        /// The bytes asked for (exact, even beyond `usize`).
        bytes: u128,
    },
    /// A shape with more axes than tapegrad supports ([`MAX_RANK`](crate::MAX_RANK)).
    #[error("{op}: rank {rank} exceeds the maximum of {max} axes")]
    RankTooLarge {
        /// The operation.
        op: &'static str,
        /// The rank asked for.
        rank: usize,
        /// The largest supported rank.
        max: usize,
    },
    /// A buffer whose length does not match the element count of its shape.
    #[error("{op}: shape {shape} holds {expected} elements but {got} were given")]
    DataLength {
        /// The operation.
        op: &'static str,
        /// The requested shape.
        shape: Shape,
        /// Elements the shape needs.
        expected: usize,
        /// Elements supplied.
        got: usize,
    },
    /// A reshape to a shape with a different number of elements.
    #[error("reshape: cannot view {from} ({} elements) as {to:?}", from.numel())]
    Reshape {
        /// The source shape.
        from: Shape,
        /// The requested dimensions.
        to: Vec<usize>,
    },
    /// An axis outside `-rank..rank`.
    #[error("{op}: axis {axis} is out of range for shape {shape}")]
    AxisOutOfRange {
        /// The operation.
        op: &'static str,
        /// The axis asked for.
        axis: isize,
        /// The tensor's shape.
        shape: Shape,
    },
    /// An element index outside the tensor.
    #[error("index {index:?} is out of bounds for shape {shape}")]
    IndexOutOfBounds {
        /// The index asked for.
        index: Vec<usize>,
        /// The tensor's shape.
        shape: Shape,
    },
    /// A dropout probability outside `[0, 1]`, or NaN.
    #[error("{op}: probability p = {p} must lie in [0, 1]")]
    InvalidProbability {
        /// The operation.
        op: &'static str,
        /// The probability given.
        p: f64,
    },
    /// An index (into an axis, an embedding table, a gather) that is negative or past the end.
    #[error(
        "{op}: index {index} at position {position} is out of range for a dimension of size {len}"
    )]
    IndexOutOfRange {
        /// The operation.
        op: &'static str,
        /// Where among the indices the bad one stands (flat, row-major).
        position: usize,
        /// The bad index.
        index: i64,
        /// The size of the dimension it indexes (valid indices are `0..len`).
        len: usize,
    },
    /// An argument outside what the operation accepts, described in words (a kernel larger than
    /// its padded input, a split that does not add up, a mask of the wrong shape, …).
    #[error("{op}: {reason}")]
    InvalidArgument {
        /// The operation.
        op: &'static str,
        /// What is wrong, with the values.
        reason: String,
    },
    /// A class label that is negative or not below the number of classes.
    #[error("{op}: label {label} at position {position} is out of range for {classes} classes")]
    LabelOutOfRange {
        /// The operation.
        op: &'static str,
        /// Where in the label slice the bad label stands.
        position: usize,
        /// The bad label.
        label: i64,
        /// Number of classes (valid labels are `0..classes`).
        classes: usize,
    },
    /// A label slice whose length differs from the batch size.
    #[error("{op}: {labels} labels given for a batch of {batch}")]
    LabelCount {
        /// The operation.
        op: &'static str,
        /// Number of labels.
        labels: usize,
        /// Batch size (rows of the input).
        batch: usize,
    },
    /// A loss over an empty batch, whose mean is undefined.
    #[error("{op}: empty batch (input shape {shape}); the mean over zero rows is undefined")]
    EmptyBatch {
        /// The operation.
        op: &'static str,
        /// The input's shape.
        shape: Shape,
    },
    /// A mask whose length differs from the tensor it is applied to.
    #[error("{op}: mask of {mask_len} bits for a tensor of shape {shape}")]
    MaskLength {
        /// The operation.
        op: &'static str,
        /// Bits in the mask.
        mask_len: usize,
        /// Shape of the tensor.
        shape: Shape,
    },
    /// `backward()` from a value with more than one element and no seed gradient.
    #[error(
        "backward: the loss has shape {shape}; backward needs a scalar or an explicit seed gradient"
    )]
    NonScalarLoss {
        /// Shape of the value backward was called on.
        shape: Shape,
    },
    /// A seed gradient whose shape differs from the value it seeds.
    #[error("backward: seed gradient of shape {seed} for a value of shape {value}")]
    SeedShape {
        /// Shape of the value.
        value: Shape,
        /// Shape of the seed.
        seed: Shape,
    },
    /// A second backward pass over a tape whose saved state the first one released.
    #[error(
        "backward: this tape was already walked backward and its saved state released; pass `retain_graph: true` to the first backward to walk it again"
    )]
    BackwardTwice,
    /// A `Var` used with a tape (or gradients) it does not belong to.
    #[error("{op}: the Var belongs to a different tape")]
    ForeignVar {
        /// The operation.
        op: &'static str,
    },
    /// A backward pass that would release the saved state of a tape whose walk is still in
    /// progress (a backward started from inside a backward rule): the outer walk would lose the
    /// rules it has yet to run.
    #[error(
        "backward: a backward pass of this tape is already in progress; a nested backward must pass `retain_graph: true` (or use `backward_graph`)"
    )]
    BackwardInProgress,
    /// An optimizer's saved state whose shape no longer fits its parameter (the parameter was
    /// replaced by one of another shape).
    #[error(
        "{op}: the state kept for parameter `{name}` has shape {state:?}, but the parameter now has shape {param:?}"
    )]
    StateShape {
        /// The optimizer.
        op: &'static str,
        /// The parameter's name.
        name: String,
        /// Dimensions of the saved state.
        state: Vec<usize>,
        /// Dimensions of the parameter.
        param: Vec<usize>,
    },
    /// `backward()` from a value that depends on nothing that requires a gradient.
    #[error("backward: the loss depends on no parameter or leaf that requires a gradient")]
    NoGradRequired,
    /// Asking for the gradient of a value that received none.
    #[error(
        "gradients: node {node} received no gradient (it does not influence the loss, or it does not require one)"
    )]
    NoGradient {
        /// The node's index on the tape.
        node: usize,
    },
    /// Asking a node for state it did not save (for instance the mask of a node that is not a dropout).
    #[error("{op}: node {node} is a {found} node and saved no {what}")]
    NotSaved {
        /// The operation asking.
        op: &'static str,
        /// The node's index on the tape.
        node: usize,
        /// The op the node actually holds.
        found: &'static str,
        /// What was asked for.
        what: &'static str,
    },
    /// A call given the wrong number of tensors (for instance one direction per input in `hvp`).
    #[error("{op}: expected {expected} {what}, got {got}")]
    ArgumentCount {
        /// The operation.
        op: &'static str,
        /// What was counted.
        what: &'static str,
        /// How many were expected.
        expected: usize,
        /// How many were given.
        got: usize,
    },
    /// An optimizer or layer setting outside its valid range.
    #[error("{op}: {name} = {value} is invalid: {reason}")]
    InvalidHyperparameter {
        /// The optimizer or layer.
        op: &'static str,
        /// The setting.
        name: &'static str,
        /// Its value.
        value: f64,
        /// What it must satisfy.
        reason: &'static str,
    },
    /// A checkpoint that lacks a tensor the model has.
    #[error("checkpoint: missing tensor `{name}`")]
    CheckpointMissing {
        /// The parameter's name.
        name: String,
    },
    /// A checkpoint holding a tensor the model does not have.
    #[error("checkpoint: unexpected tensor `{name}` (the model has no such parameter)")]
    CheckpointUnexpected {
        /// The tensor's name in the file.
        name: String,
    },
    /// Two tensors of one model (or one checkpoint) under the same name.
    #[error("{op}: the name `{name}` is used by more than one tensor")]
    DuplicateName {
        /// The operation (save or load).
        op: &'static str,
        /// The repeated name.
        name: String,
    },
    /// A checkpoint tensor whose shape differs from the parameter's.
    #[error("checkpoint: tensor `{name}` has shape {found:?}, the model expects {expected}")]
    CheckpointShape {
        /// The parameter's name.
        name: String,
        /// The parameter's shape.
        expected: Shape,
        /// The shape in the file.
        found: Vec<usize>,
    },
    /// A checkpoint tensor of another element type (an f64 file into an f32 model, say).
    #[error("checkpoint: tensor `{name}` is {found}, the model is {expected}")]
    CheckpointDtype {
        /// The parameter's name.
        name: String,
        /// The model's element type.
        expected: &'static str,
        /// The type in the file.
        found: String,
    },
    /// A file that is not valid safetensors (corrupt or truncated).
    #[error("checkpoint: not a valid safetensors file: {reason}")]
    CheckpointFormat {
        /// What the parser said.
        reason: String,
    },
    /// A file that could not be read or written.
    #[error("{op}: {path}: {source}")]
    Io {
        /// The operation.
        op: &'static str,
        /// The file.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A data file with a malformed line.
    #[error("{path}:{line}: {reason}")]
    BadData {
        /// The file.
        path: String,
        /// The 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// With anomaly detection on: the first op whose forward value or backward gradient held a NaN
    /// or an infinity.
    #[error("anomaly: {phase} of `{op}` (node {node}) produced {detail}")]
    Anomaly {
        /// The op.
        op: &'static str,
        /// Its node on the tape.
        node: usize,
        /// `"forward"` or `"backward"`.
        phase: &'static str,
        /// How many elements were NaN or infinite, and where.
        detail: String,
    },
    /// A gradient check whose analytic and numeric derivatives disagree.
    #[error("{0}")]
    GradcheckFailed(Box<crate::gradcheck::GradcheckReport>),
}
