//! Misusing the tape gives a typed error (or the right answer), never a panic or a silent lie.

use std::cell::RefCell;
use std::rc::Rc;

use smallvec::smallvec;
use tapegrad::ops::{Backward, BackwardCx, GraphCx, InputGrads, InputVars};
use tapegrad::{Error, Param, Result, Tape, Tensor, Var};

thread_local! {
    /// A tape a backward rule can reach without holding it (rules are `'static + Send + Sync`).
    static SHARED: RefCell<Option<Rc<Tape<f64>>>> = const { RefCell::new(None) };
}

/// y = 2x, whose plain backward rule also records a node on the shared tape.
#[derive(Debug)]
struct RecordsWhileWalked;

impl Backward<f64> for RecordsWhileWalked {
    fn backward(&self, _: &BackwardCx<'_, f64>, g: &Tensor<f64>) -> Result<InputGrads<f64>> {
        SHARED.with(|t| {
            let tape = t.borrow();
            let tape = tape.as_ref().expect("set by the test");
            let c = tape.constant(Tensor::scalar(1.0));
            c.exp().map(|_| ())
        })?;
        Ok(smallvec![Some(g.map(|v| 2.0 * v)?)])
    }

    fn backward_graph<'t>(
        &self,
        _: &GraphCx<'t, f64>,
        g: Var<'t, f64>,
    ) -> Result<InputVars<'t, f64>> {
        Ok(smallvec![Some(g.mul_scalar(2.0)?)])
    }
}

#[test]
fn a_rule_may_record_on_the_tape_being_walked() {
    let tape = Rc::new(Tape::<f64>::new());
    SHARED.with(|t| *t.borrow_mut() = Some(Rc::clone(&tape)));
    let x = tape.leaf(Tensor::from_vec(vec![1.0, 2.0], &[2]).unwrap());
    let y = tape
        .push_op(
            "double",
            x.value().map(|v| 2.0 * v).unwrap(),
            &[x],
            RecordsWhileWalked,
        )
        .unwrap();
    let before = tape.len();
    let grads = y.sum().unwrap().backward().unwrap();
    assert_eq!(grads.wrt(x).unwrap().data(), &[2.0, 2.0]);
    assert!(tape.len() > before, "the rule's nodes were recorded");
    SHARED.with(|t| *t.borrow_mut() = None);
}

/// y = x², whose recorded backward starts a nested (releasing) backward of the same tape.
#[derive(Debug)]
struct NestedBackward;

impl Backward<f64> for NestedBackward {
    fn backward(&self, cx: &BackwardCx<'_, f64>, g: &Tensor<f64>) -> Result<InputGrads<f64>> {
        Ok(smallvec![Some(
            g.zip_map(cx.input(0), "sq", |g, x| 2.0 * g * x)?
        )])
    }

    fn backward_graph<'t>(
        &self,
        cx: &GraphCx<'t, f64>,
        g: Var<'t, f64>,
    ) -> Result<InputVars<'t, f64>> {
        // Misuse: a plain backward (which would release the saved state) in the middle of a walk.
        let _nested = cx.input(0).sum()?.backward()?;
        Ok(smallvec![Some(g.mul(cx.input(0).mul_scalar(2.0)?)?)])
    }
}

#[test]
fn a_nested_releasing_backward_is_an_error_not_a_wrong_answer() {
    let tape = Tape::<f64>::new();
    let x = tape.leaf(Tensor::from_vec(vec![3.0], &[1]).unwrap());
    let y = tape
        .push_op(
            "square",
            x.value().map(|v| v * v).unwrap(),
            &[x],
            NestedBackward,
        )
        .unwrap();
    let z = y.mul(y).unwrap().sum().unwrap(); // x⁴
    let err = z.backward_graph(None).unwrap_err();
    assert!(matches!(err, Error::BackwardInProgress), "{err}");
    // The tape is intact: a correct second derivative is still available. d²(x⁴)/dx² = 12x².
    let tape = Tape::<f64>::new();
    let x = tape.leaf(Tensor::from_vec(vec![3.0], &[1]).unwrap());
    let z = x
        .mul(x)
        .unwrap()
        .mul(x)
        .unwrap()
        .mul(x)
        .unwrap()
        .sum()
        .unwrap();
    let dz = z.backward_graph(None).unwrap().wrt(x).unwrap();
    let d2 = dz.sum().unwrap().backward().unwrap();
    assert_eq!(d2.wrt(x).unwrap().data(), &[108.0]);
}

