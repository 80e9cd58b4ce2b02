//! Training feedback: classification metrics, a per-step metrics log (CSV or JSON Lines), and a
//! progress bar. The guide is `docs/data.md`.
//!
//! | PyTorch ecosystem | tapegrad |
//! |---|---|
//! | `(logits.argmax(1) == y).float().mean()` | [`accuracy`] |
//! | `torchmetrics.functional.accuracy(…, top_k=k)` | [`top_k_accuracy`] |
//! | a `csv.writer` / `json.dumps` per step, `CSVLogger` | [`MetricsLogger`] |
//! | `tqdm` | [`Progress`] |

use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::Path;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::element::Float;
use crate::error::{Error, Result};
use crate::indices::Index;
use crate::tensor::Tensor;

/// Checks scores `[N, C]` or `[N, C, d…]` (classes on axis 1) against one label per element of
/// `[N, d…]`, and calls `hit(scores of the element's classes, label)` for each element,
/// returning the fraction of hits.
fn fraction_correct<T: Float, L: Index>(
    op: &'static str,
    scores: &Tensor<T>,
    labels: &[L],
    hit: impl Fn(&mut dyn Iterator<Item = T>, T, usize) -> bool,
) -> Result<f64> {
    let dims = scores.dims();
    if dims.len() < 2 {
        return Err(Error::BadRank {
            op,
            expected: "scores of shape [N, C] or [N, C, d…]",
            shape: scores.shape().clone(),
        });
    }
    let (outer, classes, inner) = (dims[0], dims[1], dims[2..].iter().product::<usize>());
    let count = outer * inner;
    if labels.len() != count {
        return Err(Error::LabelCount {
            op,
            labels: labels.len(),
            batch: count,
        });
    }
    if count == 0 {
        return Err(Error::EmptyBatch {
            op,
            shape: scores.shape().clone(),
        });
    }
    let data = scores.data();
    let mut correct = 0usize;
    for (position, label) in labels.iter().enumerate() {
        let label = label.as_i64();
        let class =
            usize::try_from(label)
                .ok()
                .filter(|&c| c < classes)
                .ok_or(Error::LabelOutOfRange {
                    op,
                    position,
                    label,
                    classes,
                })?;
        let (o, i) = (position / inner, position % inner);
        let base = o * classes * inner + i;
        let mut row = (0..classes).map(|c| data[base + c * inner]);
        if hit(&mut row, data[base + class * inner], class) {
            correct += 1;
        }
    }
    Ok(correct as f64 / count as f64)
}

/// Whether class `c` with score `s` ranks above the label's class `l` with score `sl`: a higher
/// score, or an equal one at a lower index (the first maximum wins, as `torch.argmax`); NaN ranks
/// above every number (as `torch.argmax`, which treats NaN as the maximum).
fn ranks_above<T: Float>(s: T, c: usize, sl: T, l: usize) -> bool {
    match (s.is_nan(), sl.is_nan()) {
        (true, true) => c < l,
        (true, false) => true,
        (false, true) => false,
        (false, false) => s > sl || (s == sl && c < l),
    }
}

/// The fraction of elements whose highest score (the first, on ties) is at the label:
/// scores `[N, C]` (or `[N, C, d…]`, classes on axis 1) and one label per element.
///
/// Errors: fewer than 2 axes, a label count other than N·d…, no elements, a label outside `0..C`.
///
/// PyTorch equivalent: `(scores.argmax(1) == labels).float().mean()`.
///
/// ```
/// use tapegrad::Tensor;
/// use tapegrad::metrics::accuracy;
/// let logits = Tensor::from_vec(vec![0.1f32, 2.0, 0.3, /**/ 1.0, 0.0, 0.0], &[2, 3])?;
/// assert_eq!(accuracy(&logits, &[1, 2])?, 0.5);
/// # Ok::<(), tapegrad::Error>(())
/// ```
pub fn accuracy<T: Float, L: Index>(scores: &Tensor<T>, labels: &[L]) -> Result<f64> {
    top_k_accuracy(scores, labels, 1)
}

/// The fraction of elements whose label is among the `k` highest scores (ties broken towards the
/// lower class index, so `k = 1` is [`accuracy`]).
///
/// Errors: those of [`accuracy`], and `k` of 0 or above C ([`Error::InvalidHyperparameter`]).
///
/// PyTorch equivalent: `torchmetrics.functional.accuracy(scores, labels, task="multiclass",
/// num_classes=C, top_k=k, average="micro")`, or
/// `(scores.topk(k, 1).indices == labels[:, None]).any(1).float().mean()`.
///
/// ```
/// use tapegrad::Tensor;
/// use tapegrad::metrics::top_k_accuracy;
/// let scores = Tensor::from_vec(vec![0.5f64, 0.3, 0.2, /**/ 0.1, 0.2, 0.7], &[2, 3])?;
/// assert_eq!(top_k_accuracy(&scores, &[1, 0], 2)?, 0.5); // 1 is second in row 0; 0 is last in row 1
/// # Ok::<(), tapegrad::Error>(())
/// ```
pub fn top_k_accuracy<T: Float, L: Index>(
    scores: &Tensor<T>,
    labels: &[L],
    k: usize,
) -> Result<f64> {
    let op = "top_k_accuracy";
    let classes = scores.dims().get(1).copied().unwrap_or(0);
    if k == 0 || (scores.dims().len() >= 2 && k > classes) {
        return Err(Error::InvalidHyperparameter {
            op,
            name: "k",
            value: k as f64,
            reason: "must lie in 1..=C (the number of classes)",
        });
    }
    fraction_correct(op, scores, labels, |row, label_score, label| {
        let above = row
            .enumerate()
            .filter(|&(c, s)| ranks_above(s, c, label_score, label))
            .count();
        above < k
    })
}

