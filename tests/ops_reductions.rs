//! Reductions along an axis: max/min (with indices), amax/amin, argmax/argmin, var/std,
//! logsumexp, norm, prod, cumsum.
//!
//! - gradcheck and gradgradcheck over shapes with zero-size dimensions, every axis (negative too),
//!   `None` (every element), rank 0, keepdim both ways;
//! - the conventions at ties and kinks (first index for max/min, even split for amax/amin and the
//!   ∞-norm, sign(0) = 0, the zero vector, zeros in prod);
//! - values and gradients against plain loops written here;
//! - every error;
//! - PyTorch's values from `tests/golden/ops_reductions.safetensors` (script beside it).

mod common;

use common::{Golden, away_from_zero, randn, uniform};
use tapegrad::{
    BackwardOptions, Error, Float, GradcheckOptions, Indices, NormOrd, Result, Tape, Tensor, Var,
    gradcheck, gradgradcheck,
};

fn opts() -> GradcheckOptions {
    GradcheckOptions::default()
}

macro_rules! check {
    ($inputs:expr, |$tape:pat_param, $v:ident, $rng:pat_param| $body:expr) => {{
        let inputs: Vec<Tensor<f64>> = $inputs;
        if let Err(e) = gradcheck(|$tape, $v, $rng| $body, &inputs, &opts()) {
            panic!("gradcheck: {e}");
        }
        if let Err(e) = gradgradcheck(|$tape, $v, $rng| $body, &inputs, &opts()) {
            panic!("gradgradcheck: {e}");
        }
    }};
}

/// (dims, axis) pairs: every rank up to 3, negative axes, `None`, rank 0, zero-size dimensions.
const SHAPES: &[(&[usize], Option<isize>)] = &[
    (&[5], Some(0)),
    (&[5], None),
    (&[3, 4], Some(1)),
    (&[3, 4], Some(-2)),
    (&[2, 3, 4], Some(1)),
    (&[2, 3, 4], Some(-1)),
    (&[2, 3, 4], Some(0)),
    (&[2, 3, 4], None),
    (&[], None),
    (&[], Some(0)),
    (&[], Some(-1)),
    (&[0, 3], Some(1)),
    (&[3, 0], Some(0)),
    (&[0, 3], Some(0)),
    (&[2, 0], None),
];

/// Length of the reduced slices.
fn slice_len(dims: &[usize], axis: Option<isize>) -> usize {
    match axis {
        None => dims.iter().product(),
        Some(_) if dims.is_empty() => 1,
        Some(a) => {
            dims[if a < 0 {
                (a + dims.len() as isize) as usize
            } else {
                a as usize
            }]
        }
    }
}

/// The flat positions of every slice, in output order, by plain index arithmetic.
fn slices(dims: &[usize], axis: Option<isize>) -> Vec<Vec<usize>> {
    let n: usize = dims.iter().product();
    let Some(a) = axis else {
        return vec![(0..n).collect()];
    };
    if dims.is_empty() {
        return vec![vec![0]];
    }
    let a = if a < 0 {
        (a + dims.len() as isize) as usize
    } else {
        a as usize
    };
    let outer: usize = dims[..a].iter().product();
    let len = dims[a];
    let inner: usize = dims[a + 1..].iter().product();
    let mut out = Vec::new();
    for o in 0..outer {
        for i in 0..inner {
            out.push((0..len).map(|l| (o * len + l) * inner + i).collect());
        }
    }
    out
}

/// The output dimensions a reduction should have.
fn reduced_dims(dims: &[usize], axis: Option<isize>, keepdim: bool) -> Vec<usize> {
    match axis {
        None if keepdim => vec![1; dims.len()],
        None => vec![],
        Some(_) if dims.is_empty() => vec![],
        Some(a) => {
            let a = if a < 0 {
                (a + dims.len() as isize) as usize
            } else {
                a as usize
            };
            let mut d = dims.to_vec();
            if keepdim {
                d[a] = 1;
            } else {
                d.remove(a);
            }
            d
        }
    }
}

// ---------------------------------------------------------------------------------------------
// gradcheck + gradgradcheck

#[test]
fn max_min_amax_amin_gradcheck() {
    for (k, &(dims, axis)) in SHAPES.iter().enumerate() {
        if slice_len(dims, axis) == 0 {
            continue; // undefined: tested in `empty_reductions_that_are_undefined_fail`
        }
        for keepdim in [false, true] {
            let x = || vec![randn(dims, 100 + k as u64)];
            if let Some(a) = axis {
                check!(x(), |_, v, _| v[0].max(a, keepdim).map(|p| p.0));
                check!(x(), |_, v, _| v[0].min(a, keepdim).map(|p| p.0));
                // Squared, so the graph path's routing node sees a gradient that depends on x.
                check!(x(), |_, v, _| {
                    let m = v[0].max(a, keepdim)?.0;
                    m.mul(m)
                });
            }
            check!(x(), |_, v, _| v[0].amax(axis, keepdim));
            check!(x(), |_, v, _| v[0].amin(axis, keepdim));
            check!(x(), |_, v, _| {
                let m = v[0].amin(axis, keepdim)?;
                m.mul(m)
            });
        }
    }
}