/// A rule for a two-input op that returns one gradient.
#[derive(Debug)]
struct ShortList;

impl Backward<f64> for ShortList {
    fn backward(&self, _: &BackwardCx<'_, f64>, g: &Tensor<f64>) -> Result<InputGrads<f64>> {
        Ok(smallvec![Some(g.try_clone()?)])
    }

    fn backward_graph<'t>(
        &self,
        _: &GraphCx<'t, f64>,
        g: Var<'t, f64>,
    ) -> Result<InputVars<'t, f64>> {
        Ok(smallvec![Some(g)])
    }
}

#[test]
fn a_rule_returning_too_few_gradients_is_an_error() {
    for graph in [false, true] {
        let tape = Tape::<f64>::new();
        let a = tape.leaf(Tensor::from_vec(vec![1.0], &[1]).unwrap());
        let b = tape.leaf(Tensor::from_vec(vec![2.0], &[1]).unwrap());
        let sum = a.value().zip_map(&b.value(), "add", |x, y| x + y).unwrap();
        let y = tape.push_op("short", sum, &[a, b], ShortList).unwrap();
        let loss = y.sum().unwrap();
        let err = if graph {
            loss.backward_graph(None).map(|_| ()).unwrap_err()
        } else {
            loss.backward().map(|_| ()).unwrap_err()
        };
        assert!(
            matches!(
                err,
                Error::ArgumentCount {
                    op: "short",
                    expected: 2,
                    got: 1,
                    ..
                }
            ),
            "{err}"
        );
    }
}

#[test]
fn anomaly_mode_also_watches_the_recorded_backward() {
    // A NaN in the forward pass.
    let tape = Tape::<f64>::new();
    tape.detect_anomalies(true);
    let x = tape.leaf(Tensor::from_vec(vec![-1.0, 2.0], &[2]).unwrap());
    let loss = x.log().unwrap().sum().unwrap();
    assert!(matches!(
        loss.backward_graph(None),
        Err(Error::Anomaly {
            op: "log",
            phase: "forward",
            ..
        })
    ));
    // A gradient that becomes infinite in the recorded backward: d/dx log(x) at x = 0.
    let tape = Tape::<f64>::new();
    let x = tape.leaf(Tensor::from_vec(vec![0.0], &[1]).unwrap());
    let y = x.log().unwrap().mul_scalar(0.0).unwrap().sum().unwrap();
    tape.detect_anomalies(true);
    let err = y.backward_graph(None).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Anomaly {
                op: "log",
                phase: "backward",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_parameter_changed_between_two_recordings_is_not_stale() {
    let w = Param::new("w", Tensor::from_vec(vec![2.0f64], &[1]).unwrap());
    let tape = Tape::new();
    let first = tape.param(&w);
    assert_eq!(tape.param(&w).id(), first.id(), "unchanged: the same node");
    w.update(|t| t.data_mut()[0] = 5.0);
    let second = tape.param(&w);
    assert_ne!(second.id(), first.id());
    assert_eq!(
        second.value().data(),
        &[5.0],
        "the new value, not the stale one"
    );
    assert_eq!(
        first.value().data(),
        &[2.0],
        "the first use keeps what it computed with"
    );
    // loss = w₁² + w₂² with w₁ = 2, w₂ = 5: the parameter's gradient sums both uses, 4 + 10.
    let loss = first
        .mul(first)
        .unwrap()
        .add(second.mul(second).unwrap())
        .unwrap()
        .sum()
        .unwrap();
    let grads = loss.backward().unwrap();
    assert_eq!(grads.param(&w).unwrap().data(), &[14.0]);
}
