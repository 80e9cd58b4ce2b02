//! Looking inside: a tape as a table (`Display`), as a Graphviz graph ([`Tape::to_dot`]), and the
//! record of a backward pass ([`BackwardTrace`]).

use std::fmt;

use crate::element::Float;
use crate::tape::{NodeId, NodeKind, Tape};
use crate::tensor::Tensor;

/// A tensor in a line: shape, Euclidean norm, and its first few values.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorSummary {
    /// Dimensions.
    pub dims: Vec<usize>,
    /// √Σx².
    pub norm: f64,
    /// Up to the first four values.
    pub head: Vec<f64>,
}

impl TensorSummary {
    /// Summarises a tensor.
    pub fn of<T: Float>(t: &Tensor<T>) -> Self {
        TensorSummary {
            dims: t.dims().to_vec(),
            // The one summation kernel, in T: the same norm whatever the thread count.
            norm: crate::kernels::sum::dot(t.data(), t.data()).to_f64().sqrt(),
            head: t.data().iter().take(4).map(|v| v.to_f64()).collect(),
        }
    }
}

impl fmt::Display for TensorSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} |·|={:.4e} [", self.dims, self.norm)?;
        for (i, v) in self.head.iter().enumerate() {
            write!(f, "{}{v:+.4e}", if i > 0 { ", " } else { "" })?;
        }
        let total = self.dims.iter().fold(1usize, |a, &d| a.saturating_mul(d));
        write!(f, "{}]", if total > self.head.len() { ", …" } else { "" })
    }
}

/// What one node did during backward: the gradient that arrived, and what it sent to each input.
#[derive(Clone, Debug, PartialEq)]
pub struct TraceStep {
    /// The node.
    pub node: NodeId,
    /// Its op.
    pub op: &'static str,
    /// dL/d(output), as it arrived.
    pub received: TensorSummary,
    /// (input, dL/d(input) contribution) for every input that wanted one.
    pub sent: Vec<(NodeId, TensorSummary)>,
}

impl TraceStep {
    pub(crate) fn new<T: Float>(node: NodeId, op: &'static str, grad: &Tensor<T>) -> Self {
        TraceStep {
            node,
            op,
            received: TensorSummary::of(grad),
            sent: Vec::new(),
        }
    }
}

/// The record of one backward pass, in the order it ran (from the loss back to the leaves).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BackwardTrace {
    /// One step per node whose backward rule ran.
    pub steps: Vec<TraceStep>,
}

impl fmt::Display for BackwardTrace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "backward trace ({} steps, last node first; |·| is the L2 norm √Σx²):",
            self.steps.len()
        )?;
        for step in &self.steps {
            writeln!(
                f,
                "  #{:<3} {:<12} received {}",
                step.node.index(),
                step.op,
                step.received
            )?;
            for (input, g) in &step.sent {
                writeln!(f, "         → #{:<3} {g}", input.index())?;
            }
        }
        Ok(())
    }
}

fn human_bytes(bytes: usize) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

impl<T: Float> Tape<T> {
    /// Bytes held by the ops for their backward passes, beyond the values the tape keeps anyway.
    ///
    /// ```
    /// use rand::SeedableRng;
    /// use tapegrad::{Tape, Tensor};
    /// let tape = Tape::<f32>::new();
    /// let h = tape.leaf(Tensor::ones(&[128, 64])?);
    /// h.dropout(0.5, &mut rand_pcg::Pcg64::seed_from_u64(0))?;
    /// assert_eq!(tape.saved_bytes(), 1024 + 4); // 8192 mask bits and the f32 scale
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn saved_bytes(&self) -> usize {
        self.nodes
            .borrow()
            .iter()
            .filter_map(|n| n.op.as_ref())
            .map(|op| op.saved_bytes())
            .sum()
    }

    /// The tape as a Graphviz DOT graph: one node per value, labelled with its op, shape and saved
    /// state; parameters, constants and ops styled apart. Render with `dot -Tsvg`.
    ///
    /// PyTorch has no built-in equivalent (the `torchviz` package's `make_dot` draws the same graph).
    pub fn to_dot(&self) -> String {
        self.dot(None)
    }

