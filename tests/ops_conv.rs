//! Convolution and pooling: forward values and both gradients against plain loops written here,
//! gradcheck and gradgradcheck over strides, paddings, dilations and groups, the pools' tie, NaN
//! and padding conventions on hand-made inputs, every error, PyTorch golden values, and thread
//! independence.

mod common;

use common::{Golden, assert_close, checked_fn, randn};
use rand::SeedableRng;
use rand_pcg::Pcg64;
use tapegrad::{
    AvgPool2dOptions, BackwardOptions, Conv1dOptions, Conv2dOptions, Error, GradcheckOptions,
    MaxPool2dOptions, Result, Tape, Tensor, Var, gradcheck, gradgradcheck,
};

// ---------------------------------------------------------------------------------------------
// A naive convolution, the independent reference.
// ---------------------------------------------------------------------------------------------

/// One 2-D convolution problem (a 1-D one has h = kh = 1).
#[derive(Clone, Copy, Debug)]
struct Cfg {
    n: usize,
    c_in: usize,
    h: usize,
    w: usize,
    c_out: usize,
    kh: usize,
    kw: usize,
    stride: (usize, usize),
    pad: (usize, usize),
    dil: (usize, usize),
    groups: usize,
}

impl Cfg {
    fn new(n: usize, c_in: usize, hw: (usize, usize), c_out: usize, k: (usize, usize)) -> Cfg {
        Cfg {
            n,
            c_in,
            h: hw.0,
            w: hw.1,
            c_out,
            kh: k.0,
            kw: k.1,
            stride: (1, 1),
            pad: (0, 0),
            dil: (1, 1),
            groups: 1,
        }
    }
    fn stride(mut self, s: (usize, usize)) -> Cfg {
        self.stride = s;
        self
    }
    fn pad(mut self, p: (usize, usize)) -> Cfg {
        self.pad = p;
        self
    }
    fn dil(mut self, d: (usize, usize)) -> Cfg {
        self.dil = d;
        self
    }
    fn groups(mut self, g: usize) -> Cfg {
        self.groups = g;
        self
    }
    fn out_len(size: usize, k: usize, s: usize, p: usize, d: usize) -> usize {
        (size + 2 * p - d * (k - 1) - 1) / s + 1
    }
    fn ho(&self) -> usize {
        Self::out_len(self.h, self.kh, self.stride.0, self.pad.0, self.dil.0)
    }
    fn wo(&self) -> usize {
        Self::out_len(self.w, self.kw, self.stride.1, self.pad.1, self.dil.1)
    }
    fn x_dims(&self) -> Vec<usize> {
        vec![self.n, self.c_in, self.h, self.w]
    }
    fn w_dims(&self) -> Vec<usize> {
        vec![self.c_out, self.c_in / self.groups, self.kh, self.kw]
    }
    fn y_dims(&self) -> Vec<usize> {
        vec![self.n, self.c_out, self.ho(), self.wo()]
    }
    fn options(&self) -> Conv2dOptions {
        Conv2dOptions::default()
            .stride(self.stride)
            .padding(self.pad)
            .dilation(self.dil)
            .groups(self.groups)
    }

