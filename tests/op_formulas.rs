//! Each op's backward against its formula, computed independently here with plain loops.

mod common;

use common::{assert_close, naive_matmul, randn};
use tapegrad::{BackwardOptions, Tape, Tensor};

/// Runs backward from `y` with the seed gradient `g` and returns the tape's gradients.
fn backward_with_seed(y: tapegrad::Var<'_, f64>, g: &Tensor<f64>) -> tapegrad::Gradients<f64> {
    y.backward_with(BackwardOptions::new().seed(g.clone()).retain_graph(false))
        .unwrap()
}

#[test]
fn matmul_grads_are_g_bt_and_at_g() {
    let (a, b, g) = (randn(&[4, 3], 1), randn(&[3, 5], 2), randn(&[4, 5], 3));
    let tape = Tape::new();
    let (va, vb) = (tape.leaf(a.clone()), tape.leaf(b.clone()));
    let y = va.matmul(vb).unwrap();
    assert_close(y.value().data(), &naive_matmul(&a, &b), 1e-12);
    let grads = backward_with_seed(y, &g);
    // dA[i,k] = Σ_j g[i,j] B[k,j];  dB[k,j] = Σ_i A[i,k] g[i,j].
    let mut da = vec![0.0; 12];
    let mut db = vec![0.0; 15];
    for i in 0..4 {
        for k in 0..3 {
            for j in 0..5 {
                da[i * 3 + k] += g.data()[i * 5 + j] * b.data()[k * 5 + j];
                db[k * 5 + j] += a.data()[i * 3 + k] * g.data()[i * 5 + j];
            }
        }
    }
    assert_close(grads.wrt(va).unwrap().data(), &da, 1e-12);
    assert_close(grads.wrt(vb).unwrap().data(), &db, 1e-12);
}

#[test]
fn bias_gradient_is_the_column_sum() {
    let (x, b, g) = (randn(&[5, 3], 4), randn(&[3], 5), randn(&[5, 3], 6));
    let tape = Tape::new();
    let (vx, vb) = (tape.leaf(x), tape.leaf(b));
    let grads = backward_with_seed(vx.add(vb).unwrap(), &g);
    let col_sums: Vec<f64> = (0..3)
        .map(|j| (0..5).map(|i| g.data()[i * 3 + j]).sum())
        .collect();
    assert_close(grads.wrt(vb).unwrap().data(), &col_sums, 1e-12);
    assert_close(grads.wrt(vx).unwrap().data(), g.data(), 0.0);
}

#[test]
fn relu_passes_gradient_only_where_positive_and_not_at_zero() {
    let x = Tensor::from_vec(vec![-2.0, -0.0, 0.0, 1e-300, 3.0, f64::MIN_POSITIVE], &[6]).unwrap();
    let g = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[6]).unwrap();
    let tape = Tape::new();
    let vx = tape.leaf(x);
    let grads = backward_with_seed(vx.relu().unwrap(), &g);
    assert_eq!(
        grads.wrt(vx).unwrap().data(),
        &[0.0, 0.0, 0.0, 4.0, 5.0, 6.0]
    );
}

#[test]
fn log_softmax_grad_is_g_minus_softmax_times_row_sum() {
    let (x, g) = (randn(&[3, 4], 7), randn(&[3, 4], 8));
    let tape = Tape::new();
    let vx = tape.leaf(x.clone());
    let y = vx.log_softmax().unwrap();
    let grads = backward_with_seed(y, &g);
    let mut want = vec![0.0; 12];
    for r in 0..3 {
        let row = &x.data()[r * 4..(r + 1) * 4];
        let z: f64 = row.iter().map(|v| v.exp()).sum();
        let gsum: f64 = g.data()[r * 4..(r + 1) * 4].iter().sum();
        for c in 0..4 {
            // log_softmax by its definition, without the max shift.
            assert!((y.value().data()[r * 4 + c] - (row[c] - z.ln())).abs() < 1e-12);
            want[r * 4 + c] = g.data()[r * 4 + c] - row[c].exp() / z * gsum;
        }
    }
    assert_close(grads.wrt(vx).unwrap().data(), &want, 1e-12);
}

#[test]
fn softmax_grad_is_p_times_g_minus_dot() {
    let (x, g) = (randn(&[2, 5], 9), randn(&[2, 5], 10));
    let tape = Tape::new();
    let vx = tape.leaf(x.clone());
    let grads = backward_with_seed(vx.softmax().unwrap(), &g);
    let mut want = vec![0.0; 10];
    for r in 0..2 {
        let z: f64 = x.data()[r * 5..(r + 1) * 5].iter().map(|v| v.exp()).sum();
        let p: Vec<f64> = (0..5).map(|c| x.data()[r * 5 + c].exp() / z).collect();
        let dot: f64 = (0..5).map(|c| p[c] * g.data()[r * 5 + c]).sum();
        for c in 0..5 {
            want[r * 5 + c] = p[c] * (g.data()[r * 5 + c] - dot);
        }
    }
    assert_close(grads.wrt(vx).unwrap().data(), &want, 1e-12);
}

