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
            norm: t
                .data()
                .iter()
                .map(|v| v.to_f64() * v.to_f64())
                .sum::<f64>()
                .sqrt(),
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
            "backward trace ({} steps, last node first):",
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
    pub fn to_dot(&self) -> String {
        let nodes = self.nodes.borrow();
        let mut out = String::from(
            "digraph tape {\n  rankdir=LR;\n  node [fontname=\"Helvetica\", fontsize=10];\n",
        );
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
            for input in &node.inputs {
                out.push_str(&format!("  n{} -> n{id};\n", input.index()));
            }
        }
        out.push_str("}\n");
        out
    }
}

impl<T: Float> fmt::Display for Tape<T> {
    /// One row per node: id, op, inputs, output shape, whether it wants a gradient, the state saved
    /// for backward and its size; then the total.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nodes = self.nodes.borrow();
        writeln!(
            f,
            "Tape<{}>: {} nodes, {} saved for backward",
            T::DTYPE,
            nodes.len(),
            human_bytes(self.saved_bytes())
        )?;
        writeln!(
            f,
            "{:>4}  {:<16} {:<10} {:<12} {:<4}  {:<10} saved state",
            "id", "op", "inputs", "shape", "grad", "bytes"
        )?;
        for (id, node) in nodes.iter().enumerate() {
            let op = match (node.kind, &node.label) {
                (NodeKind::Param(_), Some(label)) => format!("param {label}"),
                _ => node.name.to_string(),
            };
            let inputs = if node.inputs.is_empty() {
                "-".to_string()
            } else {
                node.inputs
                    .iter()
                    .map(|i| i.index().to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            };
            let (bytes, saved) = match &node.op {
                Some(op) => (human_bytes(op.saved_bytes()), op.describe_saved()),
                None if node.kind == NodeKind::Op && node.requires_grad => {
                    ("-".into(), "(released)".into())
                }
                None => ("-".into(), String::new()),
            };
            writeln!(
                f,
                "{id:>4}  {op:<16} {inputs:<10} {:<12} {:<4}  {bytes:<10} {saved}",
                node.value.shape().to_string(),
                if node.requires_grad { "yes" } else { "no" },
            )?;
        }
        Ok(())
    }
}
