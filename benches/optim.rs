//! One optimizer step on a single 1,000,000-element f32 parameter (the gradient fixed), for each
//! optimizer and option, and `clip_grad_norm` over the same gradient. One thread.
//! Run: `cargo bench --bench optim`; PyTorch's figures: `python3 benches/optim_pytorch.py`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use rand::SeedableRng;
use rand_pcg::Pcg64;
use tapegrad::optim::{
    Adagrad, AdagradConfig, Adam, AdamConfig, GradAccumulator, Optimizer, RMSprop, RMSpropConfig,
    Sgd, SgdConfig, clip_grad_norm,
};
use tapegrad::{Param, Tensor};

const N: usize = 1_000_000;

type Make = fn(Vec<(String, Param<f32>)>) -> Box<dyn Optimizer<f32>>;

fn optimizers(c: &mut Criterion) {
    tapegrad::set_num_threads(1);
    let mut rng = Pcg64::seed_from_u64(0);
    let w = Param::new(
        "w",
        Tensor::<f32>::normal(&[N], 0.0, 1.0, &mut rng).unwrap(),
    );
    let mut grads = GradAccumulator::new();
    grads.set(&w, Tensor::normal(&[N], 0.0, 1e-3, &mut rng).unwrap());
    let cases: Vec<(&str, Make)> = vec![
        ("sgd_momentum", |p| {
            let c = SgdConfig {
                lr: 1e-3,
                momentum: 0.9,
                ..Default::default()
            };
            Box::new(Sgd::new(p, c).unwrap())
        }),
        ("adam", |p| {
            Box::new(Adam::new(p, AdamConfig::default()).unwrap())
        }),
        ("adamw_amsgrad", |p| {
            let c = AdamConfig {
                amsgrad: true,
                ..AdamConfig::adamw()
            };
            Box::new(Adam::new(p, c).unwrap())
        }),
        ("rmsprop", |p| {
            Box::new(RMSprop::new(p, RMSpropConfig::default()).unwrap())
        }),
        ("rmsprop_centered_momentum", |p| {
            let c = RMSpropConfig {
                momentum: 0.9,
                centered: true,
                ..Default::default()
            };
            Box::new(RMSprop::new(p, c).unwrap())
        }),
        ("adagrad", |p| {
            Box::new(Adagrad::new(p, AdagradConfig::default()).unwrap())
        }),
    ];
    let mut group = c.benchmark_group("optimizer_step_1M_f32");
    for (name, make) in cases {
        let mut opt = make(vec![("w".to_string(), w.share())]);
        group.bench_function(name, |bench| {
            bench.iter(|| opt.step(black_box(&grads)).unwrap());
        });
    }
    group.bench_function("clip_grad_norm_l2", |bench| {
        // max_norm large: measures the norm, the scaling is skipped (coefficient 1).
        bench.iter(|| clip_grad_norm(&mut grads, [&w], 1e9, 2.0, false).unwrap());
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    targets = optimizers
}
criterion_main!(benches);