#[test]
fn nll_grad_is_minus_one_over_n_at_the_labels() {
    let z = randn(&[4, 3], 11);
    let labels = [2u8, 0, 0, 1];
    let tape = Tape::new();
    let vz = tape.leaf(z.clone());
    let loss = vz.nll(&labels).unwrap();
    let want_loss = -(z.data()[2] + z.data()[3] + z.data()[6] + z.data()[10]) / 4.0;
    assert!((loss.value().item().unwrap() - want_loss).abs() < 1e-15);
    let grads = loss.backward().unwrap();
    let mut want = vec![0.0; 12];
    for (i, &t) in labels.iter().enumerate() {
        want[i * 3 + t as usize] = -0.25;
    }
    assert_eq!(grads.wrt(vz).unwrap().data(), want.as_slice());
}

#[test]
fn cross_entropy_grad_is_softmax_minus_onehot_over_n() {
    let x = randn(&[5, 4], 12);
    let labels = [3i64, 1, 0, 3, 2];
    let tape = Tape::new();
    let vx = tape.leaf(x.clone());
    let grads = vx.cross_entropy(&labels).unwrap().backward().unwrap();
    let mut want = vec![0.0; 20];
    for r in 0..5 {
        let z: f64 = x.data()[r * 4..(r + 1) * 4].iter().map(|v| v.exp()).sum();
        for c in 0..4 {
            let onehot = if c as i64 == labels[r] { 1.0 } else { 0.0 };
            want[r * 4 + c] = (x.data()[r * 4 + c].exp() / z - onehot) / 5.0;
        }
    }
    assert_close(grads.wrt(vx).unwrap().data(), &want, 1e-15);
}

#[test]
fn smooth_unary_derivatives() {
    let x = randn(&[6], 13);
    let g = randn(&[6], 14);
    type Case = (&'static str, fn(f64) -> f64);
    let cases: [Case; 4] = [
        ("exp", |x| x.exp()),
        ("log", |x| 1.0 / x.abs()),
        ("tanh", |x| 1.0 - x.tanh().powi(2)),
        ("sigmoid", |x| {
            let s = 1.0 / (1.0 + (-x).exp());
            s * (1.0 - s)
        }),
    ];
    for (name, derivative) in cases {
        let tape = Tape::new();
        let input = if name == "log" {
            x.map(f64::abs).unwrap()
        } else {
            x.clone()
        };
        let vx = tape.leaf(input);
        let y = match name {
            "exp" => vx.exp(),
            "log" => vx.log(),
            "tanh" => vx.tanh(),
            _ => vx.sigmoid(),
        }
        .unwrap();
        let grads = backward_with_seed(y, &g);
        let want: Vec<f64> = x
            .data()
            .iter()
            .zip(g.data())
            .map(|(&x, &g)| g * derivative(x))
            .collect();
        assert_close(grads.wrt(vx).unwrap().data(), &want, 1e-12);
    }
}

#[test]
fn sigmoid_does_not_overflow() {
    let tape = Tape::<f32>::new();
    let y = tape
        .constant(Tensor::from_vec(vec![-1000.0, 1000.0, 0.0], &[3]).unwrap())
        .sigmoid()
        .unwrap();
    assert_eq!(y.value().data(), &[0.0, 1.0, 0.5]);
}

#[test]
fn reductions_broadcast_the_gradient_back() {
    let x = randn(&[2, 3], 15);
    let tape = Tape::new();
    let vx = tape.leaf(x);
    let g = Tensor::from_vec(vec![1.0, 2.0], &[2]).unwrap();
    let grads = backward_with_seed(vx.sum_axis(1, false).unwrap(), &g);
    assert_eq!(
        grads.wrt(vx).unwrap().data(),
        &[1.0, 1.0, 1.0, 2.0, 2.0, 2.0]
    );

    let tape = Tape::new();
    let vx = tape.leaf(randn(&[2, 3], 16));
    let grads = vx.mean().unwrap().backward().unwrap();
    assert_close(grads.wrt(vx).unwrap().data(), &[1.0 / 6.0; 6], 1e-16);
}

#[test]
fn transpose_and_reshape_move_the_gradient_back() {
    let g = Tensor::from_vec((0..6).map(f64::from).collect(), &[3, 2]).unwrap();
    let tape = Tape::new();
    let vx = tape.leaf(randn(&[2, 3], 17));
    let grads = backward_with_seed(vx.t().unwrap(), &g);
    // dX[i, j] = g[j, i].
    assert_eq!(
        grads.wrt(vx).unwrap().data(),
        &[0.0, 2.0, 4.0, 1.0, 3.0, 5.0]
    );

    let tape = Tape::new();
    let vx = tape.leaf(randn(&[2, 3], 18));
    let grads = backward_with_seed(vx.reshape(&[3, 2]).unwrap(), &g);
    assert_eq!(grads.wrt(vx).unwrap().data(), g.data());
    assert_eq!(grads.wrt(vx).unwrap().dims(), &[2, 3]);
}

#[test]
fn gradients_accumulate_over_uses() {
    // y = Σ (x·x·x): every use of x contributes, dy/dx = 3x².
    let x = randn(&[4], 19);
    let tape = Tape::new();
    let vx = tape.leaf(x.clone());
    let grads = vx
        .mul(vx)
        .unwrap()
        .mul(vx)
        .unwrap()
        .sum()
        .unwrap()
        .backward()
        .unwrap();
    let want: Vec<f64> = x.data().iter().map(|v| 3.0 * v * v).collect();
    assert_close(grads.wrt(vx).unwrap().data(), &want, 1e-12);
}
