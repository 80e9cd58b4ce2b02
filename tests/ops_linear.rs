//! The fused linear map `x·Wᵀ + b`: values and gradients against loops written here, gradcheck and
//! gradgradcheck over ranks, zero-size axes and with or without a bias, the recorded backward
//! against the plain one, agreement with the unfused `matmul_t` + `add`, every error, the layer on
//! top of it, PyTorch's `F.linear` golden values, and the engine's by-value gradients (which the
//! layer's backward chain relies on) against the borrowed ones.

mod common;

use common::{Golden, assert_close, checked_fn, randn};
use tapegrad::nn::{Context, Forward, Linear};
use tapegrad::{
    BackwardOptions, Error, GradcheckOptions, Tape, Tensor, Var, gradcheck, gradgradcheck,
};

/// y[r, j] = Σₖ x[r, k]·w[j, k] + b[j] and the three gradients for a seed g, by loops.
struct Reference {
    y: Vec<f64>,
    dx: Vec<f64>,
    dw: Vec<f64>,
    db: Vec<f64>,
}

fn reference(x: &[f64], w: &[f64], b: Option<&[f64]>, g: &[f64], inputs: usize) -> Reference {
    let outputs = w.len() / inputs.max(1);
    let outputs = if inputs == 0 {
        b.map_or(0, <[f64]>::len)
    } else {
        outputs
    };
    let rows = g.len().checked_div(outputs).unwrap_or(0);
    let mut r = Reference {
        y: vec![0.0; rows * outputs],
        dx: vec![0.0; rows * inputs],
        dw: vec![0.0; outputs * inputs],
        db: vec![0.0; outputs],
    };
    for i in 0..rows {
        for j in 0..outputs {
            let gij = g[i * outputs + j];
            let mut acc = b.map_or(0.0, |b| b[j]);
            for k in 0..inputs {
                acc += x[i * inputs + k] * w[j * inputs + k];
                r.dx[i * inputs + k] += gij * w[j * inputs + k];
                r.dw[j * inputs + k] += gij * x[i * inputs + k];
            }
            r.y[i * outputs + j] = acc;
            r.db[j] += gij;
        }
    }
    r
}

#[test]
fn values_and_gradients_match_the_definition() {
    for (x_dims, out, bias) in [
        (vec![4, 3], 5, true),
        (vec![4, 3], 5, false),
        (vec![3], 2, true),
        (vec![2, 3, 4], 3, true),
        (vec![2, 1, 3, 4], 2, false),
        (vec![40, 70], 33, true),
    ] {
        let inputs = *x_dims.last().unwrap();
        let x = randn(&x_dims, 1);
        let w = randn(&[out, inputs], 2);
        let b = randn(&[out], 3);
        let mut y_dims = x_dims.clone();
        *y_dims.last_mut().unwrap() = out;
        let g = randn(&y_dims, 4);
        let want = reference(
            x.data(),
            w.data(),
            bias.then_some(b.data()),
            g.data(),
            inputs,
        );
        let tape = Tape::new();
        let (vx, vw, vb) = (tape.leaf(x), tape.leaf(w), tape.leaf(b));
        let y = vx.linear(vw, bias.then_some(vb)).unwrap();
        assert_eq!(y.shape().dims(), y_dims.as_slice());
        assert_close(y.value().data(), &want.y, 1e-12);
        let grads = y.backward_with(BackwardOptions::new().seed(g)).unwrap();
        assert_close(grads.wrt(vx).unwrap().data(), &want.dx, 1e-12);
        assert_close(grads.wrt(vw).unwrap().data(), &want.dw, 1e-12);
        if bias {
            assert_close(grads.wrt(vb).unwrap().data(), &want.db, 1e-12);
        } else {
            assert!(grads.wrt(vb).is_err(), "an unused bias has no gradient");
        }
    }
}

#[test]
fn equals_the_unfused_product_and_sum() {
    // Small integers: every product and partial sum is exact, so the fused order of additions
    // (b first, then the product) gives the same bits as (x·Wᵀ) + b.
    let int = |dims: &[usize], seed: u64| randn(dims, seed).map(|v| (v * 3.0).round()).unwrap();
    let (x, w, b) = (int(&[9, 6], 5), int(&[4, 6], 6), int(&[4], 7));
    let (fused_tape, unfused_tape) = (Tape::new(), Tape::new());
    fn leaves<'t>(tape: &'t Tape<f64>, values: [&Tensor<f64>; 3]) -> [Var<'t, f64>; 3] {
        values.map(|t| tape.leaf(t.clone()))
    }
    let (f, u) = (
        leaves(&fused_tape, [&x, &w, &b]),
        leaves(&unfused_tape, [&x, &w, &b]),
    );
    let fused = f[0].linear(f[1], Some(f[2])).unwrap();
    let unfused = u[0].matmul_t(u[1]).unwrap().add(u[2]).unwrap();
    assert_eq!(fused.value().data(), unfused.value().data());
    let gf = fused.sum().unwrap().backward().unwrap();
    let gu = unfused.sum().unwrap().backward().unwrap();
    for (vf, vu) in f.into_iter().zip(u) {
        assert_eq!(gf.wrt(vf).unwrap().data(), gu.wrt(vu).unwrap().data());
    }
}

