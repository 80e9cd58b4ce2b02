//! layer_norm, rms_norm, batch_norm and scaled_dot_product_attention: gradcheck and gradgradcheck,
//! plain-loop reference implementations of the forward passes and of the gradients, running-stat
//! updates computed by hand, masks (keep and additive, broadcast), causal attention, queries with
//! nothing to attend to, dropout mask reuse, thread-count independence, every error, and PyTorch
//! golden values (tests/golden/ops_norm_attn.py).

mod common;

use common::{Golden, assert_close, randn, uniform};
use rand::SeedableRng;
use rand_pcg::Pcg64;
use tapegrad::{
    AttnMask, BackwardOptions, BitMask, Error, Float, GradcheckOptions, Result, RunningStats, Tape,
    Tensor, Var, gradcheck, gradgradcheck,
};

fn rng() -> Pcg64 {
    Pcg64::seed_from_u64(7)
}

/// gradcheck and gradgradcheck of `f` at `inputs` (f64, PyTorch's default tolerances).
fn check<F>(inputs: Vec<Tensor<f64>>, f: F)
where
    F: for<'t> Fn(&'t Tape<f64>, &[Var<'t, f64>], &mut Pcg64) -> Result<Var<'t, f64>>,
{
    let options = GradcheckOptions::default();
    if let Err(e) = gradcheck(&f, &inputs, &options) {
        panic!("gradcheck: {e}");
    }
    if let Err(e) = gradgradcheck(&f, &inputs, &options) {
        panic!("gradgradcheck: {e}");
    }
}

/// gradcheck only (for the larger shapes, where gradgradcheck would be slow).
fn check_first<F>(inputs: Vec<Tensor<f64>>, f: F)
where
    F: for<'t> Fn(&'t Tape<f64>, &[Var<'t, f64>], &mut Pcg64) -> Result<Var<'t, f64>>,
{
    if let Err(e) = gradcheck(&f, &inputs, &GradcheckOptions::default()) {
        panic!("gradcheck: {e}");
    }
}

// ------------------------------------------------------------------------------------------------
// gradcheck + gradgradcheck
// ------------------------------------------------------------------------------------------------

#[test]
fn layer_norm_gradchecks() {
    // (input dims, normalized shape)
    let cases: &[(&[usize], &[usize])] = &[
        (&[4, 5], &[5]),
        (&[2, 3, 4], &[3, 4]),
        (&[2, 3, 4], &[4]),
        (&[6], &[6]),
        (&[0, 5], &[5]),
        (&[3, 2], &[2]),
    ];
    for (i, &(dims, norm)) in cases.iter().enumerate() {
        let seed = 100 + 10 * i as u64;
        let x = randn(dims, seed);
        let (w, b) = (randn(norm, seed + 1), randn(norm, seed + 2));
        check(vec![x.clone(), w.clone(), b.clone()], |_, v, _| {
            v[0].layer_norm(norm, Some(v[1]), Some(v[2]), 1e-5)
        });
        check(vec![x.clone(), w.clone()], |_, v, _| {
            v[0].layer_norm(norm, Some(v[1]), None, 1e-3)
        });
        check(vec![x.clone(), b.clone()], |_, v, _| {
            v[0].layer_norm(norm, None, Some(v[1]), 0.1)
        });
        check(vec![x], |_, v, _| v[0].layer_norm(norm, None, None, 1e-5));
    }
    // Reused input: the normalised value feeds a product with itself.
    check(vec![randn(&[3, 4], 1)], |_, v, _| {
        let y = v[0].layer_norm(&[4], None, None, 1e-5)?;
        y.mul(v[0])
    });
}

#[test]
fn rms_norm_gradchecks() {
    let cases: &[(&[usize], &[usize])] = &[
        (&[4, 5], &[5]),
        (&[2, 3, 4], &[3, 4]),
        (&[0, 3], &[3]),
        (&[5], &[5]),
    ];
    for (i, &(dims, norm)) in cases.iter().enumerate() {
        let seed = 200 + 10 * i as u64;
        let x = randn(dims, seed);
        check(vec![x.clone(), randn(norm, seed + 1)], |_, v, _| {
            v[0].rms_norm(norm, Some(v[1]), None)
        });
        check(vec![x], |_, v, _| v[0].rms_norm(norm, None, Some(1e-4)));
    }
}

#[test]
fn batch_norm_gradchecks_training_and_eval() {
    let cases: &[&[usize]] = &[
        &[6, 3],
        &[4, 3, 5],
        &[2, 3, 2, 2],
        &[3, 1, 2],
        &[0, 3],
        &[2, 0],
    ];
    for (i, &dims) in cases.iter().enumerate() {
        let seed = 300 + 10 * i as u64;
        let c = dims[1];
        let x = randn(dims, seed).map(|v| 2.0 * v + 0.5).unwrap();
        let (w, b) = (randn(&[c], seed + 1), randn(&[c], seed + 2));
        check(vec![x.clone(), w.clone(), b.clone()], |_, v, _| {
            v[0].batch_norm(Some(v[1]), Some(v[2]), None, true, 0.1, 1e-5)
        });
        check(vec![x.clone(), w.clone()], |_, v, _| {
            v[0].batch_norm(Some(v[1]), None, None, true, 0.1, 1e-3)
        });
        check(vec![x.clone()], |_, v, _| {
            v[0].batch_norm(None, None, None, true, 0.1, 1e-5)
        });
        // Eval: the running statistics are constants.
        let running_mean = randn(&[c], seed + 3);
        let running_var = uniform(&[c], seed + 4, 0.5, 2.0);
        check(vec![x.clone(), w.clone(), b.clone()], |_, v, _| {
            let (mut m, mut var) = (running_mean.clone(), running_var.clone());
            let running = RunningStats {
                mean: &mut m,
                var: &mut var,
            };
            v[0].batch_norm(Some(v[1]), Some(v[2]), Some(running), false, 0.1, 1e-5)
        });
        check(vec![x], |_, v, _| {
            let (mut m, mut var) = (running_mean.clone(), running_var.clone());
            let running = RunningStats {
                mean: &mut m,
                var: &mut var,
            };
            v[0].batch_norm(None, None, Some(running), false, 0.1, 1e-5)
        });
    }
}

/// q, k, v for `lead`, L, S, E, Ev.
fn qkv(lead: &[usize], l: usize, s: usize, e: usize, ev: usize, seed: u64) -> Vec<Tensor<f64>> {
    let dims = |rows: usize, cols: usize| [lead, &[rows, cols]].concat();
    vec![
        randn(&dims(l, e), seed),
        randn(&dims(s, e), seed + 1),
        randn(&dims(s, ev), seed + 2),
    ]
}

#[test]
fn attention_gradchecks() {
    // (lead, L, S, E, Ev)
    let shapes: &[(&[usize], usize, usize, usize, usize)] = &[
        (&[2], 3, 4, 2, 3),
        (&[1, 2], 4, 4, 3, 2),
        (&[], 3, 5, 2, 2),
        (&[2], 5, 3, 2, 1),
        (&[0, 2], 3, 3, 2, 2),
        (&[2], 0, 3, 2, 2),
        (&[2], 3, 0, 2, 2),
        (&[2], 3, 2, 0, 2),
    ];
    for (i, &(lead, l, s, e, ev)) in shapes.iter().enumerate() {
        let inputs = qkv(lead, l, s, e, ev, 400 + 10 * i as u64);
        for causal in [false, true] {
            check(inputs.clone(), |_, v, rng| {
                v[0].scaled_dot_product_attention(v[1], v[2], None, causal, 0.0, rng)
            });
        }
    }
}

#[test]
fn attention_gradchecks_across_causal_blocks() {
    // 35 rows: a full block of 32 and a partial one.
    for (l, s) in [(35, 35), (35, 20), (20, 35)] {
        check_first(qkv(&[1], l, s, 2, 2, 450), |_, v, rng| {
            v[0].scaled_dot_product_attention(v[1], v[2], None, true, 0.0, rng)
        });
    }
}

#[test]
fn attention_gradchecks_with_masks() {
    let inputs = qkv(&[2, 2], 3, 4, 2, 3, 500);
    // A keep-mask broadcast over batch and heads, with a query that sees nothing.
    let keep = Tensor::from_vec(
        vec![1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0],
        &[3, 4],
    )
    .unwrap();
    check(inputs.clone(), |tape, v, rng| {
        let mask = AttnMask::Keep(tape.constant(keep.clone()));
        v[0].scaled_dot_product_attention(v[1], v[2], Some(mask), false, 0.0, rng)
    });
    // An additive mask broadcast over the batch, itself differentiated.
    let mut additive = randn(&[2, 1, 4], 501);
    additive.set(&[1, 0, 2], f64::NEG_INFINITY).unwrap();
    let mut with_mask = inputs.clone();
    with_mask.push(additive.clone());
    check(with_mask, |_, v, rng| {
        v[0].scaled_dot_product_attention(
            v[1],
            v[2],
            Some(AttnMask::Additive(v[3])),
            false,
            0.0,
            rng,
        )
    });
    // An additive mask that is a constant.
    check(inputs, |tape, v, rng| {
        let mask = AttnMask::Additive(tape.constant(additive.clone()));
        v[0].scaled_dot_product_attention(v[1], v[2], Some(mask), false, 0.0, rng)
    });
}

#[test]
fn attention_gradchecks_with_dropout_held_fixed() {
    for p in [0.3, 0.5, 1.0] {
        for causal in [false, true] {
            check(qkv(&[2], 4, 3, 2, 2, 600), |_, v, rng| {
                v[0].scaled_dot_product_attention(v[1], v[2], None, causal, p, rng)
            });
        }
    }
    // Dropout with an additive mask that wants a gradient.
    let mut inputs = qkv(&[2], 3, 4, 2, 2, 610);
    inputs.push(randn(&[3, 4], 611));
    check(inputs, |_, v, rng| {
        v[0].scaled_dot_product_attention(
            v[1],
            v[2],
            Some(AttnMask::Additive(v[3])),
            false,
            0.4,
            rng,
        )
    });
}

#[test]
fn composites_of_the_new_ops() {
    // A tiny transformer block: layer norm, attention, residual, RMS norm.
    check_first(
        vec![randn(&[2, 4, 3], 700), randn(&[3], 701), randn(&[3], 702)],
        |_, v, rng| {
            let h = v[0].layer_norm(&[3], Some(v[1]), Some(v[2]), 1e-5)?;
            let a = h.scaled_dot_product_attention(h, h, None, true, 0.2, rng)?;
            a.add(v[0])?.rms_norm(&[3], None, None)
        },
    );
}

// ------------------------------------------------------------------------------------------------
// Reference implementations with plain loops
// ------------------------------------------------------------------------------------------------

/// Layer norm (`centred`) or RMS norm of rows of `d`, written out; returns (y, x̂, r per row).
fn naive_norm(
    x: &[f64],
    d: usize,
    w: Option<&[f64]>,
    b: Option<&[f64]>,
    eps: f64,
    centred: bool,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let rows = x.len() / d;
    let (mut y, mut xhat, mut rstd) = (vec![0.0; x.len()], vec![0.0; x.len()], vec![0.0; rows]);
    for r in 0..rows {
        let row = &x[r * d..(r + 1) * d];
        let mut mean = 0.0;
        if centred {
            for &v in row {
                mean += v;
            }
            mean /= d as f64;
        }
        let mut var = 0.0;
        for &v in row {
            var += (v - mean) * (v - mean);
        }
        var /= d as f64;
        rstd[r] = 1.0 / (var + eps).sqrt();
        for j in 0..d {
            let h = (row[j] - mean) * rstd[r];
            xhat[r * d + j] = h;
            y[r * d + j] = h * w.map_or(1.0, |w| w[j]) + b.map_or(0.0, |b| b[j]);
        }
    }
    (y, xhat, rstd)
}

/// The gradients through the Jacobian of x̂: ∂x̂ⱼ/∂xᵢ = r·(δᵢⱼ − [centred]/n − x̂ᵢx̂ⱼ/n).
fn naive_norm_grads(
    x: &[f64],
    g: &[f64],
    d: usize,
    w: Option<&[f64]>,
    eps: f64,
    centred: bool,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (_, xhat, rstd) = naive_norm(x, d, None, None, eps, centred);
    let rows = x.len() / d;
    let n = d as f64;
    let (mut dx, mut dw, mut db) = (vec![0.0; x.len()], vec![0.0; d], vec![0.0; d]);
    for r in 0..rows {
        for i in 0..d {
            let mut total = 0.0;
            for j in 0..d {
                let delta = if i == j { 1.0 } else { 0.0 };
                let centre = if centred { 1.0 / n } else { 0.0 };
                let jac = rstd[r] * (delta - centre - xhat[r * d + i] * xhat[r * d + j] / n);
                total += g[r * d + j] * w.map_or(1.0, |w| w[j]) * jac;
            }
            dx[r * d + i] = total;
            dw[i] += g[r * d + i] * xhat[r * d + i];
            db[i] += g[r * d + i];
        }
    }
    (dx, dw, db)
}

fn seeded_grads<'t>(y: Var<'t, f64>, g: &Tensor<f64>) -> tapegrad::Gradients<f64> {
    y.backward_with(BackwardOptions::new().seed(g.clone()))
        .unwrap()
}

#[test]
fn layer_and_rms_norm_match_plain_loops() {
    for (centred, dims, d) in [
        (true, &[5, 7][..], 7),
        (true, &[2, 3, 4], 12),
        (false, &[4, 6], 6),
        (false, &[3, 2, 5], 10),
    ] {
        let x = randn(dims, 800 + d as u64);
        let norm: &[usize] = if d == dims[dims.len() - 1] {
            &dims[dims.len() - 1..]
        } else {
            &dims[1..]
        };
        let w = randn(norm, 801);
        let b = randn(norm, 802);
        let g = randn(dims, 803);
        let eps = 1e-3;
        let tape = Tape::new();
        let (vx, vw, vb) = (
            tape.leaf(x.clone()),
            tape.leaf(w.clone()),
            tape.leaf(b.clone()),
        );
        let y = if centred {
            vx.layer_norm(norm, Some(vw), Some(vb), eps).unwrap()
        } else {
            vx.rms_norm(norm, Some(vw), Some(eps)).unwrap()
        };
        let bias = centred.then_some(b.data());
        let (want_y, _, _) = naive_norm(x.data(), d, Some(w.data()), bias, eps, centred);
        assert_close(y.value().data(), &want_y, 1e-12);
        let grads = seeded_grads(y, &g);
        let (dx, dw, db) = naive_norm_grads(x.data(), g.data(), d, Some(w.data()), eps, centred);
        assert_close(grads.wrt(vx).unwrap().data(), &dx, 1e-10);
        assert_close(grads.wrt(vw).unwrap().data(), &dw, 1e-10);
        if centred {
            assert_close(grads.wrt(vb).unwrap().data(), &db, 1e-10);
        }
    }
}

#[test]
fn layer_norm_on_many_rows_matches_plain_loops() {
    // Enough rows for several blocks of partial sums and for the parallel path.
    let (rows, d) = (1100, 300);
    let x = randn(&[rows, d], 810);
    let (w, b, g) = (randn(&[d], 811), randn(&[d], 812), randn(&[rows, d], 813));
    let tape = Tape::new();
    let (vx, vw, vb) = (
        tape.leaf(x.clone()),
        tape.leaf(w.clone()),
        tape.leaf(b.clone()),
    );
    let y = vx.layer_norm(&[d], Some(vw), Some(vb), 1e-5).unwrap();
    let (want, xhat, rstd) = naive_norm(x.data(), d, Some(w.data()), Some(b.data()), 1e-5, true);
    assert_close(y.value().data(), &want, 1e-12);
    let grads = seeded_grads(y, &g);
    // dx by the closed form, row by row (the Jacobian loop would be 1100·300² steps).
    let mut dx = vec![0.0; rows * d];
    let (mut dw, mut db) = (vec![0.0; d], vec![0.0; d]);
    for r in 0..rows {
        let gw: Vec<f64> = (0..d).map(|j| g.data()[r * d + j] * w.data()[j]).collect();
        let mean_gw = gw.iter().sum::<f64>() / d as f64;
        let mean_gwx = (0..d).map(|j| gw[j] * xhat[r * d + j]).sum::<f64>() / d as f64;
        for j in 0..d {
            dx[r * d + j] = rstd[r] * (gw[j] - mean_gw - xhat[r * d + j] * mean_gwx);
            dw[j] += g.data()[r * d + j] * xhat[r * d + j];
            db[j] += g.data()[r * d + j];
        }
    }
    assert_close(grads.wrt(vx).unwrap().data(), &dx, 1e-10);
    assert_close(grads.wrt(vw).unwrap().data(), &dw, 1e-9);
    assert_close(grads.wrt(vb).unwrap().data(), &db, 1e-9);
}

#[test]
fn batch_norm_matches_plain_loops() {
    let (n, c, hw) = (4, 3, 5);
    let x = randn(&[n, c, hw], 820).map(|v| 3.0 * v - 1.0).unwrap();
    let (w, b, g) = (randn(&[c], 821), randn(&[c], 822), randn(&[n, c, hw], 823));
    let eps = 1e-5;
    let tape = Tape::new();
    let (vx, vw, vb) = (
        tape.leaf(x.clone()),
        tape.leaf(w.clone()),
        tape.leaf(b.clone()),
    );
    let y = vx
        .batch_norm(Some(vw), Some(vb), None, true, 0.1, eps)
        .unwrap();
    let at = |t: &Tensor<f64>, i: usize, ch: usize, s: usize| t.data()[(i * c + ch) * hw + s];
    let count = (n * hw) as f64;
    let (mut want_y, mut dx) = (vec![0.0; n * c * hw], vec![0.0; n * c * hw]);
    let (mut dw, mut db) = (vec![0.0; c], vec![0.0; c]);
    for ch in 0..c {
        let mut mean = 0.0;
        for i in 0..n {
            for s in 0..hw {
                mean += at(&x, i, ch, s);
            }
        }
        mean /= count;
        let mut var = 0.0;
        for i in 0..n {
            for s in 0..hw {
                var += (at(&x, i, ch, s) - mean).powi(2);
            }
        }
        var /= count;
        let r = 1.0 / (var + eps).sqrt();
        let xhat = |i: usize, s: usize| (at(&x, i, ch, s) - mean) * r;
        let (mut sum_g, mut sum_gx) = (0.0, 0.0);
        for i in 0..n {
            for s in 0..hw {
                want_y[(i * c + ch) * hw + s] = xhat(i, s) * w.data()[ch] + b.data()[ch];
                sum_g += at(&g, i, ch, s);
                sum_gx += at(&g, i, ch, s) * xhat(i, s);
            }
        }
        dw[ch] = sum_gx;
        db[ch] = sum_g;
        for i in 0..n {
            for s in 0..hw {
                dx[(i * c + ch) * hw + s] = w.data()[ch] * r / count
                    * (count * at(&g, i, ch, s) - sum_g - xhat(i, s) * sum_gx);
            }
        }
    }
    assert_close(y.value().data(), &want_y, 1e-12);
    let grads = seeded_grads(y, &g);
    assert_close(grads.wrt(vx).unwrap().data(), &dx, 1e-11);
    assert_close(grads.wrt(vw).unwrap().data(), &dw, 1e-11);
    assert_close(grads.wrt(vb).unwrap().data(), &db, 1e-11);
}

#[test]
fn batch_norm_running_statistics_by_hand() {
    // Channel 0: [1, 3, 8] → mean 4, Σ(x − μ)² = 9 + 1 + 16 = 26: biased 26/3, unbiased 13.
    // Channel 1: [2, 2, 5] → mean 3, Σ(x − μ)² = 1 + 1 + 4 = 6: biased 2, unbiased 3.
    let x = Tensor::from_vec(vec![1.0, 2.0, 3.0, 2.0, 8.0, 5.0], &[3, 2]).unwrap();
    let mut mean = Tensor::from_vec(vec![1.0, -1.0], &[2]).unwrap();
    let mut var = Tensor::from_vec(vec![2.0, 0.5], &[2]).unwrap();
    let tape = Tape::new();
    let y = tape
        .leaf(x)
        .batch_norm(
            None,
            None,
            Some(RunningStats {
                mean: &mut mean,
                var: &mut var,
            }),
            true,
            0.25,
            0.0001,
        )
        .unwrap();
    // running = 0.75·running + 0.25·batch (unbiased variance).
    assert_close(mean.data(), &[0.75 + 1.0, -0.75 + 0.75], 1e-15);
    assert_close(var.data(), &[1.5 + 3.25, 0.375 + 0.75], 1e-15);
    // The output uses the biased variance.
    let r0 = 1.0 / (26.0f64 / 3.0 + 0.0001).sqrt();
    assert_close(&y.value().data()[..1], &[(1.0 - 4.0) * r0], 1e-15);

    // Eval mode reads the running statistics and leaves them alone.
    let before = (mean.clone(), var.clone());
    let tape = Tape::new();
    let x = Tensor::from_vec(vec![2.0, 1.0], &[1, 2]).unwrap();
    let y = tape
        .leaf(x)
        .batch_norm(
            None,
            None,
            Some(RunningStats {
                mean: &mut mean,
                var: &mut var,
            }),
            false,
            0.25,
            0.0,
        )
        .unwrap();
    assert_eq!((mean.clone(), var.clone()), before);
    let want = [(2.0 - 1.75) / 4.75f64.sqrt(), (1.0 - 0.0) / 1.125f64.sqrt()];
    assert_close(y.value().data(), &want, 1e-15);

    // A batch of no elements returns an empty output and leaves the statistics alone (PyTorch).
    let tape = Tape::new();
    let y = tape
        .leaf(Tensor::zeros(&[0, 2]).unwrap())
        .batch_norm(
            None,
            None,
            Some(RunningStats {
                mean: &mut mean,
                var: &mut var,
            }),
            true,
            0.25,
            1e-5,
        )
        .unwrap();
    assert_eq!(y.value().dims(), &[0, 2]);
    assert_eq!((mean.clone(), var.clone()), before);

    // momentum 0 keeps the statistics, 1 replaces them.
    let x = Tensor::from_vec(vec![1.0, 2.0, 3.0, 2.0, 8.0, 5.0], &[3, 2]).unwrap();
    let tape = Tape::new();
    let (mut m, mut v) = (mean.clone(), var.clone());
    let stats = RunningStats {
        mean: &mut m,
        var: &mut v,
    };
    let _ = tape
        .constant(x.clone())
        .batch_norm(None, None, Some(stats), true, 0.0, 1e-5)
        .unwrap();
    assert_eq!((m, v), before);
    let (mut m, mut v) = (mean.clone(), var.clone());
    let stats = RunningStats {
        mean: &mut m,
        var: &mut v,
    };
    let _ = tape
        .constant(x)
        .batch_norm(None, None, Some(stats), true, 1.0, 1e-5)
        .unwrap();
    assert_close(m.data(), &[4.0, 3.0], 1e-15);
    assert_close(v.data(), &[13.0, 3.0], 1e-15);
}

/// Plain-loop attention over `heads` slices. `allowed(h, i, j)` says whether query i may see key
/// j, `add(h, i, j)` is the additive mask, `drop(h, i, j)` the dropout factor (mask · scale).
/// Returns the output and the gradients for the seed `g` (q, k, v, and ∂L/∂S for a mask).
struct NaiveAttention {
    out: Vec<f64>,
    dq: Vec<f64>,
    dk: Vec<f64>,
    dv: Vec<f64>,
    ds: Vec<f64>,
}

#[allow(clippy::too_many_arguments)]
fn naive_attention(
    q: &[f64],
    k: &[f64],
    v: &[f64],
    g: &[f64],
    (heads, l, s, e, ev): (usize, usize, usize, usize, usize),
    allowed: impl Fn(usize, usize, usize) -> bool,
    add: impl Fn(usize, usize, usize) -> f64,
    drop: impl Fn(usize, usize, usize) -> f64,
) -> NaiveAttention {
    let scale = 1.0 / (e as f64).sqrt();
    let mut r = NaiveAttention {
        out: vec![0.0; heads * l * ev],
        dq: vec![0.0; heads * l * e],
        dk: vec![0.0; heads * s * e],
        dv: vec![0.0; heads * s * ev],
        ds: vec![0.0; heads * l * s],
    };
    for h in 0..heads {
        let (qh, kh, vh) = (&q[h * l * e..], &k[h * s * e..], &v[h * s * ev..]);
        let gh = &g[h * l * ev..];
        for i in 0..l {
            // Scores and an explicit softmax over the allowed keys.
            let mut scores = vec![f64::NEG_INFINITY; s];
            for (j, score) in scores.iter_mut().enumerate() {
                if allowed(h, i, j) {
                    let mut dotp = 0.0;
                    for c in 0..e {
                        dotp += qh[i * e + c] * kh[j * e + c];
                    }
                    *score = dotp * scale + add(h, i, j);
                }
            }
            let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let mut p = vec![0.0; s];
            if max > f64::NEG_INFINITY {
                let total: f64 = scores.iter().map(|&x| (x - max).exp()).sum();
                for j in 0..s {
                    p[j] = (scores[j] - max).exp() / total;
                }
            }
            for c in 0..ev {
                for j in 0..s {
                    r.out[(h * l + i) * ev + c] += p[j] * drop(h, i, j) * vh[j * ev + c];
                }
            }
            // Gradients: dV, dP through dropout, dS through the softmax's Jacobian.
            let mut dp = vec![0.0; s];
            for j in 0..s {
                for c in 0..ev {
                    r.dv[(h * s + j) * ev + c] += p[j] * drop(h, i, j) * gh[i * ev + c];
                    dp[j] += gh[i * ev + c] * vh[j * ev + c];
                }
                dp[j] *= drop(h, i, j);
            }
            for j in 0..s {
                let mut dsj = 0.0;
                for kk in 0..s {
                    let delta = if j == kk { 1.0 } else { 0.0 };
                    dsj += dp[kk] * p[kk] * (delta - p[j]);
                }
                r.ds[(h * l + i) * s + j] = dsj;
                for c in 0..e {
                    r.dq[(h * l + i) * e + c] += scale * dsj * kh[j * e + c];
                    r.dk[(h * s + j) * e + c] += scale * dsj * qh[i * e + c];
                }
            }
        }
    }
    r
}

fn assert_attention_grads(
    tape_out: Var<'_, f64>,
    vars: [Var<'_, f64>; 3],
    g: &Tensor<f64>,
    want: &NaiveAttention,
) {
    assert_close(tape_out.value().data(), &want.out, 1e-12);
    let grads = tape_out
        .backward_with(BackwardOptions::new().seed(g.clone()).retain_graph(true))
        .unwrap();
    assert_close(grads.wrt(vars[0]).unwrap().data(), &want.dq, 1e-12);
    assert_close(grads.wrt(vars[1]).unwrap().data(), &want.dk, 1e-12);
    assert_close(grads.wrt(vars[2]).unwrap().data(), &want.dv, 1e-12);
}

#[test]
fn attention_matches_plain_loops() {
    for (causal, (heads, l, s, e, ev)) in [
        (false, (3, 5, 7, 4, 3)),
        (true, (2, 6, 6, 3, 2)),
        (true, (2, 70, 70, 4, 3)),
        (true, (2, 40, 9, 3, 2)),
        (true, (2, 9, 40, 3, 2)),
    ] {
        let inputs = qkv(&[heads], l, s, e, ev, 900 + l as u64);
        let g = randn(&[heads, l, ev], 901);
        let tape = Tape::new();
        let vars = [0, 1, 2].map(|i| tape.leaf(inputs[i].clone()));
        let out = vars[0]
            .scaled_dot_product_attention(vars[1], vars[2], None, causal, 0.0, &mut rng())
            .unwrap();
        let want = naive_attention(
            inputs[0].data(),
            inputs[1].data(),
            inputs[2].data(),
            g.data(),
            (heads, l, s, e, ev),
            |_, i, j| !causal || j <= i,
            |_, _, _| 0.0,
            |_, _, _| 1.0,
        );
        assert_attention_grads(out, vars, &g, &want);
    }
}

#[test]
fn attention_masks_broadcast_and_fully_masked_queries_give_zero() {
    let (b, h, l, s, e, ev) = (2, 3, 4, 5, 3, 2);
    let inputs = qkv(&[b, h], l, s, e, ev, 910);
    let g = randn(&[b, h, l, ev], 911);
    // Keep-mask [B, 1, L, S] (per batch, shared by heads); query 2 of batch 1 sees nothing.
    let keep = Tensor::from_vec(
        (0..b * l * s)
            .map(|i| {
                let (batch, row, col) = (i / (l * s), (i / s) % l, i % s);
                if batch == 1 && row == 2 {
                    0.0
                } else {
                    f64::from((row + 2 * col + batch) % 3 != 0)
                }
            })
            .collect(),
        &[b, 1, l, s],
    )
    .unwrap();
    let tape = Tape::new();
    let vars = [0, 1, 2].map(|i| tape.leaf(inputs[i].clone()));
    let out = vars[0]
        .scaled_dot_product_attention(
            vars[1],
            vars[2],
            Some(AttnMask::Keep(tape.constant(keep.clone()))),
            false,
            0.0,
            &mut rng(),
        )
        .unwrap();
    let keep_at = |hh: usize, i: usize, j: usize| keep.data()[((hh / h) * l + i) * s + j] != 0.0;
    let want = naive_attention(
        inputs[0].data(),
        inputs[1].data(),
        inputs[2].data(),
        g.data(),
        (b * h, l, s, e, ev),
        keep_at,
        |_, _, _| 0.0,
        |_, _, _| 1.0,
    );
    assert_attention_grads(out, vars, &g, &want);
    // The query that sees nothing: output 0 (not NaN) and no gradient, in every head.
    for head in 0..h {
        for c in 0..ev {
            assert_eq!(out.value().get(&[1, head, 2, c]).unwrap(), 0.0);
        }
    }

    // Additive mask [L, S] broadcast over batch and heads, with −∞ entries and a −∞ row; its
    // gradient is ∂L/∂S summed over batch and heads.
    let mut additive = randn(&[l, s], 912);
    for j in 0..s {
        additive.set(&[3, j], f64::NEG_INFINITY).unwrap();
    }
    additive.set(&[0, 1], f64::NEG_INFINITY).unwrap();
    let tape = Tape::new();
    let vars = [0, 1, 2].map(|i| tape.leaf(inputs[i].clone()));
    let vmask = tape.leaf(additive.clone());
    let out = vars[0]
        .scaled_dot_product_attention(
            vars[1],
            vars[2],
            Some(AttnMask::Additive(vmask)),
            false,
            0.0,
            &mut rng(),
        )
        .unwrap();
    let want = naive_attention(
        inputs[0].data(),
        inputs[1].data(),
        inputs[2].data(),
        g.data(),
        (b * h, l, s, e, ev),
        |_, i, j| additive.data()[i * s + j] > f64::NEG_INFINITY,
        |_, i, j| additive.data()[i * s + j],
        |_, _, _| 1.0,
    );
    assert_attention_grads(out, vars, &g, &want);
    let grads = out
        .backward_with(BackwardOptions::new().seed(g.clone()))
        .unwrap();
    let mut dmask = vec![0.0; l * s];
    for (idx, &d) in want.ds.iter().enumerate() {
        dmask[idx % (l * s)] += d;
    }
    assert_close(grads.wrt(vmask).unwrap().data(), &dmask, 1e-12);
    assert!(
        grads.wrt(vmask).unwrap().data()[3 * s..]
            .iter()
            .all(|&d| d == 0.0)
    );
}

#[test]
fn attention_dropout_draws_like_dropout_and_reuses_its_mask() {
    let (heads, l, s, e, ev) = (3, 6, 5, 4, 3);
    let inputs = qkv(&[heads], l, s, e, ev, 920);
    let g = randn(&[heads, l, ev], 921);
    let p = 0.4;
    let tape = Tape::new();
    let vars = [0, 1, 2].map(|i| tape.leaf(inputs[i].clone()));
    let mut draw = Pcg64::seed_from_u64(5);
    let out = vars[0]
        .scaled_dot_product_attention(vars[1], vars[2], None, true, p, &mut draw)
        .unwrap();
    // The same generator state gives BitMask::dropout's mask over [heads, L, S], and one u64 is taken.
    let mut replay = Pcg64::seed_from_u64(5);
    let mask = BitMask::dropout(heads * l * s, p, &mut replay).unwrap();
    assert_eq!(
        rand::Rng::next_u64(&mut draw),
        rand::Rng::next_u64(&mut replay)
    );
    let (saved, scale) = out.dropout_mask().unwrap();
    assert_eq!(saved, mask);
    assert_eq!(scale, 1.0 / (1.0 - p));
    let bit = |h: usize, i: usize, j: usize| mask.get((h * l + i) * s + j);
    let want = naive_attention(
        inputs[0].data(),
        inputs[1].data(),
        inputs[2].data(),
        g.data(),
        (heads, l, s, e, ev),
        |_, i, j| j <= i,
        |_, _, _| 0.0,
        |h, i, j| if bit(h, i, j) { scale } else { 0.0 },
    );
    // Backward uses the forward's mask (a fresh draw would give other gradients).
    assert_attention_grads(out, vars, &g, &want);

    // p = 1 drops everything and draws nothing; p = 0 draws nothing either.
    for p in [0.0, 1.0] {
        let mut draw = Pcg64::seed_from_u64(5);
        let tape = Tape::new();
        let vars = [0, 1, 2].map(|i| tape.leaf(inputs[i].clone()));
        let out = vars[0]
            .scaled_dot_product_attention(vars[1], vars[2], None, false, p, &mut draw)
            .unwrap();
        assert_eq!(
            rand::Rng::next_u64(&mut draw),
            rand::Rng::next_u64(&mut Pcg64::seed_from_u64(5))
        );
        if p == 1.0 {
            assert!(out.value().data().iter().all(|&x| x == 0.0));
        }
    }
}

#[test]
fn attention_edge_shapes_follow_pytorch() {
    let mut r = rng();
    let tape = Tape::<f64>::new();
    // No keys: every query sees nothing, output 0.
    let inputs = qkv(&[2], 3, 0, 4, 2, 930);
    let vars = [0, 1, 2].map(|i| tape.leaf(inputs[i].clone()));
    let out = vars[0]
        .scaled_dot_product_attention(vars[1], vars[2], None, false, 0.0, &mut r)
        .unwrap();
    assert_eq!(out.value().dims(), &[2, 3, 2]);
    assert!(out.value().data().iter().all(|&x| x == 0.0));
    // E = 0: every score is 0, the output is the mean of the values.
    let inputs = qkv(&[1], 2, 3, 0, 2, 931);
    let vars = [0, 1, 2].map(|i| tape.leaf(inputs[i].clone()));
    let out = vars[0]
        .scaled_dot_product_attention(vars[1], vars[2], None, false, 0.0, &mut r)
        .unwrap();
    let v = &inputs[2];
    for c in 0..2 {
        let mean = (0..3).map(|j| v.get(&[0, j, c]).unwrap()).sum::<f64>() / 3.0;
        assert!((out.value().get(&[0, 1, c]).unwrap() - mean).abs() < 1e-15);
    }
    // 2-D inputs (no batch axes).
    let inputs = qkv(&[], 3, 4, 2, 5, 932);
    let vars = [0, 1, 2].map(|i| tape.leaf(inputs[i].clone()));
    let out = vars[0]
        .scaled_dot_product_attention(vars[1], vars[2], None, true, 0.0, &mut r)
        .unwrap();
    assert_eq!(out.value().dims(), &[3, 5]);
    // Causal: the first query sees only the first key.
    for c in 0..5 {
        assert_eq!(
            out.value().get(&[0, c]).unwrap(),
            inputs[2].get(&[0, c]).unwrap()
        );
    }
}

#[test]
fn attention_nan_scores_propagate() {
    let mut inputs = qkv(&[1], 2, 3, 2, 2, 940);
    inputs[0].set(&[0, 0, 1], f64::NAN).unwrap();
    let tape = Tape::new();
    let vars = [0, 1, 2].map(|i| tape.constant(inputs[i].clone()));
    let out = vars[0]
        .scaled_dot_product_attention(vars[1], vars[2], None, false, 0.0, &mut rng())
        .unwrap();
    let value = out.value();
    assert!(value.data()[..2].iter().all(|x| x.is_nan()));
    assert!(value.data()[2..].iter().all(|x| x.is_finite()));
}

// ------------------------------------------------------------------------------------------------
// The recorded backward agrees with the plain one; thread count does not matter
// ------------------------------------------------------------------------------------------------

type OpFn = for<'t> fn(&'t Tape<f64>, &[Var<'t, f64>]) -> Result<Var<'t, f64>>;

#[test]
fn recorded_backward_matches_plain_backward() {
    let cases: Vec<(&str, Vec<Tensor<f64>>, OpFn)> = vec![
        (
            "layer_norm",
            vec![randn(&[3, 2, 4], 1), randn(&[2, 4], 2), randn(&[2, 4], 3)],
            |_, v| v[0].layer_norm(&[2, 4], Some(v[1]), Some(v[2]), 1e-5),
        ),
        (
            "rms_norm",
            vec![randn(&[3, 4], 4), randn(&[4], 5)],
            |_, v| v[0].rms_norm(&[4], Some(v[1]), None),
        ),
        (
            "batch_norm",
            vec![randn(&[4, 3, 2], 6), randn(&[3], 7), randn(&[3], 8)],
            |_, v| v[0].batch_norm(Some(v[1]), Some(v[2]), None, true, 0.1, 1e-5),
        ),
        (
            "batch_norm_eval",
            vec![randn(&[4, 3], 9), randn(&[3], 10), randn(&[3], 11)],
            |_, v| {
                let (mut m, mut var) = (randn(&[3], 12), uniform(&[3], 13, 0.5, 1.5));
                let stats = RunningStats {
                    mean: &mut m,
                    var: &mut var,
                };
                v[0].batch_norm(Some(v[1]), Some(v[2]), Some(stats), false, 0.1, 1e-5)
            },
        ),
        ("attention", qkv(&[2, 2], 35, 33, 3, 2, 14), |_, v| {
            v[0].scaled_dot_product_attention(v[1], v[2], None, true, 0.3, &mut rng())
        }),
        (
            "attention_mask",
            [qkv(&[2], 3, 4, 3, 2, 15), vec![randn(&[1, 4], 16)]].concat(),
            |_, v| {
                v[0].scaled_dot_product_attention(
                    v[1],
                    v[2],
                    Some(AttnMask::Additive(v[3])),
                    false,
                    0.2,
                    &mut rng(),
                )
            },
        ),
    ];
    for (name, inputs, f) in cases {
        let tape = Tape::new();
        let vars: Vec<_> = inputs.iter().map(|x| tape.leaf(x.clone())).collect();
        let y = f(&tape, &vars).unwrap();
        let g = randn(y.value().dims(), 99);
        let plain = y
            .backward_with(BackwardOptions::new().seed(g.clone()).retain_graph(true))
            .unwrap();
        let graph = y.backward_graph(Some(tape.constant(g))).unwrap();
        for (i, &v) in vars.iter().enumerate() {
            let (a, b) = (plain.wrt(v).unwrap(), graph.wrt(v).unwrap().value());
            assert_close(a.data(), b.data(), 1e-11);
            assert_eq!(a.dims(), b.dims(), "{name} input {i}");
        }
    }
}

#[test]
fn results_do_not_depend_on_the_thread_count() {
    let run = |threads: usize| {
        tapegrad::set_num_threads(threads);
        let mut r = Pcg64::seed_from_u64(3);
        let tape = Tape::<f32>::new();
        let x = tape.leaf(Tensor::normal(&[1100, 300], 0.0, 1.0, &mut r).unwrap());
        let w = tape.leaf(Tensor::normal(&[300], 0.0, 1.0, &mut r).unwrap());
        let b = tape.leaf(Tensor::normal(&[300], 0.0, 1.0, &mut r).unwrap());
        let q = tape.leaf(Tensor::normal(&[4, 4, 128, 32], 0.0, 1.0, &mut r).unwrap());
        let k = tape.leaf(Tensor::normal(&[4, 4, 128, 32], 0.0, 1.0, &mut r).unwrap());
        let v = tape.leaf(Tensor::normal(&[4, 4, 128, 32], 0.0, 1.0, &mut r).unwrap());
        let y = x.layer_norm(&[300], Some(w), Some(b), 1e-5).unwrap();
        let a = q
            .scaled_dot_product_attention(k, v, None, false, 0.1, &mut r)
            .unwrap();
        let loss = y
            .mul(y)
            .unwrap()
            .sum()
            .unwrap()
            .add(a.mul(a).unwrap().sum().unwrap())
            .unwrap();
        let grads = loss.backward().unwrap();
        let mut all = vec![(*y.value()).clone(), (*a.value()).clone()];
        for var in [x, w, b, q, k, v] {
            all.push(grads.wrt(var).unwrap().clone());
        }
        all
    };
    let one = run(1);
    let two = run(2);
    let three = run(3);
    tapegrad::set_num_threads(0);
    assert!(
        one == two && two == three,
        "results differ between thread counts"
    );
}

// ------------------------------------------------------------------------------------------------
// Errors
// ------------------------------------------------------------------------------------------------

#[test]
fn norm_errors() {
    let tape = Tape::<f64>::new();
    let other = Tape::<f64>::new();
    let x = tape.leaf(randn(&[3, 4], 1));
    let w4 = tape.leaf(randn(&[4], 2));
    let w3 = tape.leaf(randn(&[3], 3));
    assert!(matches!(
        x.layer_norm(&[], None, None, 1e-5),
        Err(Error::InvalidArgument {
            op: "layer_norm",
            ..
        })
    ));
    assert!(matches!(
        x.layer_norm(&[3], None, None, 1e-5),
        Err(Error::ShapeMismatch {
            op: "layer_norm",
            ..
        })
    ));
    assert!(matches!(
        x.layer_norm(&[2, 3, 4], None, None, 1e-5),
        Err(Error::ShapeMismatch {
            op: "layer_norm",
            ..
        })
    ));
    let err = x.layer_norm(&[4], Some(w3), None, 1e-5).unwrap_err();
    assert_eq!(
        err.to_string(),
        "layer_norm: incompatible shapes [3] and [4]"
    );
    assert!(matches!(
        x.layer_norm(&[4], None, Some(w3), 1e-5),
        Err(Error::ShapeMismatch { .. })
    ));
    for eps in [-1e-5, f64::NAN, f64::INFINITY] {
        assert!(matches!(
            x.layer_norm(&[4], None, None, eps),
            Err(Error::InvalidHyperparameter { name: "eps", .. })
        ));
        assert!(matches!(
            x.rms_norm(&[4], None, Some(eps)),
            Err(Error::InvalidHyperparameter { op: "rms_norm", .. })
        ));
    }
    let foreign = other.leaf(randn(&[4], 4));
    assert!(matches!(
        x.layer_norm(&[4], Some(foreign), None, 1e-5),
        Err(Error::ForeignVar { .. })
    ));
    assert!(matches!(
        x.rms_norm(&[4, 4], Some(w4), None),
        Err(Error::ShapeMismatch { op: "rms_norm", .. })
    ));
    assert!(matches!(
        x.rms_norm(&[4], Some(w3), None),
        Err(Error::ShapeMismatch { op: "rms_norm", .. })
    ));
    let scalar = tape.leaf(Tensor::scalar(1.0));
    assert!(matches!(
        scalar.layer_norm(&[1], None, None, 1e-5),
        Err(Error::ShapeMismatch { .. })
    ));

    // batch_norm
    let vector = tape.leaf(randn(&[4], 5));
    assert!(matches!(
        vector.batch_norm(None, None, None, true, 0.1, 1e-5),
        Err(Error::BadRank {
            op: "batch_norm",
            ..
        })
    ));
    assert!(matches!(
        x.batch_norm(Some(w3), None, None, true, 0.1, 1e-5),
        Err(Error::ShapeMismatch {
            op: "batch_norm",
            ..
        })
    ));
    assert!(matches!(
        x.batch_norm(None, Some(w3), None, true, 0.1, 1e-5),
        Err(Error::ShapeMismatch { .. })
    ));
    let (mut m3, mut v4) = (Tensor::zeros(&[3]).unwrap(), Tensor::ones(&[4]).unwrap());
    let bad = RunningStats {
        mean: &mut m3,
        var: &mut v4,
    };
    assert!(matches!(
        x.batch_norm(None, None, Some(bad), true, 0.1, 1e-5),
        Err(Error::ShapeMismatch { .. })
    ));
    assert!(matches!(
        x.batch_norm(None, None, None, false, 0.1, 1e-5),
        Err(Error::InvalidArgument {
            op: "batch_norm",
            ..
        })
    ));
    for momentum in [-0.1, 1.5, f64::NAN] {
        assert!(matches!(
            x.batch_norm(None, None, None, true, momentum, 1e-5),
            Err(Error::InvalidHyperparameter {
                name: "momentum",
                ..
            })
        ));
    }
    for eps in [0.0, -1.0, f64::NAN] {
        assert!(matches!(
            x.batch_norm(None, None, None, true, 0.1, eps),
            Err(Error::InvalidHyperparameter { name: "eps", .. })
        ));
    }
    // In eval ε = 0 is allowed (PyTorch's rule), a negative one is not.
    let (mut m, mut v) = (Tensor::zeros(&[4]).unwrap(), Tensor::ones(&[4]).unwrap());
    let (mut m2, mut v2) = (Tensor::zeros(&[4]).unwrap(), Tensor::ones(&[4]).unwrap());
    assert!(
        x.batch_norm(
            None,
            None,
            Some(RunningStats {
                mean: &mut m2,
                var: &mut v2
            }),
            false,
            0.1,
            0.0
        )
        .is_ok()
    );
    assert!(matches!(
        x.batch_norm(
            None,
            None,
            Some(RunningStats {
                mean: &mut m2,
                var: &mut v2
            }),
            false,
            0.1,
            -1.0
        ),
        Err(Error::InvalidHyperparameter { .. })
    ));
    // One value per channel cannot be normalised in training; the statistics stay untouched.
    let one = tape.leaf(randn(&[1, 4], 6));
    let before = (m.clone(), v.clone());
    let err = one
        .batch_norm(
            None,
            None,
            Some(RunningStats {
                mean: &mut m,
                var: &mut v,
            }),
            true,
            0.1,
            1e-5,
        )
        .unwrap_err();
    assert!(
        err.to_string().contains("more than 1 value per channel"),
        "{err}"
    );
    assert_eq!((m, v), before);
}

#[test]
fn attention_errors() {
    let tape = Tape::<f64>::new();
    let other = Tape::<f64>::new();
    let mut r = rng();
    let leaf = |dims: &[usize]| tape.leaf(randn(dims, 1));
    let (q, k, v) = (leaf(&[2, 3, 4]), leaf(&[2, 5, 4]), leaf(&[2, 5, 6]));
    fn sdpa<'t>(
        q: Var<'t, f64>,
        k: Var<'t, f64>,
        v: Var<'t, f64>,
        mask: Option<AttnMask<'t, f64>>,
        causal: bool,
        p: f64,
        r: &mut Pcg64,
    ) -> Result<Var<'t, f64>> {
        q.scaled_dot_product_attention(k, v, mask, causal, p, r)
    }
    assert!(sdpa(q, k, v, None, false, 0.0, &mut r).is_ok());
    let one_axis = leaf(&[4]);
    assert!(matches!(
        sdpa(one_axis, k, v, None, false, 0.0, &mut r),
        Err(Error::BadRank { .. })
    ));
    // Query and key widths differ.
    let err = sdpa(q, leaf(&[2, 5, 3]), v, None, false, 0.0, &mut r).unwrap_err();
    assert_eq!(
        err.to_string(),
        "scaled_dot_product_attention: incompatible shapes [2, 3, 4] and [2, 5, 3]"
    );
    // Leading axes differ (no broadcasting of q, k, v).
    assert!(matches!(
        sdpa(q, leaf(&[1, 5, 4]), v, None, false, 0.0, &mut r),
        Err(Error::ShapeMismatch { .. })
    ));
    assert!(matches!(
        sdpa(leaf(&[1, 2, 3, 4]), k, v, None, false, 0.0, &mut r),
        Err(Error::ShapeMismatch { .. })
    ));
    // Keys and values of different lengths, or batches.
    assert!(matches!(
        sdpa(q, k, leaf(&[2, 4, 6]), None, false, 0.0, &mut r),
        Err(Error::ShapeMismatch { .. })
    ));
    assert!(matches!(
        sdpa(q, k, leaf(&[3, 5, 6]), None, false, 0.0, &mut r),
        Err(Error::ShapeMismatch { .. })
    ));
    // A mask that does not broadcast to [2, 3, 5].
    let err = sdpa(
        q,
        k,
        v,
        Some(AttnMask::Keep(leaf(&[3, 4]))),
        false,
        0.0,
        &mut r,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "scaled_dot_product_attention: incompatible shapes [3, 4] and [2, 3, 5]"
    );
    // A mask with causal.
    assert!(matches!(
        sdpa(
            q,
            k,
            v,
            Some(AttnMask::Additive(leaf(&[3, 5]))),
            true,
            0.0,
            &mut r
        ),
        Err(Error::InvalidArgument { .. })
    ));
    for p in [-0.1, 1.1, f64::NAN] {
        assert!(matches!(
            sdpa(q, k, v, None, false, p, &mut r),
            Err(Error::InvalidProbability { .. })
        ));
    }
    let foreign = other.leaf(randn(&[2, 5, 4], 2));
    assert!(matches!(
        sdpa(q, foreign, v, None, false, 0.0, &mut r),
        Err(Error::ForeignVar { .. })
    ));
    let foreign_mask = other.leaf(randn(&[3, 5], 3));
    assert!(matches!(
        sdpa(
            q,
            k,
            v,
            Some(AttnMask::Additive(foreign_mask)),
            false,
            0.0,
            &mut r
        ),
        Err(Error::ForeignVar { .. })
    ));
}

// ------------------------------------------------------------------------------------------------
// PyTorch golden values
// ------------------------------------------------------------------------------------------------

trait Load: Float {
    const TAG: &'static str;
    const RTOL: f64;
    const ATOL: f64;
    fn load(gold: &Golden, name: &str) -> Tensor<Self>;
}

impl Load for f32 {
    const TAG: &'static str = "f32";
    const RTOL: f64 = 1e-5;
    const ATOL: f64 = 1e-6;
    fn load(gold: &Golden, name: &str) -> Tensor<f32> {
        gold.f32(name)
    }
}

impl Load for f64 {
    const TAG: &'static str = "f64";
    const RTOL: f64 = 1e-12;
    const ATOL: f64 = 1e-12;
    fn load(gold: &Golden, name: &str) -> Tensor<f64> {
        gold.f64(name)
    }
}

fn assert_allclose<T: Load>(what: &str, got: &Tensor<T>, want: &Tensor<T>) {
    assert_eq!(got.dims(), want.dims(), "{what}: shape");
    for (i, (&a, &b)) in got.data().iter().zip(want.data()).enumerate() {
        let (a, b) = (a.to_f64(), b.to_f64());
        let ok = (a - b).abs() <= T::ATOL + T::RTOL * b.abs() || a == b;
        assert!(ok, "{what}[{i}]: got {a:e}, want {b:e}");
    }
}

type Body<T> = for<'t> fn(&'t Tape<T>, &[Var<'t, T>]) -> Result<Var<'t, T>>;

/// Loads the inputs of `case` (a leaf when the file has its gradient), runs `body`, and compares
/// the output and every gradient, the backward seeded with the file's `g`.
fn golden_case<T: Load>(gold: &Golden, case: &str, names: &[&str], body: Body<T>) {
    let key = |n: &str| format!("{case}.{}.{n}", T::TAG);
    let tape = Tape::<T>::new();
    let vars: Vec<Var<'_, T>> = names
        .iter()
        .map(|n| {
            let value = T::load(gold, &key(n));
            if gold.has(&key(&format!("d{n}"))) {
                tape.leaf(value)
            } else {
                tape.constant(value)
            }
        })
        .collect();
    let out = body(&tape, &vars).unwrap();
    assert_allclose(&key("out"), &out.value(), &T::load(gold, &key("out")));
    let grads = out
        .backward_with(BackwardOptions::new().seed(T::load(gold, &key("g"))))
        .unwrap();
    for (n, &v) in names.iter().zip(&vars) {
        let name = key(&format!("d{n}"));
        if gold.has(&name) {
            let want = T::load(gold, &name);
            let got = match grads.get(v) {
                Some(g) => g.clone(),
                None => Tensor::zeros(want.dims()).unwrap(),
            };
            assert_allclose(&name, &got, &want);
        }
    }
}

fn golden_batch_norm<T: Load>(gold: &Golden, case: &str, training: bool, momentum: f64, eps: f64) {
    let key = |n: &str| format!("{case}.{}.{n}", T::TAG);
    let tape = Tape::<T>::new();
    let x = tape.leaf(T::load(gold, &key("x")));
    let w = gold
        .has(&key("w"))
        .then(|| tape.leaf(T::load(gold, &key("w"))));
    let b = gold
        .has(&key("b"))
        .then(|| tape.leaf(T::load(gold, &key("b"))));
    let has_stats = gold.has(&key("running_mean_before"));
    let mut mean = has_stats.then(|| T::load(gold, &key("running_mean_before")));
    let mut var = has_stats.then(|| T::load(gold, &key("running_var_before")));
    let running = match (mean.as_mut(), var.as_mut()) {
        (Some(mean), Some(var)) => Some(RunningStats { mean, var }),
        _ => None,
    };
    let out = x
        .batch_norm(w, b, running, training, momentum, eps)
        .unwrap();
    assert_allclose(&key("out"), &out.value(), &T::load(gold, &key("out")));
    if let (Some(mean), Some(var)) = (&mean, &var) {
        let after = |n: &str| T::load(gold, &key(n));
        assert_allclose(
            &key("running_mean_after"),
            mean,
            &after("running_mean_after"),
        );
        assert_allclose(&key("running_var_after"), var, &after("running_var_after"));
    }
    let grads = out
        .backward_with(BackwardOptions::new().seed(T::load(gold, &key("g"))))
        .unwrap();
    assert_allclose(
        &key("dx"),
        grads.wrt(x).unwrap(),
        &T::load(gold, &key("dx")),
    );
    for (name, var) in [("dw", w), ("db", b)] {
        if let Some(var) = var {
            assert_allclose(
                &key(name),
                grads.wrt(var).unwrap(),
                &T::load(gold, &key(name)),
            );
        }
    }
}

fn golden_all<T: Load>() {
    let gold = Golden::open("ops_norm_attn.safetensors");
    let mut names = gold.names();
    names.retain(|n| n.contains(&format!(".{}.", T::TAG)));
    assert!(names.len() > 100, "the golden file holds the cases");

    golden_case::<T>(&gold, "ln_affine", &["x", "w", "b"], |_, v| {
        v[0].layer_norm(&[6], Some(v[1]), Some(v[2]), 1e-5)
    });
    golden_case::<T>(&gold, "ln_two_axes_weight", &["x", "w"], |_, v| {
        v[0].layer_norm(&[4, 5], Some(v[1]), None, 1e-3)
    });
    golden_case::<T>(&gold, "ln_plain", &["x"], |_, v| {
        v[0].layer_norm(&[7], None, None, 1e-5)
    });
    golden_case::<T>(&gold, "ln_bias_only", &["x", "b"], |_, v| {
        v[0].layer_norm(&[3], None, Some(v[1]), 0.1)
    });
    golden_case::<T>(&gold, "ln_zero_rows", &["x", "w", "b"], |_, v| {
        v[0].layer_norm(&[4], Some(v[1]), Some(v[2]), 1e-5)
    });
    golden_case::<T>(&gold, "rms_weight_default_eps", &["x", "w"], |_, v| {
        v[0].rms_norm(&[6], Some(v[1]), None)
    });
    golden_case::<T>(&gold, "rms_two_axes", &["x"], |_, v| {
        v[0].rms_norm(&[3, 8], None, Some(1e-6))
    });

    golden_batch_norm::<T>(&gold, "bn_train_2d", true, 0.1, 1e-5);
    golden_batch_norm::<T>(&gold, "bn_train_3d", true, 0.3, 1e-3);
    golden_batch_norm::<T>(&gold, "bn_train_4d_plain", true, 0.1, 1e-5);
    golden_batch_norm::<T>(&gold, "bn_eval_4d", false, 0.1, 1e-5);

    let qkv_names = ["q", "k", "v"];
    let plain: Body<T> =
        |_, v| v[0].scaled_dot_product_attention(v[1], v[2], None, false, 0.0, &mut rng());
    let causal: Body<T> =
        |_, v| v[0].scaled_dot_product_attention(v[1], v[2], None, true, 0.0, &mut rng());
    golden_case::<T>(&gold, "attn_plain", &qkv_names, plain);
    golden_case::<T>(&gold, "attn_2d", &qkv_names, plain);
    for case in [
        "attn_causal",
        "attn_causal_long",
        "attn_causal_more_queries",
        "attn_causal_more_keys",
    ] {
        golden_case::<T>(&gold, case, &qkv_names, causal);
    }
    golden_case::<T>(&gold, "attn_keep_mask", &["q", "k", "v", "keep"], |_, v| {
        v[0].scaled_dot_product_attention(
            v[1],
            v[2],
            Some(AttnMask::Keep(v[3])),
            false,
            0.0,
            &mut rng(),
        )
    });
    golden_case::<T>(
        &gold,
        "attn_additive_mask",
        &["q", "k", "v", "mask"],
        |_, v| {
            v[0].scaled_dot_product_attention(
                v[1],
                v[2],
                Some(AttnMask::Additive(v[3])),
                false,
                0.0,
                &mut rng(),
            )
        },
    );
}

#[test]
fn pytorch_golden_f32() {
    golden_all::<f32>();
}

#[test]
fn pytorch_golden_f64() {
    golden_all::<f64>();
}
