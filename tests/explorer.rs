//! The explorer's endpoints (`examples/explorer/api.rs`), called without a server: every value they
//! answer is checked against the engine and the lesson's hand-derived step called directly, and bad
//! input must give a clear error while the explorer keeps working.

#[allow(dead_code)]
#[path = "../examples/explorer/api.rs"]
mod api;

use api::{Explorer, Response};
use rand::SeedableRng;
use rand_pcg::Pcg64;
use serde_json::Value;
use tapegrad::BitMask;
use tapegrad::lesson::{LessonConfig, eval_accuracy, manual_step, tape_step};

fn get(explorer: &mut Explorer, url: &str) -> (u16, Value) {
    let Response { status, body, .. } = explorer.handle("POST", url);
    let json: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{url}: {e}: {body}"));
    (status, json)
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn close(a: f64, b: f64, what: &str) {
    assert!((a - b).abs() <= 1e-12, "{what}: explorer {a} vs engine {b}");
}

#[test]
fn one_step_matches_the_engine_and_the_hand_derived_gradients() {
    let (p, seed, n, h) = (0.3, 11u64, 32usize, 16usize);
    let mut ex = Explorer::new();
    let (status, state) = get(
        &mut ex,
        &format!("/api/reset?p={p}&seed={seed}&n={n}&hidden={h}"),
    );
    assert_eq!(status, 200);
    assert_eq!(state["step"], 0);
    assert!(state["last"].is_null());
    let (status, state) = get(&mut ex, "/api/step");
    assert_eq!(status, 200);
    assert_eq!(state["step"], 1);

    let config = LessonConfig {
        n,
        h,
        ..LessonConfig::default()
    };
    let (data, weights) = config.generate::<f64>().unwrap();
    let taped = tape_step(&data, &weights, p, &mut Pcg64::seed_from_u64(seed)).unwrap();
    let manual = manual_step(&data, &weights, p, &mut Pcg64::seed_from_u64(seed)).unwrap();
    let point = &state["history"][0];
    close(f(&point["train_loss"]), taped.loss, "train loss");
    close(f(&point["train_loss"]), manual.loss, "train loss (by hand)");
    assert_eq!(f(&point["train_acc"]), taped.accuracy);

    // Eval: the weights before the step with dropout off, i.e. the hand-derived step at p = 0.
    let eval = manual_step(&data, &weights, 0.0, &mut Pcg64::seed_from_u64(0)).unwrap();
    close(f(&point["eval_loss"]), eval.loss, "eval loss");
    assert_eq!(
        f(&point["eval_acc"]),
        eval_accuracy(&data, &weights).unwrap()
    );
    close(
        f(&point["plain_loss"]),
        eval.loss,
        "the run without dropout starts at the eval loss",
    );

    // The mask: the one BitMask::dropout draws from the same seed.
    let mask = BitMask::dropout(n * h, p, &mut Pcg64::seed_from_u64(seed)).unwrap();
    let rows: Vec<&str> = state["last"]["mask"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(rows.len(), n);
    for (i, row) in rows.iter().enumerate() {
        let want: String = (0..h)
            .map(|j| if mask.get(i * h + j) { '1' } else { '0' })
            .collect();
        assert_eq!(*row, want, "mask row {i}");
    }

    // Parameter gradients: norms and first values equal the hand-derived ones.
    let grads = &state["last"]["grads"];
    for (name, t) in ["W1", "b1", "W2", "b2"].iter().zip(manual.grads.tensors()) {
        let norm = t.data().iter().map(|v| v * v).sum::<f64>().sqrt();
        close(f(&grads[name]["norm"]), norm, &format!("|G_{name}|"));
        for (k, v) in grads[name]["head"].as_array().unwrap().iter().enumerate() {
            close(f(v), t.data()[k], &format!("G_{name}[{k}]"));
        }
    }

    // The tape: 4 parameters, X, then matmul, add, relu, dropout, matmul, add, log_softmax, nll;
    // dropout saves n·h bits (rounded up to 64-bit words) and the f64 scale.
    let tape = state["last"]["tape"].as_array().unwrap();
    let ops: Vec<&str> = tape.iter().map(|r| r["op"].as_str().unwrap()).collect();
    assert_eq!(
        ops,
        [
            "param W1",
            "param b1",
            "param W2",
            "param b2",
            "constant",
            "matmul",
            "add",
            "relu",
            "dropout",
            "matmul",
            "add",
            "log_softmax",
            "nll"
        ]
    );
    let dropout_bytes = tape[8]["saved_bytes"].as_u64().unwrap() as usize;
    assert_eq!(dropout_bytes, (n * h).div_ceil(64) * 8 + 8);

    // The trace runs from the loss back, and the graph's edges carry what it sent.
    let trace = state["last"]["trace"].as_array().unwrap();
    assert_eq!(trace[0]["op"], "nll");
    assert_eq!(trace.last().unwrap()["op"], "matmul");
    let edges = state["last"]["edges"].as_array().unwrap();
    let into_w1 = edges.iter().find(|e| e["from"] == 0).unwrap();
    close(
        f(&into_w1["grad"]["norm"]),
        f(&grads["W1"]["norm"]),
        "edge into W1",
    );
    let from_x = edges.iter().find(|e| e["from"] == 4).unwrap();
    assert!(from_x["grad"].is_null(), "X wants no gradient");
    assert!(
        state["last"]["dot"]
            .as_str()
            .unwrap()
            .starts_with("digraph tape")
    );
}

#[test]
fn several_steps_follow_the_lesson_trajectory_with_and_without_dropout() {
    let (p, seed, lr) = (0.5, 3u64, 0.25);
    let mut ex = Explorer::new();
    get(
        &mut ex,
        &format!("/api/reset?p={p}&seed={seed}&n=24&hidden=8&lr={lr}"),
    );
    let (status, state) = get(&mut ex, "/api/step?count=5");
    assert_eq!(status, 200);
    assert_eq!(state["step"], 5);

    let (data, initial) = LessonConfig {
        n: 24,
        h: 8,
        ..LessonConfig::default()
    }
    .generate::<f64>()
    .unwrap();
    let (mut on, mut off) = (initial.clone(), initial);
    let mut rng = Pcg64::seed_from_u64(seed);
    for k in 0..5 {
        let a = manual_step(&data, &on, p, &mut rng).unwrap();
        let b = manual_step(&data, &off, 0.0, &mut Pcg64::seed_from_u64(0)).unwrap();
        let point = &state["history"][k];
        close(
            f(&point["train_loss"]),
            a.loss,
            &format!("step {k} loss with dropout"),
        );
        close(
            f(&point["plain_loss"]),
            b.loss,
            &format!("step {k} loss without dropout"),
        );
        on.sgd_step(&a.grads, lr);
        off.sgd_step(&b.grads, lr);
    }
    // The sessions' weights after 5 steps.
    let mut ex_session = ex;
    let session = ex_session.session().unwrap();
    assert!(session.dropout_weights.max_abs_diff(&on).unwrap() <= 1e-12);
    assert!(session.plain_weights.max_abs_diff(&off).unwrap() <= 1e-12);
}

#[test]
fn p_zero_keeps_everything_and_p_one_drops_everything() {
    let mut ex = Explorer::new();
    for (p, bit) in [(0.0, '1'), (1.0, '0')] {
        get(&mut ex, &format!("/api/reset?p={p}&n=4&hidden=8"));
        let (status, state) = get(&mut ex, "/api/step");
        assert_eq!(status, 200, "{state}");
        for row in state["last"]["mask"].as_array().unwrap() {
            assert!(
                row.as_str().unwrap().chars().all(|c| c == bit),
                "p = {p}: {row}"
            );
        }
    }
}

#[test]
fn bad_input_answers_a_clear_error_and_the_explorer_keeps_working() {
    let mut ex = Explorer::new();
    let cases = [
        ("/api/reset?p=1.5", 400, "p must be in [0, 1]"),
        ("/api/reset?p=-0.1", 400, "p must be in [0, 1]"),
        ("/api/reset?p=NaN", 400, "p must be in [0, 1]"),
        ("/api/reset?p=half", 400, "not a valid number"),
        ("/api/reset?n=0", 400, "n must be in"),
        ("/api/reset?n=100000000", 400, "n must be in"),
        ("/api/reset?hidden=1000000", 400, "hidden must be in"),
        ("/api/reset?lr=inf", 400, "lr must be in"),
        ("/api/reset?seed=-1", 400, "not a valid number"),
        ("/api/reset?p", 400, "malformed query parameter"),
        ("/api/reset?p=%G0", 400, "malformed percent-encoding"),
        ("/api/reset?colour=red", 400, "unknown parameter"),
        ("/api/step?count=0", 400, "count must be in"),
        ("/api/step?count=1000000", 400, "count must be in"),
        ("/api/state?x=1", 400, "takes no parameters"),
        ("/api/nothing", 404, "no such page"),
    ];
    for (url, status, message) in cases {
        let (got, json) = get(&mut ex, url);
        assert_eq!(got, status, "{url}: {json}");
        let error = json["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{url}: {json}"));
        assert!(error.contains(message), "{url}: {error}");
    }
    let long = format!("/api/reset?p={}", "0".repeat(3000));
    assert_eq!(ex.handle("GET", &long).status, 400);
    assert_eq!(ex.handle("DELETE", "/api/state").status, 405);
    // Still serving: a step from the default session works.
    let (status, state) = get(&mut ex, "/api/step");
    assert_eq!(status, 200);
    assert_eq!(state["settings"]["p"], 0.5);
}

#[test]
fn the_page_is_embedded_and_needs_no_network() {
    let mut ex = Explorer::new();
    let page = ex.handle("GET", "/");
    assert_eq!(page.status, 200);
    assert!(page.content_type.starts_with("text/html"));
    for id in [
        "id=\"p\"",
        "id=\"seed\"",
        "id=\"step\"",
        "id=\"run\"",
        "id=\"mask\"",
        "id=\"tape\"",
        "id=\"trace\"",
        "id=\"graph\"",
        "id=\"loss\"",
    ] {
        assert!(page.body.contains(id), "{id}");
    }
    assert!(
        !page.body.contains("http://") && !page.body.contains("https://"),
        "no CDN"
    );
}
