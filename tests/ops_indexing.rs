//! The ops that move, pick and join elements — permute, reshape and its relatives, narrow, slice,
//! select, cat, stack, split, chunk, index_select, embedding, gather, scatter_add — batched matmul,
//! softmax and cross-entropy over any axis with PyTorch's loss options, and tensor creation.
//! Each is gradchecked and gradgradchecked in f64 and compared with loops written here.

mod common;

use common::{assert_close, randn};
use tapegrad::ops::{CrossEntropyOptions, NllOptions, Reduction};
use tapegrad::{
    Error, GradcheckOptions, Indices, Result, Tape, Tensor, Var, gradcheck, gradgradcheck,
};

fn check(inputs: Vec<Tensor<f64>>, f: impl for<'t> Fn(&[Var<'t, f64>]) -> Result<Var<'t, f64>>) {
    let options = GradcheckOptions::default();
    if let Err(e) = gradcheck(|_, v, _| f(v), &inputs, &options) {
        panic!("gradcheck: {e}");
    }
    if let Err(e) = gradgradcheck(|_, v, _| f(v), &inputs, &options) {
        panic!("gradgradcheck: {e}");
    }
}

/// The gradient of Σ f(x)·w for a fixed random w, so every output element matters differently.
fn weighted_grad(
    x: &Tensor<f64>,
    f: impl for<'t> Fn(Var<'t, f64>) -> Result<Var<'t, f64>>,
) -> (Tensor<f64>, Tensor<f64>) {
    let tape = Tape::new();
    let v = tape.leaf(x.clone());
    let y = f(v).unwrap();
    let w = randn(y.value().dims(), 99);
    let loss = y.mul(tape.constant(w)).unwrap().sum().unwrap();
    let g = loss.backward().unwrap();
    ((*y.value()).clone(), g.wrt(v).unwrap().clone())
}

