//! The explorer's state and its HTTP endpoints, free of any server: `Explorer::handle` maps a method
//! and a URL to a response. `main.rs` serves it with tiny_http; `tests/explorer.rs` calls it directly
//! and checks every value against the engine.
//!
//! Endpoints (GET or POST, parameters in the query string, answers in JSON):
//! - `/api/state` — the current session (made with the defaults on first use);
//! - `/api/reset?p=0.5&seed=1&n=128&hidden=64&lr=0.5` — a new session: the lesson's data and
//!   initial weights (`LessonConfig`, data seed 0) and a dropout generator seeded with `seed`;
//! - `/api/step?count=1` — `count` SGD steps of two runs from the same start: one with dropout p
//!   (its tape, mask, trace and graph are shown) and one without dropout, for the curves.
//!
//! Bad input answers 400 with `{"error": "…"}`, an unknown path 404, another method 405.

use std::fmt::Write as _;

use rand::SeedableRng;
use rand_pcg::Pcg64;
use tapegrad::lesson::{LessonConfig, LessonData, MlpWeights, accuracy};
use tapegrad::{BackwardOptions, BackwardTrace, Error, NodeId, Param, Tape, TensorSummary};

/// The page, embedded in the binary (no CDN, works offline).
pub const PAGE: &str = include_str!("page.html");

/// Limits that keep one request cheap on a small machine.
pub const MAX_N: usize = 512;
/// Largest hidden layer.
pub const MAX_HIDDEN: usize = 256;
/// Most steps per request.
pub const MAX_COUNT: usize = 200;
/// Most steps per session (the curves keep one point per step).
pub const MAX_STEPS: usize = 20_000;

/// An HTTP answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// Content-Type header.
    pub content_type: &'static str,
    /// The body.
    pub body: String,
}

impl Response {
    fn json(body: String) -> Self {
        Response {
            status: 200,
            content_type: "application/json",
            body,
        }
    }

    fn error(status: u16, message: &str) -> Self {
        Response {
            status,
            content_type: "application/json",
            body: format!("{{\"error\":{}}}", json_str(message)),
        }
    }
}

/// The settings of a session.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// Dropout's drop probability.
    pub p: f64,
    /// Seed of the dropout masks.
    pub seed: u64,
    /// Batch size N.
    pub n: usize,
    /// Hidden units H.
    pub hidden: usize,
    /// SGD learning rate.
    pub lr: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            p: 0.5,
            seed: 1,
            n: 128,
            hidden: 64,
            lr: 0.5,
        }
    }
}

/// One point of the curves, after a step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Loss of the dropout run's step, measured with its mask (training mode).
    pub train_loss: f64,
    /// Accuracy of the same forward pass.
    pub train_acc: f64,
    /// The dropout run's weights before the step, evaluated with dropout off.
    pub eval_loss: f64,
    /// Accuracy with dropout off.
    pub eval_acc: f64,
    /// Loss of the run without dropout (p = 0) at the same step.
    pub plain_loss: f64,
    /// Its accuracy.
    pub plain_acc: f64,
}

/// What the last step of the dropout run looked like.
#[derive(Debug, Clone)]
pub struct StepView {
    /// The mask, one string of '0'/'1' per batch row ('1' = kept).
    pub mask: Vec<String>,
    /// The tape before backward: (id, op, inputs, dims, requires_grad, saved bytes, saved state).
    pub rows: Vec<tapegrad::TapeRow>,
    /// The backward pass, traced.
    pub trace: BackwardTrace,
    /// The gradient of each parameter: (name, summary).
    pub grads: Vec<(String, TensorSummary)>,
    /// The graph in DOT with every edge labelled by its gradient.
    pub dot: String,
}

/// One training session: two runs of the lesson's model from the same start.
pub struct Session {
    /// Its settings.
    pub settings: Settings,
    data: LessonData<f64>,
    /// Weights of the run with dropout.
    pub dropout_weights: MlpWeights<f64>,
    /// Weights of the run without dropout.
    pub plain_weights: MlpWeights<f64>,
    rng: Pcg64,
    /// One point per step taken.
    pub history: Vec<Point>,
    /// The last step of the dropout run.
    pub last: Option<StepView>,
}

