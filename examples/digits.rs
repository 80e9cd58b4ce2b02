//! A real data set: the UCI handwritten digits (1,797 8×8 images). An MLP 64→256→256→10 trained
//! with Adam on a fixed, seeded train/test split, once without and once with dropout, printing the
//! curves and writing them to a CSV file. The batches come from a `DataLoader` (shuffled per epoch,
//! prefetched on a thread); a progress bar shows each epoch when standard output is a terminal.
//!
//! Run: `cargo run --release --example digits` (add `-- --csv PATH` to choose where the CSV goes,
//! default `target/digits_curves.csv`, and `--plots DIR` to draw the curves as SVG charts; the guide's
//! charts are `--plots docs/img`).

use rand::SeedableRng;
use rand_pcg::Pcg64;
use tapegrad::data::DataLoader;
use tapegrad::datasets::{Digits, Split};
use tapegrad::metrics::{Progress, accuracy};
use tapegrad::nn::{Context, CrossEntropyLoss, Dropout, Forward, Linear, Module, ReLU, Sequential};
use tapegrad::optim::{Adam, AdamConfig, Optimizer};
use tapegrad::{Result, Tape};

const EPOCHS: usize = 60;
const BATCH: usize = 64;
const TEST_COUNT: usize = 360;
const SPLIT_SEED: u64 = 0;
const INIT_SEED: u64 = 1;

/// One epoch's figures.
struct Row {
    epoch: usize,
    train_loss: f64,
    train_acc: f64,
    test_loss: f64,
    test_acc: f64,
}

fn mlp(p: f64) -> Result<Sequential<f32>> {
    let mut rng = Pcg64::seed_from_u64(INIT_SEED);
    Ok(Sequential::new()
        .push(Linear::new(64, 256, &mut rng)?)
        .push(ReLU)
        .push(Dropout::new(p)?)
        .push(Linear::new(256, 256, &mut rng)?)
        .push(ReLU)
        .push(Dropout::new(p)?)
        .push(Linear::new(256, 10, &mut rng)?))
}

/// Loss and accuracy over a whole split, in eval mode.
fn evaluate(model: &Sequential<f32>, split: &Split<f32>) -> Result<(f64, f64)> {
    let tape = Tape::no_grad();
    let logits = model.forward(&mut Context::eval(), tape.constant(split.x.clone()))?;
    let loss = CrossEntropyLoss::default()
        .forward(logits, &split.labels)?
        .value()
        .item()?;
    Ok((f64::from(loss), accuracy(&logits.value(), &split.labels)?))
}

fn train(name: &str, p: f64, train: &Split<f32>, test: &Split<f32>) -> Result<Vec<Row>> {
    let model = mlp(p)?;
    let mut adam = Adam::new(model.named_params(), AdamConfig::default())?;
    // The batches: a fresh shuffle each epoch, fixed by (seed, epoch), prepared on a background thread.
    let loader = DataLoader::new(train.clone(), BATCH)?
        .shuffle(2)
        .prefetch(2);
    let mut rng = Pcg64::seed_from_u64(3); // dropout masks
    let mut progress = Progress::new(loader.batches_in(0)? as u64);
    let mut rows = Vec::with_capacity(EPOCHS);
    for epoch in 1..=EPOCHS {
        progress.reset(loader.batches_in(epoch as u64 - 1)? as u64);
        progress.set_epoch(epoch, EPOCHS);
        let (mut loss_sum, mut seen) = (0.0, 0);
        for batch in loader.epoch(epoch as u64 - 1)? {
            let (x, labels) = batch?;
            let tape = Tape::new();
            let logits = model.forward(&mut Context::train(&mut rng), tape.constant(x))?;
            let loss = CrossEntropyLoss::default().forward(logits, &labels)?;
            let batch_loss = f64::from(loss.value().item()?);
            loss_sum += batch_loss * labels.len() as f64;
            seen += labels.len();
            let grads = loss.backward()?;
            drop(tape);
            adam.step(&grads)?;
            progress.step(batch_loss, labels.len() as u64);
        }
        let (_, train_acc) = evaluate(&model, train)?;
        let (test_loss, test_acc) = evaluate(&model, test)?;
        let row = Row {
            epoch,
            train_loss: loss_sum / seen as f64,
            train_acc,
            test_loss,
            test_acc,
        };
        if epoch % 10 == 0 || epoch == 1 {
            progress.println(format!(
                "{name:<14} epoch {epoch:>3} | train loss {:.4} | train acc {:.3} | test loss {:.4} | test acc {:.3}",
                row.train_loss, row.train_acc, row.test_loss, row.test_acc
            ));
        }
        rows.push(row);
    }
    progress.finish();
    Ok(rows)
}