/// The format of a [`MetricsLogger`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Comma-separated values: a header `step,key…` from the first record, then one row per
    /// record with the same keys in the same order.
    Csv,
    /// JSON Lines: one object `{"step": n, "key": value, …}` per line; keys may vary.
    /// Non-finite values are written as `null` (JSON has no NaN or ∞).
    Jsonl,
}

/// Writes per-step metrics to a file (or any writer), one record per call, flushed at once so the
/// log survives a crash and can be watched while training runs.
///
/// PyTorch ecosystem equivalent: Lightning's `CSVLogger`, or a `csv.writer` row / `json.dumps`
/// line per step.
///
/// ```
/// use tapegrad::metrics::{LogFormat, MetricsLogger};
/// let mut log = MetricsLogger::to_writer(Vec::new(), LogFormat::Csv, "memory");
/// log.log(1, &[("loss", 0.5), ("accuracy", 0.25)])?;
/// log.log(2, &[("loss", 0.375), ("accuracy", 0.5)])?;
/// let text = String::from_utf8(log.into_inner()?).unwrap();
/// assert_eq!(text, "step,loss,accuracy\n1,0.5,0.25\n2,0.375,0.5\n");
/// # Ok::<(), tapegrad::Error>(())
/// ```
pub struct MetricsLogger<W: Write = BufWriter<File>> {
    writer: W,
    format: LogFormat,
    name: String,
    keys: Option<Vec<String>>,
}

impl<W: Write> std::fmt::Debug for MetricsLogger<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsLogger")
            .field("format", &self.format)
            .field("name", &self.name)
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl MetricsLogger<BufWriter<File>> {
    /// Creates (or truncates) the file at `path`, in the format its extension names: `.csv`, or
    /// `.jsonl` / `.ndjson`. Another extension is an [`Error::InvalidArgument`]; a file that
    /// cannot be created an [`Error::Io`].
    pub fn create(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let format = match path.extension().and_then(|e| e.to_str()) {
            Some("csv") => LogFormat::Csv,
            Some("jsonl" | "ndjson") => LogFormat::Jsonl,
            _ => {
                return Err(Error::InvalidArgument {
                    op: "MetricsLogger::create",
                    reason: format!(
                        "cannot tell the format of {}: use a .csv or .jsonl extension, or create_with",
                        path.display()
                    ),
                });
            }
        };
        Self::create_with(path, format)
    }

    /// Creates (or truncates) the file at `path`, written in `format`.
    pub fn create_with(path: impl AsRef<Path>, format: LogFormat) -> Result<Self> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let file = File::create(path).map_err(|source| Error::Io {
            op: "MetricsLogger::create",
            path: name.clone(),
            source,
        })?;
        Ok(Self::to_writer(BufWriter::new(file), format, name))
    }
}

impl<W: Write> MetricsLogger<W> {
    /// A logger writing to `writer`; `name` stands for it in error messages.
    pub fn to_writer(writer: W, format: LogFormat, name: impl Into<String>) -> Self {
        MetricsLogger {
            writer,
            format,
            name: name.into(),
            keys: None,
        }
    }

    /// Appends one record: the step and the metrics, in the order given. In CSV every record must
    /// have the first record's keys in the same order ([`Error::InvalidArgument`] otherwise);
    /// a key may not be `step` or repeat. Write failures are [`Error::Io`].
    pub fn log(&mut self, step: u64, metrics: &[(&str, f64)]) -> Result<()> {
        let op = "MetricsLogger::log";
        for (i, (key, _)) in metrics.iter().enumerate() {
            if *key == "step" || metrics[..i].iter().any(|(k, _)| k == key) {
                return Err(Error::InvalidArgument {
                    op,
                    reason: format!("the key `{key}` is repeated (or is `step`)"),
                });
            }
        }
        let mut line = String::new();
        match self.format {
            LogFormat::Csv => {
                match &self.keys {
                    None => {
                        line.push_str("step");
                        for (key, _) in metrics {
                            line.push(',');
                            line.push_str(&csv_field(key));
                        }
                        line.push('\n');
                        self.keys = Some(metrics.iter().map(|(k, _)| k.to_string()).collect());
                    }
                    Some(keys) => {
                        if keys.len() != metrics.len()
                            || keys.iter().zip(metrics).any(|(a, (b, _))| a != b)
                        {
                            return Err(Error::InvalidArgument {
                                op,
                                reason: format!(
                                    "{}: a CSV log keeps the columns of its first record {keys:?}, got {:?}",
                                    self.name,
                                    metrics.iter().map(|(k, _)| *k).collect::<Vec<_>>()
                                ),
                            });
                        }
                    }
                }
                line.push_str(&step.to_string());
                for (_, value) in metrics {
                    line.push(',');
                    line.push_str(&value.to_string());
                }
                line.push('\n');
            }
            LogFormat::Jsonl => {
                line.push_str(&format!("{{\"step\":{step}"));
                for (key, value) in metrics {
                    line.push(',');
                    line.push_str(&json_string(key));
                    line.push(':');
                    if value.is_finite() {
                        line.push_str(&value.to_string());
                    } else {
                        line.push_str("null");
                    }
                }
                line.push_str("}\n");
            }
        }
        self.write_all(line.as_bytes())
    }

