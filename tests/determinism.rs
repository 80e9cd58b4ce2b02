//! The same seed gives bit-identical training, whatever the number of threads. The model is large
//! enough that the parallel paths run (matrix products above gemm's threshold, element-wise kernels
//! and dropout masks above 2^18 elements). One test in its own binary, because the thread count is
//! a process-wide setting.

use rand::SeedableRng;
use rand_pcg::Pcg64;
use tapegrad::nn::{Context, CrossEntropyLoss, Dropout, Forward, Linear, Module, ReLU, Sequential};
use tapegrad::optim::{Optimizer, Sgd, SgdConfig};
use tapegrad::{Tape, Tensor};

const STEPS: usize = 200;

/// Trains from seed 0 and returns every loss and the final parameters, as bits.
fn train(threads: usize) -> (Vec<u32>, Vec<Vec<u32>>) {
    tapegrad::set_num_threads(threads);
    let mut rng = Pcg64::seed_from_u64(0);
    let x = Tensor::<f32>::normal(&[256, 64], 0.0, 1.0, &mut rng).unwrap();
    let labels: Vec<usize> = (0..256).map(|i| (i * 7) % 10).collect();
    let model = Sequential::new()
        .push(Linear::new(64, 1024, &mut rng).unwrap())
        .push(ReLU)
        .push(Dropout::new(0.5).unwrap())
        .push(Linear::new(1024, 10, &mut rng).unwrap());
    let mut sgd = Sgd::new(
        model.named_params(),
        SgdConfig {
            lr: 0.05,
            momentum: 0.9,
            ..Default::default()
        },
    )
    .unwrap();
    let mut losses = Vec::with_capacity(STEPS);
    for _ in 0..STEPS {
        let tape = Tape::new();
        let logits = model
            .forward(&mut Context::train(&mut rng), tape.constant(x.clone()))
            .unwrap();
        let loss = CrossEntropyLoss::default()
            .forward(logits, &labels)
            .unwrap();
        losses.push(loss.value().item().unwrap().to_bits());
        let grads = loss.backward().unwrap();
        drop(tape);
        sgd.step(&grads).unwrap();
    }
    let params = model
        .named_params()
        .into_iter()
        .map(|(_, p)| p.value().data().iter().map(|v| v.to_bits()).collect())
        .collect();
    (losses, params)
}

#[test]
fn two_hundred_steps_are_bit_identical_at_one_and_two_threads() {
    let one = train(1);
    let two = train(2);
    let again = train(1);
    tapegrad::set_num_threads(0);
    assert_eq!(one.0, again.0, "the same run twice");
    assert_eq!(one.0, two.0, "losses at 1 and 2 threads");
    assert_eq!(one.1, two.1, "parameters at 1 and 2 threads");
    // Training moved: the last loss is below the first.
    assert!(f32::from_bits(one.0[STEPS - 1]) < f32::from_bits(one.0[0]));
}
