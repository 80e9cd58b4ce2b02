//! Anomaly mode: the first op whose forward value or backward gradient is not finite is named.

use tapegrad::{Error, Tape, Tensor};

#[test]
fn anomaly_mode_names_the_first_bad_op() {
    // Forward: log(0) = −∞ at node 1; the later ops that inherit it are not blamed.
    let tape = Tape::<f64>::new();
    tape.detect_anomalies(true);
    let x = tape.leaf(Tensor::from_vec(vec![1.0, 0.0, 2.0], &[3]).unwrap());
    let y = x.log().unwrap().exp().unwrap().sum().unwrap();
    match tape.anomaly() {
        Some(Error::Anomaly {
            op: "log",
            node: 1,
            phase: "forward",
            detail,
        }) => {
            assert!(detail.contains("1 non-finite of 3"), "{detail}")
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        y.backward(),
        Err(Error::Anomaly { op: "log", .. })
    ));

    // A pass whose values and gradients are all finite is not an anomaly.
    let tape = Tape::<f64>::new();
    tape.detect_anomalies(true);
    let x = tape.leaf(Tensor::from_vec(vec![1.0, 0.0], &[2]).unwrap());
    let y = x.mul(x).unwrap().add_scalar(1.0).unwrap().log().unwrap(); // log(x² + 1): finite
    let z = y.mul(x.relu().unwrap()).unwrap(); // finite forward
    let w = z.div(x.add_scalar(1.0).unwrap()).unwrap().sum().unwrap();
    assert!(tape.anomaly().is_none());
    assert!(w.backward().is_ok(), "a finite pass is not an anomaly");

    let tape = Tape::<f64>::new();
    tape.detect_anomalies(true);
    let x = tape.leaf(Tensor::from_vec(vec![0.0, 1e-320], &[2]).unwrap());
    let y = x.add_scalar(1.0).unwrap().log().unwrap(); // log(1 + x): finite, but...
    let z = x.div(y).unwrap().sum().unwrap(); // 0/0 = NaN at element 0 in forward
    assert!(matches!(
        z.backward(),
        Err(Error::Anomaly {
            op: "div",
            phase: "forward",
            ..
        })
    ));

    // Without anomaly mode nothing is checked.
    let tape = Tape::<f64>::new();
    let x = tape.leaf(Tensor::from_vec(vec![0.0], &[1]).unwrap());
    assert!(x.log().unwrap().sum().unwrap().backward().is_ok());
    assert!(tape.anomaly().is_none());
}

#[test]
fn anomaly_mode_catches_a_non_finite_gradient() {
    // log(x) at the denormal x = 1e-310 is finite (−713.8), but its gradient 1/x overflows to ∞.
    let tape = Tape::<f64>::new();
    tape.detect_anomalies(true);
    let x = tape.leaf(Tensor::from_vec(vec![1e-310, 1.0], &[2]).unwrap());
    let y = x.log().unwrap().sum().unwrap();
    assert!(tape.anomaly().is_none(), "log(1e-310) = -713.8 is finite");
    match y.backward() {
        Err(Error::Anomaly {
            op: "log",
            phase: "backward",
            detail,
            ..
        }) => {
            assert!(detail.contains("gradient sent to node 0"), "{detail}")
        }
        other => panic!("expected a backward anomaly in log, got {other:?}"),
    }
}