    /// [`Tape::to_dot`] with every edge labelled by the gradient that flowed along it, backwards, in
    /// the traced backward pass `trace` (from `BackwardOptions::trace(true)`): the L2 norm `|g|` and
    /// the first values. An edge into a value that wanted no gradient (a constant) is drawn dashed
    /// and unlabelled. Print the tape's DOT before a releasing backward pass if the saved state
    /// should appear in the labels too: afterwards the graph shows `(released)`.
    ///
    /// ```
    /// use tapegrad::{BackwardOptions, Tape, Tensor};
    /// let tape = Tape::new();
    /// let x = tape.leaf(Tensor::from_vec(vec![3.0f64, 4.0], &[2])?);
    /// let y = x.mul_scalar(2.0)?.sum()?;
    /// let grads = y.backward_with(BackwardOptions::new().trace(true).retain_graph(true))?;
    /// let dot = tape.to_dot_traced(grads.trace().expect("asked for"));
    /// // sum sent ones to mul_scalar; mul_scalar sent 2s to x: |(2, 2)| = 2.83.
    /// assert!(dot.contains("n0 -> n1 [label=\"|g|=2.83\\n[+2.000, +2.000]\""), "{dot}");
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn to_dot_traced(&self, trace: &BackwardTrace) -> String {
        self.dot(Some(trace))
    }

    fn dot(&self, trace: Option<&BackwardTrace>) -> String {
        let nodes = self.nodes.borrow();
        let mut out = String::from(
            "digraph tape {\n  rankdir=LR;\n  node [fontname=\"Helvetica\", fontsize=10];\n",
        );
        if trace.is_some() {
            out.push_str("  edge [fontname=\"Helvetica\", fontsize=8, fontcolor=\"#b03020\"];\n");
        }
        for (id, node) in nodes.iter().enumerate() {
            let shape = node.value.shape();
            let (style, name) = match node.kind {
                NodeKind::Constant => (
                    "shape=ellipse, style=filled, fillcolor=\"#eeeeee\"",
                    "constant".to_string(),
                ),
                NodeKind::Leaf => (
                    "shape=box, style=\"filled\", fillcolor=\"#cfe8ff\"",
                    "leaf".to_string(),
                ),
                NodeKind::Param(_) => (
                    "shape=box, style=\"filled,bold\", fillcolor=\"#cfe8ff\"",
                    format!("param {}", node.label.as_deref().unwrap_or("")),
                ),
                NodeKind::Op => (
                    "shape=box, style=\"rounded,filled\", fillcolor=\"#fff2cc\"",
                    node.name.to_string(),
                ),
            };
            let saved = node
                .op
                .as_ref()
                .map(|op| op.describe_saved())
                .filter(|s| !s.is_empty())
                .map(|s| format!("\\n{}", s.replace('"', "'")))
                .unwrap_or_default();
            out.push_str(&format!(
                "  n{id} [label=\"#{id} {name}\\n{shape}{saved}\", {style}];\n"
            ));
            let Some(trace) = trace else {
                for input in &node.inputs {
                    out.push_str(&format!("  n{} -> n{id};\n", input.index()));
                }
                continue;
            };
            // What this node sent to each input, in input order (an input used twice, as in
            // x·x, has one entry per use).
            let mut sent = trace
                .steps
                .iter()
                .find(|step| step.node.index() == id)
                .map(|step| step.sent.iter().collect::<Vec<_>>())
                .unwrap_or_default();
            for input in &node.inputs {
                let grad = sent
                    .iter()
                    .position(|(to, _)| to == input)
                    .map(|k| &sent.remove(k).1);
                match grad {
                    Some(g) => out.push_str(&format!(
                        "  n{} -> n{id} [label=\"{}\"];\n",
                        input.index(),
                        edge_label(g)
                    )),
                    None => out.push_str(&format!(
                        "  n{} -> n{id} [style=dashed, color=\"#999999\"];\n",
                        input.index()
                    )),
                }
            }
        }
        out.push_str("}\n");
        out
    }

