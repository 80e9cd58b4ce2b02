//! Feeds arbitrary bytes to checkpoint loading. Any panic or abort is a bug: a file that is not a
//! valid checkpoint for the model must be a typed error and leave the model unchanged.
//!
//! Run (from `fuzz/`): `RUSTC_BOOTSTRAP=1 cargo fuzz run checkpoint corpus/checkpoint seeds/checkpoint`
//! (the seed directory holds a valid checkpoint of the model below, so the fuzzer starts from the
//! real format; new inputs go to the first, ignored, directory).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tapegrad::Tensor;
use tapegrad::nn::{Linear, Module, ReLU, Sequential, StateDict};

fn model() -> Sequential<f32> {
    let layer = |i, o| {
        Linear::from_tensors(
            Tensor::full(&[o, i], 0.5).expect("small"),
            Some(Tensor::full(&[o], -0.5).expect("small")),
        )
        .expect("matching shapes")
    };
    Sequential::new().push(layer(3, 4)).push(ReLU).push(layer(4, 2))
}

fuzz_target!(|data: &[u8]| {
    let m = model();
    let loaded = StateDict::<f32>::from_bytes(data).and_then(|state| state.load_into(&m));
    if loaded.is_err() {
        // All or nothing: a refused file changed nothing.
        for (name, p) in m.named_params() {
            let want = if name.ends_with("weight") { 0.5 } else { -0.5 };
            assert!(p.value().data().iter().all(|&v| v == want), "{name} changed");
        }
    }
});
