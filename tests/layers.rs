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
    AttnMask, BackwardOptions, Conv1dOptions, Conv2dOptions, Error, Float, Indices, Result, Tape,
    Tensor, Var,
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
    /// PyTorch's f64 result for the same case (the exact value, to f32's eyes), if this is f32.
    fn exact(_: &Golden, _: &str) -> Option<Tensor<f64>> {
        None
    }
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
    fn exact(g: &Golden, name: &str) -> Option<Tensor<f64>> {
        Some(g.f64(&name.replacen(".f32.", ".f64.", 1)))
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
/// - For f32, an element also passes if it is at least as close to `exact` as PyTorch's f32 value
///   is (within the same rtol and atol): erring the other way by more than PyTorch does is not a
///   fault when the error is smaller.
fn assert_close<T: Dt>(got: &Tensor<T>, g: &Golden, name: &str) {
    let want = T::read(g, name);
    assert_eq!(got.dims(), want.dims(), "{name}: shapes");
    let slack = T::slack(g, name, &want);
    let scale = want
        .data()
        .iter()
        .fold(1.0f64, |m, w| m.max(w.to_f64().abs()));
    let exact = T::exact(g, name);
    for (i, (gv, w)) in got.data().iter().zip(want.data()).enumerate() {
        let (gv, w) = (gv.to_f64(), w.to_f64());
        let tol = T::ATOL * scale + T::RTOL * w.abs() + slack[i];
        let as_close_as_pytorch = exact.as_ref().is_some_and(|e| {
            let e = e.data()[i];
            (gv - e).abs() <= (w - e).abs() + T::ATOL * scale + T::RTOL * w.abs()
        });
        assert!(
            gv == w || (gv - w).abs() <= tol || as_close_as_pytorch,
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
        let _ = model
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

// ---- PyTorch's default initialisation, checked statistically ---------------------------------

/// Sample mean and (biased) variance.
fn moments(data: &[f64]) -> (f64, f64) {
    let n = data.len() as f64;
    let mean = data.iter().sum::<f64>() / n;
    let var = data.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    (mean, var)
}

/// Draws from U(−b, b): all inside, the extremes near ±b, mean 0 and variance b²/3 within five
/// standard errors (the variance of x² for U(−b, b) is 4b⁴/45).
fn assert_uniform(data: &[f64], bound: f64, what: &str) {
    let n = data.len() as f64;
    assert!(
        data.iter().all(|v| v.abs() <= bound),
        "{what}: outside ±{bound}"
    );
    let max = data.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    // P(every |x| < 0.99 b) = 0.99ⁿ, negligible for the sizes below.
    assert!(max > 0.99 * bound, "{what}: max |x| = {max}, bound {bound}");
    let (mean, var) = moments(data);
    let se_mean = (bound * bound / 3.0 / n).sqrt();
    assert!(mean.abs() < 5.0 * se_mean, "{what}: mean {mean}");
    let se_var = (4.0 / 45.0 / n).sqrt() * bound * bound;
    assert!(
        (var - bound * bound / 3.0).abs() < 5.0 * se_var,
        "{what}: variance {var}"
    );
}

fn values(p: &tapegrad::Param<f64>) -> Vec<f64> {
    p.value().data().to_vec()
}

#[test]
fn conv_init_is_kaiming_uniform_with_fan_in_of_a_group() {
    let r = &mut rng(1);
    let conv = Conv2d::<f64>::new(64, 128, 3, r).unwrap();
    let bound = 1.0 / (64.0 * 9.0f64).sqrt();
    assert_eq!(conv.weight.shape().dims(), &[128, 64, 3, 3]);
    assert_uniform(&values(&conv.weight), bound, "Conv2d.weight");
    let bias = values(conv.bias.as_ref().unwrap());
    assert!(bias.iter().all(|v| v.abs() <= bound) && bias.iter().any(|v| v.abs() > bound / 2.0));

    let grouped =
        Conv2d::<f64>::with_options(64, 96, (3, 5), Conv2dOptions::new().groups(4), true, r)
            .unwrap();
    assert_eq!(grouped.weight.shape().dims(), &[96, 16, 3, 5]);
    assert_uniform(
        &values(&grouped.weight),
        1.0 / (16.0 * 15.0f64).sqrt(),
        "grouped weight",
    );

    let conv1 = Conv1d::<f64>::new(32, 256, 5, r).unwrap();
    assert_uniform(
        &values(&conv1.weight),
        1.0 / 160.0f64.sqrt(),
        "Conv1d.weight",
    );
    let no_bias = Conv1d::<f64>::with_options(4, 4, 3, Conv1dOptions::new(), false, r).unwrap();
    assert!(no_bias.bias.is_none());
}

#[test]
fn embedding_init_is_standard_normal_with_a_zero_padding_row() {
    let emb = Embedding::<f64>::with_padding(2000, 64, Some(-1), &mut rng(2)).unwrap();
    assert_eq!(emb.padding_idx(), Some(1999));
    let w = emb.weight.value();
    assert!(w.data()[1999 * 64..].iter().all(|&v| v == 0.0));
    let rest = &w.data()[..1999 * 64];
    let n = rest.len() as f64;
    let (mean, var) = moments(rest);
    assert!(mean.abs() < 5.0 / n.sqrt(), "mean {mean}");
    assert!((var - 1.0).abs() < 5.0 * (2.0 / n).sqrt(), "variance {var}");
    // Normal rather than some other law of variance 1: P(|x| < 1) = 0.6827 (uniform: 0.577).
    let inside = rest.iter().filter(|v| v.abs() < 1.0).count() as f64 / n;
    assert!(
        (inside - 0.6827).abs() < 5.0 * (0.6827 * 0.3173 / n).sqrt(),
        "{inside}"
    );
}

#[test]
fn mha_init_is_xavier_in_proj_zero_biases_and_linear_out_proj() {
    let mha = MultiheadAttention::<f64>::new(256, 8, &mut rng(3)).unwrap();
    assert_eq!(mha.in_proj_weight.shape().dims(), &[768, 256]);
    assert_uniform(
        &values(&mha.in_proj_weight),
        (6.0 / 1024.0f64).sqrt(),
        "in_proj_weight",
    );
    assert!(
        values(mha.in_proj_bias.as_ref().unwrap())
            .iter()
            .all(|&v| v == 0.0)
    );
    assert_uniform(&values(&mha.out_proj.weight), 1.0 / 16.0, "out_proj.weight");
    assert!(
        values(mha.out_proj.bias.as_ref().unwrap())
            .iter()
            .all(|&v| v == 0.0)
    );
}

#[test]
fn norms_start_at_ones_and_zeros() {
    let ln = LayerNorm::<f64>::new(&[3, 4]).unwrap();
    assert_eq!(values(ln.weight.as_ref().unwrap()), vec![1.0; 12]);
    assert_eq!(values(ln.bias.as_ref().unwrap()), vec![0.0; 12]);
    let bn = BatchNorm2d::<f64>::new(5).unwrap();
    assert_eq!(values(bn.weight().unwrap()), vec![1.0; 5]);
    assert_eq!(values(bn.bias().unwrap()), vec![0.0; 5]);
    assert_eq!(bn.running_mean().unwrap().value().data(), &[0.0; 5]);
    assert_eq!(bn.running_var().unwrap().value().data(), &[1.0; 5]);
    let count = bn.num_batches_tracked().unwrap().value();
    assert_eq!((count.dims(), count.data()), (&[][..], &[0.0][..]));
}

#[test]
fn block_parts_are_initialised_as_their_pytorch_layers() {
    let block = Block::<f64>::new(128, 4, 0.0, &mut rng(4)).unwrap();
    assert_uniform(
        &values(&block.mlp_fc.weight),
        1.0 / 128f64.sqrt(),
        "mlp.0.weight",
    );
    assert_uniform(
        &values(&block.mlp_proj.weight),
        1.0 / 512f64.sqrt(),
        "mlp.2.weight",
    );
    assert_uniform(
        &values(&block.attn.in_proj_weight),
        (6.0 / 512.0f64).sqrt(),
        "attn.in_proj",
    );
    assert_eq!(values(block.ln_2.weight.as_ref().unwrap()), vec![1.0; 128]);
}

// ---- state_dict names --------------------------------------------------------------------------

fn names<T: Float, M: Module<T>>(m: &M) -> Vec<String> {
    StateDict::of(m)
        .unwrap()
        .names()
        .map(str::to_string)
        .collect()
}

#[test]
fn state_dict_names_are_pytorchs() {
    let r = &mut rng(5);
    assert_eq!(
        names::<f32, _>(&BatchNorm1d::new(3).unwrap()),
        [
            "weight",
            "bias",
            "running_mean",
            "running_var",
            "num_batches_tracked"
        ]
    );
    let plain = BatchNorm2d::<f32>::with_options(3, 1e-5, Some(0.1), false, false).unwrap();
    assert!(names::<f32, _>(&plain).is_empty());
    assert_eq!(
        names::<f32, _>(&LayerNorm::with_options(&[4], 1e-5, true, false).unwrap()),
        ["weight"]
    );
    assert_eq!(
        names::<f32, _>(&Embedding::new(5, 2, r).unwrap()),
        ["weight"]
    );
    let mha = MultiheadAttention::<f32>::with_options(8, 2, 0.0, false, false, r).unwrap();
    assert_eq!(names::<f32, _>(&mha), ["in_proj_weight", "out_proj.weight"]);
    assert_eq!(
        names::<f32, _>(&Block::new(8, 2, 0.0, r).unwrap()),
        [
            "ln_1.weight",
            "ln_1.bias",
            "attn.in_proj_weight",
            "attn.in_proj_bias",
            "attn.out_proj.weight",
            "attn.out_proj.bias",
            "ln_2.weight",
            "ln_2.bias",
            "mlp.0.weight",
            "mlp.0.bias",
            "mlp.2.weight",
            "mlp.2.bias",
        ]
    );
    // In a Sequential, layers without parameters keep their index, as in PyTorch.
    assert_eq!(
        names::<f32, _>(&cnn::<f32>()),
        [
            "0.weight",
            "0.bias",
            "1.weight",
            "1.bias",
            "1.running_mean",
            "1.running_var",
            "1.num_batches_tracked",
            "4.weight",
            "8.weight",
            "8.bias",
        ]
    );
}

// ---- behaviour -----------------------------------------------------------------------------

#[test]
fn layers_are_clone_send_sync_and_clones_are_independent() {
    fn send_sync<X: Send + Sync + Clone>() {}
    send_sync::<Embedding<f32>>();
    send_sync::<LayerNorm<f32>>();
    send_sync::<BatchNorm1d<f32>>();
    send_sync::<BatchNorm2d<f64>>();
    send_sync::<Conv1d<f32>>();
    send_sync::<Conv2d<f32>>();
    send_sync::<MaxPool2d>();
    send_sync::<AvgPool2d>();
    send_sync::<Flatten>();
    send_sync::<GELU>();
    send_sync::<MultiheadAttention<f32>>();
    send_sync::<Block<f32>>();

    let bn = BatchNorm1d::<f64>::new(2).unwrap();
    let copy = bn.clone();
    let tape = Tape::new();
    let x = tape.constant(Tensor::from_vec(vec![1.0, 2.0, 3.0, 6.0], &[2, 2]).unwrap());
    let _ = copy
        .forward(&mut Context::train_deterministic(), x)
        .unwrap();
    assert_eq!(copy.num_batches_tracked().unwrap().value().data(), &[1.0]);
    assert_eq!(bn.num_batches_tracked().unwrap().value().data(), &[0.0]);
    assert_eq!(bn.running_mean().unwrap().value().data(), &[0.0, 0.0]);
}

#[test]
fn batch_norm_counts_batches_and_a_failed_call_changes_nothing() {
    let bn = BatchNorm1d::<f64>::with_options(2, 1e-5, None, true, true).unwrap();
    let tape = Tape::new();
    let train = |rows: Vec<f64>, n: usize| {
        let x = tape.constant(Tensor::from_vec(rows, &[n, 2]).unwrap());
        bn.forward(&mut Context::train_deterministic(), x)
            .map(|_| ())
    };
    train(vec![1.0, 0.0, 3.0, 0.0], 2).unwrap(); // means [2, 0]
    train(vec![5.0, 2.0, 7.0, 2.0], 2).unwrap(); // means [6, 2]
    // Cumulative average: 1/1 then 1/2 → the mean of the batch means.
    assert_eq!(bn.running_mean().unwrap().value().data(), &[4.0, 1.0]);
    assert_eq!(bn.num_batches_tracked().unwrap().value().data(), &[2.0]);
    // One value per channel in training is an error, and counts nothing.
    assert!(train(vec![1.0, 2.0], 1).is_err());
    assert_eq!(bn.num_batches_tracked().unwrap().value().data(), &[2.0]);
    assert_eq!(bn.running_mean().unwrap().value().data(), &[4.0, 1.0]);
    // Eval uses the running statistics: (x − 4)/√(var + ε) on channel 0.
    let var = bn.running_var().unwrap().value().data()[0];
    let x = tape.constant(Tensor::from_vec(vec![4.0 + var.sqrt(), 1.0], &[1, 2]).unwrap());
    let y = bn.forward(&mut Context::eval(), x).unwrap();
    assert!((y.value().data()[0] - 1.0).abs() < 1e-5);
}

#[test]
fn attention_dropout_draws_from_the_context_only_in_training() {
    let r = &mut rng(6);
    let mha = MultiheadAttention::<f64>::with_options(8, 2, 0.5, true, true, r).unwrap();
    let x = Tensor::normal(&[2, 4, 8], 0.0, 1.0, r).unwrap();
    let run = |seed: u64| {
        let tape = Tape::new();
        let mut g = rng(seed);
        let y = mha
            .forward(&mut Context::train(&mut g), tape.constant(x.clone()))
            .unwrap();
        y.value().data().to_vec()
    };
    assert_eq!(run(1), run(1));
    assert_ne!(run(1), run(2));
    let tape = Tape::new();
    let err = mha
        .forward(
            &mut Context::train_deterministic(),
            tape.constant(x.clone()),
        )
        .unwrap_err();
    assert!(err.to_string().contains("MultiheadAttention"), "{err}");
    // Eval: no dropout, no generator needed, equal to a dropout-free copy.
    let eval = mha
        .forward(&mut Context::eval(), tape.constant(x.clone()))
        .unwrap();
    assert_eq!(eval.value().dims(), &[2, 4, 8]);
}

#[test]
fn embedding_gradient_skips_the_padding_row() {
    let table = Tensor::from_vec((0..8).map(f64::from).collect(), &[4, 2]).unwrap();
    let emb = Embedding::from_tensor(table, Some(1)).unwrap();
    let tape = Tape::new();
    let ids = Indices::new(&[1u8, 2, 1, 3, 2], &[5]).unwrap();
    let y = emb.forward_ids(&mut Context::eval(), &tape, &ids).unwrap();
    assert_eq!(
        y.value().data(),
        &[2.0, 3.0, 4.0, 5.0, 2.0, 3.0, 6.0, 7.0, 4.0, 5.0]
    );
    let grads = y.sum().unwrap().backward().unwrap();
    // Row 2 was taken twice, row 3 once, row 1 is padding, row 0 unused.
    assert_eq!(
        grads.param(&emb.weight).unwrap().data(),
        &[0.0, 0.0, 0.0, 0.0, 2.0, 2.0, 1.0, 1.0]
    );
}

// ---- typed errors for bad settings and inputs ----------------------------------------------------

fn hyper(e: Error) -> (&'static str, &'static str, f64) {
    match e {
        Error::InvalidHyperparameter {
            op, name, value, ..
        } => (op, name, value),
        other => panic!("expected InvalidHyperparameter, got {other:?}"),
    }
}

fn invalid(e: Error) -> (&'static str, String) {
    match e {
        Error::InvalidArgument { op, reason } => (op, reason),
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
}

#[test]
fn bad_settings_are_typed_errors_naming_the_layer() {
    let r = &mut rng(7);
    assert_eq!(
        hyper(Embedding::<f32>::new(0, 4, r).unwrap_err()),
        ("Embedding", "num_embeddings", 0.0)
    );
    assert_eq!(
        hyper(Embedding::<f32>::new(4, 0, r).unwrap_err()),
        ("Embedding", "embedding_dim", 0.0)
    );
    assert_eq!(
        hyper(Embedding::<f32>::with_padding(4, 2, Some(4), r).unwrap_err()),
        ("Embedding", "padding_idx", 4.0)
    );
    assert_eq!(
        hyper(Embedding::<f32>::with_padding(4, 2, Some(-5), r).unwrap_err()),
        ("Embedding", "padding_idx", -5.0)
    );
    assert!(LayerNorm::<f32>::new(&[]).is_err());
    assert_eq!(
        hyper(LayerNorm::<f32>::new(&[3, 0]).unwrap_err()),
        ("LayerNorm", "normalized_shape", 0.0)
    );
    assert_eq!(
        hyper(LayerNorm::<f32>::with_options(&[3], -1.0, true, true).unwrap_err()),
        ("LayerNorm", "eps", -1.0)
    );
    assert_eq!(
        hyper(BatchNorm2d::<f32>::new(0).unwrap_err()),
        ("BatchNorm2d", "num_features", 0.0)
    );
    assert_eq!(
        hyper(BatchNorm1d::<f32>::with_options(3, 1e-5, Some(1.5), true, true).unwrap_err()),
        ("BatchNorm1d", "momentum", 1.5)
    );
    assert_eq!(
        hyper(BatchNorm1d::<f32>::with_options(3, 0.0, None, true, true).unwrap_err()),
        ("BatchNorm1d", "eps", 0.0)
    );
    assert_eq!(
        hyper(Conv2d::<f32>::new(0, 4, 3, r).unwrap_err()),
        ("Conv2d", "in_channels", 0.0)
    );
    assert_eq!(
        hyper(Conv2d::<f32>::new(3, 4, (3, 0), r).unwrap_err()),
        ("Conv2d", "kernel_size", 0.0)
    );
    assert_eq!(
        hyper(
            Conv1d::<f32>::with_options(3, 4, 3, Conv1dOptions::new().stride(0), true, r)
                .unwrap_err()
        ),
        ("Conv1d", "stride", 0.0)
    );
    let (op, reason) = invalid(
        Conv2d::<f32>::with_options(6, 4, 3, Conv2dOptions::new().groups(3), true, r).unwrap_err(),
    );
    assert_eq!(op, "Conv2d");
    assert!(
        reason.contains("out_channels = 4") && reason.contains("groups = 3"),
        "{reason}"
    );
    assert_eq!(
        hyper(MaxPool2d::new(0).unwrap_err()),
        ("MaxPool2d", "kernel_size", 0.0)
    );
    let (op, _) = invalid(
        AvgPool2d::with_options(tapegrad::AvgPool2dOptions::new(2).padding(2)).unwrap_err(),
    );
    assert_eq!(op, "AvgPool2d");
    let (op, reason) = invalid(MultiheadAttention::<f32>::new(10, 3, r).unwrap_err());
    assert_eq!(op, "MultiheadAttention");
    assert!(
        reason.contains("embed_dim = 10") && reason.contains("num_heads = 3"),
        "{reason}"
    );
    assert_eq!(
        hyper(MultiheadAttention::<f32>::new(8, 0, r).unwrap_err()),
        ("MultiheadAttention", "num_heads", 0.0)
    );
    assert!(matches!(
        MultiheadAttention::<f32>::with_options(8, 2, 1.5, true, false, r),
        Err(Error::InvalidProbability {
            op: "MultiheadAttention",
            ..
        })
    ));
    assert!(Block::<f32>::new(10, 4, 0.0, r).is_err());
    assert_eq!(
        hyper(LeakyReLU::new(f64::NAN).map(|_| ()).unwrap_err()).0,
        "LeakyReLU"
    );
    assert_eq!(
        hyper(Softplus::new(0.0, 20.0).unwrap_err()),
        ("Softplus", "beta", 0.0)
    );
}

#[test]
fn bad_inputs_are_typed_errors_naming_the_layer() {
    let r = &mut rng(8);
    let tape = Tape::<f32>::new();
    let cx = &mut Context::eval();
    // Ids out of range, negative ones too.
    let emb = Embedding::<f32>::new(5, 3, r).unwrap();
    let err = emb
        .forward_ids(cx, &tape, &Indices::new(&[0i64, 4, 5], &[3]).unwrap())
        .unwrap_err();
    assert!(matches!(
        err,
        Error::IndexOutOfRange {
            op: "Embedding",
            position: 2,
            index: 5,
            len: 5
        }
    ));
    let err = emb
        .forward_ids(cx, &tape, &Indices::new(&[-1i64], &[1]).unwrap())
        .unwrap_err();
    assert!(matches!(
        err,
        Error::IndexOutOfRange {
            op: "Embedding",
            index: -1,
            ..
        }
    ));
    // Batch norm: wrong rank, wrong channel count.
    let bn = BatchNorm2d::<f32>::new(3).unwrap();
    let x = tape.constant(Tensor::zeros(&[2, 3, 4]).unwrap());
    assert!(matches!(
        bn.forward(cx, x).unwrap_err(),
        Error::BadRank {
            op: "BatchNorm2d",
            ..
        }
    ));
    let bn1 = BatchNorm1d::<f32>::new(3).unwrap();
    let x = tape.constant(Tensor::zeros(&[2, 4]).unwrap());
    let (op, reason) = invalid(bn1.forward(cx, x).unwrap_err());
    assert_eq!(op, "BatchNorm1d");
    assert!(reason.contains("expected 3 channels"), "{reason}");
    // Attention: wrong width, wrong rank.
    let mha = MultiheadAttention::<f32>::new(8, 2, r).unwrap();
    let x = tape.constant(Tensor::zeros(&[3, 2, 6]).unwrap());
    assert_eq!(
        invalid(mha.forward(cx, x).unwrap_err()).0,
        "MultiheadAttention"
    );
    let x = tape.constant(Tensor::zeros(&[1, 3, 2, 8]).unwrap());
    assert!(matches!(
        mha.forward(cx, x).unwrap_err(),
        Error::BadRank {
            op: "MultiheadAttention",
            ..
        }
    ));
}

// ---- a PyTorch state_dict file as PyTorch writes it ---------------------------------------------

#[test]
fn pytorch_state_dict_file_with_int64_counter_loads_by_name() {
    // `save_file(model.state_dict())` of the golden CNN: float32 weights, int64
    // num_batches_tracked.
    let model = cnn::<f32>();
    let path = format!(
        "{}/tests/golden/layers_cnn_state_dict.safetensors",
        env!("CARGO_MANIFEST_DIR")
    );
    tapegrad::nn::load_safetensors(&model, &path).unwrap();
    let g = golden();
    for (name, p) in model.named_params() {
        assert_eq!(
            p.value().data(),
            g.f32(&format!("cnn.f32.state.{name}")).data(),
            "{name}"
        );
    }
    let bn: &BatchNorm2d<f32> = model.get(1).unwrap();
    assert_eq!(bn.num_batches_tracked().unwrap().value().data(), &[0.0]);
    let tape = Tape::new();
    let x = tape.leaf(g.f32("cnn.f32.in.x"));
    let out = model
        .forward(&mut Context::train_deterministic(), x)
        .unwrap();
    assert_close(&out.value(), &g, "cnn.f32.train.out");
    assert_eq!(bn.num_batches_tracked().unwrap().value().data(), &[1.0]);
}

#[test]
fn int64_tensors_load_only_when_exact() {
    use safetensors::tensor::{Dtype, TensorView, serialize};
    let file = |v: i64| {
        let bytes = v.to_le_bytes();
        let view = TensorView::new(Dtype::I64, vec![], &bytes).unwrap();
        serialize([("num_batches_tracked", view)], None).unwrap()
    };
    let sd = StateDict::<f32>::from_bytes(&file(16_777_216)).unwrap(); // 2²⁴
    assert_eq!(
        sd.get("num_batches_tracked").unwrap().data(),
        &[16_777_216.0]
    );
    assert!(matches!(
        StateDict::<f32>::from_bytes(&file(16_777_217)),
        Err(Error::CheckpointDtype { .. })
    ));
    let sd = StateDict::<f64>::from_bytes(&file(-(1 << 53))).unwrap();
    assert_eq!(
        sd.get("num_batches_tracked").unwrap().data(),
        &[-9_007_199_254_740_992.0]
    );
    for bad in [(1 << 53) + 1, i64::MAX, i64::MIN] {
        assert!(
            matches!(
                StateDict::<f64>::from_bytes(&file(bad)),
                Err(Error::CheckpointDtype { .. })
            ),
            "{bad}"
        );
    }
}