#[test]
fn permute_and_reshapes() {
    for dims in [&[2, 3, 4][..], &[0, 3, 2], &[1, 5, 1]] {
        check(vec![randn(dims, 1)], |v| v[0].permute(&[2, 0, 1]));
        check(vec![randn(dims, 2)], |v| v[0].flatten(0, 1));
        check(vec![randn(dims, 3)], |v| v[0].unsqueeze(1)?.squeeze(1));
        check(vec![randn(dims, 4)], |v| {
            v[0].reshape_infer(&[None, Some(dims[2])])
        });
    }
    let x = randn(&[2, 3, 4], 5);
    let (y, _) = weighted_grad(&x, |v| v.permute(&[1, 2, 0]));
    for i in 0..2 {
        for j in 0..3 {
            for k in 0..4 {
                assert_eq!(y.get(&[j, k, i]).unwrap(), x.get(&[i, j, k]).unwrap());
            }
        }
    }
    let tape = Tape::new();
    let v = tape.leaf(x);
    assert_eq!(v.flatten(1, -1).unwrap().shape().dims(), &[2, 12]);
    assert_eq!(v.unsqueeze(-1).unwrap().shape().dims(), &[2, 3, 4, 1]);
    assert_eq!(
        v.expand(&[5, 2, 3, 4]).unwrap().shape().dims(),
        &[5, 2, 3, 4]
    );
    assert!(matches!(
        v.permute(&[0, 1]),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(v.squeeze(0), Err(Error::InvalidArgument { .. })));
    assert!(matches!(v.unsqueeze(5), Err(Error::AxisOutOfRange { .. })));
    assert!(v.reshape_infer(&[None, None]).is_err());
    assert!(v.reshape_infer(&[None, Some(5)]).is_err());
    assert!(v.flatten(2, 1).is_err());
}

#[test]
fn narrow_slice_select() {
    check(vec![randn(&[5, 4], 10)], |v| v[0].narrow(0, 1, 3));
    check(vec![randn(&[5, 7], 11)], |v| v[0].slice(1, 1, 7, 2));
    check(vec![randn(&[3, 4, 2], 12)], |v| v[0].select(1, 2));
    check(vec![randn(&[3, 0], 13)], |v| v[0].narrow(0, 1, 2));
    check(vec![randn(&[4], 14)], |v| v[0].slice(0, 2, 2, 1)); // empty
    let x = randn(&[6, 5], 15);
    let (y, g) = weighted_grad(&x, |v| v.slice(0, 1, 6, 2));
    let w = randn(&[3, 5], 99);
    for (r, row) in [1usize, 3, 5].into_iter().enumerate() {
        for c in 0..5 {
            assert_eq!(y.get(&[r, c]).unwrap(), x.get(&[row, c]).unwrap());
            assert_eq!(g.get(&[row, c]).unwrap(), w.get(&[r, c]).unwrap());
            assert_eq!(g.get(&[row - 1, c]).unwrap(), 0.0);
        }
    }
    let tape = Tape::new();
    let v = tape.leaf(x);
    assert_eq!(v.select(-1, 4).unwrap().shape().dims(), &[6]);
    assert!(matches!(v.select(0, 6), Err(Error::IndexOutOfRange { .. })));
    assert!(v.narrow(0, 4, 3).is_err());
    assert!(v.slice(1, 0, 5, 0).is_err());
    assert!(v.slice(1, 3, 2, 1).is_err());
    assert!(v.narrow(0, usize::MAX, 2).is_err());
}

#[test]
fn cat_stack_split_chunk() {
    check(vec![randn(&[2, 3], 20), randn(&[4, 3], 21)], |v| {
        v[0].tape().cat(&[v[0], v[1], v[0]], 0)
    });
    check(vec![randn(&[2, 3], 22), randn(&[2, 1], 23)], |v| {
        v[0].tape().cat(&[v[0], v[1]], -1)
    });
    check(vec![randn(&[2, 3], 24), randn(&[2, 3], 25)], |v| {
        v[0].tape().stack(&[v[0], v[1]], 1)
    });
    check(vec![randn(&[7, 2], 26)], |v| {
        let parts = v[0].split(0, &[2, 0, 5])?;
        parts[0].sum()?.add(parts[2].mul(parts[2])?.sum()?)
    });
    check(vec![randn(&[5, 3], 27)], |v| {
        let parts = v[0].chunk(2, 0)?;
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[1].shape().dims(), &[2, 3]);
        parts[1].tape().cat(&[parts[1], parts[0]], 0)
    });
    let tape = Tape::new();
    let a = tape.leaf(Tensor::from_vec(vec![1.0, 2.0], &[2]).unwrap());
    let b = tape.leaf(Tensor::from_vec(vec![3.0], &[1]).unwrap());
    assert_eq!(
        tape.cat(&[a, b], 0).unwrap().value().data(),
        &[1.0, 2.0, 3.0]
    );
    let s = tape.stack(&[a, a], 0).unwrap();
    assert_eq!(s.value().dims(), &[2, 2]);
    assert_eq!(
        tape.stack(&[a, a], -1).unwrap().value().data(),
        &[1.0, 1.0, 2.0, 2.0]
    );
    let c = tape.leaf(Tensor::<f64>::zeros(&[2, 2]).unwrap());
    assert!(matches!(
        tape.cat(&[a, c], 0),
        Err(Error::ShapeMismatch { .. })
    ));
    assert!(tape.cat(&[], 0).is_err());
    assert!(tape.stack(&[a, b], 0).is_err());
    assert!(c.split(0, &[1, 2]).is_err());
    assert!(c.chunk(0, 0).is_err());
    assert_eq!(c.chunk(5, 1).unwrap().len(), 2);
}