#[test]
fn var_std_gradcheck() {
    for (k, &(dims, axis)) in SHAPES.iter().enumerate() {
        for keepdim in [false, true] {
            let x = || vec![randn(dims, 200 + k as u64)];
            let n = slice_len(dims, axis) as f64;
            for correction in [0.0, 1.0, 0.5, -1.0] {
                if n - correction <= 0.0 || n == 0.0 {
                    continue; // ∞/NaN: tested against PyTorch's values in the golden file
                }
                check!(x(), |_, v, _| v[0].var(axis, correction, keepdim));
                check!(x(), |_, v, _| v[0].std(axis, correction, keepdim));
            }
        }
    }
}

#[test]
fn logsumexp_norm_gradcheck() {
    for (k, &(dims, axis)) in SHAPES.iter().enumerate() {
        for keepdim in [false, true] {
            let seed = 300 + k as u64;
            check!(vec![randn(dims, seed)], |_, v, _| v[0]
                .logsumexp(axis, keepdim));
            check!(vec![away_from_zero(dims, seed, 0.1)], |_, v, _| v[0].norm(
                NormOrd::L1,
                axis,
                keepdim
            ));
            check!(vec![randn(dims, seed)], |_, v, _| v[0].norm(
                NormOrd::L2,
                axis,
                keepdim
            ));
            check!(vec![away_from_zero(dims, seed, 0.1)], |_, v, _| {
                let y = v[0].norm(NormOrd::L1, axis, keepdim)?;
                y.mul(y)
            });
            if slice_len(dims, axis) > 0 {
                check!(vec![away_from_zero(dims, seed, 0.1)], |_, v, _| v[0].norm(
                    NormOrd::Inf,
                    axis,
                    keepdim
                ));
                check!(vec![away_from_zero(dims, seed, 0.1)], |_, v, _| {
                    let y = v[0].norm(NormOrd::Inf, axis, keepdim)?;
                    y.mul(y)
                });
            }
        }
    }
}

#[test]
fn prod_gradcheck_including_zeros() {
    for (k, &(dims, axis)) in SHAPES.iter().enumerate() {
        for keepdim in [false, true] {
            check!(vec![uniform(dims, 400 + k as u64, -1.5, 1.5)], |_, v, _| v
                [0]
            .prod(axis, keepdim));
        }
    }
    // A polynomial: finite differences are exact enough at zeros too, so the conventions at one,
    // two and three zeros are checked to second order.
    let rows = Tensor::from_vec(
        vec![
            2.0, -1.5, 3.0, 0.5, //
            2.0, 0.0, 3.0, 0.5, //
            0.0, 0.5, 0.0, 1.5, //
            0.0, 0.0, 0.0, 2.0,
        ],
        &[4, 4],
    )
    .unwrap();
    for axis in [Some(0), Some(1), Some(-1), None] {
        check!(vec![rows.clone()], |_, v, _| v[0].prod(axis, false));
    }
}

#[test]
fn cumsum_gradcheck() {
    for (k, &(dims, axis)) in SHAPES.iter().enumerate() {
        let Some(axis) = axis else { continue };
        check!(vec![randn(dims, 500 + k as u64)], |_, v, _| v[0]
            .cumsum(axis));
        check!(vec![randn(dims, 500 + k as u64)], |_, v, _| {
            let y = v[0].cumsum(axis)?;
            y.mul(y)
        });
    }
}

/// Third derivatives of prod: the graph path of its `prod_others` node, away from zeros.
#[test]
fn prod_third_derivative_away_from_zeros() {
    let x = uniform(&[2, 3], 7, 0.5, 1.5);
    let w = randn(&[2, 3], 8);
    let v = randn(&[2], 9);
    fn second<'t>(
        tape: &'t Tape<f64>,
        x: Var<'t, f64>,
        v: &Tensor<f64>,
        w: &Tensor<f64>,
    ) -> Result<Var<'t, f64>> {
        let y = x.prod(Some(1), false)?;
        let g1 = y.backward_graph(Some(tape.constant(v.clone())))?.wrt(x)?;
        let s = g1.mul(tape.constant(w.clone()))?.sum()?;
        s.backward_graph(None)?.wrt(x)
    }
    // A second-order gradient as a function of x: its gradient is the third derivative.
    if let Err(e) = gradcheck(|tape, vars, _| second(tape, vars[0], &v, &w), &[x], &opts()) {
        panic!("{e}");
    }
    // Through a zero, recording the second derivative as a graph (the step third derivatives need)
    // is refused with a typed error; the plain second derivative works (gradgradcheck above).
    let tape = Tape::new();
    let x = tape.leaf(Tensor::from_vec(vec![2.0, 0.0, 3.0], &[3]).unwrap());
    let g1 = x.prod(None, false).unwrap().backward_graph(None).unwrap();
    let s = g1.wrt(x).unwrap().sum().unwrap();
    let plain = s
        .backward_with(BackwardOptions::new().retain_graph(true))
        .unwrap();
    assert_eq!(plain.wrt(x).unwrap().data(), &[3.0, 5.0, 2.0]);
    let err = s.backward_graph(None).unwrap_err();
    assert!(
        matches!(err, Error::InvalidArgument { op: "prod", .. }),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// Formulas against plain loops

/// Runs `f`, seeds backward with `g`, returns (output, dx) — by the plain and by the graph path,
/// asserting the two agree exactly.
fn value_and_grad(
    x: &Tensor<f64>,
    g_seed: u64,
    f: impl for<'t> Fn(Var<'t, f64>) -> Result<Var<'t, f64>>,
) -> (Tensor<f64>, Tensor<f64>, Tensor<f64>) {
    let tape = Tape::new();
    let xv = tape.leaf(x.clone());
    let y = f(xv).unwrap();
    let g = randn(y.shape().dims(), g_seed);
    let plain = y
        .backward_with(BackwardOptions::new().seed(g.clone()).retain_graph(true))
        .unwrap();
    let dx = plain.wrt(xv).unwrap().clone();
    let graph = y
        .backward_graph(Some(tape.constant(g.clone())))
        .unwrap()
        .wrt(xv)
        .unwrap()
        .value();
    for (a, b) in dx.data().iter().zip(graph.data()) {
        assert!(
            (a - b).abs() <= 1e-14 * (1.0 + b.abs()) || (a.is_nan() && b.is_nan()) || a == b,
            "graph path {b} vs plain {a}"
        );
    }
    ((*y.value()).clone(), g, dx)
}

