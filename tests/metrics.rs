//! Metrics (accuracy, top-k, against hand-counted answers), the CSV/JSONL metrics log (exact
//! file contents, errors), and the progress bar (hidden off a terminal).

use tapegrad::metrics::{LogFormat, MetricsLogger, Progress, accuracy, top_k_accuracy};
use tapegrad::{Error, Tensor};

fn scores(rows: &[&[f64]]) -> Tensor<f64> {
    let c = rows[0].len();
    Tensor::from_vec(rows.concat(), &[rows.len(), c]).unwrap()
}

#[test]
fn accuracy_and_top_k_by_hand() {
    let s = scores(&[
        &[0.1, 0.7, 0.2, 0.0],      // order 1, 2, 0, 3
        &[0.9, 0.05, 0.05, 0.0],    // order 0, then 1 and 2 tied (1 first), 3
        &[0.3, 0.3, 0.3, 0.1],      // three-way tie: 0, 1, 2, 3
        &[f64::NAN, 0.5, 0.2, 0.9], // NaN ranks first (torch.argmax): 0, 3, 1, 2
    ]);
    let labels = [2usize, 2, 1, 3];
    // Ranks of the labels: 1 (second), 2 (third: the tie goes to class 1), 1, 1.
    assert_eq!(accuracy(&s, &labels).unwrap(), 0.0);
    assert_eq!(top_k_accuracy(&s, &labels, 1).unwrap(), 0.0);
    assert_eq!(top_k_accuracy(&s, &labels, 2).unwrap(), 0.75);
    assert_eq!(top_k_accuracy(&s, &labels, 3).unwrap(), 1.0);
    assert_eq!(top_k_accuracy(&s, &labels, 4).unwrap(), 1.0);
    assert_eq!(accuracy(&s, &[1u8, 0, 0, 0]).unwrap(), 1.0);

    // Classes on axis 1 of [N, C, d]: element (n, d) picks along C.
    let x = Tensor::from_vec(
        vec![
            1.0f32, 0.0, // n = 0, class 0, d = 0..2
            0.0, 2.0, // n = 0, class 1
            5.0, 5.0, // n = 0, class 2
        ],
        &[1, 3, 2],
    )
    .unwrap();
    assert_eq!(accuracy(&x, &[2, 2]).unwrap(), 1.0);
    assert_eq!(accuracy(&x, &[0, 1]).unwrap(), 0.0);
    assert_eq!(top_k_accuracy(&x, &[0, 1], 2).unwrap(), 1.0);
}

#[test]
fn metric_errors() {
    let s = scores(&[&[0.1, 0.9], &[0.8, 0.2]]);
    assert!(matches!(
        accuracy(&s, &[0usize]),
        Err(Error::LabelCount {
            labels: 1,
            batch: 2,
            ..
        })
    ));
    assert!(matches!(
        accuracy(&s, &[0i64, 2]),
        Err(Error::LabelOutOfRange {
            position: 1,
            label: 2,
            classes: 2,
            ..
        })
    ));
    assert!(matches!(
        accuracy(&s, &[-1i64, 0]),
        Err(Error::LabelOutOfRange { .. })
    ));
    for k in [0, 3] {
        assert!(matches!(
            top_k_accuracy(&s, &[0usize, 1], k),
            Err(Error::InvalidHyperparameter { name: "k", .. })
        ));
    }
    let flat = Tensor::from_vec(vec![1.0f64, 2.0], &[2]).unwrap();
    assert!(matches!(
        accuracy(&flat, &[0usize]),
        Err(Error::BadRank { .. })
    ));
    let empty = Tensor::<f64>::zeros(&[0, 3]).unwrap();
    assert!(matches!(
        accuracy::<f64, usize>(&empty, &[]),
        Err(Error::EmptyBatch { .. })
    ));
}

fn temp(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(name)
}

#[test]
fn csv_log_writes_a_header_and_rows() {
    let path = temp("metrics_test.csv");
    let mut log = MetricsLogger::create(&path).unwrap();
    log.log(0, &[("loss", 2.5), ("lr", 0.001), ("acc, top-1", 0.125)])
        .unwrap();
    // Flushed per record: readable while the logger is alive.
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "step,loss,lr,\"acc, top-1\"\n0,2.5,0.001,0.125\n"
    );
    log.log(10, &[("loss", f64::NAN), ("lr", 1e-4), ("acc, top-1", 1.0)])
        .unwrap();
    // Other keys (or another order) cannot change the columns.
    assert!(matches!(
        log.log(11, &[("lr", 1e-4), ("loss", 1.0), ("acc, top-1", 1.0)]),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        log.log(11, &[("loss", 1.0)]),
        Err(Error::InvalidArgument { .. })
    ));
    drop(log);
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "step,loss,lr,\"acc, top-1\"\n0,2.5,0.001,0.125\n10,NaN,0.0001,1\n"
    );
}

#[test]
fn jsonl_log_writes_one_object_per_line() {
    let path = temp("metrics_test.jsonl");
    let mut log = MetricsLogger::create(&path).unwrap();
    log.log(1, &[("loss", 0.75), ("epoch", 0.0)]).unwrap();
    log.log(2, &[("loss", f64::INFINITY), ("say \"hi\"\n", -3.5)])
        .unwrap();
    let bytes = log.into_inner().unwrap();
    drop(bytes);
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "{\"step\":1,\"loss\":0.75,\"epoch\":0}\n{\"step\":2,\"loss\":null,\"say \\\"hi\\\"\\n\":-3.5}\n"
    );
}

#[test]
fn logger_errors() {
    assert!(matches!(
        MetricsLogger::create(temp("metrics_test.txt")),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        MetricsLogger::create("/nonexistent-dir/for/sure/log.csv"),
        Err(Error::Io { .. })
    ));
    let mut log = MetricsLogger::to_writer(Vec::new(), LogFormat::Jsonl, "memory");
    for bad in [&[("step", 1.0)][..], &[("a", 1.0), ("a", 2.0)][..]] {
        assert!(matches!(
            log.log(0, bad),
            Err(Error::InvalidArgument { .. })
        ));
    }
    // A writer that fails: the error is typed and names the log.
    struct Broken;
    impl std::io::Write for Broken {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("disk full"))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut log = MetricsLogger::to_writer(Broken, LogFormat::Csv, "broken.csv");
    match log.log(0, &[("loss", 1.0)]) {
        Err(Error::Io { path, source, .. }) => {
            assert_eq!(path, "broken.csv");
            assert_eq!(source.to_string(), "disk full");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn progress_is_hidden_off_a_terminal_and_counts_steps() {
    // Drawn exactly when standard output is a terminal (it is not under CI).
    use std::io::IsTerminal;
    assert_eq!(
        Progress::new(4).is_visible(),
        std::io::stdout().is_terminal()
    );
    let mut progress = Progress::hidden(4);
    assert!(!progress.is_visible());
    progress.set_epoch(1, 2);
    for _ in 0..4 {
        progress.step(0.5, 32);
    }
    assert_eq!(progress.position(), 4);
    progress.reset(3);
    assert_eq!(progress.position(), 0);
    progress.step(0.25, 32);
    assert_eq!(progress.position(), 1);
    progress.finish();
}
