//! Every tool of docs/gradcheck.md run once, printing the outputs the guide shows, and writing the
//! heat map of a planted bug to docs/img/gradcheck-heatmap.svg.
//!
//! Run: `cargo run --release --example gradcheck_guide`

use rand::SeedableRng;
use rand_pcg::Pcg64;
use tapegrad::functional::{hessian, jacobian, jvp, vjp};
use tapegrad::gradcheck::{
    Difference, ManualCheckOptions, ModuleCheckOptions, check_manual_gradients, gradcheck_module,
};
use tapegrad::lesson::{LessonConfig, check_manual_step, manual_step};
use tapegrad::nn::{Dropout, Linear, ReLU, Sequential};
use tapegrad::ops::{Backward, BackwardCx, GraphCx, InputGrads, InputVars};
use tapegrad::{Error, GradcheckOptions, Result, Tensor, Var, gradcheck};

/// y = x·W with a planted bug: dW is transposed.
#[derive(Debug)]
struct TransposedMatmul;

impl Backward<f64> for TransposedMatmul {
    fn backward(&self, cx: &BackwardCx<'_, f64>, g: &Tensor<f64>) -> Result<InputGrads<f64>> {
        let (x, w) = (cx.input(0), cx.input(1));
        let dw = x.t_matmul(g)?.transpose(0, 1)?; // the bug: should be xᵀ·g
        Ok([Some(g.matmul_t(w)?), Some(dw)].into_iter().collect())
    }
    fn backward_graph<'t>(
        &self,
        cx: &GraphCx<'t, f64>,
        g: Var<'t, f64>,
    ) -> Result<InputVars<'t, f64>> {
        let (x, w) = (cx.input(0), cx.input(1));
        Ok([Some(g.matmul(w.t()?)?), Some(x.t()?.matmul(g)?.t()?)]
            .into_iter()
            .collect())
    }
}

