//! Forward + backward of each reduction on a [256, 256] f32 input, along the last axis (rows,
//! `inner` = 1) and along the first (columns, strided), with the sum of the output as the loss;
//! `sum_axis` is the baseline. Run: `cargo bench --bench ops_reductions`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use rand::SeedableRng;
use rand_pcg::Pcg64;
use tapegrad::{NormOrd, Param, Result, Tape, Tensor, Var};

const N: usize = 256;

type Op = for<'t> fn(Var<'t, f32>, isize) -> Result<Var<'t, f32>>;

fn reductions(c: &mut Criterion) {
    tapegrad::set_num_threads(1);
    let mut rng = Pcg64::seed_from_u64(0);
    let x = Param::new(
        "x",
        Tensor::<f32>::normal(&[N, N], 0.0, 1.0, &mut rng).unwrap(),
    );
    // Near 1 in magnitude, so a product of 256 stays finite.
    let p = Param::new(
        "p",
        Tensor::<f32>::uniform(&[N, N], 0.97, 1.03, &mut rng).unwrap(),
    );
    let cases: Vec<(&str, Op)> = vec![
        ("sum_axis", |a, axis| a.sum_axis(axis, false)),
        ("max", |a, axis| a.max(axis, false).map(|m| m.0)),
        ("amax", |a, axis| a.amax(Some(axis), false)),
        ("var", |a, axis| a.var(Some(axis), 1.0, false)),
        ("std", |a, axis| a.std(Some(axis), 1.0, false)),
        ("logsumexp", |a, axis| a.logsumexp(Some(axis), false)),
        ("norm_l1", |a, axis| a.norm(NormOrd::L1, Some(axis), false)),
        ("norm_l2", |a, axis| a.norm(NormOrd::L2, Some(axis), false)),
        ("norm_inf", |a, axis| {
            a.norm(NormOrd::Inf, Some(axis), false)
        }),
        ("prod", |a, axis| a.prod(Some(axis), false)),
        ("cumsum", |a, axis| a.cumsum(axis)),
    ];
    for (axis, label) in [(-1isize, "rows"), (0, "columns")] {
        let mut group =
            c.benchmark_group(format!("reduction_forward_backward_256x256_f32_{label}"));
        for &(name, op) in &cases {
            let input = if name == "prod" { &p } else { &x };
            group.bench_function(name, |bench| {
                bench.iter(|| {
                    let tape = Tape::new();
                    let out = op(tape.param(input), axis).unwrap();
                    let _ = black_box(out.sum().unwrap().backward().unwrap());
                })
            });
        }
        group.finish();
    }
    c.bench_function("argmax_256x256_f32_rows", |bench| {
        bench.iter(|| black_box(x.value().argmax(Some(-1), false).unwrap()))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(1)).warm_up_time(Duration::from_millis(300));
    targets = reductions
}
criterion_main!(benches);
