//! Every bad input returns its typed error, naming the op and the shapes — never a panic.

use tapegrad::{BackwardOptions, Error, Shape, Tape, Tensor};

fn t(dims: &[usize]) -> Tensor<f32> {
    Tensor::ones(dims).unwrap()
}

#[test]
fn shape_mismatch_in_every_binary_op() {
    let tape = Tape::new();
    let (a, b) = (tape.leaf(t(&[3, 4])), tape.leaf(t(&[5])));
    for (name, result) in [
        ("add", a.add(b)),
        ("sub", a.sub(b)),
        ("mul", a.mul(b)),
        ("div", a.div(b)),
    ] {
        let err = result.unwrap_err();
        assert!(
            matches!(&err, Error::ShapeMismatch { op, lhs, rhs } if *op == name && lhs.dims() == [3, 4] && rhs.dims() == [5]),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!("{name}: incompatible shapes [3, 4] and [5]")
        );
    }
}

#[test]
fn non_broadcastable_bias() {
    let tape = Tape::new();
    let h = tape.leaf(t(&[128, 64]));
    let bias = tape.leaf(t(&[2, 64]));
    assert!(matches!(
        h.add(bias),
        Err(Error::ShapeMismatch { op: "add", .. })
    ));
}

#[test]
fn matmul_errors_name_both_shapes() {
    let tape = Tape::new();
    let x = tape.constant(t(&[128, 20]));
    let err = x.matmul(tape.leaf(t(&[64, 5]))).unwrap_err();
    assert_eq!(
        err.to_string(),
        "matmul: incompatible shapes [128, 20] and [64, 5]"
    );
    // A vector is a column on the right (torch.matmul); a scalar has no axis to multiply.
    assert_eq!(
        x.matmul(tape.leaf(t(&[20]))).unwrap().shape().dims(),
        &[128]
    );
    let err = x.matmul(tape.leaf(Tensor::scalar(1.0))).unwrap_err();
    assert!(
        matches!(err, Error::BadRank { op: "matmul", .. }),
        "{err:?}"
    );
}

#[test]
fn labels_out_of_range_negative_and_wrong_count() {
    let tape = Tape::new();
    let logits = tape.leaf(t(&[3, 5]));
    let err = logits.cross_entropy(&[0, 5, 1]).unwrap_err();
    assert!(matches!(
        err,
        Error::LabelOutOfRange {
            op: "cross_entropy",
            position: 1,
            label: 5,
            classes: 5
        }
    ));
    assert_eq!(
        err.to_string(),
        "cross_entropy: label 5 at position 1 is out of range for 5 classes"
    );
    assert!(matches!(
        logits.nll(&[0i32, -1, 1]),
        Err(Error::LabelOutOfRange {
            op: "nll",
            label: -1,
            ..
        })
    ));
    assert!(matches!(
        logits.nll(&[0u64, u64::MAX, 1]),
        Err(Error::LabelOutOfRange {
            label: i64::MAX,
            ..
        })
    ));
    assert!(matches!(
        logits.cross_entropy(&[0, 1]),
        Err(Error::LabelCount {
            labels: 2,
            batch: 3,
            ..
        })
    ));
}

#[test]
fn losses_want_a_non_empty_batch_with_a_class_axis() {
    let tape = Tape::new();
    let empty = tape.leaf(t(&[0, 5]));
    let labels: [usize; 0] = [];
    assert!(matches!(
        empty.cross_entropy(&labels),
        Err(Error::EmptyBatch { .. })
    ));
    // One sample of 5 classes ([C], as PyTorch accepts) takes one label; a scalar has no classes.
    let flat = tape.leaf(t(&[5]));
    assert!(flat.nll(&[1]).is_ok());
    assert!(matches!(
        flat.nll(&[1, 2]),
        Err(Error::LabelCount { op: "nll", .. })
    ));
    assert!(matches!(
        tape.leaf(Tensor::scalar(1.0)).nll(&[0]),
        Err(Error::BadRank { op: "nll", .. })
    ));
    let scalar = tape.leaf(Tensor::scalar(1.0));
    assert!(matches!(
        scalar.log_softmax(),
        Err(Error::BadRank {
            op: "log_softmax",
            ..
        })
    ));
}