/// Draws one chart: a train and a test curve for each variant.
fn chart(
    path: &std::path::Path,
    title: &str,
    y_range: std::ops::Range<f64>,
    curves: [(&str, &[Row]); 2],
    pick: fn(&Row) -> (f64, f64),
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;
    let root = SVGBackend::new(path, (720, 440)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(52)
        .build_cartesian_2d(1f64..EPOCHS as f64, y_range)?;
    chart.configure_mesh().x_desc("epoch").draw()?;
    for ((name, rows), color) in curves.into_iter().zip([RED, BLUE]) {
        for (which, width) in [("train", 1), ("test", 3)] {
            let points = rows.iter().map(|r| {
                let (train, test) = pick(r);
                (r.epoch as f64, if which == "train" { train } else { test })
            });
            let style = ShapeStyle::from(&color.mix(if width == 1 { 0.5 } else { 1.0 }))
                .stroke_width(width);
            chart
                .draw_series(LineSeries::new(points, style))?
                .label(format!("{name}, {which}"))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

fn main() -> Result<()> {
    let csv_path = std::env::args()
        .skip_while(|a| a != "--csv")
        .nth(1)
        .unwrap_or_else(|| "target/digits_curves.csv".to_string());
    let digits = Digits::load_shipped()?;
    let (train_split, test_split) = digits.split::<f32>(TEST_COUNT, SPLIT_SEED)?;
    println!(
        "UCI digits: {} train / {} test images (split seed {SPLIT_SEED}), MLP 64-256-256-10, Adam lr 1e-3, batch {BATCH}",
        train_split.labels.len(),
        test_split.labels.len()
    );

    let plain = train("[no dropout]", 0.0, &train_split, &test_split)?;
    let dropped = train("[dropout 0.5]", 0.5, &train_split, &test_split)?;

    let mut csv = String::from("variant,epoch,train_loss,train_acc,test_loss,test_acc\n");
    for (variant, rows) in [("no_dropout", &plain), ("dropout_0.5", &dropped)] {
        for r in rows.iter() {
            csv.push_str(&format!(
                "{variant},{},{:.6},{:.6},{:.6},{:.6}\n",
                r.epoch, r.train_loss, r.train_acc, r.test_loss, r.test_acc
            ));
        }
    }
    if let Some(dir) = std::path::Path::new(&csv_path).parent() {
        std::fs::create_dir_all(dir).ok();
    }
    std::fs::write(&csv_path, csv).map_err(|source| tapegrad::Error::Io {
        op: "digits example",
        path: csv_path.clone(),
        source,
    })?;

    if let Some(dir) = std::env::args().skip_while(|a| a != "--plots").nth(1) {
        let dir = std::path::Path::new(&dir);
        std::fs::create_dir_all(dir).ok();
        let curves = [
            ("no dropout", plain.as_slice()),
            ("dropout 0.5", dropped.as_slice()),
        ];
        let loss_chart = dir.join("digits_loss.svg");
        let accuracy_chart = dir.join("digits_accuracy.svg");
        let drawn = chart(
            &loss_chart,
            "Digits: cross-entropy loss",
            0.0..0.6,
            curves,
            |r| (r.train_loss, r.test_loss),
        )
        .and_then(|()| {
            chart(
                &accuracy_chart,
                "Digits: accuracy",
                0.9..1.001,
                curves,
                |r| (r.train_acc, r.test_acc),
            )
        });
        match drawn {
            Ok(()) => println!("charts written to {}", dir.display()),
            Err(e) => eprintln!("could not draw the charts: {e}"),
        }
    }

    let (a, b) = (
        plain.last().expect("EPOCHS > 0"),
        dropped.last().expect("EPOCHS > 0"),
    );
    println!("curves written to {csv_path}");
    for (name, r) in [("without dropout", a), ("with dropout   ", b)] {
        println!(
            "{name}: train loss {:.4} | train acc {:.3} | test acc {:.3} | train-test gap {:.3} | test loss {:.4}",
            r.train_loss,
            r.train_acc,
            r.test_acc,
            r.train_acc - r.test_acc,
            r.test_loss
        );
    }
    let verdict = if b.test_loss < a.test_loss && b.train_loss > a.train_loss {
        "dropout kept the network from memorising the training set (higher train loss) and generalised better (lower test loss)"
    } else {
        "in this run dropout did not improve the test loss"
    };
    println!(
        "what it shows: {verdict}; test loss {:.4} vs {:.4}, test accuracy {:.3} vs {:.3}.",
        b.test_loss, a.test_loss, b.test_acc, a.test_acc
    );
    Ok(())
}
