//! Sizes and depths at the edge: a typed error, never an abort, a panic, a hang or a stack
//! overflow.

use rand::SeedableRng;
use rand_pcg::Pcg64;
use tapegrad::nn::{Context, Forward, Linear, Module, ReLU, Sequential};
use tapegrad::{BitMask, Error, MAX_RANK, MAX_THREADS, Shape, Tape, Tensor};

fn is_oom<T: std::fmt::Debug>(r: tapegrad::Result<T>) -> bool {
    matches!(r, Err(Error::OutOfMemory { .. }))
}

#[test]
fn allocations_too_large_are_out_of_memory_errors() {
    assert!(is_oom(Tensor::<f32>::zeros(&[1 << 40])));
    // 2⁶² f32 is 2⁶⁴ bytes: the element count fits usize, the byte count does not.
    let err = Tensor::<f32>::zeros(&[1 << 62]).unwrap_err();
    assert!(
        matches!(err, Error::OutOfMemory { bytes, .. } if bytes == 1u128 << 64),
        "{err}"
    );
    assert!(is_oom(Tensor::<f64>::ones(&[1 << 30, 1 << 20])));
    assert!(is_oom(BitMask::ones(1 << 40)));
    assert!(is_oom(BitMask::zeros(usize::MAX)));
    let mut rng = Pcg64::seed_from_u64(0);
    assert!(is_oom(Linear::<f32>::new(1 << 20, 1 << 20, &mut rng)));
    assert!(is_oom(Tensor::<f32>::normal(
        &[1 << 40],
        0.0,
        1.0,
        &mut rng
    )));
}

#[test]
fn ops_whose_output_cannot_be_allocated_fail_cleanly() {
    // Two 4 MiB vectors whose outer product would take 4 TiB.
    let n = 1 << 20;
    let tape = Tape::<f32>::new();
    let col = tape.leaf(Tensor::ones(&[n, 1]).unwrap());
    let row = tape.leaf(Tensor::ones(&[1, n]).unwrap());
    assert!(is_oom(col.matmul(row)));
    assert!(is_oom(col.add(row)));
    assert!(is_oom(col.mul(row)));
    assert!(is_oom(col.broadcast_to(&Shape::new(&[n, n]).unwrap())));
    assert!(is_oom(
        col.value().broadcast_to(&Shape::new(&[n, n]).unwrap())
    ));
    // The tape is still usable afterwards.
    let y = col.sum().unwrap();
    assert_eq!(y.backward().unwrap().wrt(col).unwrap().numel(), n);
}

#[test]
fn empty_tensors_with_huge_axes_keep_their_shapes_consistent() {
    let tape = Tape::<f32>::new();
    let x = tape.leaf(Tensor::zeros(&[0, usize::MAX, 2]).unwrap());
    let consistent = |v: tapegrad::Var<'_, f32>| {
        let value = v.value();
        assert_eq!(value.shape().numel(), value.numel(), "{:?}", value.dims());
    };
    // Summing away the 0 leaves [usize::MAX, 2]: too many elements, a typed error.
    assert!(matches!(
        x.sum_axis(0, false),
        Err(Error::ShapeOverflow { .. })
    ));
    assert!(x.mean_axis(0, true).is_err());
    for axis in [1isize, 2, -1] {
        for keepdim in [false, true] {
            let s = x.sum_axis(axis, keepdim).unwrap();
            consistent(s);
            let m = x.mean_axis(axis, keepdim).unwrap();
            consistent(m);
            assert_eq!(m.shape(), s.shape());
        }
    }
    consistent(x.transpose(0, 2).unwrap());
    assert!(x.value().to_string().starts_with("tensor(["));
    assert!(format!("{:?}", x).contains("Var"));
    assert!(tape.to_string().contains("18446744073709551615"));
    consistent(x.sum().unwrap());
    consistent(x.exp().unwrap());
    consistent(x.add(tape.constant(Tensor::zeros(&[2]).unwrap())).unwrap());
    assert!(
        x.add(tape.constant(Tensor::zeros(&[3, 1, 1]).unwrap()))
            .is_err()
    );
    assert!(x.reshape(&[0]).is_ok());
    let loss = x.sum().unwrap();
    assert_eq!(loss.value().item().unwrap(), 0.0);
    let g = loss.backward().unwrap();
    assert_eq!(g.wrt(x).unwrap().numel(), 0);
    // Broadcasting [usize::MAX, 1] against [1, 2] would hold 2·usize::MAX elements.
    assert!(matches!(
        Shape::broadcast(
            "add",
            &Shape::new(&[usize::MAX, 1]).unwrap(),
            &Shape::new(&[1, 2]).unwrap()
        ),
        Err(Error::ShapeOverflow { .. })
    ));
}

#[test]
fn a_huge_thread_count_is_clamped_not_a_hang() {
    tapegrad::set_num_threads(usize::MAX);
    assert_eq!(tapegrad::num_threads(), MAX_THREADS);
    let a = Tensor::<f32>::ones(&[256, 256]).unwrap();
    let c = a.matmul(&a).unwrap();
    assert!(c.data().iter().all(|&v| v == 256.0));
    tapegrad::set_num_threads(10_000_000);
    assert_eq!(tapegrad::num_threads(), MAX_THREADS);
    let _ = a.matmul(&a).unwrap();
    tapegrad::set_num_threads(0);
    assert!((1..=MAX_THREADS).contains(&tapegrad::num_threads()));
}

#[test]
fn the_environment_variable_is_clamped_too() {
    // Runs this test binary again with the variable set; the child checks the default.
    if std::env::var("TAPEGRAD_LIMITS_CHILD").is_ok() {
        assert_eq!(tapegrad::num_threads(), MAX_THREADS);
        return;
    }
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "the_environment_variable_is_clamped_too",
            "--test-threads=1",
        ])
        .env("TAPEGRAD_LIMITS_CHILD", "1")
        .env("TAPEGRAD_NUM_THREADS", usize::MAX.to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn ranks_beyond_the_maximum_are_an_error() {
    assert!(matches!(
        Tensor::<f32>::zeros(&vec![1; 12_000]),
        Err(Error::RankTooLarge { rank: 12_000, .. })
    ));
    assert!(Tensor::<f32>::from_vec(vec![1.0], &vec![1; MAX_RANK + 1]).is_err());
    // The largest rank allowed prints without trouble.
    let t = Tensor::<f64>::ones(&vec![1; MAX_RANK]).unwrap();
    let printed = t.to_string();
    assert!(printed.contains("1.0000"));
    assert!(printed.len() < 100_000);
}

#[test]
fn sequentials_nested_thirty_thousand_deep_are_safe() {
    // Runs on a test thread (2 MiB of stack by default): every recursive walk must grow its stack.
    let mut rng = Pcg64::seed_from_u64(1);
    let mut model = Sequential::<f32>::new().push(Linear::new(3, 3, &mut rng).unwrap());
    for _ in 0..30_000 {
        model = Sequential::new().push(model).push(ReLU);
    }
    let names = model.named_params();
    assert_eq!(names.len(), 2);
    assert!(names[0].0.ends_with("0.weight"));
    assert_eq!(model.params().len(), 2);
    let tape = Tape::new();
    let x = tape.leaf(Tensor::ones(&[2, 3]).unwrap());
    let y = model.forward(&mut Context::train(&mut rng), x).unwrap();
    let grads = y.sum().unwrap().backward().unwrap();
    assert_eq!(grads.wrt(x).unwrap().dims(), &[2, 3]);
    drop(tape);
    let copy = model.clone();
    assert_eq!(copy.num_params(), model.num_params());
    drop(copy);
    drop(model);
}