fn close(got: f64, want: f64, what: &str) {
    let ok = (got - want).abs() <= 1e-12 * (1.0 + want.abs())
        || (got.is_nan() && want.is_nan())
        || got == want;
    assert!(ok, "{what}: got {got}, want {want}");
}

/// For each shape and axis: `y[r] = reduce(slice r)` and `dx[p] = grad(slice, g[r], y[r])[l]`.
fn check_formula(
    name: &str,
    make: impl Fn(&[usize], u64) -> Tensor<f64>,
    op: impl for<'t> Fn(Var<'t, f64>, Option<isize>, bool) -> Result<Var<'t, f64>>,
    value: impl Fn(&[f64]) -> f64,
    grad: impl Fn(&[f64], f64, f64) -> Vec<f64>,
    skip_empty_slices: bool,
) {
    for (k, &(dims, axis)) in SHAPES.iter().enumerate() {
        if skip_empty_slices && slice_len(dims, axis) == 0 {
            continue;
        }
        for keepdim in [false, true] {
            let x = make(dims, 600 + k as u64);
            let (y, g, dx) = value_and_grad(&x, 700 + k as u64, |v| op(v, axis, keepdim));
            assert_eq!(
                y.dims(),
                reduced_dims(dims, axis, keepdim),
                "{name} {dims:?} {axis:?}"
            );
            let groups = slices(dims, axis);
            assert_eq!(groups.len(), y.numel(), "{name} {dims:?} {axis:?}");
            for (r, slice) in groups.iter().enumerate() {
                let xs: Vec<f64> = slice.iter().map(|&p| x.data()[p]).collect();
                let want = value(&xs);
                close(
                    y.data()[r],
                    want,
                    &format!("{name} {dims:?} {axis:?} y[{r}]"),
                );
                let want_dx = grad(&xs, g.data()[r], y.data()[r]);
                for (&p, w) in slice.iter().zip(want_dx) {
                    close(
                        dx.data()[p],
                        w,
                        &format!("{name} {dims:?} {axis:?} dx[{p}]"),
                    );
                }
            }
        }
    }
}

fn naive_sum(xs: &[f64]) -> f64 {
    let mut total = 0.0;
    for &v in xs {
        total += v;
    }
    total
}