#[test]
fn index_select_and_embedding_accumulate_repeats() {
    check(vec![randn(&[4, 3], 30)], |v| {
        v[0].index_select(0, &[3u8, 0, 3, 3])
    });
    check(vec![randn(&[2, 5, 3], 31)], |v| {
        v[0].index_select(1, &[4i64, 0, 4])
    });
    check(vec![randn(&[2, 5], 32)], |v| {
        v[0].index_select(1, &[0u32; 0])
    });
    let ids = Indices::new(&[1usize, 0, 1, 2, 1, 1], &[2, 3]).unwrap();
    check(vec![randn(&[3, 4], 33)], |v| v[0].embedding(&ids, None));
    // With a padding row the gradient is deliberately not the derivative (PyTorch's padding_idx:
    // that row gets none), so it is checked against loops below rather than gradchecked.
    // Against loops: the gradient of each row sums over the positions holding its id.
    let table = randn(&[3, 4], 35);
    let (e, g) = weighted_grad(&table, |t| t.embedding(&ids, Some(2)));
    let w = randn(&[2, 3, 4], 99);
    let id_list = [1usize, 0, 1, 2, 1, 1];
    for (p, &id) in id_list.iter().enumerate() {
        for d in 0..4 {
            assert_eq!(e.data()[p * 4 + d], table.get(&[id, d]).unwrap());
        }
    }
    for row in 0..3 {
        for d in 0..4 {
            let want: f64 = if row == 2 {
                0.0 // the padding row gets no gradient
            } else {
                id_list
                    .iter()
                    .enumerate()
                    .filter(|(_, id)| **id == row)
                    .map(|(p, _)| w.data()[p * 4 + d])
                    .sum()
            };
            assert!((g.get(&[row, d]).unwrap() - want).abs() < 1e-12);
        }
    }
    let tape = Tape::new();
    let t = tape.leaf(table);
    assert!(matches!(
        t.index_select(0, &[0, 3]),
        Err(Error::IndexOutOfRange {
            position: 1,
            index: 3,
            len: 3,
            ..
        })
    ));
    assert!(matches!(
        t.index_select(0, &[-1i32]),
        Err(Error::IndexOutOfRange { .. })
    ));
    assert!(
        t.embedding(&Indices::from_slice(&[5u8]).unwrap(), None)
            .is_err()
    );
    assert!(t.embedding(&ids, Some(3)).is_err());
    let flat = tape.leaf(Tensor::<f64>::zeros(&[4]).unwrap());
    assert!(matches!(
        flat.embedding(&ids, None),
        Err(Error::BadRank { .. })
    ));
}

#[test]
fn embedding_sums_many_repeats_accurately() {
    // 2²² uses of one id in f32: the row's gradient is their pairwise sum, not a running total.
    let n = 1 << 22;
    let ids = Indices::new(&vec![0u8; n], &[n]).unwrap();
    let tape = Tape::<f32>::new();
    let table = tape.leaf(Tensor::zeros(&[1, 1]).unwrap());
    let e = table.embedding(&ids, None).unwrap();
    let seed = Tensor::full(&[n, 1], 0.1f32).unwrap();
    let g = e
        .backward_with(tapegrad::BackwardOptions::new().seed(seed))
        .unwrap();
    let got = f64::from(g.wrt(table).unwrap().data()[0]);
    let want = n as f64 * f64::from(0.1f32);
    assert!(((got - want) / want).abs() < 1e-6, "{got} vs {want}");
}

#[test]
fn gather_and_scatter_add_are_adjoint() {
    let index = Indices::new(&[2, 0, 1, 2, 2, 2], &[2, 3]).unwrap();
    check(vec![randn(&[2, 3], 40)], |v| v[0].gather(1, &index));
    let index0 = Indices::new(&[1, 0, 1, 1], &[2, 2]).unwrap();
    check(vec![randn(&[2, 3], 41)], |v| v[0].gather(0, &index0));
    check(vec![randn(&[2, 3], 42), randn(&[2, 3], 43)], |v| {
        v[0].scatter_add(1, &index, v[1])
    });
    // A source larger than the index: only its covered part contributes.
    check(vec![randn(&[3, 3], 44), randn(&[2, 4], 45)], |v| {
        v[0].scatter_add(0, &index0, v[1])
    });
    // Loops: y[i][j] = x[i][index[i][j]]; scatter_add adds src[i][j] at [i][index[i][j]].
    let x = randn(&[2, 3], 46);
    let (y, g) = weighted_grad(&x, |v| v.gather(1, &index));
    let w = randn(&[2, 3], 99);
    let idx = [[2, 0, 1], [2, 2, 2]];
    let mut want = [[0.0f64; 3]; 2];
    for i in 0..2 {
        for j in 0..3 {
            assert_eq!(y.get(&[i, j]).unwrap(), x.get(&[i, idx[i][j]]).unwrap());
            want[i][idx[i][j]] += w.get(&[i, j]).unwrap();
        }
    }
    assert_close(g.data(), &want.concat(), 1e-12);
    let tape = Tape::new();
    let v = tape.leaf(x);
    let bad = Indices::new(&[3, 0, 0], &[1, 3]).unwrap();
    assert!(matches!(
        v.gather(1, &bad),
        Err(Error::IndexOutOfRange { .. })
    ));
    let wrong_rank = Indices::new(&[0, 1], &[2]).unwrap();
    assert!(matches!(
        v.gather(1, &wrong_rank),
        Err(Error::ShapeMismatch { .. })
    ));
    let too_big = Indices::new(&[0; 9], &[3, 3]).unwrap();
    assert!(v.gather(1, &too_big).is_err());
    let src = tape.leaf(Tensor::zeros(&[1, 1]).unwrap());
    assert!(v.scatter_add(1, &index, src).is_err());
}