impl Session {
    /// A new session; fails on settings outside the limits.
    pub fn new(settings: Settings) -> Result<Self, String> {
        if !(0.0..=1.0).contains(&settings.p) {
            return Err(format!("p must be in [0, 1], got {}", settings.p));
        }
        if settings.n == 0 || settings.n > MAX_N {
            return Err(format!("n must be in 1..={MAX_N}, got {}", settings.n));
        }
        if settings.hidden == 0 || settings.hidden > MAX_HIDDEN {
            return Err(format!(
                "hidden must be in 1..={MAX_HIDDEN}, got {}",
                settings.hidden
            ));
        }
        if !(settings.lr.is_finite() && settings.lr > 0.0 && settings.lr <= 10.0) {
            return Err(format!("lr must be in (0, 10], got {}", settings.lr));
        }
        let (data, weights) = config(&settings)
            .generate::<f64>()
            .map_err(|e| e.to_string())?;
        Ok(Session {
            settings,
            data,
            dropout_weights: weights.clone(),
            plain_weights: weights,
            rng: Pcg64::seed_from_u64(settings.seed),
            history: Vec::new(),
            last: None,
        })
    }

    /// One SGD step of both runs.
    pub fn step(&mut self) -> Result<(), Error> {
        let (eval_loss, eval_acc) = evaluate(&self.data, &self.dropout_weights)?;
        let (view, train_loss, train_acc, grads) = traced_step(
            &self.data,
            &self.dropout_weights,
            self.settings.p,
            &mut self.rng,
        )?;
        self.dropout_weights.sgd_step(&grads, self.settings.lr);
        let plain = tapegrad::lesson::tape_step(
            &self.data,
            &self.plain_weights,
            0.0,
            &mut Pcg64::seed_from_u64(0),
        )?;
        self.plain_weights.sgd_step(&plain.grads, self.settings.lr);
        self.history.push(Point {
            train_loss,
            train_acc,
            eval_loss,
            eval_acc,
            plain_loss: plain.loss,
            plain_acc: plain.accuracy,
        });
        self.last = Some(view);
        Ok(())
    }

    /// The session as JSON.
    pub fn to_json(&self) -> String {
        let s = &self.settings;
        let mut out = format!(
            "{{\"settings\":{{\"p\":{},\"seed\":{},\"n\":{},\"hidden\":{},\"lr\":{},\"d\":{},\"k\":{}}},\"step\":{}",
            num(s.p),
            s.seed,
            s.n,
            s.hidden,
            num(s.lr),
            config(s).d,
            config(s).k,
            self.history.len()
        );
        out.push_str(",\"history\":[");
        for (i, p) in self.history.iter().enumerate() {
            let _ = write!(
                out,
                "{}{{\"train_loss\":{},\"train_acc\":{},\"eval_loss\":{},\"eval_acc\":{},\"plain_loss\":{},\"plain_acc\":{}}}",
                if i > 0 { "," } else { "" },
                num(p.train_loss),
                num(p.train_acc),
                num(p.eval_loss),
                num(p.eval_acc),
                num(p.plain_loss),
                num(p.plain_acc)
            );
        }
        out.push(']');
        match &self.last {
            None => out.push_str(",\"last\":null}"),
            Some(view) => {
                out.push_str(",\"last\":");
                out.push_str(&view_json(view));
                out.push('}');
            }
        }
        out
    }
}

fn config(s: &Settings) -> LessonConfig {
    LessonConfig {
        n: s.n,
        h: s.hidden,
        ..LessonConfig::default()
    }
}

/// Loss and accuracy with dropout off (eval mode).
pub fn evaluate(data: &LessonData<f64>, w: &MlpWeights<f64>) -> Result<(f64, f64), Error> {
    let tape = Tape::no_grad();
    let logits = tape
        .constant(data.x.try_clone()?)
        .matmul(tape.constant(w.w1.try_clone()?))?
        .add(tape.constant(w.b1.try_clone()?))?
        .relu()?
        .matmul(tape.constant(w.w2.try_clone()?))?
        .add(tape.constant(w.b2.try_clone()?))?;
    let loss = logits.cross_entropy(&data.labels)?.value().item()?;
    Ok((loss, accuracy(&logits.value(), &data.labels)))
}