fn main() -> Result<()> {
    println!("== gradcheck with the kink diagnosis ==");
    let x = Tensor::from_vec(vec![2e-7, 1.5, -0.8], &[3])?;
    let report = gradcheck(
        |_, v, _| v[0].relu()?.sum(),
        &[x],
        &GradcheckOptions::default(),
    )?;
    println!("{report}");

    println!("== a badly scaled input: fixed step against the step sweep ==");
    let x = Tensor::from_vec(vec![1e12], &[1])?;
    fn f<'t>(
        _: &'t tapegrad::Tape<f64>,
        v: &[Var<'t, f64>],
        _: &mut Pcg64,
    ) -> Result<Var<'t, f64>> {
        v[0].mul_scalar(1e-12)?.sin()?.mul_scalar(1e12)?.sum()
    }
    match gradcheck(f, std::slice::from_ref(&x), &GradcheckOptions::default()) {
        Err(Error::GradcheckFailed(r)) => println!("{r}"),
        other => println!("{other:?}"),
    }
    let auto = GradcheckOptions {
        scheme: Difference::Auto,
        ..GradcheckOptions::default()
    };
    println!("{}", gradcheck(f, &[x], &auto)?);

    println!("== functional ==");
    let x = Tensor::from_vec(vec![0.5, -1.0], &[2])?;
    let w = Tensor::from_vec(vec![1.0, 2.0, -0.5, 0.3, 0.0, 1.5], &[2, 3])?;
    let j = jacobian(
        |_, v| Ok(vec![v[0].matmul(v[1])?.tanh()?]),
        &[x.clone(), w.clone()],
    )?;
    println!("J wrt x {:?}: {:.4?}", j[0][0].dims(), j[0][0].data());
    let h = hessian(
        |_, v| Ok(vec![v[0].mul(v[0])?.mul(v[0])?.sum()?]),
        std::slice::from_ref(&x),
    )?;
    println!("H {:?}: {:?}", h[0][0].dims(), h[0][0].data());
    let u = Tensor::from_vec(vec![1.0, 0.0, -1.0], &[3])?;
    let (_, vj) = vjp(
        |_, v| Ok(vec![v[0].matmul(v[1])?]),
        &[x.clone(), w.clone()],
        &[u],
    )?;
    println!("vjp: {:?} {:?}", vj[0].data(), vj[1].data());
    let dx = Tensor::from_vec(vec![1.0, 0.0], &[2])?;
    let dw = Tensor::zeros(&[2, 3])?;
    let (_, jv) = jvp(|_, v| Ok(vec![v[0].matmul(v[1])?]), &[x, w], &[dx, dw])?;
    println!("jvp: {:?}", jv[0].data());

    println!("\n== gradcheck_module on an f32 model ==");
    let mut rng = Pcg64::seed_from_u64(0);
    let model = Sequential::new()
        .push(Linear::<f32>::new(4, 8, &mut rng)?)
        .push(ReLU)
        .push(Dropout::new(0.5)?)
        .push(Linear::new(8, 3, &mut rng)?);
    let x = Tensor::<f32>::normal(&[5, 4], 0.0, 1.0, &mut rng)?;
    let labels = [0usize, 1, 2, 1, 0];
    let options = ModuleCheckOptions {
        full_up_to: 16, // the weights by projection, the biases in full
        ..ModuleCheckOptions::default()
    };
    println!(
        "{}",
        gradcheck_module(&model, &x, |y| y.cross_entropy(&labels), &options)?
    );

    println!("== check_manual_gradients: the lesson, then a planted bug ==");
    let (data, weights) = LessonConfig {
        n: 32,
        ..LessonConfig::default()
    }
    .generate::<f64>()?;
    println!(
        "{}",
        check_manual_step(&data, &weights, 0.5, &ManualCheckOptions::default())?
    );
    // The same hand-derived step with a planted bug: the sign of dW2 flipped.
    let params: Vec<Tensor<f64>> = weights.tensors().into_iter().cloned().collect();
    let report = check_manual_gradients(
        |p, rng| {
            let w = tapegrad::lesson::MlpWeights {
                w1: p[0].clone(),
                b1: p[1].clone(),
                w2: p[2].clone(),
                b2: p[3].clone(),
            };
            let step = manual_step(&data, &w, 0.5, rng)?;
            let g = step.grads;
            let w2 = g.w2.map(|v| -v)?;
            Ok((step.loss, vec![g.w1, g.b1, w2, g.b2]))
        },
        |tape, v, rng| {
            let x = tape.constant(data.x.clone());
            let hidden = x.matmul(v[0])?.add(v[1])?.relu()?.dropout(0.5, rng)?;
            hidden.matmul(v[2])?.add(v[3])?.cross_entropy(&data.labels)
        },
        &["w1", "b1", "w2", "b2"],
        &params,
        &ManualCheckOptions::default(),
    )?;
    println!("{report}");

    println!("== the heat map of a transposed matrix ==");
    let x = Tensor::normal(&[3, 4], 0.0, 1.0, &mut rng)?;
    let w = Tensor::normal(&[4, 4], 0.0, 1.0, &mut rng)?;
    let result = gradcheck(
        |tape, v, _| {
            let value = v[0].value().matmul(&v[1].value())?;
            tape.push_op("transposed_matmul", value, &[v[0], v[1]], TransposedMatmul)
        },
        &[x, w],
        &GradcheckOptions::default(),
    );
    let Err(Error::GradcheckFailed(report)) = result else {
        panic!("the planted bug passed");
    };
    println!("{report}");
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/img/gradcheck-heatmap.svg"
    );
    std::fs::write(path, report.heatmap_svg()?).map_err(|e| Error::InvalidArgument {
        op: "gradcheck_guide",
        reason: e.to_string(),
    })?;
    println!("wrote {path}");
    let json = report.to_json();
    println!(
        "JSON: passed {}, input 1 worst {}",
        json["passed"], json["inputs"][1]["worst"]
    );
    Ok(())
}
