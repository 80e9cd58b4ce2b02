//! The layers of `tapegrad::nn` against PyTorch: each golden model (written by
//! `tests/golden/layers.py`) is rebuilt here with the same architecture, its PyTorch `state_dict`
//! loaded by name (strict), and its forward, input gradients and parameter gradients compared in
//! train and then eval mode, with BatchNorm's running statistics after further training steps.
//! Then PyTorch's default initialisation, checked statistically, and the errors of bad settings.

mod common;

use std::sync::Arc;

use common::Golden;
use rand::SeedableRng;
use rand_pcg::Pcg64;
use tapegrad::nn::{
    AvgPool2d, BatchNorm1d, BatchNorm2d, Block, Context, Conv1d, Conv2d, Embedding, Flatten,
    Forward, ForwardIds, GELU, LayerNorm, LeakyReLU, Linear, MaxPool2d, Module, MultiheadAttention,
    ReLU, Sequential, SiLU, Sigmoid, Softplus, StateDict, Tanh,
};
use tapegrad::{
    AttnMask, BackwardOptions, Conv1dOptions, Conv2dOptions, Float, Indices, Result, Tape, Tensor,
    Var,
};

fn rng(seed: u64) -> Pcg64 {
    Pcg64::seed_from_u64(seed)
}

/// An element type with its golden reader and tolerances.
trait Dt: Float {
    const TAG: &'static str;
    const RTOL: f64;
    const ATOL: f64;
    fn read(g: &Golden, name: &str) -> Tensor<Self>;
    /// Per element, how far the golden value itself may be from the exact one.
    fn slack(g: &Golden, name: &str, want: &Tensor<Self>) -> Vec<f64>;
}

impl Dt for f32 {
    const TAG: &'static str = "f32";
    const RTOL: f64 = 1e-5;
    const ATOL: f64 = 1e-6;
    fn read(g: &Golden, name: &str) -> Tensor<f32> {
        g.f32(name)
    }
    fn slack(g: &Golden, name: &str, want: &Tensor<f32>) -> Vec<f64> {
        let exact = g.f64(&name.replacen(".f32.", ".f64.", 1));
        want.data()
            .iter()
            .zip(exact.data())
            .map(|(&w, &e)| (f64::from(w) - e).abs())
            .collect()
    }
}

impl Dt for f64 {
    const TAG: &'static str = "f64";
    const RTOL: f64 = 1e-12;
    const ATOL: f64 = 1e-12;
    fn read(g: &Golden, name: &str) -> Tensor<f64> {
        g.f64(name)
    }
    fn slack(_: &Golden, _: &str, want: &Tensor<f64>) -> Vec<f64> {
        vec![0.0; want.numel()]
    }
}

/// Compares `got` with the golden tensor `name`, element by element:
/// |got − want| ≤ atol·max(1, max|want|) + rtol·|want| + |want − exact|.
///
/// - The absolute part scales with the tensor's largest element: a gradient summed through a
///   model carries rounding noise of the size of its terms, so a small element among large ones
///   (a near-cancellation) is only as exact as the large ones.
/// - For f32, `exact` is PyTorch's f64 result for the same weights and inputs: PyTorch's own f32
///   error is allowed once more, as an implementation equally exact may err the other way. On
///   these models it is at most a few 1e-6 of the largest element. (For f64 it is 0: the check
///   is rtol = atol = 1e-12.)
fn assert_close<T: Dt>(got: &Tensor<T>, g: &Golden, name: &str) {
    let want = T::read(g, name);
    assert_eq!(got.dims(), want.dims(), "{name}: shapes");
    let slack = T::slack(g, name, &want);
    let scale = want
        .data()
        .iter()
        .fold(1.0f64, |m, w| m.max(w.to_f64().abs()));
    for (i, (gv, w)) in got.data().iter().zip(want.data()).enumerate() {
        let (gv, w) = (gv.to_f64(), w.to_f64());
        let tol = T::ATOL * scale + T::RTOL * w.abs() + slack[i];
        assert!(
            gv == w || (gv - w).abs() <= tol,
            "{name}: element {i}: got {gv}, want {w} (tolerance {tol:e})"
        );
    }
}