#[test]
fn var_and_std_match_loops() {
    for correction in [0.0, 1.0, 0.5] {
        let var = move |xs: &[f64]| {
            let n = xs.len() as f64;
            let mean = naive_sum(xs) / n;
            let ss: f64 = naive_sum(
                &xs.iter()
                    .map(|v| (v - mean) * (v - mean))
                    .collect::<Vec<_>>(),
            );
            ss / (n - correction).max(0.0)
        };
        let usable = move |dims: &[usize], axis| slice_len(dims, axis) as f64 - correction > 0.0;
        let var_grad = move |xs: &[f64], g: f64, _y: f64| {
            let n = xs.len() as f64;
            let mean = naive_sum(xs) / n;
            xs.iter()
                .map(|v| 2.0 / (n - correction) * g * (v - mean))
                .collect::<Vec<f64>>()
        };
        for (k, &(dims, axis)) in SHAPES.iter().enumerate() {
            if !usable(dims, axis) {
                continue;
            }
            for keepdim in [false, true] {
                let x = randn(dims, 800 + k as u64);
                for root in [false, true] {
                    let (y, g, dx) = value_and_grad(&x, 900 + k as u64, |v| {
                        if root {
                            v.std(axis, correction, keepdim)
                        } else {
                            v.var(axis, correction, keepdim)
                        }
                    });
                    for (r, slice) in slices(dims, axis).iter().enumerate() {
                        let xs: Vec<f64> = slice.iter().map(|&p| x.data()[p]).collect();
                        let v = var(&xs);
                        let want = if root { v.sqrt() } else { v };
                        close(y.data()[r], want, "var/std value");
                        let gv = match (root, want == 0.0) {
                            (true, true) => 0.0, // PyTorch's masked_fill at std = 0
                            (true, false) => g.data()[r] / (2.0 * want),
                            (false, _) => g.data()[r],
                        };
                        for (&p, w) in slice.iter().zip(var_grad(&xs, gv, want)) {
                            close(dx.data()[p], w, "var/std grad");
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn logsumexp_matches_loops() {
    check_formula(
        "logsumexp",
        randn,
        |v, a, k| v.logsumexp(a, k),
        |xs| {
            let m = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            if xs.is_empty() {
                return f64::NEG_INFINITY;
            }
            m + naive_sum(&xs.iter().map(|v| (v - m).exp()).collect::<Vec<_>>()).ln()
        },
        |xs, g, y| xs.iter().map(|v| g * (v - y).exp()).collect(),
        false,
    );
}

#[test]
fn norms_match_loops() {
    let sign = |v: f64| {
        if v > 0.0 {
            1.0
        } else if v < 0.0 {
            -1.0
        } else {
            0.0
        }
    };
    // Zeros in the inputs: sign(0) = 0 for L1, the zero slice for L2.
    let with_zeros = |dims: &[usize], seed: u64| {
        randn(dims, seed)
            .map(|v| if v.abs() < 0.4 { 0.0 } else { v })
            .unwrap()
    };
    check_formula(
        "norm L1",
        with_zeros,
        |v, a, k| v.norm(NormOrd::L1, a, k),
        |xs| naive_sum(&xs.iter().map(|v| v.abs()).collect::<Vec<_>>()),
        move |xs, g, _| xs.iter().map(|&v| g * sign(v)).collect(),
        false,
    );
    check_formula(
        "norm L2",
        with_zeros,
        |v, a, k| v.norm(NormOrd::L2, a, k),
        |xs| naive_sum(&xs.iter().map(|v| v * v).collect::<Vec<_>>()).sqrt(),
        |xs, g, y| {
            xs.iter()
                .map(|&v| if y == 0.0 { 0.0 } else { v * g / y })
                .collect()
        },
        false,
    );
    // Ties of |x|: integers.
    let ties = |dims: &[usize], seed: u64| randn(dims, seed).map(|v| (v * 1.5).round()).unwrap();
    check_formula(
        "norm Inf",
        ties,
        |v, a, k| v.norm(NormOrd::Inf, a, k),
        |xs| xs.iter().map(|v| v.abs()).fold(0.0, f64::max),
        move |xs, g, y| {
            let c = xs.iter().filter(|v| v.abs() == y).count() as f64;
            xs.iter()
                .map(|&v| if v.abs() == y { sign(v) * g / c } else { 0.0 })
                .collect()
        },
        true,
    );
}

#[test]
fn amax_amin_split_evenly_among_ties() {
    let ties = |dims: &[usize], seed: u64| randn(dims, seed).map(|v| (v * 1.5).round()).unwrap();
    for (name, sign) in [("amax", 1.0), ("amin", -1.0)] {
        check_formula(
            name,
            ties,
            move |v, a, k| {
                if sign > 0.0 {
                    v.amax(a, k)
                } else {
                    v.amin(a, k)
                }
            },
            move |xs| {
                sign * xs
                    .iter()
                    .map(|v| sign * v)
                    .fold(f64::NEG_INFINITY, f64::max)
            },
            |xs, g, y| {
                let c = xs.iter().filter(|&&v| v == y).count() as f64;
                xs.iter()
                    .map(|&v| if v == y { g / c } else { 0.0 })
                    .collect()
            },
            true,
        );
    }
}

#[test]
fn prod_matches_loops_with_zeros() {
    let with_zeros = |dims: &[usize], seed: u64| {
        uniform(dims, seed, -1.5, 1.5)
            .map(|v| if v.abs() < 0.5 { 0.0 } else { v })
            .unwrap()
    };
    check_formula(
        "prod",
        with_zeros,
        |v, a, k| v.prod(a, k),
        |xs| xs.iter().fold(1.0, |p, v| p * v),
        |xs, g, _| {
            (0..xs.len())
                .map(|k| {
                    let mut others = 1.0;
                    for (j, v) in xs.iter().enumerate() {
                        if j != k {
                            others *= v;
                        }
                    }
                    g * others
                })
                .collect()
        },
        false,
    );
}

#[test]
fn prod_zero_conventions() {
    let grad = |data: Vec<f64>| {
        let tape = Tape::new();
        let n = data.len();
        let x = tape.leaf(Tensor::from_vec(data, &[n]).unwrap());
        let y = x.prod(None, false).unwrap();
        let value = y.value().item().unwrap();
        let dx = y.backward().unwrap().wrt(x).unwrap().data().to_vec();
        (value, dx)
    };
    assert_eq!(grad(vec![2.0, 0.0, 3.0]), (0.0, vec![0.0, 6.0, 0.0]));
    assert_eq!(grad(vec![0.0, 4.0, 0.0]), (0.0, vec![0.0, 0.0, 0.0]));
    assert_eq!(grad(vec![2.0, 4.0, 3.0]), (24.0, vec![12.0, 6.0, 8.0]));
    assert_eq!(grad(vec![]), (1.0, vec![]));
}

#[test]
fn cumsum_matches_loops() {
    for (k, &(dims, axis)) in SHAPES.iter().enumerate() {
        let Some(a) = axis else { continue };
        let x = randn(dims, 1000 + k as u64);
        let (y, g, dx) = value_and_grad(&x, 1100 + k as u64, |v| v.cumsum(a));
        assert_eq!(y.dims(), dims);
        for slice in slices(dims, axis) {
            let mut total = 0.0;
            for &p in &slice {
                total += x.data()[p];
                close(y.data()[p], total, "cumsum");
            }
            let mut back = 0.0;
            for &p in slice.iter().rev() {
                back += g.data()[p];
                close(dx.data()[p], back, "cumsum grad");
            }
        }
    }
}

#[test]
fn cumsum_accumulates_in_f64_like_pytorch() {
    let tape = Tape::<f32>::new();
    let x = tape.constant(Tensor::from_vec(vec![1e8, 1.0, -1e8], &[3]).unwrap());
    assert_eq!(x.cumsum(0).unwrap().value().data(), &[1e8, 1e8, 1.0]);
}

// ---------------------------------------------------------------------------------------------
// Ties, NaN and the index-returning ops

#[test]
fn max_min_choose_the_first_of_equal_elements() {
    let tape = Tape::new();
    let x = tape
        .leaf(Tensor::from_vec(vec![1.0f64, 3.0, 3.0, 2.0, 5.0, 5.0, 0.0, 5.0], &[2, 4]).unwrap());
    let (m, i) = x.max(1, false).unwrap();
    assert_eq!(m.value().data(), &[3.0, 5.0]);
    assert_eq!(i, Indices::new(&[1u8, 0], &[2]).unwrap());
    let (n, j) = x.min(-1, true).unwrap();
    assert_eq!(n.value().data(), &[1.0, 0.0]);
    assert_eq!(j, Indices::new(&[0u8, 2], &[2, 1]).unwrap());
    let g = m
        .add(n.reshape(&[2]).unwrap())
        .unwrap()
        .sum()
        .unwrap()
        .backward()
        .unwrap();
    // max's gradient only at the first 3 and the first 5; min's at 1 and 0.
    assert_eq!(
        g.wrt(x).unwrap().data(),
        &[1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0]
    );
    // argmax/argmin agree with the indices, on Var and Tensor.
    assert_eq!(x.argmax(Some(1), false).unwrap(), i);
    assert_eq!(x.value().argmin(Some(-1), true).unwrap(), j);
    // Over every element: the flat index, keepdim gives all-ones dims.
    let flat = x.argmax(None, true).unwrap();
    assert_eq!(flat.dims(), &[1, 1]);
    assert_eq!(flat.values(), &[4]);
}

#[test]
fn nan_wins_max_and_min_at_its_first_position() {
    let nan = f64::NAN;
    let x = Tensor::from_vec(vec![1.0, nan, 3.0, nan], &[1, 4]).unwrap();
    assert_eq!(x.argmax(Some(1), false).unwrap().values(), &[1]);
    assert_eq!(x.argmin(Some(1), false).unwrap().values(), &[1]);
    let tape = Tape::new();
    let v = tape.leaf(x);
    let (m, i) = v.max(1, false).unwrap();
    assert!(m.value().data()[0].is_nan());
    assert_eq!(i.values(), &[1]);
    assert!(v.amin(None, false).unwrap().value().data()[0].is_nan());
    assert!(v.norm(NormOrd::Inf, None, false).unwrap().value().data()[0].is_nan());
    assert!(v.logsumexp(None, false).unwrap().value().data()[0].is_nan());
}

#[test]
fn max_gradient_is_exactly_zero_off_the_index_even_for_nan_seeds() {
    let tape = Tape::new();
    let x = tape.leaf(Tensor::from_vec(vec![1.0f64, 3.0, 2.0], &[3]).unwrap());
    let (m, _) = x.max(0, false).unwrap();
    let g = m
        .backward_with(BackwardOptions::new().seed(Tensor::scalar(f64::NAN)))
        .unwrap();
    let dx = g.wrt(x).unwrap().data().to_vec();
    assert_eq!(dx[0], 0.0);
    assert!(dx[1].is_nan());
    assert_eq!(dx[2], 0.0);
}

#[test]
fn infinity_norm_splits_among_ties_of_magnitude() {
    let tape = Tape::new();
    let x = tape.leaf(Tensor::from_vec(vec![3.0f64, -3.0, 1.0, 3.0, 0.0, 0.0], &[2, 3]).unwrap());
    let y = x.norm(NormOrd::Inf, None, false).unwrap();
    assert_eq!(y.value().item().unwrap(), 3.0);
    let third = 1.0 / 3.0;
    assert_eq!(
        y.backward().unwrap().wrt(x).unwrap().data(),
        &[third, -third, 0.0, third, 0.0, 0.0]
    );
    // The zero vector: every element ties, sign(0) = 0, so the gradient is 0.
    let tape = Tape::new();
    let z = tape.leaf(Tensor::<f64>::zeros(&[3]).unwrap());
    for ord in [NormOrd::L1, NormOrd::L2, NormOrd::Inf] {
        let y = z.norm(ord, Some(0), true).unwrap();
        assert_eq!(y.value().data(), &[0.0]);
        let g = y
            .backward_with(BackwardOptions::new().retain_graph(true))
            .unwrap();
        assert_eq!(g.wrt(z).unwrap().data(), &[0.0, 0.0, 0.0], "{ord:?}");
    }
}

#[test]
fn std_of_a_constant_slice_has_zero_gradient() {
    let tape = Tape::new();
    let x = tape.leaf(Tensor::from_vec(vec![2.0f64, 2.0, 2.0], &[3]).unwrap());
    let s = x.std(None, 1.0, false).unwrap();
    assert_eq!(s.value().item().unwrap(), 0.0);
    let g = s.backward_graph(None).unwrap().wrt(x).unwrap();
    assert_eq!(g.value().data(), &[0.0, 0.0, 0.0]);
}

#[test]
fn variance_is_accurate_far_from_zero_in_f32() {
    // A mean of 10⁴ and a spread of 1: E[x²] − E[x]² would lose every digit in f32.
    let x64 = randn(&[4096], 5).map(|v| 1e4 + v).unwrap();
    let x32 = x64.cast::<f32>().unwrap();
    let exact = {
        let data: Vec<f64> = x32.data().iter().map(|&v| v as f64).collect();
        let mean = data.iter().sum::<f64>() / data.len() as f64;
        data.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (data.len() - 1) as f64
    };
    let tape = Tape::<f32>::new();
    let got = tape
        .constant(x32)
        .var(None, 1.0, false)
        .unwrap()
        .value()
        .item()
        .unwrap();
    assert!(
        ((got as f64 - exact) / exact).abs() < 1e-5,
        "{got} vs {exact}"
    );
}

#[test]
fn logsumexp_at_infinities_follows_pytorch() {
    let inf = f64::INFINITY;
    let tape = Tape::new();
    let x = tape.leaf(Tensor::from_vec(vec![-inf, -inf, inf, 1.0, -inf, 1.0], &[3, 2]).unwrap());
    let y = x.logsumexp(Some(1), false).unwrap();
    assert_eq!(y.value().data(), &[-inf, inf, 1.0]);
    let dx = y
        .sum()
        .unwrap()
        .backward()
        .unwrap()
        .wrt(x)
        .unwrap()
        .data()
        .to_vec();
    assert!(dx[0].is_nan() && dx[1].is_nan() && dx[2].is_nan());
    assert_eq!(&dx[3..], &[0.0, 0.0, 1.0]);
}

#[test]
fn rank_zero_inputs_reduce_along_axis_zero() {
    let tape = Tape::new();
    let x = tape.leaf(Tensor::scalar(2.5f64));
    let (m, i) = x.max(0, true).unwrap();
    assert_eq!(m.shape().dims(), &[] as &[usize]);
    assert_eq!(i.values(), &[0]);
    assert_eq!(x.cumsum(-1).unwrap().value().item().unwrap(), 2.5);
    assert_eq!(x.prod(Some(0), false).unwrap().value().item().unwrap(), 2.5);
    assert!(matches!(
        x.amax(Some(1), false),
        Err(Error::AxisOutOfRange { .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// Errors

#[test]
fn bad_axes_are_errors() {
    let tape = Tape::new();
    let x = tape.leaf(randn(&[2, 3], 1));
    let is_axis = |r: Result<Var<'_, f64>>| matches!(r, Err(Error::AxisOutOfRange { axis, .. }) if axis == 2 || axis == -3);
    assert!(matches!(
        x.max(2, false),
        Err(Error::AxisOutOfRange {
            op: "max",
            axis: 2,
            ..
        })
    ));
    assert!(matches!(
        x.min(-3, true),
        Err(Error::AxisOutOfRange { op: "min", .. })
    ));
    assert!(is_axis(x.amax(Some(2), false)));
    assert!(is_axis(x.amin(Some(-3), false)));
    assert!(is_axis(x.var(Some(2), 1.0, false)));
    assert!(is_axis(x.std(Some(-3), 1.0, false)));
    assert!(is_axis(x.logsumexp(Some(2), true)));
    assert!(is_axis(x.norm(NormOrd::L2, Some(2), false)));
    assert!(is_axis(x.prod(Some(-3), false)));
    assert!(is_axis(x.cumsum(2)));
    assert!(matches!(
        x.argmax(Some(2), false),
        Err(Error::AxisOutOfRange { op: "argmax", .. })
    ));
    assert!(matches!(
        x.argmin(Some(-3), false),
        Err(Error::AxisOutOfRange { op: "argmin", .. })
    ));
    let err = x.amax(Some(2), false).unwrap_err();
    assert_eq!(
        err.to_string(),
        "amax: axis 2 is out of range for shape [2, 3]"
    );
}

#[test]
fn empty_reductions_that_are_undefined_fail() {
    let tape = Tape::new();
    let empty_rows = tape.leaf(Tensor::<f64>::zeros(&[0, 3]).unwrap());
    let empty_cols = tape.leaf(Tensor::<f64>::zeros(&[3, 0]).unwrap());
    let invalid = |r: Result<Var<'_, f64>>, op: &str| match r {
        Err(Error::InvalidArgument { op: o, reason }) => {
            assert_eq!(o, op);
            assert!(reason.contains("empty"), "{reason}");
        }
        other => panic!("{op}: expected InvalidArgument, got {other:?}"),
    };
    invalid(empty_rows.max(0, false).map(|p| p.0), "max");
    invalid(empty_cols.min(1, true).map(|p| p.0), "min");
    invalid(empty_rows.amax(Some(0), false), "amax");
    invalid(empty_rows.amax(None, false), "amax");
    invalid(empty_cols.amin(Some(-1), false), "amin");
    invalid(empty_rows.norm(NormOrd::Inf, Some(0), false), "norm_inf");
    invalid(empty_cols.norm(NormOrd::Inf, None, false), "norm_inf");
    assert!(matches!(
        empty_rows.argmax(Some(0), false),
        Err(Error::InvalidArgument { op: "argmax", .. })
    ));
    assert!(matches!(
        empty_cols.argmin(None, false),
        Err(Error::InvalidArgument { op: "argmin", .. })
    ));
    // Slices that exist but have no output (axis of size 3 in [0, 3]) are fine, as in PyTorch.
    let (m, i) = empty_rows.max(1, false).unwrap();
    assert_eq!(m.shape().dims(), &[0]);
    assert!(i.is_empty());
    // Defined reductions of nothing: 0 for L1/L2, 1 for prod, −∞ for logsumexp, NaN for var.
    assert_eq!(
        empty_rows
            .norm(NormOrd::L2, Some(0), false)
            .unwrap()
            .value()
            .data(),
        &[0.0; 3]
    );
    assert_eq!(
        empty_rows.prod(Some(0), false).unwrap().value().data(),
        &[1.0; 3]
    );
    assert_eq!(
        empty_rows.logsumexp(Some(0), false).unwrap().value().data(),
        &[f64::NEG_INFINITY; 3]
    );
    assert!(
        empty_rows
            .var(Some(0), 1.0, false)
            .unwrap()
            .value()
            .data()
            .iter()
            .all(|v| v.is_nan())
    );
}

#[test]
fn bad_corrections_are_errors() {
    let tape = Tape::new();
    let x = tape.leaf(randn(&[4], 1));
    for c in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        for r in [x.var(None, c, false), x.std(Some(0), c, true)] {
            assert!(
                matches!(
                    r,
                    Err(Error::InvalidHyperparameter {
                        name: "correction",
                        ..
                    })
                ),
                "{c}"
            );
        }
    }
    // N − c ≤ 0 is not an error: ∞ or NaN, as in PyTorch.
    assert_eq!(
        x.var(None, 4.0, false).unwrap().value().item().unwrap(),
        f64::INFINITY
    );
    let single = tape.leaf(randn(&[1], 2));
    assert!(
        single
            .var(None, 1.0, false)
            .unwrap()
            .value()
            .item()
            .unwrap()
            .is_nan()
    );
}

// ---------------------------------------------------------------------------------------------
// PyTorch golden values

/// Applies the golden case `name` to `x`: (output, indices).
fn apply<'t, T: Float>(name: &str, x: Var<'t, T>) -> Result<(Option<Var<'t, T>>, Option<Indices>)> {
    let value = |v: Var<'t, T>| Ok((Some(v), None));
    let pair = |(v, i): (Var<'t, T>, Indices)| Ok((Some(v), Some(i)));
    let index = |i: Indices| Ok((None, Some(i)));
    match name {
        "max_ax1" => pair(x.max(1, false)?),
        "max_ax0_keep" => pair(x.max(0, true)?),
        "max_ties_neg1" => pair(x.max(-1, false)?),
        "max_empty_out" => pair(x.max(1, false)?),
        "max_scalar" => pair(x.max(0, false)?),
        "min_ties_ax1" => pair(x.min(1, false)?),
        "min_ax0_keep" => pair(x.min(0, true)?),
        "amax_ties_ax1" => value(x.amax(Some(1), false)?),
        "amax_ties_all" => value(x.amax(None, false)?),
        "amax_ties_all_keep" => value(x.amax(None, true)?),
        "amax_ax0" => value(x.amax(Some(0), false)?),
        "amin_ties_neg2_keep" => value(x.amin(Some(-2), true)?),
        "amin_ties_all" => value(x.amin(None, false)?),
        "argmax_ties_ax1" => index(x.argmax(Some(1), false)?),
        "argmax_all" => index(x.argmax(None, false)?),
        "argmax_all_keep" => index(x.argmax(None, true)?),
        "argmin_ties_ax0_keep" => index(x.argmin(Some(0), true)?),
        "argmin_all" => index(x.argmin(None, false)?),
        "var_ax1_c1" => value(x.var(Some(1), 1.0, false)?),
        "var_ax0_c0_keep" => value(x.var(Some(0), 0.0, true)?),
        "var_all_c1" => value(x.var(None, 1.0, false)?),
        "var_all_c2_keep" => value(x.var(None, 2.0, true)?),
        "var_neg1_c05" => value(x.var(Some(-1), 0.5, false)?),
        "var_neg_correction" => value(x.var(Some(1), -1.0, false)?),
        "var_single_c0" => value(x.var(Some(1), 0.0, false)?),
        "var_single_c1" => value(x.var(Some(1), 1.0, false)?),
        "var_dof0_ax1" => value(x.var(Some(1), 2.0, false)?),
        "var_dofneg_ax1" => value(x.var(Some(1), 3.0, false)?),
        "var_dof0_all" | "var_dof0_all_const" => value(x.var(None, 3.0, false)?),
        "var_empty_ax0" => value(x.var(Some(0), 1.0, false)?),
        "std_ax1_c1" => value(x.std(Some(1), 1.0, false)?),
        "std_all_c0" => value(x.std(None, 0.0, false)?),
        "std_ax0_keep" => value(x.std(Some(0), 1.0, true)?),
        "std_const_row" => value(x.std(Some(1), 1.0, false)?),
        "logsumexp_ax1" | "logsumexp_large" | "logsumexp_infinities" => {
            value(x.logsumexp(Some(1), false)?)
        }
        "logsumexp_ax0_keep" => value(x.logsumexp(Some(0), true)?),
        "logsumexp_all" => value(x.logsumexp(None, false)?),
        "logsumexp_all_keep" => value(x.logsumexp(None, true)?),
        "logsumexp_empty_ax0" => value(x.logsumexp(Some(0), false)?),
        "norm_l1_ax1" | "norm_l1_zeros" => value(x.norm(NormOrd::L1, Some(1), false)?),
        "norm_l2_ax1" | "norm_l2_zeros" => value(x.norm(NormOrd::L2, Some(1), false)?),
        "norm_inf_ax1" | "norm_inf_ties" => value(x.norm(NormOrd::Inf, Some(1), false)?),
        "norm_l1_all" => value(x.norm(NormOrd::L1, None, false)?),
        "norm_l2_all_keep" => value(x.norm(NormOrd::L2, None, true)?),
        "norm_inf_all" => value(x.norm(NormOrd::Inf, None, false)?),
        "norm_l2_ax0_keep" => value(x.norm(NormOrd::L2, Some(0), true)?),
        "norm_l2_empty_ax0" => value(x.norm(NormOrd::L2, Some(0), false)?),
        "prod_ax1" | "prod_zeros_ax1" => value(x.prod(Some(1), false)?),
        "prod_ax0_keep" => value(x.prod(Some(0), true)?),
        "prod_all" | "prod_one_zero_all" | "prod_two_zeros_all" => value(x.prod(None, false)?),
        "prod_zeros_ax0" | "prod_empty_ax0" => value(x.prod(Some(0), false)?),
        "cumsum_ax1" => value(x.cumsum(1)?),
        "cumsum_ax0" | "cumsum_cancel" => value(x.cumsum(0)?),
        "cumsum_neg2" => value(x.cumsum(-2)?),
        other => panic!("golden case {other} has no Rust counterpart: add it to `apply`"),
    }
}

/// PyTorch's tolerance rule, with NaN matching NaN and infinities matching exactly.
fn assert_matches<T: Float>(got: &Tensor<T>, want: &Tensor<T>, rtol: f64, atol: f64, what: &str) {
    assert_eq!(got.dims(), want.dims(), "{what}: shape");
    for (i, (&g, &w)) in got.data().iter().zip(want.data()).enumerate() {
        let (g, w) = (g.to_f64(), w.to_f64());
        let ok = if w.is_nan() {
            g.is_nan()
        } else if w.is_infinite() {
            g == w
        } else {
            (g - w).abs() <= atol + rtol * w.abs()
        };
        assert!(ok, "{what}[{i}]: got {g:e}, PyTorch {w:e}");
    }
}

fn golden_cases<T: Float>(
    file: &Golden,
    dtype: &str,
    load: impl Fn(&Golden, &str) -> Tensor<T>,
    rtol: f64,
    atol: f64,
) -> usize {
    let suffix = format!(".{dtype}.x");
    let mut count = 0;
    for name in file.names() {
        let Some(case) = name.strip_suffix(&suffix) else {
            continue;
        };
        let key = |part: &str| format!("{case}.{dtype}.{part}");
        let tape = Tape::<T>::new();
        let x = tape.leaf(load(file, &key("x")));
        let (y, indices) = apply(case, x).unwrap_or_else(|e| panic!("{case}: {e}"));
        if let Some(indices) = indices {
            assert_eq!(
                indices.values(),
                file.i64(&key("idx")).as_slice(),
                "{case} {dtype} indices"
            );
        }
        if let Some(y) = y {
            assert_matches(&y.value(), &load(file, &key("y")), rtol, atol, &key("y"));
            let g = load(file, &key("g"));
            let grads = y.backward_with(BackwardOptions::new().seed(g)).unwrap();
            assert_matches(
                grads.wrt(x).unwrap(),
                &load(file, &key("dx")),
                rtol,
                atol,
                &key("dx"),
            );
        }
        count += 1;
    }
    count
}

#[test]
fn golden_pytorch_values_f32_and_f64() {
    let file = Golden::open("ops_reductions.safetensors");
    let n32 = golden_cases::<f32>(&file, "float32", |f, k| f.f32(k), 1e-5, 1e-6);
    let n64 = golden_cases::<f64>(&file, "float64", |f, k| f.f64(k), 1e-12, 1e-12);
    assert_eq!(n32, n64);
    assert!(n64 >= 60, "only {n64} golden cases");
}