/// Naive batched product with broadcast batch axes, for reference.
fn naive_bmm(a: &Tensor<f64>, b: &Tensor<f64>) -> Tensor<f64> {
    let (ad, bd) = (a.dims(), b.dims());
    let (m, k, n) = (ad[ad.len() - 2], ad[ad.len() - 1], bd[bd.len() - 1]);
    let rank = ad.len().max(bd.len()) - 2;
    let pad = |d: &[usize]| {
        let mut v = vec![1; rank - (d.len() - 2)];
        v.extend_from_slice(&d[..d.len() - 2]);
        v
    };
    let (pa, pb) = (pad(ad), pad(bd));
    let batch: Vec<usize> = pa
        .iter()
        .zip(&pb)
        .map(|(&x, &y)| if x == 1 { y } else { x })
        .collect();
    let total: usize = batch.iter().product();
    let mut out = vec![0.0; total * m * n];
    for t in 0..total {
        let (mut rest, mut ia, mut ib) = (t, 0, 0);
        let (mut sa, mut sb) = (1, 1);
        for d in (0..rank).rev() {
            let i = rest % batch[d];
            rest /= batch[d];
            ia += if pa[d] == 1 { 0 } else { i * sa };
            ib += if pb[d] == 1 { 0 } else { i * sb };
            sa *= pa[d];
            sb *= pb[d];
        }
        for r in 0..m {
            for c in 0..n {
                out[(t * m + r) * n + c] = (0..k)
                    .map(|p| a.data()[(ia * m + r) * k + p] * b.data()[(ib * k + p) * n + c])
                    .sum();
            }
        }
    }
    let mut dims = batch;
    dims.extend_from_slice(&[m, n]);
    Tensor::from_vec(out, &dims).unwrap()
}

#[test]
fn batched_matmul_broadcasts_like_torch_matmul() {
    let cases: &[(&[usize], &[usize])] = &[
        (&[2, 3, 4], &[2, 4, 5]),
        (&[2, 3, 4], &[4, 5]),
        (&[3, 4], &[2, 4, 5]),
        (&[2, 1, 3, 4], &[3, 4, 2]),
        (&[1, 3, 4], &[2, 4, 5]),
        (&[0, 3, 4], &[4, 2]),
        (&[2, 3, 0], &[2, 0, 4]),
    ];
    for (i, &(a, b)) in cases.iter().enumerate() {
        let (x, y) = (randn(a, 50 + i as u64), randn(b, 60 + i as u64));
        check(vec![x.clone(), y.clone()], |v| v[0].matmul(v[1]));
        let tape = Tape::new();
        let got = tape
            .constant(x.clone())
            .matmul(tape.constant(y.clone()))
            .unwrap();
        let want = naive_bmm(
            &if x.dims().len() == 2 {
                x.reshape(&[1, a[0], a[1]]).unwrap()
            } else {
                x.clone()
            },
            &if y.dims().len() == 2 {
                y.reshape(&[1, b[0], b[1]]).unwrap()
            } else {
                y.clone()
            },
        );
        assert_close(got.value().data(), want.data(), 1e-12);
    }
    // Vectors.
    check(vec![randn(&[4], 70), randn(&[4], 71)], |v| {
        v[0].matmul(v[1])
    });
    check(vec![randn(&[4], 72), randn(&[2, 4, 3], 73)], |v| {
        v[0].matmul(v[1])
    });
    check(vec![randn(&[2, 3, 4], 74), randn(&[4], 75)], |v| {
        v[0].matmul(v[1])
    });
    let tape = Tape::new();
    let u = tape.constant(Tensor::from_vec(vec![1.0, 2.0], &[2]).unwrap());
    assert_eq!(u.matmul(u).unwrap().value().dims(), &[] as &[usize]);
    assert_eq!(u.matmul(u).unwrap().value().item().unwrap(), 5.0);
    let m = tape.constant(randn(&[2, 3, 4], 76));
    let n = tape.constant(randn(&[3, 5, 2], 77));
    assert!(matches!(m.matmul(n), Err(Error::ShapeMismatch { .. })));
    let s = tape.constant(Tensor::scalar(1.0));
    assert!(matches!(s.matmul(u), Err(Error::BadRank { .. })));
}