    /// Visits every (output index, input index, weight index) triple that contributes
    /// x[input]·w[weight] to y[output], by the definition of the convolution.
    fn for_each_term(&self, mut visit: impl FnMut(usize, usize, usize)) {
        let (cg_in, cg_out) = (self.c_in / self.groups, self.c_out / self.groups);
        let (ho, wo) = (self.ho(), self.wo());
        for n in 0..self.n {
            for o in 0..self.c_out {
                let group = o / cg_out;
                for i in 0..ho {
                    for j in 0..wo {
                        let out = ((n * self.c_out + o) * ho + i) * wo + j;
                        for c in 0..cg_in {
                            let channel = group * cg_in + c;
                            for p in 0..self.kh {
                                for q in 0..self.kw {
                                    let r = (i * self.stride.0 + p * self.dil.0) as isize
                                        - self.pad.0 as isize;
                                    let s = (j * self.stride.1 + q * self.dil.1) as isize
                                        - self.pad.1 as isize;
                                    if r < 0
                                        || s < 0
                                        || r >= self.h as isize
                                        || s >= self.w as isize
                                    {
                                        continue;
                                    }
                                    let input = ((n * self.c_in + channel) * self.h + r as usize)
                                        * self.w
                                        + s as usize;
                                    let weight = ((o * cg_in + c) * self.kh + p) * self.kw + q;
                                    visit(out, input, weight);
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// y = conv(x, w) + b, and with the seed g: dx, dw, db — all by the definition.
    fn naive(
        &self,
        x: &[f64],
        w: &[f64],
        b: &[f64],
        g: &[f64],
    ) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
        let plane = self.ho() * self.wo();
        let mut y: Vec<f64> = (0..self.n * self.c_out * plane)
            .map(|i| b[(i / plane) % self.c_out])
            .collect();
        let mut dx = vec![0.0; x.len()];
        let mut dw = vec![0.0; w.len()];
        self.for_each_term(|o, i, k| {
            y[o] += x[i] * w[k];
            dx[i] += g[o] * w[k];
            dw[k] += g[o] * x[i];
        });
        let db = (0..self.c_out)
            .map(|c| {
                (0..self.n)
                    .flat_map(|n| g[(n * self.c_out + c) * plane..][..plane].iter())
                    .sum()
            })
            .collect();
        (y, dx, dw, db)
    }
}

fn configs() -> Vec<Cfg> {
    vec![
        Cfg::new(2, 3, (5, 6), 4, (3, 3)),
        Cfg::new(2, 3, (5, 6), 4, (3, 3)).pad((1, 1)),
        Cfg::new(2, 3, (7, 6), 2, (3, 2)).stride((2, 1)).pad((1, 0)),
        Cfg::new(1, 2, (7, 7), 3, (3, 3)).dil((2, 2)).pad((2, 1)),
        Cfg::new(2, 4, (5, 5), 6, (3, 3)).groups(2).pad((1, 1)),
        Cfg::new(2, 4, (6, 5), 4, (3, 3))
            .groups(4)
            .pad((1, 1))
            .stride((2, 2)), // depthwise
        Cfg::new(3, 3, (4, 4), 5, (1, 1)), // pointwise
        Cfg::new(2, 3, (4, 5), 2, (1, 1)).stride((2, 2)),
        Cfg::new(1, 2, (6, 6), 3, (2, 4))
            .stride((3, 2))
            .pad((1, 2))
            .dil((1, 2)),
        Cfg::new(0, 3, (5, 5), 2, (3, 3)).pad((1, 1)), // empty batch
        Cfg::new(2, 1, (1, 9), 3, (1, 3)).pad((0, 1)), // a 1-D problem as 2-D
        Cfg::new(2, 2, (3, 3), 2, (3, 3)),             // kernel = input: 1×1 output
        Cfg::new(1, 2, (2, 3), 2, (5, 5)).pad((2, 2)), // kernel wider than the input
        Cfg::new(17, 2, (5, 4), 3, (3, 3)).pad((1, 1)), // several blocks of images
        Cfg::new(2, 6, (5, 5), 6, (3, 3))
            .groups(3)
            .pad((2, 2))
            .dil((2, 2))
            .stride((1, 2)),
    ]
}

fn bias(cfg: &Cfg, seed: u64) -> Tensor<f64> {
    randn(&[cfg.c_out], seed)
}

#[test]
fn conv2d_forward_and_gradients_match_the_definition() {
    for (k, cfg) in configs().into_iter().enumerate() {
        let seed = 100 * k as u64;
        let (x, w, b) = (
            randn(&cfg.x_dims(), seed),
            randn(&cfg.w_dims(), seed + 1),
            bias(&cfg, seed + 2),
        );
        let g = randn(&cfg.y_dims(), seed + 3);
        let (y, dx, dw, db) = cfg.naive(x.data(), w.data(), b.data(), g.data());
        let tape = Tape::new();
        let (vx, vw, vb) = (tape.leaf(x), tape.leaf(w), tape.leaf(b));
        let out = vx.conv2d(vw, Some(vb), cfg.options()).unwrap();
        assert_eq!(out.shape().dims(), cfg.y_dims().as_slice(), "{cfg:?}");
        assert_close(out.value().data(), &y, 1e-12);
        let grads = out.backward_with(BackwardOptions::new().seed(g)).unwrap();
        assert_close(grads.wrt(vx).unwrap().data(), &dx, 1e-12);
        assert_close(grads.wrt(vw).unwrap().data(), &dw, 1e-12);
        assert_close(grads.wrt(vb).unwrap().data(), &db, 1e-12);
    }
}

#[test]
fn each_gradient_alone_matches_the_definition() {
    // Only one input requiring a gradient takes other paths through the backward.
    let cfg = Cfg::new(3, 4, (6, 5), 4, (3, 2)).pad((1, 1)).groups(2);
    let (x, w, b) = (
        randn(&cfg.x_dims(), 1),
        randn(&cfg.w_dims(), 2),
        bias(&cfg, 3),
    );
    let g = randn(&cfg.y_dims(), 4);
    let (_, dx, dw, db) = cfg.naive(x.data(), w.data(), b.data(), g.data());
    for which in 0..3 {
        let tape = Tape::new();
        let make = |t: Tensor<f64>, i: usize| {
            if i == which {
                tape.leaf(t)
            } else {
                tape.constant(t)
            }
        };
        let (vx, vw, vb) = (make(x.clone(), 0), make(w.clone(), 1), make(b.clone(), 2));
        let out = vx.conv2d(vw, Some(vb), cfg.options()).unwrap();
        let grads = out
            .backward_with(BackwardOptions::new().seed(g.clone()))
            .unwrap();
        let (v, want) = [(vx, &dx), (vw, &dw), (vb, &db)][which];
        assert_close(grads.wrt(v).unwrap().data(), want, 1e-12);
    }
}

#[test]
fn conv1d_is_conv2d_of_height_one() {
    for (k, (n, c_in, l, c_out, kernel, stride, pad, dil, groups)) in [
        (2, 3, 9, 4, 3, 1, 1, 1, 1),
        (2, 4, 10, 6, 3, 2, 2, 2, 2),
        (1, 3, 7, 3, 2, 3, 1, 1, 3),
        (0, 2, 5, 2, 3, 1, 0, 1, 1),
        (3, 2, 6, 5, 1, 1, 0, 1, 1),
    ]
    .into_iter()
    .enumerate()
    {
        let cfg = Cfg::new(n, c_in, (1, l), c_out, (1, kernel))
            .stride((1, stride))
            .pad((0, pad))
            .dil((1, dil))
            .groups(groups);
        let seed = 50 + 10 * k as u64;
        let x = randn(&[n, c_in, l], seed);
        let w = randn(&[c_out, c_in / groups, kernel], seed + 1);
        let b = bias(&cfg, seed + 2);
        let g = randn(&[n, c_out, cfg.wo()], seed + 3);
        let (y, dx, dw, db) = cfg.naive(x.data(), w.data(), b.data(), g.data());
        let tape = Tape::new();
        let (vx, vw, vb) = (tape.leaf(x), tape.leaf(w), tape.leaf(b));
        let options = Conv1dOptions::default()
            .stride(stride)
            .padding(pad)
            .dilation(dil)
            .groups(groups);
        let out = vx.conv1d(vw, Some(vb), options).unwrap();
        assert_eq!(out.shape().dims(), &[n, c_out, cfg.wo()]);
        assert_close(out.value().data(), &y, 1e-12);
        let grads = out.backward_with(BackwardOptions::new().seed(g)).unwrap();
        assert_close(grads.wrt(vx).unwrap().data(), &dx, 1e-12);
        assert_close(grads.wrt(vw).unwrap().data(), &dw, 1e-12);
        assert_close(grads.wrt(vb).unwrap().data(), &db, 1e-12);
    }
}

#[test]
fn unbatched_inputs_are_a_batch_of_one() {
    let cfg = Cfg::new(1, 2, (5, 4), 3, (3, 3)).pad((1, 1));
    let (x, w) = (randn(&cfg.x_dims(), 7), randn(&cfg.w_dims(), 8));
    let tape = Tape::new();
    let batched = tape
        .constant(x.clone())
        .conv2d(tape.constant(w.clone()), None, cfg.options())
        .unwrap();
    let single = tape
        .constant(x.reshape(&[2, 5, 4]).unwrap())
        .conv2d(tape.constant(w), None, cfg.options())
        .unwrap();
    assert_eq!(single.shape().dims(), &[3, 5, 4]);
    assert_eq!(single.value().data(), batched.value().data());
}

// ---------------------------------------------------------------------------------------------
// gradcheck and gradgradcheck
// ---------------------------------------------------------------------------------------------

fn opts() -> GradcheckOptions {
    GradcheckOptions::default()
}

#[test]
fn conv2d_gradcheck_and_gradgradcheck() {
    let small = [
        Cfg::new(2, 2, (4, 4), 3, (3, 3)).pad((1, 1)),
        Cfg::new(1, 2, (5, 4), 2, (2, 3)).stride((2, 1)).pad((1, 1)),
        Cfg::new(1, 2, (5, 5), 2, (2, 2)).dil((2, 2)).pad((1, 0)),
        Cfg::new(2, 4, (3, 3), 4, (3, 3)).groups(2).pad((1, 1)),
        Cfg::new(1, 3, (4, 3), 3, (3, 3)).groups(3).pad((1, 1)), // depthwise
        Cfg::new(2, 3, (3, 3), 2, (1, 1)),                       // pointwise
        Cfg::new(0, 2, (3, 3), 2, (3, 3)).pad((1, 1)),           // empty batch
    ];
    for (k, cfg) in small.into_iter().enumerate() {
        let seed = 300 + 10 * k as u64;
        let inputs = vec![
            randn(&cfg.x_dims(), seed),
            randn(&cfg.w_dims(), seed + 1),
            bias(&cfg, seed + 2),
        ];
        let options = cfg.options();
        let f = checked_fn(move |_, v, _| v[0].conv2d(v[1], Some(v[2]), options));
        if let Err(e) = gradcheck(f, &inputs, &opts()) {
            panic!("{cfg:?}: {e}");
        }
        if let Err(e) = gradgradcheck(f, &inputs, &opts()) {
            panic!("{cfg:?}: {e}");
        }
    }
}

#[test]
fn conv1d_gradcheck_and_gradgradcheck() {
    let inputs = vec![randn(&[2, 4, 7], 1), randn(&[4, 2, 3], 2), randn(&[4], 3)];
    let options = Conv1dOptions::default()
        .stride(2)
        .padding(2)
        .dilation(2)
        .groups(2);
    let f = checked_fn(move |_, v, _| v[0].conv1d(v[1], Some(v[2]), options));
    gradcheck(f, &inputs, &opts()).unwrap();
    gradgradcheck(f, &inputs, &opts()).unwrap();
}

#[test]
fn third_derivatives_through_the_recorded_maps() {
    // Differentiating the recorded backward of the backward: each of the three maps' own
    // backward is recorded again. f(x, w) = Σ conv(x, w)², nonlinear so every map appears.
    let cfg = Cfg::new(1, 2, (4, 4), 2, (2, 2)).pad((1, 0)).stride((1, 2));
    let options = cfg.options();
    let inputs = vec![randn(&cfg.x_dims(), 11), randn(&cfg.w_dims(), 12)];
    let f = checked_fn(move |_, v, _| {
        let y = v[0].conv2d(v[1], None, options)?;
        let grads = y.mul(y)?.sum()?.backward_graph(None)?;
        grads.wrt(v[0])?.mul(grads.wrt(v[1])?.sum()?)
    });
    gradcheck(f, &inputs, &opts()).unwrap();
    gradgradcheck(f, &inputs, &opts()).unwrap();
}

#[test]
fn recorded_backward_equals_plain_backward() {
    let cfg = Cfg::new(3, 4, (5, 6), 6, (3, 2))
        .pad((1, 1))
        .stride((2, 1))
        .groups(2);
    let (x, w, b) = (
        randn(&cfg.x_dims(), 21),
        randn(&cfg.w_dims(), 22),
        bias(&cfg, 23),
    );
    let g = randn(&cfg.y_dims(), 24);
    let tape = Tape::new();
    let (vx, vw, vb) = (tape.leaf(x), tape.leaf(w), tape.leaf(b));
    let y = vx.conv2d(vw, Some(vb), cfg.options()).unwrap();
    let graph = y.backward_graph(Some(tape.constant(g.clone()))).unwrap();
    let plain = y
        .backward_with(BackwardOptions::new().seed(g).retain_graph(true))
        .unwrap();
    for v in [vx, vw, vb] {
        assert_eq!(
            graph.wrt(v).unwrap().value().data(),
            plain.wrt(v).unwrap().data()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

fn conv_err(x: &[usize], w: &[usize], b: Option<&[usize]>, o: Conv2dOptions) -> Error {
    let tape = Tape::<f32>::new();
    let vx = tape.constant(Tensor::zeros(x).unwrap());
    let vw = tape.constant(Tensor::zeros(w).unwrap());
    let vb = b.map(|b| tape.constant(Tensor::zeros(b).unwrap()));
    vx.conv2d(vw, vb, o).unwrap_err()
}

#[test]
fn conv_errors_name_the_shapes() {
    let d = Conv2dOptions::default();
    let e = conv_err(&[2, 3, 5, 5], &[4, 2, 3, 3], None, d);
    assert!(
        matches!(e, Error::ShapeMismatch { op: "conv2d", .. }),
        "{e}"
    );
    assert_eq!(
        e.to_string(),
        "conv2d: incompatible shapes [2, 3, 5, 5] and [4, 2, 3, 3]"
    );
    let e = conv_err(&[2, 4, 5, 5], &[6, 2, 3, 3], None, d.groups(3));
    assert!(
        matches!(e, Error::InvalidArgument { op: "conv2d", .. }),
        "{e}"
    );
    assert!(e.to_string().contains("groups = 3"), "{e}");
    let e = conv_err(&[2, 4, 5, 5], &[5, 2, 3, 3], None, d.groups(2));
    assert!(e.to_string().contains("[5, 2, 3, 3]"), "{e}");
    let e = conv_err(&[2, 3, 5, 5], &[4, 3, 7, 3], None, d);
    assert!(matches!(e, Error::InvalidArgument { .. }), "{e}");
    assert!(
        e.to_string().contains("larger than the padded input 5×5"),
        "{e}"
    );
    let e = conv_err(&[2, 3, 5, 5], &[4, 3, 7, 3], None, d.padding((0, 1)));
    assert!(e.to_string().contains("padded input 5×7"), "{e}");
    // With enough padding the same kernel fits.
    let tape = Tape::<f32>::new();
    let y = tape
        .constant(Tensor::zeros(&[2, 3, 5, 5]).unwrap())
        .conv2d(
            tape.constant(Tensor::zeros(&[4, 3, 7, 3]).unwrap()),
            None,
            d.padding(1),
        )
        .unwrap();
    assert_eq!(y.shape().dims(), &[2, 4, 1, 5]);
    let e = conv_err(&[2, 3, 5, 5], &[4, 3, 3, 3], None, d.dilation(3));
    assert!(matches!(e, Error::InvalidArgument { .. }), "{e}");
    for (name, o) in [
        ("stride", d.stride((1, 0))),
        ("dilation", d.dilation(0)),
        ("groups", d.groups(0)),
    ] {
        let e = conv_err(&[2, 3, 5, 5], &[4, 3, 3, 3], None, o);
        assert!(
            matches!(e, Error::InvalidHyperparameter { op: "conv2d", name, .. } if name == name),
            "{e}"
        );
        assert!(e.to_string().contains(name), "{e}");
    }
    let e = conv_err(&[3, 5, 5, 5, 5], &[4, 3, 3, 3], None, d);
    assert!(matches!(e, Error::BadRank { op: "conv2d", .. }), "{e}");
    let e = conv_err(&[5, 5], &[4, 3, 3, 3], None, d);
    assert!(matches!(e, Error::BadRank { .. }), "{e}");
    let e = conv_err(&[2, 3, 5, 5], &[4, 3, 3], None, d);
    assert!(matches!(e, Error::BadRank { .. }), "{e}");
    assert!(e.to_string().contains("[4, 3, 3]"), "{e}");
    let e = conv_err(&[2, 3, 5, 5], &[4, 3, 3, 3], Some(&[3]), d);
    assert!(matches!(e, Error::InvalidArgument { .. }), "{e}");
    assert!(e.to_string().contains("bias has shape [3]"), "{e}");
    let e = conv_err(&[2, 3, 5, 5], &[4, 3, 3, 3], Some(&[1, 4]), d);
    assert!(matches!(e, Error::InvalidArgument { .. }), "{e}");
    let e = conv_err(&[2, 3, 5, 5], &[0, 3, 3, 3], None, d);
    assert!(matches!(e, Error::InvalidArgument { .. }), "{e}");
    let e = conv_err(&[2, 3, 0, 5], &[4, 3, 1, 1], None, d.padding(1));
    assert!(matches!(e, Error::InvalidArgument { .. }), "{e}");
    let e = conv_err(&[2, 3, 5, 5], &[4, 3, 0, 3], None, d);
    assert!(matches!(e, Error::InvalidArgument { .. }), "{e}");
    // conv1d
    let tape = Tape::<f64>::new();
    let x = tape.constant(Tensor::zeros(&[2, 3, 5]).unwrap());
    let w = tape.constant(Tensor::zeros(&[4, 3, 3, 3]).unwrap());
    assert!(matches!(
        x.conv1d(w, None, Conv1dOptions::default()),
        Err(Error::BadRank { op: "conv1d", .. })
    ));
    let w = tape.constant(Tensor::zeros(&[4, 3, 6]).unwrap());
    assert!(matches!(
        x.conv1d(w, None, Conv1dOptions::default()),
        Err(Error::InvalidArgument { op: "conv1d", .. })
    ));
    assert!(matches!(
        x.conv1d(w, None, Conv1dOptions::default().stride(0)),
        Err(Error::InvalidHyperparameter { op: "conv1d", .. })
    ));
    // Vars of two tapes.
    let other = Tape::<f64>::new();
    let w = other.constant(Tensor::zeros(&[4, 3, 1]).unwrap());
    assert!(matches!(
        x.conv1d(w, None, Conv1dOptions::default()),
        Err(Error::ForeignVar { .. })
    ));
}

#[test]
fn zero_input_channels_give_the_bias() {
    // PyTorch returns an oddly shaped tensor here; the sum over no channels is the bias.
    let tape = Tape::<f64>::new();
    let x = tape.leaf(Tensor::zeros(&[2, 0, 3, 3]).unwrap());
    let w = tape.leaf(Tensor::zeros(&[2, 0, 3, 3]).unwrap());
    let b = tape.leaf(Tensor::from_vec(vec![1.5, -2.0], &[2]).unwrap());
    let y = x
        .conv2d(w, Some(b), Conv2dOptions::default().padding(1))
        .unwrap();
    assert_eq!(y.shape().dims(), &[2, 2, 3, 3]);
    assert!(y.value().data()[..9].iter().all(|&v| v == 1.5));
    let grads = y.sum().unwrap().backward().unwrap();
    assert_eq!(grads.wrt(b).unwrap().data(), &[18.0, 18.0]);
    assert_eq!(grads.wrt(x).unwrap().numel(), 0);
}

// ---------------------------------------------------------------------------------------------
// Pools
// ---------------------------------------------------------------------------------------------

/// Runs a pool on `x` ([1, 1, h, w]) and returns (output, gradient for the seed `g`).
fn pool_run(
    x: Vec<f64>,
    dims: &[usize],
    g: Option<Vec<f64>>,
    pool: impl for<'t> Fn(Var<'t, f64>) -> Result<Var<'t, f64>>,
) -> (Vec<f64>, Vec<usize>, Vec<f64>) {
    let tape = Tape::new();
    let vx = tape.leaf(Tensor::from_vec(x, dims).unwrap());
    let y = pool(vx).unwrap();
    let out = y.value().data().to_vec();
    let seed = match g {
        Some(g) => Tensor::from_vec(g, y.shape().dims()).unwrap(),
        None => Tensor::ones(y.shape().dims()).unwrap(),
    };
    let grads = y.backward_with(BackwardOptions::new().seed(seed)).unwrap();
    (
        out,
        y.shape().dims().to_vec(),
        grads.wrt(vx).unwrap().data().to_vec(),
    )
}

const NAN: f64 = f64::NAN;
const INF: f64 = f64::INFINITY;

fn same(got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!(g == w || (g.is_nan() && w.is_nan()), "{got:?} vs {want:?}");
    }
}

#[test]
fn max_pool_routes_to_the_first_maximum_and_to_the_last_nan() {
    // The input PyTorch was probed with (expected values written out by hand from the rule: a
    // strictly larger value or a NaN replaces the running maximum).
    #[rustfmt::skip]
    let x = vec![
        1.0, 3.0, 3.0, 0.0,
        3.0, 2.0, NAN, 1.0,
        NAN, 5.0, 5.0, 5.0,
        -INF, -INF, -INF, -INF,
    ];
    let (y, dims, dx) = pool_run(x.clone(), &[1, 1, 4, 4], None, |v| {
        v.max_pool2d(MaxPool2dOptions::new(2))
    });
    assert_eq!(dims, [1, 1, 2, 2]);
    same(&y, &[3.0, NAN, NAN, 5.0]);
    // Windows: {1,3,3,2} → the 3 at 1; {3,0,NaN,1} → NaN at 6; {NaN,5,-∞,-∞} → NaN at 8;
    // {5,5,-∞,-∞} → the first 5, at 10.
    #[rustfmt::skip]
    same(&dx, &[
        0.0, 1.0, 0.0, 0.0,
        0.0, 0.0, 1.0, 0.0,
        1.0, 0.0, 1.0, 0.0,
        0.0, 0.0, 0.0, 0.0,
    ]);
    // Overlapping windows (stride 1): positions picked several times collect every gradient.
    let g: Vec<f64> = (1..=9).map(f64::from).collect();
    let (y, _, dx) = pool_run(x.clone(), &[1, 1, 4, 4], Some(g), |v| {
        v.max_pool2d(MaxPool2dOptions::new(2).stride(1))
    });
    same(&y, &[3.0, NAN, NAN, NAN, NAN, NAN, NAN, 5.0, 5.0]);
    // Positions (from PyTorch's indices): [1, 6, 6], [8, 6, 6], [8, 9, 10].
    #[rustfmt::skip]
    same(&dx, &[
        0.0, 1.0, 0.0, 0.0,
        0.0, 0.0, 2.0 + 3.0 + 5.0 + 6.0, 0.0,
        4.0 + 7.0, 8.0, 9.0, 0.0,
        0.0, 0.0, 0.0, 0.0,
    ]);
    // Two NaNs in one window: the last one.
    let (y, _, dx) = pool_run(vec![NAN, 1.0, NAN, 2.0], &[1, 1, 1, 4], None, |v| {
        v.max_pool2d(MaxPool2dOptions::new((1, 4)))
    });
    same(&y, &[NAN]);
    same(&dx, &[0.0, 0.0, 1.0, 0.0]);
}

#[test]
fn max_pool_pads_with_minus_infinity() {
    // All −∞ (as the padding): every window routes to its first position inside the input.
    let (y, dims, dx) = pool_run(vec![-INF; 9], &[1, 1, 3, 3], None, |v| {
        v.max_pool2d(MaxPool2dOptions::new(2).stride(1).padding(1))
    });
    assert_eq!(dims, [1, 1, 4, 4]);
    assert!(y.iter().all(|&v| v == -INF));
    // PyTorch's indices: [0,0,1,2],[0,0,1,2],[3,3,4,5],[6,6,7,8].
    same(&dx, &[4.0, 2.0, 2.0, 2.0, 1.0, 1.0, 2.0, 1.0, 1.0]);
    // Negative values next to the padding still win over it.
    let (y, _, _) = pool_run(vec![-5.0, -6.0, -7.0, -8.0], &[1, 1, 2, 2], None, |v| {
        v.max_pool2d(MaxPool2dOptions::new(2).padding(1))
    });
    same(&y, &[-5.0, -6.0, -7.0, -8.0]);
}

#[test]
fn max_pool_ceil_mode_and_dilation() {
    let x: Vec<f64> = (0..25).map(f64::from).collect();
    let (y, dims, _) = pool_run(x.clone(), &[1, 1, 5, 5], None, |v| {
        v.max_pool2d(MaxPool2dOptions::new(2).ceil_mode(true))
    });
    assert_eq!(dims, [1, 1, 3, 3]);
    same(&y, &[6.0, 8.0, 9.0, 16.0, 18.0, 19.0, 21.0, 23.0, 24.0]);
    let (y, dims, dx) = pool_run(x, &[1, 1, 5, 5], None, |v| {
        v.max_pool2d(MaxPool2dOptions::new(2).stride(1).dilation(3))
    });
    assert_eq!(dims, [1, 1, 2, 2]);
    // Window (i, j) reads rows i, i+3 and columns j, j+3: its maximum is at (i+3, j+3).
    same(&y, &[18.0, 19.0, 23.0, 24.0]);
    assert_eq!(dx.iter().sum::<f64>(), 4.0);
}

#[test]
fn avg_pool_divisors() {
    let x: Vec<f64> = (0..25).map(f64::from).collect();
    // ceil mode with padding counted (values from PyTorch).
    let (y, dims, _) = pool_run(x.clone(), &[1, 1, 5, 5], None, |v| {
        v.avg_pool2d(AvgPool2dOptions::new(2).padding(1).ceil_mode(true))
    });
    assert_eq!(dims, [1, 1, 3, 3]);
    same(&y, &[0.0, 0.75, 1.75, 3.75, 9.0, 11.0, 8.75, 19.0, 21.0]);
    // Without counting the padding, corner windows average their one element.
    let (y, _, dx) = pool_run(x.clone(), &[1, 1, 5, 5], None, |v| {
        v.avg_pool2d(
            AvgPool2dOptions::new(3)
                .stride(2)
                .padding(1)
                .count_include_pad(false),
        )
    });
    // Window (0,0) covers rows 0..2, cols 0..2: {0,1,5,6} / 4.
    assert_eq!(y[0], 3.0);
    assert_eq!(y.len(), 9);
    // Every window spreads 1 over its positions inside the input: the gradient sums to 9.
    assert!((dx.iter().sum::<f64>() - 9.0).abs() < 1e-12);
    let (y, _, dx) = pool_run(x, &[1, 1, 5, 5], None, |v| {
        v.avg_pool2d(AvgPool2dOptions::new(2).divisor_override(Some(3)))
    });
    assert_eq!(y[0], (0.0 + 1.0 + 5.0 + 6.0) / 3.0);
    assert_eq!(dx[0], 1.0 / 3.0);
    assert_eq!(dx[4], 0.0); // the last column is in no window
}

#[test]
fn adaptive_avg_pool_windows() {
    // H = 5 to 3 rows: windows [0,2), [1,4), [3,5) (overlapping), as PyTorch.
    let x: Vec<f64> = (0..10).map(f64::from).collect(); // [1, 1, 5, 2]
    let (y, dims, dx) = pool_run(x, &[1, 1, 5, 2], None, |v| v.adaptive_avg_pool2d((3, 1)));
    assert_eq!(dims, [1, 1, 3, 1]);
    same(&y, &[1.5, 4.5, 7.5]);
    let (a, b, c) = (1.0 / 4.0, 1.0 / 6.0, 1.0 / 4.0);
    same(&dx, &[a, a, a + b, a + b, b, b, b + c, b + c, c, c]);
    // Larger output than input: windows repeat elements.
    let (y, dims, _) = pool_run(vec![1.0, 2.0], &[1, 1, 1, 2], None, |v| {
        v.adaptive_avg_pool2d((2, 3))
    });
    assert_eq!(dims, [1, 1, 2, 3]);
    same(&y, &[1.0, 1.5, 2.0, 1.0, 1.5, 2.0]);
}

#[test]
fn pools_gradcheck_and_gradgradcheck() {
    type Pool = for<'t> fn(Var<'t, f64>) -> Result<Var<'t, f64>>;
    let pools: Vec<(&str, Vec<usize>, Pool)> = vec![
        ("max 2", vec![2, 3, 4, 5], |v| {
            v.max_pool2d(MaxPool2dOptions::new(2))
        }),
        ("max 3 s2 p1", vec![1, 2, 5, 5], |v| {
            v.max_pool2d(MaxPool2dOptions::new(3).stride(2).padding(1))
        }),
        ("max dil ceil", vec![1, 2, 7, 6], |v| {
            v.max_pool2d(
                MaxPool2dOptions::new((2, 3))
                    .stride((2, 1))
                    .dilation((2, 1))
                    .padding((1, 1))
                    .ceil_mode(true),
            )
        }),
        ("max batch 0", vec![0, 2, 4, 4], |v| {
            v.max_pool2d(MaxPool2dOptions::new(2))
        }),
        ("max unbatched", vec![2, 4, 4], |v| {
            v.max_pool2d(MaxPool2dOptions::new(2).stride(1))
        }),
        ("avg 2", vec![2, 3, 4, 5], |v| {
            v.avg_pool2d(AvgPool2dOptions::new(2))
        }),
        ("avg 3 s2 p1 no pad", vec![1, 2, 5, 6], |v| {
            v.avg_pool2d(
                AvgPool2dOptions::new(3)
                    .stride(2)
                    .padding(1)
                    .count_include_pad(false),
            )
        }),
        ("avg ceil", vec![1, 2, 6, 6], |v| {
            v.avg_pool2d(AvgPool2dOptions::new(3).stride(2).ceil_mode(true))
        }),
        ("avg batch 0", vec![0, 1, 3, 3], |v| {
            v.avg_pool2d(AvgPool2dOptions::new(2))
        }),
        ("adaptive", vec![2, 2, 5, 7], |v| {
            v.adaptive_avg_pool2d((3, 4))
        }),
        ("adaptive up", vec![1, 2, 2, 3], |v| {
            v.adaptive_avg_pool2d((3, 5))
        }),
        ("adaptive global", vec![2, 3, 4, 4], |v| {
            v.adaptive_avg_pool2d(1)
        }),
    ];
    for (k, (name, dims, pool)) in pools.into_iter().enumerate() {
        // Distinct values (a permutation, spread out) keep every max away from a tie.
        let n: usize = dims.iter().product();
        let mut values: Vec<f64> = (0..n).map(|i| i as f64 * 0.37).collect();
        let mut rng = Pcg64::seed_from_u64(k as u64);
        use rand::seq::SliceRandom;
        values.shuffle(&mut rng);
        let x = Tensor::from_vec(values, &dims).unwrap();
        let f = checked_fn(move |_, v, _| pool(v[0]));
        if let Err(e) = gradcheck(f, std::slice::from_ref(&x), &opts()) {
            panic!("{name}: {e}");
        }
        if let Err(e) = gradgradcheck(f, std::slice::from_ref(&x), &opts()) {
            panic!("{name}: {e}");
        }
    }
}

#[test]
fn pool_errors() {
    let tape = Tape::<f32>::new();
    let x = tape.constant(Tensor::zeros(&[2, 3, 5, 5]).unwrap());
    let e = x
        .max_pool2d(MaxPool2dOptions::new(2).padding(2))
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::InvalidArgument {
                op: "max_pool2d",
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("at most half"), "{e}");
    let e = x.max_pool2d(MaxPool2dOptions::new(6)).unwrap_err();
    assert!(e.to_string().contains("leaves no output"), "{e}");
    for (name, o) in [
        ("kernel_size", MaxPool2dOptions::new((0, 2))),
        ("stride", MaxPool2dOptions::new(2).stride(0)),
        ("dilation", MaxPool2dOptions::new(2).dilation((1, 0))),
    ] {
        let e = x.max_pool2d(o).unwrap_err();
        assert!(
            matches!(e, Error::InvalidHyperparameter { name: n, .. } if n == name),
            "{e}"
        );
    }
    let e = x
        .avg_pool2d(AvgPool2dOptions::new(2).divisor_override(Some(0)))
        .unwrap_err();
    assert!(matches!(e, Error::InvalidHyperparameter { .. }), "{e}");
    let e = x
        .avg_pool2d(AvgPool2dOptions::new(3).padding(2))
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::InvalidArgument {
                op: "avg_pool2d",
                ..
            }
        ),
        "{e}"
    );
    let flat = tape.constant(Tensor::zeros(&[5, 5]).unwrap());
    for e in [
        flat.max_pool2d(MaxPool2dOptions::new(2)).unwrap_err(),
        flat.avg_pool2d(AvgPool2dOptions::new(2)).unwrap_err(),
        flat.adaptive_avg_pool2d(2).unwrap_err(),
    ] {
        assert!(matches!(e, Error::BadRank { .. }), "{e}");
        assert!(e.to_string().contains("[5, 5]"), "{e}");
    }
    let no_channels = tape.constant(Tensor::zeros(&[2, 0, 4, 4]).unwrap());
    assert!(no_channels.max_pool2d(MaxPool2dOptions::new(2)).is_err());
    assert_eq!(
        no_channels.adaptive_avg_pool2d(2).unwrap().shape().dims(),
        &[2, 0, 2, 2]
    );
    let empty_plane = tape.constant(Tensor::zeros(&[2, 1, 0, 4]).unwrap());
    assert!(matches!(
        empty_plane.adaptive_avg_pool2d(2),
        Err(Error::InvalidArgument { .. })
    ));
}

#[test]
fn empty_batches_of_enormous_planes_are_fine() {
    // Nothing is allocated for them, and nothing may be tabulated per row or column either.
    let huge = 1usize << 30; // planes of 2^60 elements
    let tape = Tape::<f32>::new();
    let x = tape.leaf(Tensor::zeros(&[0, 1, huge, huge]).unwrap());
    let w = tape.leaf(Tensor::zeros(&[2, 1, 3, 3]).unwrap());
    let y = x.conv2d(w, None, Conv2dOptions::default()).unwrap();
    assert_eq!(y.shape().dims(), &[0, 2, huge - 2, huge - 2]);
    let grads = y
        .sum()
        .unwrap()
        .backward_with(BackwardOptions::new().retain_graph(true))
        .unwrap();
    assert_eq!(grads.wrt(w).unwrap().data(), &[0.0; 18]);
    let m = x.max_pool2d(MaxPool2dOptions::new(2)).unwrap();
    assert_eq!(m.shape().dims(), &[0, 1, huge / 2, huge / 2]);
    let a = x.avg_pool2d(AvgPool2dOptions::new(2)).unwrap();
    assert_eq!(a.shape().dims(), &[0, 1, huge / 2, huge / 2]);
    let g = x.adaptive_avg_pool2d(huge).unwrap();
    assert_eq!(g.shape().dims(), &[0, 1, huge, huge]);
    let total = m.sum().unwrap().add(a.sum().unwrap()).unwrap();
    let total = total.add(g.sum().unwrap()).unwrap();
    assert_eq!(total.backward().unwrap().wrt(x).unwrap().numel(), 0);
    // A plane whose size overflows is an error, not a wrap-around.
    let x = tape.constant(Tensor::zeros(&[0, 1, usize::MAX, 2]).unwrap());
    assert!(matches!(
        x.max_pool2d(MaxPool2dOptions::new(1)),
        Err(Error::ShapeOverflow { .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// Thread independence
// ---------------------------------------------------------------------------------------------

#[test]
fn results_do_not_depend_on_the_thread_count() {
    // Large enough for the parallel paths: several image blocks, more than 2^20 multiply-adds.
    let run = |threads: usize| -> Vec<Vec<u32>> {
        tapegrad::set_num_threads(threads);
        let mut rng = Pcg64::seed_from_u64(5);
        let x = Tensor::<f32>::normal(&[37, 3, 20, 20], 0.0, 1.0, &mut rng).unwrap();
        let w = Tensor::<f32>::normal(&[16, 3, 3, 3], 0.0, 1.0, &mut rng).unwrap();
        let b = Tensor::<f32>::normal(&[16], 0.0, 1.0, &mut rng).unwrap();
        let tape = Tape::new();
        let (vx, vw, vb) = (tape.leaf(x), tape.leaf(w), tape.leaf(b));
        let y = vx
            .conv2d(vw, Some(vb), Conv2dOptions::default().padding(1))
            .unwrap()
            .max_pool2d(MaxPool2dOptions::new(2))
            .unwrap()
            .avg_pool2d(AvgPool2dOptions::new(2))
            .unwrap();
        let loss = y.mul(y).unwrap().sum().unwrap();
        let grads = loss.backward().unwrap();
        [vx, vw, vb]
            .iter()
            .map(|&v| {
                grads
                    .wrt(v)
                    .unwrap()
                    .data()
                    .iter()
                    .map(|g| g.to_bits())
                    .collect()
            })
            .collect()
    };
    let one = run(1);
    let two = run(2);
    tapegrad::set_num_threads(0);
    assert_eq!(one, two);
}

// ---------------------------------------------------------------------------------------------
// PyTorch golden values
// ---------------------------------------------------------------------------------------------

/// Reads the cases of `tests/golden/ops_conv.safetensors`: for each case `name`, the tensors
/// `name.x`, `name.w`, (`name.b`), `name.g`, `name.y`, `name.dx`, (`name.dw`, `name.db`) in f32 and
/// f64 (suffix `.f32` / `.f64`), and the op's settings in `name.cfg` (i64).
#[test]
fn pytorch_golden_values() {
    let golden = Golden::open("ops_conv.safetensors");
    let names = golden.names();
    let cases: Vec<String> = names
        .iter()
        .filter_map(|n| n.strip_suffix(".cfg").map(str::to_string))
        .collect();
    assert!(cases.len() >= 10, "{} cases", cases.len());
    for case in &cases {
        check_golden::<f64>(&golden, case, "f64", 1e-12, 1e-12);
        check_golden::<f32>(&golden, case, "f32", 1e-5, 1e-6);
    }
}

trait GoldenFloat: tapegrad::Float {
    fn read(golden: &Golden, name: &str) -> Tensor<Self>;
}

impl GoldenFloat for f32 {
    fn read(golden: &Golden, name: &str) -> Tensor<f32> {
        golden.f32(name)
    }
}

impl GoldenFloat for f64 {
    fn read(golden: &Golden, name: &str) -> Tensor<f64> {
        golden.f64(name)
    }
}

fn check_golden<T: GoldenFloat>(golden: &Golden, case: &str, dtype: &str, rtol: f64, atol: f64) {
    let get = |t: &str| T::read(golden, &format!("{case}.{t}.{dtype}"));
    let has = |t: &str| golden.has(&format!("{case}.{t}.{dtype}"));
    let cfg = golden.i64(&format!("{case}.cfg"));
    let pair = |i: usize| (cfg[i] as usize, cfg[i + 1] as usize);
    let tape = Tape::<T>::new();
    let x = tape.leaf(get("x"));
    let w = has("w").then(|| tape.leaf(get("w")));
    let b = has("b").then(|| tape.leaf(get("b")));
    let kind = case.split('_').next().unwrap();
    let y = match kind {
        "conv2d" => x.conv2d(
            w.unwrap(),
            b,
            Conv2dOptions::default()
                .stride(pair(0))
                .padding(pair(2))
                .dilation(pair(4))
                .groups(cfg[6] as usize),
        ),
        "conv1d" => x.conv1d(
            w.unwrap(),
            b,
            Conv1dOptions::default()
                .stride(cfg[0] as usize)
                .padding(cfg[1] as usize)
                .dilation(cfg[2] as usize)
                .groups(cfg[3] as usize),
        ),
        "maxpool" => x.max_pool2d(
            MaxPool2dOptions::new(pair(0))
                .stride(pair(2))
                .padding(pair(4))
                .dilation(pair(6))
                .ceil_mode(cfg[8] != 0),
        ),
        "avgpool" => x.avg_pool2d(
            AvgPool2dOptions::new(pair(0))
                .stride(pair(2))
                .padding(pair(4))
                .ceil_mode(cfg[6] != 0)
                .count_include_pad(cfg[7] != 0)
                .divisor_override((cfg[8] > 0).then_some(cfg[8] as usize)),
        ),
        "adaptive" => x.adaptive_avg_pool2d(pair(0)),
        other => panic!("unknown golden case kind {other}"),
    }
    .unwrap_or_else(|e| panic!("{case} {dtype}: {e}"));
    let close = |what: &str, got: &Tensor<T>, want: &Tensor<T>| {
        assert_eq!(got.dims(), want.dims(), "{case} {dtype} {what}");
        for (i, (&g, &w)) in got.data().iter().zip(want.data()).enumerate() {
            let (g, w) = (g.to_f64(), w.to_f64());
            assert!(
                (g - w).abs() <= atol + rtol * w.abs(),
                "{case} {dtype} {what}[{i}]: got {g}, PyTorch {w}"
            );
        }
    };
    close("y", &y.value(), &get("y"));
    let grads = y
        .backward_with(BackwardOptions::new().seed(get("g")))
        .unwrap();
    close("dx", grads.wrt(x).unwrap(), &get("dx"));
    if let Some(w) = w {
        close("dw", grads.wrt(w).unwrap(), &get("dw"));
    }
    if let Some(b) = b {
        close("db", grads.wrt(b).unwrap(), &get("db"));
    }
}