/// A golden model: how it takes its inputs.
trait Case<T: Float>: Module<T> {
    fn run<'t>(
        &self,
        cx: &mut Context<'_>,
        tape: &'t Tape<T>,
        inputs: &[Var<'t, T>],
    ) -> Result<Var<'t, T>>;
}

impl<T: Float> Case<T> for Sequential<T> {
    fn run<'t>(
        &self,
        cx: &mut Context<'_>,
        _: &'t Tape<T>,
        x: &[Var<'t, T>],
    ) -> Result<Var<'t, T>> {
        self.forward(cx, x[0])
    }
}

impl<T: Float> Case<T> for MultiheadAttention<T> {
    fn run<'t>(
        &self,
        cx: &mut Context<'_>,
        _: &'t Tape<T>,
        x: &[Var<'t, T>],
    ) -> Result<Var<'t, T>> {
        self.forward(cx, x[0])
    }
}

impl<T: Float> Case<T> for Block<T> {
    fn run<'t>(
        &self,
        cx: &mut Context<'_>,
        _: &'t Tape<T>,
        x: &[Var<'t, T>],
    ) -> Result<Var<'t, T>> {
        self.forward(cx, x[0])
    }
}

/// Cross-attention with an additive mask.
struct Cross<T: Float> {
    mha: MultiheadAttention<T>,
    mask: Tensor<T>,
}

impl<T: Float> Module<T> for Cross<T> {
    fn visit(&self, v: &mut tapegrad::nn::Visitor<'_, T>) {
        self.mha.visit(v)
    }
}

impl<T: Float> Case<T> for Cross<T> {
    fn run<'t>(
        &self,
        cx: &mut Context<'_>,
        tape: &'t Tape<T>,
        x: &[Var<'t, T>],
    ) -> Result<Var<'t, T>> {
        let mask = AttnMask::Additive(tape.constant(self.mask.clone()));
        self.mha.attend(cx, x[0], x[1], x[2], Some(mask), false)
    }
}

/// A tiny GPT: token embedding with a padding row, blocks, final norm, head without bias. Its
/// input is the ids, so it implements `ForwardIds`, as a user's language model would.
struct TinyGpt<T: Float> {
    wte: Embedding<T>,
    blocks: Vec<Block<T>>,
    ln_f: LayerNorm<T>,
    head: Linear<T>,
    ids: Indices,
}

impl<T: Float> Module<T> for TinyGpt<T> {
    fn visit(&self, v: &mut tapegrad::nn::Visitor<'_, T>) {
        v.module("wte", &self.wte);
        for (i, b) in self.blocks.iter().enumerate() {
            v.module(&format!("blocks.{i}"), b);
        }
        v.module("ln_f", &self.ln_f);
        v.module("head", &self.head);
    }
}

impl<T: Float> ForwardIds<T> for TinyGpt<T> {
    fn forward_ids<'t>(
        &self,
        cx: &mut Context<'_>,
        tape: &'t Tape<T>,
        ids: &Indices,
    ) -> Result<Var<'t, T>> {
        let mut x = self.wte.forward_ids(cx, tape, ids)?;
        for b in &self.blocks {
            x = b.forward(cx, x)?;
        }
        let x = self.ln_f.forward(cx, x)?;
        self.head.forward(cx, x)
    }
}

impl<T: Float> Case<T> for TinyGpt<T> {
    fn run<'t>(
        &self,
        cx: &mut Context<'_>,
        tape: &'t Tape<T>,
        _: &[Var<'t, T>],
    ) -> Result<Var<'t, T>> {
        self.forward_ids(cx, tape, &self.ids)
    }
}

/// Loads `{case}.{dt}.state.*` into the model (strict: every name and shape must match).
fn load_state<T: Dt, M: Module<T>>(g: &Golden, case: &str, model: &M) {
    let prefix = format!("{case}.{}.state.", T::TAG);
    let mut sd = StateDict::<T>::new();
    for name in g.names() {
        if let Some(local) = name.strip_prefix(&prefix) {
            sd.insert(local, Arc::new(T::read(g, &name)));
        }
    }
    assert!(!sd.is_empty(), "no state for {case}");
    sd.load_into(model).unwrap();
}