/// One step of the dropout run on a tape, traced: the view, loss, accuracy and gradients.
pub fn traced_step(
    data: &LessonData<f64>,
    w: &MlpWeights<f64>,
    p: f64,
    rng: &mut Pcg64,
) -> Result<(StepView, f64, f64, MlpWeights<f64>), Error> {
    let params = [
        Param::new("W1", w.w1.try_clone()?),
        Param::new("b1", w.b1.try_clone()?),
        Param::new("W2", w.w2.try_clone()?),
        Param::new("b2", w.b2.try_clone()?),
    ];
    let tape = Tape::new();
    let [w1, b1, w2, b2] = [0, 1, 2, 3].map(|i| tape.param(&params[i]));
    let h1 = tape
        .constant(data.x.try_clone()?)
        .matmul(w1)?
        .add(b1)?
        .relu()?;
    let d1 = h1.dropout(p, rng)?;
    let logits = d1.matmul(w2)?.add(b2)?;
    let loss = logits.cross_entropy(&data.labels)?;
    let rows = tape.rows();
    let hidden = w.b1.numel();
    // p = 0 records no dropout node (d1 is h1 itself, whose saved mask is ReLU's): all kept.
    let mask_bits: Vec<bool> = if p == 0.0 {
        vec![true; h1.value().numel()]
    } else {
        let (mask, _) = d1.dropout_mask()?;
        (0..mask.len()).map(|i| mask.get(i)).collect()
    };
    let mask = mask_bits
        .chunks(hidden.max(1))
        .map(|row| row.iter().map(|&b| if b { '1' } else { '0' }).collect())
        .collect();
    let options = BackwardOptions::new().trace(true).retain_graph(true);
    let mut grads = loss.backward_with(options)?;
    let trace = grads.trace().cloned().unwrap_or_default();
    let dot = tape.to_dot_traced(&trace);
    let mut take = |i: usize| {
        grads
            .take_param(&params[i])
            .ok_or(Error::NoGradient { node: i })
    };
    let g = MlpWeights {
        w1: take(0)?,
        b1: take(1)?,
        w2: take(2)?,
        b2: take(3)?,
    };
    let summaries = ["W1", "b1", "W2", "b2"]
        .iter()
        .zip(g.tensors())
        .map(|(name, t)| (name.to_string(), TensorSummary::of(t)))
        .collect();
    let view = StepView {
        mask,
        rows,
        trace,
        grads: summaries,
        dot,
    };
    Ok((
        view,
        loss.value().item()?,
        accuracy(&logits.value(), &data.labels),
        g,
    ))
}

fn summary_json(s: &TensorSummary) -> String {
    let head: Vec<String> = s.head.iter().map(|&v| num(v)).collect();
    format!(
        "{{\"dims\":{:?},\"norm\":{},\"head\":[{}]}}",
        s.dims,
        num(s.norm),
        head.join(",")
    )
}

fn view_json(view: &StepView) -> String {
    let mut out = String::from("{\"mask\":[");
    let rows: Vec<String> = view.mask.iter().map(|r| json_str(r)).collect();
    out.push_str(&rows.join(","));
    out.push_str("],\"tape\":[");
    for (i, r) in view.rows.iter().enumerate() {
        let inputs: Vec<usize> = r.inputs.iter().map(|n| n.index()).collect();
        let _ = write!(
            out,
            "{}{{\"id\":{},\"op\":{},\"inputs\":{:?},\"dims\":{:?},\"grad\":{},\"saved_bytes\":{},\"saved\":{}}}",
            if i > 0 { "," } else { "" },
            r.id.index(),
            json_str(&r.op),
            inputs,
            r.dims,
            r.requires_grad,
            r.saved_bytes.map_or("null".into(), |b| b.to_string()),
            json_str(&r.saved)
        );
    }
    out.push_str("],\"trace\":[");
    for (i, step) in view.trace.steps.iter().enumerate() {
        let sent: Vec<String> = step
            .sent
            .iter()
            .map(|(to, g)| format!("{{\"to\":{},\"grad\":{}}}", to.index(), summary_json(g)))
            .collect();
        let _ = write!(
            out,
            "{}{{\"node\":{},\"op\":{},\"received\":{},\"sent\":[{}]}}",
            if i > 0 { "," } else { "" },
            step.node.index(),
            json_str(step.op),
            summary_json(&step.received),
            sent.join(",")
        );
    }
    out.push_str("],\"edges\":[");
    let mut first = true;
    for row in &view.rows {
        let step = view.trace.steps.iter().find(|s| s.node == row.id);
        let mut sent: Vec<&(NodeId, TensorSummary)> =
            step.map(|s| s.sent.iter().collect()).unwrap_or_default();
        for input in &row.inputs {
            let grad = sent
                .iter()
                .position(|(to, _)| to == input)
                .map(|k| summary_json(&sent.remove(k).1))
                .unwrap_or_else(|| "null".into());
            let _ = write!(
                out,
                "{}{{\"from\":{},\"to\":{},\"grad\":{grad}}}",
                if first { "" } else { "," },
                input.index(),
                row.id.index()
            );
            first = false;
        }
    }
    out.push_str("],\"grads\":{");
    let grads: Vec<String> = view
        .grads
        .iter()
        .map(|(name, s)| format!("{}:{}", json_str(name), summary_json(s)))
        .collect();
    out.push_str(&grads.join(","));
    out.push_str("},\"dot\":");
    out.push_str(&json_str(&view.dot));
    out.push('}');
    out
}