#[test]
fn batched_matmul_is_the_same_at_any_thread_count() {
    let a = Tensor::<f32>::uniform(&[64, 32, 16], -1.0, 1.0, &mut common::rng(1)).unwrap();
    let b = Tensor::<f32>::uniform(&[64, 16, 32], -1.0, 1.0, &mut common::rng(2)).unwrap();
    let run = |threads| {
        tapegrad::set_num_threads(threads);
        let tape = Tape::new();
        let (x, y) = (tape.leaf(a.clone()), tape.leaf(b.clone()));
        let z = x.matmul(y).unwrap();
        let g = z.sum().unwrap().backward().unwrap();
        (
            (*z.value()).clone(),
            g.wrt(x).unwrap().clone(),
            g.wrt(y).unwrap().clone(),
        )
    };
    let one = run(1);
    let two = run(2);
    tapegrad::set_num_threads(0);
    assert_eq!(one, two);
}

#[test]
fn softmax_over_any_axis() {
    for axis in [0isize, 1, -1] {
        check(vec![randn(&[3, 4, 2], 80)], |v| v[0].softmax_along(axis));
        check(vec![randn(&[3, 4, 2], 81)], |v| {
            v[0].log_softmax_along(axis)
        });
    }
    check(vec![randn(&[2, 0, 3], 82)], |v| v[0].softmax_along(1));
    // Against loops over axis 1.
    let x = randn(&[2, 3, 4], 83);
    let (y, _) = weighted_grad(&x, |v| v.log_softmax_along(1));
    for i in 0..2 {
        for k in 0..4 {
            let col: Vec<f64> = (0..3).map(|j| x.get(&[i, j, k]).unwrap()).collect();
            let lse = col.iter().map(|v| v.exp()).sum::<f64>().ln();
            for (j, &c) in col.iter().enumerate() {
                assert!((y.get(&[i, j, k]).unwrap() - (c - lse)).abs() < 1e-12);
            }
        }
    }
    let tape = Tape::new();
    let s = tape.constant(Tensor::scalar(1.0f64));
    assert!(matches!(s.softmax_along(0), Err(Error::BadRank { .. })));
    let v = tape.constant(randn(&[2, 3], 84));
    assert!(matches!(
        v.softmax_along(2),
        Err(Error::AxisOutOfRange { .. })
    ));
}