#[test]
fn shapes_that_overflow_or_disagree_with_their_data() {
    assert!(matches!(
        Tensor::<f32>::zeros(&[usize::MAX, 3]),
        Err(Error::ShapeOverflow { .. })
    ));
    assert!(matches!(
        Shape::new(&[1 << 40, 1 << 40]),
        Err(Error::ShapeOverflow { .. })
    ));
    assert!(matches!(
        Tensor::from_vec(vec![1.0f32; 5], &[2, 3]),
        Err(Error::DataLength {
            expected: 6,
            got: 5,
            ..
        })
    ));
    let tape = Tape::new();
    let x = tape.leaf(t(&[2, 3]));
    assert!(matches!(x.reshape(&[4, 2]), Err(Error::Reshape { .. })));
    assert!(matches!(
        x.reshape(&[usize::MAX, 2]),
        Err(Error::ShapeOverflow { .. })
    ));
    assert!(matches!(
        x.sum_axis(2, false),
        Err(Error::AxisOutOfRange { axis: 2, .. })
    ));
    assert!(matches!(
        x.transpose(0, -3),
        Err(Error::AxisOutOfRange { axis: -3, .. })
    ));
    assert!(matches!(
        tape.leaf(t(&[2, 3, 4])).t(),
        Err(Error::BadRank { op: "t", .. })
    ));
    assert!(matches!(
        t(&[2, 3]).get(&[2, 0]),
        Err(Error::IndexOutOfBounds { .. })
    ));
    assert!(matches!(
        t(&[2, 3]).item(),
        Err(Error::BadRank { op: "item", .. })
    ));
}

#[test]
fn backward_on_a_non_scalar_needs_a_seed_of_the_right_shape() {
    let tape = Tape::new();
    let y = tape.leaf(t(&[2, 3])).exp().unwrap();
    assert!(matches!(y.backward(), Err(Error::NonScalarLoss { .. })));
    let wrong = BackwardOptions::new().seed(t(&[3, 2])).retain_graph(false);
    assert!(matches!(
        y.backward_with(wrong),
        Err(Error::SeedShape { .. })
    ));
    let right = BackwardOptions::new().seed(t(&[2, 3])).retain_graph(false);
    assert!(y.backward_with(right).is_ok());
}

#[test]
fn backward_twice_unless_retained() {
    let tape = Tape::new();
    let x = tape.leaf(t(&[3]));
    let loss = x.exp().unwrap().sum().unwrap();
    let kept = loss
        .backward_with(BackwardOptions::new().retain_graph(true))
        .unwrap();
    let again = loss.backward().unwrap();
    assert_eq!(kept.wrt(x).unwrap(), again.wrt(x).unwrap());
    assert!(matches!(loss.backward(), Err(Error::BackwardTwice)));
}

#[test]
fn vars_from_another_tape() {
    let (tape_a, tape_b) = (Tape::new(), Tape::new());
    let a = tape_a.leaf(t(&[2]));
    let b = tape_b.leaf(t(&[2]));
    assert!(matches!(a.add(b), Err(Error::ForeignVar { op: "add" })));
    assert!(matches!(
        a.matmul(b),
        Err(Error::ForeignVar { op: "matmul" })
    ));
    let grads = a.sum().unwrap().backward().unwrap();
    assert!(matches!(grads.wrt(b), Err(Error::ForeignVar { .. })));
    assert!(grads.get(b).is_none());
    assert!(matches!(
        tape_a.push_op("custom", t(&[2]), &[b], NoOp),
        Err(Error::ForeignVar { op: "custom" })
    ));
}

#[test]
fn after_a_reset_old_gradients_do_not_match_new_vars() {
    let mut tape = Tape::new();
    let grads = {
        let x = tape.leaf(t(&[2]));
        x.sum().unwrap().backward().unwrap()
    };
    tape.reset();
    let y = tape.leaf(t(&[2]));
    assert!(matches!(grads.wrt(y), Err(Error::ForeignVar { .. })));
}

#[test]
fn nothing_requiring_a_gradient() {
    let tape = Tape::new();
    let loss = tape.constant(t(&[3])).sum().unwrap();
    assert!(matches!(loss.backward(), Err(Error::NoGradRequired)));
    let no_grad = Tape::no_grad();
    let loss = no_grad.leaf(t(&[3])).sum().unwrap();
    assert!(matches!(loss.backward(), Err(Error::NoGradRequired)));
}

#[test]
fn a_value_that_does_not_reach_the_loss_has_no_gradient() {
    let tape = Tape::new();
    let (x, unused) = (tape.leaf(t(&[2])), tape.leaf(t(&[2])));
    let grads = x.sum().unwrap().backward().unwrap();
    assert!(matches!(grads.wrt(unused), Err(Error::NoGradient { .. })));
}

#[derive(Debug)]
struct NoOp;
impl tapegrad::ops::Backward<f32> for NoOp {
    fn backward(
        &self,
        _: &tapegrad::ops::BackwardCx<'_, f32>,
        _: &Tensor<f32>,
    ) -> tapegrad::Result<tapegrad::ops::InputGrads<f32>> {
        Ok(Default::default())
    }
    fn backward_graph<'t>(
        &self,
        _: &tapegrad::ops::GraphCx<'t, f32>,
        _: tapegrad::Var<'t, f32>,
    ) -> tapegrad::Result<tapegrad::ops::InputVars<'t, f32>> {
        Ok(Default::default())
    }
}