/// A JSON number; NaN and infinities (which JSON lacks) become null.
fn num(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else {
        "null".into()
    }
}

/// A JSON string literal.
pub fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The query string as (name, value) pairs; fails on malformed pairs or encodings.
fn parse_query(query: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("malformed query parameter {pair:?} (expected name=value)"))?;
        out.push((decode(name)?, decode(value)?));
    }
    Ok(out)
}

/// Percent-decoding of a query component ('+' is a space).
fn decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = s
                    .get(i + 1..i + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("malformed percent-encoding in {s:?}"))?;
                out.push(hex);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| format!("{s:?} is not UTF-8 once decoded"))
}

fn parse<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, String> {
    value
        .trim()
        .parse()
        .map_err(|_| format!("{name} = {value:?} is not a valid number"))
}

/// The server's state: at most one session.
#[derive(Default)]
pub struct Explorer {
    session: Option<Session>,
}

impl Explorer {
    /// An explorer with no session yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The current session, made with the default settings if there is none.
    pub fn session(&mut self) -> Result<&mut Session, String> {
        if self.session.is_none() {
            self.session = Some(Session::new(Settings::default())?);
        }
        self.session
            .as_mut()
            .ok_or_else(|| "no session".to_string())
    }

    /// Answers one request.
    pub fn handle(&mut self, method: &str, url: &str) -> Response {
        if method != "GET" && method != "POST" {
            return Response::error(405, &format!("method {method} not allowed (GET or POST)"));
        }
        if url.len() > 2048 {
            return Response::error(400, "request URL longer than 2048 bytes");
        }
        let (path, query) = url.split_once('?').unwrap_or((url, ""));
        let params = match parse_query(query) {
            Ok(p) => p,
            Err(e) => return Response::error(400, &e),
        };
        let result = match path {
            "/" | "/index.html" => {
                return Response {
                    status: 200,
                    content_type: "text/html; charset=utf-8",
                    body: PAGE.to_string(),
                };
            }
            "/api/state" => self.state(&params),
            "/api/reset" => self.reset(&params),
            "/api/step" => self.step(&params),
            _ => return Response::error(404, &format!("no such page: {path}")),
        };
        match result {
            Ok(body) => Response::json(body),
            Err(e) => Response::error(400, &e),
        }
    }

    fn state(&mut self, params: &[(String, String)]) -> Result<String, String> {
        if let Some((name, _)) = params.first() {
            return Err(format!("/api/state takes no parameters, got {name:?}"));
        }
        Ok(self.session()?.to_json())
    }

    fn reset(&mut self, params: &[(String, String)]) -> Result<String, String> {
        let mut s = Settings::default();
        for (name, value) in params {
            match name.as_str() {
                "p" => s.p = parse(name, value)?,
                "seed" => s.seed = parse(name, value)?,
                "n" => s.n = parse(name, value)?,
                "hidden" => s.hidden = parse(name, value)?,
                "lr" => s.lr = parse(name, value)?,
                _ => {
                    return Err(format!(
                        "unknown parameter {name:?} (reset takes p, seed, n, hidden, lr)"
                    ));
                }
            }
        }
        self.session = Some(Session::new(s)?);
        Ok(self.session()?.to_json())
    }

    fn step(&mut self, params: &[(String, String)]) -> Result<String, String> {
        let mut count = 1usize;
        for (name, value) in params {
            match name.as_str() {
                "count" => count = parse(name, value)?,
                _ => return Err(format!("unknown parameter {name:?} (step takes count)")),
            }
        }
        if count == 0 || count > MAX_COUNT {
            return Err(format!("count must be in 1..={MAX_COUNT}, got {count}"));
        }
        let session = self.session()?;
        if session.history.len() + count > MAX_STEPS {
            return Err(format!(
                "a session holds at most {MAX_STEPS} steps; reset to start again"
            ));
        }
        for _ in 0..count {
            session.step().map_err(|e| e.to_string())?;
        }
        Ok(session.to_json())
    }
}