#[test]
fn cross_entropy_over_a_class_axis_with_pytorch_options() {
    // [N = 2, C = 3, d = 2], labels of [N, d] flattened.
    let labels = [0i64, 2, 1, -100];
    let weight = Tensor::from_vec(vec![0.5, 2.0, 1.0], &[3]).unwrap();
    for reduction in [Reduction::Mean, Reduction::Sum, Reduction::None] {
        for smoothing in [0.0, 0.2] {
            for weighted in [false, true] {
                let options = CrossEntropyOptions {
                    weight: weighted.then_some(&weight),
                    reduction,
                    label_smoothing: smoothing,
                    ..Default::default()
                };
                check(vec![randn(&[2, 3, 2], 90)], |v| {
                    v[0].cross_entropy_with(&labels, &options)
                });
            }
        }
    }
    // Against the formula, with weights and an ignored element, mean reduction, smoothing 0.2.
    let x = randn(&[2, 3, 2], 91);
    let tape = Tape::new();
    let options = CrossEntropyOptions {
        weight: Some(&weight),
        label_smoothing: 0.2,
        ..Default::default()
    };
    let loss = tape
        .constant(x.clone())
        .cross_entropy_with(&labels, &options)
        .unwrap()
        .value()
        .item()
        .unwrap();
    let (mut nll, mut smooth, mut total_w) = (0.0, 0.0, 0.0);
    for n in 0..2 {
        for d in 0..2 {
            let label = labels[n * 2 + d];
            if label == -100 {
                continue;
            }
            let col: Vec<f64> = (0..3).map(|c| x.get(&[n, c, d]).unwrap()).collect();
            let lse = col.iter().map(|v| v.exp()).sum::<f64>().ln();
            let w = weight.data()[label as usize];
            nll -= w * (col[label as usize] - lse);
            smooth -= (0..3)
                .map(|c| weight.data()[c] * (col[c] - lse))
                .sum::<f64>();
            total_w += w;
        }
    }
    let want = 0.8 * nll / total_w + 0.2 / 3.0 * smooth / total_w;
    assert!((loss - want).abs() < 1e-12, "{loss} vs {want}");
    // nll with no reduction is one loss per element, 0 where ignored.
    let z = tape.constant(x.clone());
    let per = z
        .nll_with(
            &labels,
            &NllOptions {
                reduction: Reduction::None,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(per.value().dims(), &[2, 2]);
    assert_eq!(per.value().data()[3], 0.0);
    assert_eq!(per.value().data()[0], -x.get(&[0, 0, 0]).unwrap());
    // Errors.
    assert!(matches!(
        z.cross_entropy(&[0, 3, 0, 0]),
        Err(Error::LabelOutOfRange {
            position: 1,
            label: 3,
            classes: 3,
            ..
        })
    ));
    assert!(matches!(
        z.cross_entropy(&[0, 1]),
        Err(Error::LabelCount { .. })
    ));
    let bad = Tensor::from_vec(vec![1.0, 2.0], &[2]).unwrap();
    let options = CrossEntropyOptions {
        weight: Some(&bad),
        ..Default::default()
    };
    assert!(matches!(
        z.cross_entropy_with(&labels, &options),
        Err(Error::ShapeMismatch { .. })
    ));
    let options = CrossEntropyOptions::<f64> {
        label_smoothing: 1.5,
        ..Default::default()
    };
    assert!(matches!(
        z.cross_entropy_with(&labels, &options),
        Err(Error::InvalidHyperparameter {
            name: "label_smoothing",
            ..
        })
    ));
}

#[test]
fn creation() {
    assert_eq!(
        Tensor::<f32>::arange(1.0, 2.0, 0.25).unwrap().data(),
        &[1.0, 1.25, 1.5, 1.75]
    );
    assert_eq!(
        Tensor::<f64>::arange(3.0, 0.0, -1.0).unwrap().data(),
        &[3.0, 2.0, 1.0]
    );
    assert_eq!(Tensor::<f64>::arange(0.0, 0.0, 1.0).unwrap().numel(), 0);
    assert!(Tensor::<f64>::arange(0.0, f64::INFINITY, 1.0).is_err());
    assert!(Tensor::<f64>::arange(0.0, 1.0, -1.0).is_err());
    let l = Tensor::<f32>::linspace(-1.0, 1.0, 7).unwrap();
    assert_eq!(l.data()[0], -1.0);
    assert_eq!(l.data()[6], 1.0);
    assert_eq!(Tensor::<f64>::linspace(2.0, 3.0, 1).unwrap().data(), &[2.0]);
    let e = Tensor::<f64>::eye(2, 3).unwrap();
    assert_eq!(e.data(), &[1.0, 0.0, 0.0, 0.0, 1.0, 0.0]);
    let r = Tensor::<f32>::rand(&[1000], &mut common::rng(3)).unwrap();
    assert!(r.data().iter().all(|&v| (0.0..1.0).contains(&v)));
    let n = Tensor::<f64>::randn(&[10_000], &mut common::rng(4)).unwrap();
    let mean = n.sum_all() / 1e4;
    assert!(mean.abs() < 0.05);
}
