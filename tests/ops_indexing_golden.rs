//! The indexing, joining, batched-matmul, softmax-axis and loss-option ops against PyTorch 2.15:
//! outputs and gradients recorded by `tests/golden/ops_indexing.py`, in f32 (rtol 1e-5, atol 1e-6)
//! and f64 (rtol 1e-12, atol 1e-12).

mod common;

use common::Golden;
use tapegrad::ops::{CrossEntropyOptions, NllOptions, Reduction};
use tapegrad::{BackwardOptions, Float, Indices, Result, Tape, Tensor, Var};

const CASES: &[&str] = &[
    "permute",
    "slice_step",
    "narrow",
    "select",
    "cat",
    "stack",
    "index_select",
    "embedding",
    "embedding_padding",
    "gather",
    "scatter_add",
    "bmm",
    "bmm_broadcast",
    "matmul_weight",
    "matvec",
    "vecmat",
    "softmax_axis1",
    "log_softmax_axis0",
    "cross_entropy_nd",
    "cross_entropy_options",
    "cross_entropy_sum",
    "nll_none_weighted",
];

/// The same op as the script's case of this name.
fn apply<'t, T: Float>(name: &str, v: &[Var<'t, T>]) -> Result<Var<'t, T>> {
    let ids = Indices::new(&[1, 0, 1, 2, 1, 1], &[2, 3])?;
    let gather = Indices::new(&[2, 0, 1, 2, 2, 2], &[2, 3])?;
    let labels = [0i64, 2, 1, -100];
    let weight = Tensor::from_vec([0.5, 2.0, 1.0].map(T::from_f64).to_vec(), &[3])?;
    let tape = v[0].tape();
    match name {
        "permute" => v[0].permute(&[2, 0, 1]),
        "slice_step" => v[0].slice(0, 1, 6, 2),
        "narrow" => v[0].narrow(1, 1, 2),
        "select" => v[0].select(1, 2),
        "cat" => tape.cat(&[v[0], v[1], v[0]], 0),
        "stack" => tape.stack(&[v[0], v[1]], 1),
        "index_select" => v[0].index_select(1, &[4, 0, 4]),
        "embedding" => v[0].embedding(&ids, None),
        "embedding_padding" => v[0].embedding(&ids, Some(1)),
        "gather" => v[0].gather(1, &gather),
        "scatter_add" => v[0].scatter_add(1, &gather, v[1]),
        "bmm" | "bmm_broadcast" | "matmul_weight" | "matvec" | "vecmat" => v[0].matmul(v[1]),
        "softmax_axis1" => v[0].softmax_along(1),
        "log_softmax_axis0" => v[0].log_softmax_along(0),
        "cross_entropy_nd" => v[0].cross_entropy(&labels),
        "cross_entropy_options" => v[0].cross_entropy_with(
            &labels,
            &CrossEntropyOptions {
                weight: Some(&weight),
                label_smoothing: 0.2,
                ..Default::default()
            },
        ),
        "cross_entropy_sum" => v[0].cross_entropy_with(
            &labels,
            &CrossEntropyOptions {
                reduction: Reduction::Sum,
                ..Default::default()
            },
        ),
        "nll_none_weighted" => v[0].nll_with(
            &labels,
            &NllOptions {
                weight: Some(&weight),
                reduction: Reduction::None,
                ..Default::default()
            },
        ),
        other => panic!("no case {other}"),
    }
}

fn close<T: Float>(what: &str, ours: &Tensor<T>, theirs: &Tensor<T>, rtol: f64, atol: f64) {
    assert_eq!(ours.dims(), theirs.dims(), "{what}: shapes");
    for (i, (&a, &b)) in ours.data().iter().zip(theirs.data()).enumerate() {
        let (a, b) = (a.to_f64(), b.to_f64());
        assert!(
            (a - b).abs() <= atol + rtol * b.abs(),
            "{what}[{i}]: tapegrad {a:e} vs PyTorch {b:e}"
        );
    }
}

fn run<T: Float>(
    golden: &Golden,
    tag: &str,
    read: impl Fn(&Golden, &str) -> Tensor<T>,
    rtol: f64,
    atol: f64,
) {
    for &name in CASES {
        let key = |part: &str| format!("{name}.{tag}.{part}");
        let inputs: Vec<Tensor<T>> = (0..)
            .map(|i| key(&format!("in{i}")))
            .take_while(|k| golden.has(k))
            .map(|k| read(golden, &k))
            .collect();
        let tape = Tape::new();
        let vars: Vec<Var<'_, T>> = inputs.into_iter().map(|x| tape.leaf(x)).collect();
        let out = apply(name, &vars).unwrap_or_else(|e| panic!("{name}: {e}"));
        close(
            &format!("{name} {tag} out"),
            &out.value(),
            &read(golden, &key("out")),
            rtol,
            atol,
        );
        let grads = out
            .backward_with(BackwardOptions::new().seed(read(golden, &key("seed"))))
            .unwrap();
        for (i, v) in vars.iter().enumerate() {
            let want = read(golden, &key(&format!("grad{i}")));
            let got = grads
                .get(*v)
                .cloned()
                .unwrap_or_else(|| Tensor::zeros(want.dims()).unwrap());
            close(&format!("{name} {tag} grad{i}"), &got, &want, rtol, atol);
        }
    }
}

#[test]
fn every_case_matches_pytorch_in_f32_and_f64() {
    let golden = Golden::open("ops_indexing.safetensors");
    run(&golden, "f32", |g, k| g.f32(k), 1e-5, 1e-6);
    run(&golden, "f64", |g, k| g.f64(k), 1e-12, 1e-12);
}