#[test]
fn one_node_and_one_output_tensor() {
    let tape = Tape::<f32>::new();
    let x = tape.leaf(Tensor::ones(&[8, 3]).unwrap());
    let w = tape.leaf(Tensor::ones(&[2, 3]).unwrap());
    let b = tape.leaf(Tensor::ones(&[2]).unwrap());
    let before = tape.len();
    let y = x.linear(w, Some(b)).unwrap();
    assert_eq!(tape.len(), before + 1);
    assert_eq!(y.value().data(), &[4.0; 16]);
}

fn opts() -> GradcheckOptions {
    GradcheckOptions::default()
}

#[test]
fn gradcheck_and_gradgradcheck() {
    for (k, (x_dims, out)) in [
        (vec![3, 4], 2),
        (vec![4], 3),
        (vec![2, 2, 3], 2),
        (vec![0, 3], 2),
        (vec![3, 0], 2),
        (vec![3, 2], 0),
    ]
    .into_iter()
    .enumerate()
    {
        let seed = 10 * k as u64;
        let inputs = *x_dims.last().unwrap();
        let with_bias = vec![
            randn(&x_dims, seed),
            randn(&[out, inputs], seed + 1),
            randn(&[out], seed + 2),
        ];
        let f = checked_fn(|_, v, _| v[0].linear(v[1], Some(v[2])));
        gradcheck(f, &with_bias, &opts()).unwrap_or_else(|e| panic!("{x_dims:?}→{out}: {e}"));
        gradgradcheck(f, &with_bias, &opts()).unwrap_or_else(|e| panic!("{x_dims:?}→{out}: {e}"));
        let f = checked_fn(|_, v, _| v[0].linear(v[1], None));
        gradcheck(f, &with_bias[..2], &opts()).unwrap();
        gradgradcheck(f, &with_bias[..2], &opts()).unwrap();
    }
}

#[test]
fn second_derivatives_of_a_nonlinear_use() {
    // f(x, w, b) = Σ tanh(x·Wᵀ + b): the Hessian is not zero, so gradgradcheck sees every term.
    let inputs = vec![randn(&[3, 4], 1), randn(&[2, 4], 2), randn(&[2], 3)];
    let f = checked_fn(|_, v, _| v[0].linear(v[1], Some(v[2]))?.tanh()?.sum());
    gradcheck(f, &inputs, &opts()).unwrap();
    gradgradcheck(f, &inputs, &opts()).unwrap();
}

#[test]
fn recorded_backward_equals_plain_backward() {
    let (x, w, b, g) = (
        randn(&[2, 5, 7], 21),
        randn(&[3, 7], 22),
        randn(&[3], 23),
        randn(&[2, 5, 3], 24),
    );
    let tape = Tape::new();
    let (vx, vw, vb) = (tape.leaf(x), tape.leaf(w), tape.leaf(b));
    let y = vx.linear(vw, Some(vb)).unwrap();
    let graph = y.backward_graph(Some(tape.constant(g.clone()))).unwrap();
    let plain = y
        .backward_with(BackwardOptions::new().seed(g).retain_graph(true))
        .unwrap();
    for v in [vx, vw, vb] {
        assert_close(
            graph.wrt(v).unwrap().value().data(),
            plain.wrt(v).unwrap().data(),
            1e-13,
        );
    }
}

fn linear_err(x: &[usize], w: &[usize], b: Option<&[usize]>) -> Error {
    let tape = Tape::<f32>::new();
    let vx = tape.constant(Tensor::zeros(x).unwrap());
    let vw = tape.constant(Tensor::zeros(w).unwrap());
    let vb = b.map(|b| tape.constant(Tensor::zeros(b).unwrap()));
    vx.linear(vw, vb).unwrap_err()
}

#[test]
fn errors_name_the_op_and_the_shapes() {
    let msg = |e: Error| e.to_string();
    assert_eq!(
        msg(linear_err(&[4, 3], &[2, 5], None)),
        "linear: incompatible shapes [4, 3] and [2, 5]"
    );
    assert!(matches!(
        linear_err(&[], &[2, 1], None),
        Error::BadRank { op: "linear", .. }
    ));
    assert!(matches!(
        linear_err(&[4, 3], &[2, 3, 1], None),
        Error::BadRank { op: "linear", .. }
    ));
    let e = msg(linear_err(&[4, 3], &[2, 3], Some(&[3])));
    assert!(
        e.starts_with("linear: ") && e.contains("[3]") && e.contains("[2]"),
        "{e}"
    );
    let e = msg(linear_err(&[4, 3], &[2, 3], Some(&[1, 2])));
    assert!(e.contains("[1, 2]"), "{e}");
    // Operands on different tapes.
    let (t1, t2) = (Tape::<f32>::new(), Tape::<f32>::new());
    let x = t1.constant(Tensor::zeros(&[1, 2]).unwrap());
    let w = t2.constant(Tensor::zeros(&[2, 2]).unwrap());
    assert!(x.linear(w, None).is_err());
}