    /// The tape as rows, one per node, in the order they were recorded: what `Display` prints.
    ///
    /// PyTorch has no equivalent table; the nearest is walking `loss.grad_fn.next_functions`.
    pub fn rows(&self) -> Vec<TapeRow> {
        let nodes = self.nodes.borrow();
        nodes
            .iter()
            .enumerate()
            .map(|(id, node)| {
                let op = match (node.kind, &node.label) {
                    (NodeKind::Param(_), Some(label)) => format!("param {label}"),
                    _ => node.name.to_string(),
                };
                let (saved_bytes, saved) = match &node.op {
                    Some(op) => (Some(op.saved_bytes()), op.describe_saved()),
                    None if node.kind == NodeKind::Op && node.requires_grad => {
                        (None, "(released)".into())
                    }
                    None => (None, String::new()),
                };
                TapeRow {
                    id: NodeId(id as u32),
                    op,
                    inputs: node.inputs.to_vec(),
                    dims: node.value.dims().to_vec(),
                    requires_grad: node.requires_grad,
                    saved_bytes,
                    saved,
                }
            })
            .collect()
    }
}

/// An edge's label: `|g|=…` then up to three leading values, in 3 significant digits.
fn edge_label(g: &TensorSummary) -> String {
    let head: Vec<String> = g.head.iter().take(3).map(|v| format!("{v:+.3}")).collect();
    let total = g.dims.iter().fold(1usize, |a, &d| a.saturating_mul(d));
    let more = if total > head.len() { ", …" } else { "" };
    format!("|g|={}\\n[{}{more}]", sig3(g.norm), head.join(", "))
        .replace("+0.000", "0")
        .replace("-0.000", "0")
}

/// `v` in 3 significant digits, without an exponent for ordinary magnitudes.
fn sig3(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let magnitude = v.abs().log10().floor() as i32;
    if (-3..4).contains(&magnitude) {
        let decimals = (2 - magnitude).max(0) as usize;
        format!("{v:.decimals$}")
    } else {
        format!("{v:.2e}")
    }
}

/// One node of a tape, as `Display` prints it (see [`Tape::rows`]).
#[derive(Clone, Debug, PartialEq)]
pub struct TapeRow {
    /// The node.
    pub id: NodeId,
    /// Its op (`constant`, `leaf`, `param W1`, `matmul`, …).
    pub op: String,
    /// The nodes it read.
    pub inputs: Vec<NodeId>,
    /// Its value's dimensions.
    pub dims: Vec<usize>,
    /// Whether a gradient flows to it.
    pub requires_grad: bool,
    /// Bytes its backward rule saved (beyond the values on the tape); `None` when it holds no rule:
    /// a leaf, a constant, an op recorded without gradient, or a rule already released by backward.
    pub saved_bytes: Option<usize>,
    /// The saved state in words; `(released)` once a backward pass has dropped it.
    pub saved: String,
}

impl<T: Float> fmt::Display for Tape<T> {
    /// One row per node: id, op, inputs, output shape, whether it wants a gradient, the state saved
    /// for backward and its size; then the total.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rows = self.rows();
        writeln!(
            f,
            "Tape<{}>: {} nodes, {} saved for backward",
            T::DTYPE,
            rows.len(),
            human_bytes(self.saved_bytes())
        )?;
        writeln!(
            f,
            "{:>4}  {:<16} {:<10} {:<12} {:<4}  {:<10} saved state",
            "id", "op", "inputs", "shape", "grad", "bytes"
        )?;
        for row in rows {
            let inputs = if row.inputs.is_empty() {
                "-".to_string()
            } else {
                row.inputs
                    .iter()
                    .map(|i| i.index().to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            };
            let bytes = row.saved_bytes.map_or_else(|| "-".into(), human_bytes);
            writeln!(
                f,
                "{:>4}  {:<16} {inputs:<10} {:<12} {:<4}  {bytes:<10} {}",
                row.id.index(),
                row.op,
                crate::shape::Shape::new(&row.dims)
                    .map(|s| s.to_string())
                    .unwrap_or_else(|_| format!("{:?}", row.dims)),
                if row.requires_grad { "yes" } else { "no" },
                row.saved,
            )?;
        }
        Ok(())
    }
}