/// Runs the golden comparison of one case in the given modes.
fn check<T: Dt, M: Case<T>>(g: &Golden, case: &str, model: &M, inputs: &[&str], modes: &[&str]) {
    let p = format!("{case}.{}", T::TAG);
    load_state(g, case, model);
    for &mode in modes {
        let tape = Tape::<T>::new();
        let vars: Vec<Var<'_, T>> = inputs
            .iter()
            .map(|n| tape.leaf(T::read(g, &format!("{p}.in.{n}"))))
            .collect();
        let mut cx = if mode == "train" {
            Context::train_deterministic()
        } else {
            Context::eval()
        };
        let out = model.run(&mut cx, &tape, &vars).unwrap();
        assert_close(&out.value(), g, &format!("{p}.{mode}.out"));
        let seed = T::read(g, &format!("{p}.{mode}.g"));
        let grads = out
            .backward_with(BackwardOptions::new().seed(seed))
            .unwrap();
        for (n, v) in inputs.iter().zip(&vars) {
            let what = format!("{p}.{mode}.d.{n}");
            assert_close(grads.wrt(*v).unwrap(), g, &what);
        }
        let named = model.named_params();
        let golden_grads = g
            .names()
            .into_iter()
            .filter(|n| n.starts_with(&format!("{p}.{mode}.grad.")))
            .count();
        assert_eq!(named.len(), golden_grads, "{p}: parameter count");
        for (name, param) in named {
            let what = format!("{p}.{mode}.grad.{name}");
            let zeros = Tensor::zeros(param.shape().dims()).unwrap();
            let got = grads.param(&param).unwrap_or(&zeros);
            assert_close(got, g, &what);
        }
        if mode == "train" {
            check_steps::<T, M>(g, &p, model);
        }
    }
}

/// Further training forwards, then the buffers against PyTorch's.
fn check_steps<T: Dt, M: Case<T>>(g: &Golden, p: &str, model: &M) {
    let names = g.names();
    let mut i = 0;
    while names.contains(&format!("{p}.steps.{i}")) {
        let tape = Tape::<T>::new();
        let x = tape.constant(T::read(g, &format!("{p}.steps.{i}")));
        model
            .run(&mut Context::train_deterministic(), &tape, &[x])
            .unwrap();
        i += 1;
    }
    let buffers = model.named_buffers();
    if i > 0 {
        assert!(!buffers.is_empty());
    }
    for (name, b) in buffers {
        let what = format!("{p}.after.{name}");
        if i > 0 || names.contains(&what) {
            assert_close(&b.value(), g, &what);
        }
    }
}

fn golden() -> Golden {
    Golden::open("layers.safetensors")
}

fn cnn<T: Float>() -> Sequential<T> {
    let r = &mut rng(0);
    Sequential::new()
        .push(Conv2d::with_options(3, 4, 3, Conv2dOptions::new().padding(1), true, r).unwrap())
        .push(BatchNorm2d::new(4).unwrap())
        .push(ReLU)
        .push(MaxPool2d::new(2).unwrap())
        .push(
            Conv2d::with_options(4, 6, 3, Conv2dOptions::new().padding(1).groups(2), false, r)
                .unwrap(),
        )
        .push(GELU::tanh())
        .push(AvgPool2d::new(2).unwrap())
        .push(Flatten::new())
        .push(Linear::new(24, 5, r).unwrap())
}

fn conv1d<T: Float>() -> Sequential<T> {
    let r = &mut rng(0);
    let strided = Conv1dOptions::new().stride(2).padding(2).dilation(2);
    Sequential::new()
        .push(Conv1d::with_options(3, 4, 3, strided, true, r).unwrap())
        .push(BatchNorm1d::with_options(4, 1e-5, None, true, true).unwrap())
        .push(Tanh)
        .push(Conv1d::with_options(4, 4, 1, Conv1dOptions::new().groups(4), true, r).unwrap())
        .push(SiLU)
        .push(Flatten::new())
        .push(Linear::new(20, 3, r).unwrap())
        .push(Sigmoid)
}