#[test]
fn the_layer_is_the_fused_op() {
    let mut rng = common::rng(3);
    let layer = Linear::<f64>::new(4, 3, &mut rng).unwrap();
    let x = randn(&[5, 2, 4], 9);
    let tape = Tape::new();
    let vx = tape.leaf(x.clone());
    let y = layer.forward(&mut Context::eval(), vx).unwrap();
    let w = tape.param(&layer.weight);
    let b = tape.param(layer.bias.as_ref().unwrap());
    let direct = vx.linear(w, Some(b)).unwrap();
    assert_eq!(y.value().data(), direct.value().data());
    assert_eq!(y.shape().dims(), &[5, 2, 3]);
    assert!(matches!(
        layer.forward(&mut Context::eval(), tape.leaf(Tensor::scalar(1.0))),
        Err(Error::BadRank { .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// PyTorch golden values
// ---------------------------------------------------------------------------------------------

trait GoldenFloat: tapegrad::Float {
    fn read(golden: &Golden, name: &str) -> Tensor<Self>;
    fn wide(t: &Tensor<Self>) -> Vec<f64>;
}

impl GoldenFloat for f32 {
    fn read(golden: &Golden, name: &str) -> Tensor<f32> {
        golden.f32(name)
    }
    fn wide(t: &Tensor<f32>) -> Vec<f64> {
        t.data().iter().map(|&v| v as f64).collect()
    }
}

impl GoldenFloat for f64 {
    fn read(golden: &Golden, name: &str) -> Tensor<f64> {
        golden.f64(name)
    }
    fn wide(t: &Tensor<f64>) -> Vec<f64> {
        t.data().to_vec()
    }
}

fn check_golden<T: GoldenFloat>(golden: &Golden, case: &str, dtype: &str, rtol: f64, atol: f64) {
    let get = |t: &str| T::read(golden, &format!("{case}.{t}.{dtype}"));
    let tape = Tape::<T>::new();
    let x = tape.leaf(get("x"));
    let w = tape.leaf(get("w"));
    let b = golden
        .has(&format!("{case}.b.{dtype}"))
        .then(|| tape.leaf(get("b")));
    let y = x.linear(w, b).unwrap();
    let close = |what: &str, got: &Tensor<T>, want: &Tensor<T>| {
        assert_eq!(got.dims(), want.dims(), "{case} {dtype} {what}: shape");
        for (i, (g, w)) in T::wide(got).iter().zip(T::wide(want)).enumerate() {
            assert!(
                (g - w).abs() <= atol + rtol * w.abs(),
                "{case} {dtype} {what}[{i}]: {g} vs PyTorch {w}"
            );
        }
    };
    close("y", &y.value(), &get("y"));
    let grads = y
        .backward_with(BackwardOptions::new().seed(get("g")))
        .unwrap();
    close("dx", grads.wrt(x).unwrap(), &get("dx"));
    close("dw", grads.wrt(w).unwrap(), &get("dw"));
    if let Some(b) = b {
        close("db", grads.wrt(b).unwrap(), &get("db"));
    }
}

#[test]
fn pytorch_golden_values() {
    let golden = Golden::open("ops_linear.safetensors");
    let cases: Vec<String> = golden
        .names()
        .iter()
        .filter_map(|n| n.strip_suffix(".y.f64").map(str::to_string))
        .collect();
    assert_eq!(cases.len(), 10, "{cases:?}");
    for case in &cases {
        check_golden::<f64>(&golden, case, "f64", 1e-12, 1e-12);
        check_golden::<f32>(&golden, case, "f32", 1e-5, 1e-6);
    }
}

// ---------------------------------------------------------------------------------------------
// Gradients passed by value
// ---------------------------------------------------------------------------------------------

/// The rules that reuse the incoming gradient's buffer (ReLU and dropout in place, reshape, add,
/// sub) give the same bits as when they borrow it (`keep_intermediate`, where the engine keeps
/// every gradient and so cannot hand it over).
#[test]
fn gradients_by_value_equal_gradients_by_reference() {
    let run = |keep: bool| {
        let mut rng = common::rng(5);
        let tape = Tape::<f32>::new();
        let x = tape.leaf(Tensor::normal(&[6, 8], 0.0, 1.0, &mut rng).unwrap());
        let w = tape.leaf(Tensor::normal(&[5, 8], 0.0, 1.0, &mut rng).unwrap());
        let b = tape.leaf(Tensor::normal(&[5], 0.0, 1.0, &mut rng).unwrap());
        let h = x.linear(w, Some(b)).unwrap();
        let a = h.relu().unwrap().dropout(0.3, &mut rng).unwrap();
        let r = a.add(h).unwrap().sub(b).unwrap().reshape(&[3, 10]).unwrap();
        let loss = r.mul(r).unwrap().sum().unwrap();
        let grads = loss
            .backward_with(BackwardOptions::new().keep_intermediate(keep))
            .unwrap();
        [x, w, b].map(|v| grads.wrt(v).unwrap().data().to_vec())
    };
    assert_eq!(run(false), run(true));
}