    fn write_all(&mut self, bytes: &[u8]) -> Result<()> {
        let name = &self.name;
        let io = |source| Error::Io {
            op: "MetricsLogger::log",
            path: name.clone(),
            source,
        };
        self.writer.write_all(bytes).map_err(io)?;
        self.writer.flush().map_err(io)
    }

    /// Flushes and returns the writer.
    pub fn into_inner(mut self) -> Result<W> {
        self.writer.flush().map_err(|source| Error::Io {
            op: "MetricsLogger::into_inner",
            path: self.name.clone(),
            source,
        })?;
        Ok(self.writer)
    }
}

/// A CSV field, quoted when it holds a comma, a quote or a line break (RFC 4180).
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// A JSON string literal.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A progress bar for a training loop: epoch, step out of the total, the latest loss, items per
/// second and the time left. Drawn on standard output only when it is a terminal; otherwise (a
/// pipe, a file, CI) it is hidden and costs next to nothing.
///
/// PyTorch ecosystem equivalent: `tqdm(loader)` with `set_postfix(loss=…)`.
///
/// ```
/// use tapegrad::metrics::Progress;
/// let progress = Progress::hidden(3); // Progress::new(3) in a program
/// progress.set_epoch(1, 10);
/// for _ in 0..3 {
///     progress.step(0.25, 64);
/// }
/// assert_eq!(progress.position(), 3);
/// progress.finish();
/// ```
#[derive(Debug)]
pub struct Progress {
    bar: ProgressBar,
    started: Instant,
    items: std::sync::atomic::AtomicU64,
}

impl Progress {
    /// A bar for `steps` steps, drawn on standard output if it is a terminal, hidden otherwise.
    pub fn new(steps: u64) -> Self {
        let target = if std::io::stdout().is_terminal() {
            ProgressDrawTarget::stdout()
        } else {
            ProgressDrawTarget::hidden()
        };
        Self::with_target(steps, target)
    }

    /// A bar that is never drawn (for tests, or a quiet flag).
    pub fn hidden(steps: u64) -> Self {
        Self::with_target(steps, ProgressDrawTarget::hidden())
    }

    fn with_target(steps: u64, target: ProgressDrawTarget) -> Self {
        let bar = ProgressBar::with_draw_target(Some(steps), target);
        // The template is a constant, so it always parses; if it ever did not, the default style
        // is kept rather than failing a training run over its progress bar.
        if let Ok(style) = ProgressStyle::with_template(
            "{prefix} [{bar:30}] {pos}/{len} {msg} | {elapsed_precise} elapsed, ETA {eta}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        Progress {
            bar,
            started: Instant::now(),
            items: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Whether the bar is drawn.
    pub fn is_visible(&self) -> bool {
        !self.bar.is_hidden()
    }

    /// Shows `epoch n/total` before the bar.
    pub fn set_epoch(&self, epoch: usize, epochs: usize) {
        self.bar.set_prefix(format!("epoch {epoch}/{epochs}"));
    }

    /// Starts over for a new epoch of `steps` steps (the items/s average restarts too).
    pub fn reset(&mut self, steps: u64) {
        self.bar.reset();
        self.bar.set_length(steps);
        self.started = Instant::now();
        self.items = std::sync::atomic::AtomicU64::new(0);
    }

    /// One step done, over `items` items, with this loss.
    pub fn step(&self, loss: f64, items: u64) {
        let total = self
            .items
            .fetch_add(items, std::sync::atomic::Ordering::Relaxed)
            + items;
        if self.is_visible() {
            let seconds = self.started.elapsed().as_secs_f64();
            let rate = if seconds > 0.0 {
                total as f64 / seconds
            } else {
                0.0
            };
            self.bar
                .set_message(format!("loss {loss:.4} | {rate:.0} items/s"));
        }
        self.bar.inc(1);
    }

    /// Steps done so far.
    pub fn position(&self) -> u64 {
        self.bar.position()
    }

    /// Prints a line above the bar (or plainly, when the bar is hidden).
    pub fn println(&self, line: impl AsRef<str>) {
        if self.is_visible() {
            self.bar.println(line);
        } else {
            println!("{}", line.as_ref());
        }
    }

    /// Leaves the bar at its final state.
    pub fn finish(&self) {
        self.bar.finish();
    }
}