fn mlp<T: Float>() -> Sequential<T> {
    let r = &mut rng(0);
    Sequential::new()
        .push(Linear::new(6, 8, r).unwrap())
        .push(LayerNorm::new(&[8]).unwrap())
        .push(LeakyReLU::new(0.2).unwrap())
        .push(Linear::with_bias(8, 8, false, r).unwrap())
        .push(Softplus::new(2.0, 1.0).unwrap())
        .push(BatchNorm1d::with_options(8, 1e-5, Some(0.1), false, true).unwrap())
        .push(Linear::new(8, 8, r).unwrap())
        .push(LayerNorm::with_options(&[8], 1e-5, true, false).unwrap())
        .push(SiLU)
        .push(Linear::with_bias(8, 4, false, r).unwrap())
        .push(BatchNorm1d::with_options(4, 1e-5, Some(0.1), true, false).unwrap())
        .push(LayerNorm::with_options(&[4], 1e-5, false, true).unwrap())
        .push(GELU::new())
}

fn gpt<T: Dt>(g: &Golden, dropout: f64) -> TinyGpt<T> {
    let r = &mut rng(0);
    let ids = g.i64("gpt.ids");
    TinyGpt {
        wte: Embedding::with_padding(11, 8, Some(0), r).unwrap(),
        blocks: (0..2)
            .map(|_| Block::new(8, 2, dropout, r).unwrap())
            .collect(),
        ln_f: LayerNorm::new(&[8]).unwrap(),
        head: Linear::with_bias(8, 11, false, r).unwrap(),
        ids: Indices::new(&ids, &[2, 6]).unwrap(),
    }
}

fn both_modes<T: Dt>() {
    let g = golden();
    let modes = ["train", "eval"];
    check::<T, _>(&g, "cnn", &cnn::<T>(), &["x"], &modes);
    check::<T, _>(&g, "conv1d", &conv1d::<T>(), &["x"], &modes);
    check::<T, _>(&g, "mlp", &mlp::<T>(), &["x"], &modes);
    let r = &mut rng(0);
    check::<T, _>(
        &g,
        "mha_seq",
        &MultiheadAttention::<T>::new(8, 2, r).unwrap(),
        &["x"],
        &modes,
    );
    let causal = MultiheadAttention::<T>::with_options(8, 4, 0.0, false, true, r)
        .unwrap()
        .with_causal(true);
    check::<T, _>(&g, "mha_causal", &causal, &["x"], &modes);
    let cross = Cross {
        mha: MultiheadAttention::<T>::with_options(8, 2, 0.0, true, true, r).unwrap(),
        mask: T::read(&g, &format!("mha_cross.{}.mask", T::TAG)),
    };
    check::<T, _>(&g, "mha_cross", &cross, &["q", "k", "v"], &modes);
    let unbatched = MultiheadAttention::<T>::new(8, 2, r)
        .unwrap()
        .with_causal(true);
    check::<T, _>(&g, "mha_unbatched", &unbatched, &["x"], &modes);
    check::<T, _>(
        &g,
        "block",
        &Block::<T>::new(8, 2, 0.0, r).unwrap(),
        &["x"],
        &modes,
    );
    check::<T, _>(&g, "gpt", &gpt::<T>(&g, 0.0), &[], &modes);
}

#[test]
fn golden_models_match_pytorch_f32() {
    both_modes::<f32>();
}

#[test]
fn golden_models_match_pytorch_f64() {
    both_modes::<f64>();
}

#[test]
fn eval_mode_ignores_dropout_and_needs_no_generator() {
    // The same weights with dropout 0.3 give PyTorch's eval output (dropout off, nothing drawn).
    let g = golden();
    check::<f32, _>(&g, "gpt", &gpt::<f32>(&g, 0.3), &[], &["eval"]);
    let r = &mut rng(0);
    let block = Block::<f32>::new(8, 2, 0.3, r).unwrap();
    check::<f32, _>(&g, "block", &block, &["x"], &["eval"]);
}
