//! A convolutional network on the UCI handwritten digits (1,797 8×8 images, `data/digits/`):
//! two 3×3 convolutions with ReLU and a 2×2 max-pool, dropout 0.25 and a linear head
//! (`model.rs`), trained with Adam (lr 2e-3 decayed along a cosine, batch 64, each image shifted
//! by up to a pixel) on the same seeded train/test split as the `digits` example (360 test
//! images). Prints the curves and ends with `test accuracy: X`.
//!
//! Run: `cargo run --release --example digits_cnn` (`-- --epochs N`, default 60; `--plots DIR`
//! draws the learned first-layer filters and the misclassified test digits as SVG; the guide's
//! pictures are `--plots docs/img`).

mod model;

use model::DigitsCnn;
use rand::seq::SliceRandom;
use rand::{Rng, RngExt, SeedableRng};
use rand_pcg::Pcg64;
use tapegrad::datasets::{Digits, Split};
use tapegrad::lesson::accuracy;
use tapegrad::nn::{Context, Module};
use tapegrad::optim::{Adam, AdamConfig, Optimizer};
use tapegrad::{Error, Result, Tape, Tensor};

const BATCH: usize = 64;
const TEST_COUNT: usize = 360;
/// The peak learning rate, decayed to 0 along a cosine.
const LR: f64 = 2e-3;

/// The value following `flag` on the command line.
fn arg(flag: &str) -> Option<String> {
    std::env::args().skip_while(|a| a != flag).nth(1)
}

/// Logits for a whole split, in eval mode (dropout off).
fn logits(model: &DigitsCnn, split: &Split<f32>) -> Result<Tensor<f32>> {
    let tape = Tape::no_grad();
    let out = model.forward(&tape, &mut Context::eval(), tape.constant(split.x.clone()))?;
    Ok(out.value().as_ref().clone())
}

/// Rows `batch` of a split's images, `[batch.len(), 64]`, each shifted by a random offset of −1,
/// 0 or 1 pixel along each axis (the pixels moved in are blank): the network sees a slightly
/// different digit at every epoch, which is worth about one point of test accuracy here.
fn augmented_batch(split: &Split<f32>, batch: &[usize], rng: &mut impl Rng) -> Result<Tensor<f32>> {
    let x = split.x.data();
    let mut rows = vec![0.0f32; batch.len() * 64];
    for (out, &i) in rows.chunks_mut(64).zip(batch) {
        let image = &x[i * 64..(i + 1) * 64];
        let (dy, dx) = (
            rng.random_range(-1..=1i64) as isize,
            rng.random_range(-1..=1i64) as isize,
        );
        for r in 0..8isize {
            for c in 0..8isize {
                let (sr, sc) = (r - dy, c - dx);
                if (0..8).contains(&sr) && (0..8).contains(&sc) {
                    out[(r * 8 + c) as usize] = image[(sr * 8 + sc) as usize];
                }
            }
        }
    }
    Tensor::from_vec(rows, &[batch.len(), 64])
}

fn main() -> Result<()> {
    let epochs: usize = match arg("--epochs") {
        Some(s) => s.parse().map_err(|e| Error::InvalidArgument {
            op: "digits_cnn",
            reason: format!("--epochs {s}: {e}"),
        })?,
        None => 60,
    };
    let digits = Digits::load_shipped()?;
    let (train, test) = digits.split::<f32>(TEST_COUNT, 0)?;
    let model = DigitsCnn::new(&mut Pcg64::seed_from_u64(1))?;
    println!(
        "{} train / {} test images, {} parameters",
        train.labels.len(),
        test.labels.len(),
        model.num_params()
    );
    let mut adam = Adam::new(model.named_params(), AdamConfig::default())?;
    let mut rng = Pcg64::seed_from_u64(2);
    let mut order: Vec<usize> = (0..train.labels.len()).collect();
    let started = std::time::Instant::now();
    for epoch in 1..=epochs {
        // Cosine decay of the learning rate from 1e-3 towards 0 over the run.
        let progress = (epoch - 1) as f64 / epochs as f64;
        adam.set_lr(LR * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()))?;
        order.shuffle(&mut rng);
        let (mut loss_sum, mut seen) = (0.0, 0);
        for batch in order.chunks(BATCH) {
            let labels: Vec<usize> = batch.iter().map(|&i| train.labels[i]).collect();
            let tape = Tape::new();
            let x = tape.constant(augmented_batch(&train, batch, &mut rng)?);
            let loss = model
                .forward(&tape, &mut Context::train(&mut rng), x)?
                .cross_entropy(&labels)?;
            loss_sum += f64::from(loss.item()?) * batch.len() as f64;
            seen += batch.len();
            let grads = loss.backward()?;
            adam.step(&grads)?;
        }
        if epoch % 5 == 0 || epoch == 1 {
            let test_acc = accuracy(&logits(&model, &test)?, &test.labels);
            println!(
                "epoch {epoch:>3} | train loss {:.4} | test acc {test_acc:.4}",
                loss_sum / seen as f64
            );
        }
    }
    println!(
        "{epochs} epochs in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let test_logits = logits(&model, &test)?;
    println!(
        "train accuracy: {:.4}",
        accuracy(&logits(&model, &train)?, &train.labels)
    );
    println!("test accuracy: {:.4}", accuracy(&test_logits, &test.labels));
    if let Some(dir) = arg("--plots") {
        let dir = std::path::PathBuf::from(dir);
        std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
            op: "digits_cnn",
            path: dir.display().to_string(),
            source,
        })?;
        let wrong = misclassified(&test_logits, &test.labels);
        let drawn = plots::filters(&dir.join("digits_cnn_filters.svg"), &model)
            .and_then(|()| plots::misclassified(&dir.join("digits_cnn_errors.svg"), &test, &wrong));
        match drawn {
            Ok(()) => println!("pictures in {}", dir.display()),
            Err(e) => eprintln!("could not draw the pictures: {e}"),
        }
    }
    Ok(())
}

/// (index, predicted class) of every misclassified row.
fn misclassified(logits: &Tensor<f32>, labels: &[usize]) -> Vec<(usize, usize)> {
    logits
        .data()
        .chunks(10)
        .zip(labels)
        .enumerate()
        .filter_map(|(i, (row, &label))| {
            let predicted = (0..10).fold(0, |best, c| if row[c] > row[best] { c } else { best });
            (predicted != label).then_some((i, predicted))
        })
        .collect()
}

mod plots {
    use super::DigitsCnn;
    use plotters::prelude::*;
    use tapegrad::datasets::Split;
    use tapegrad::nn::Module;

    type Drawn = std::result::Result<(), Box<dyn std::error::Error>>;

    /// Draws `images` (each 64 values row by row, any range) as grey squares in a grid of `cols`
    /// columns, each with a caption.
    fn grid(
        path: &std::path::Path,
        title: &str,
        images: &[(Vec<f32>, String)],
        cols: usize,
    ) -> Drawn {
        let cell = 64u32;
        let rows = images.len().div_ceil(cols).max(1) as u32;
        let root = SVGBackend::new(
            path,
            (cols as u32 * (cell + 8) + 8, rows * (cell + 24) + 40),
        )
        .into_drawing_area();
        root.fill(&WHITE)?;
        root.draw(&Text::new(title, (8, 8), ("sans-serif", 16)))?;
        for (k, (pixels, caption)) in images.iter().enumerate() {
            let (lo, hi) = pixels
                .iter()
                .fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
            let scale = if hi > lo { hi - lo } else { 1.0 };
            let x0 = 8 + (k % cols) as i32 * (cell as i32 + 8);
            let y0 = 36 + (k / cols) as i32 * (cell as i32 + 24);
            let side = pixels.len().isqrt().max(1);
            let px = cell as i32 / side as i32;
            for (i, &v) in pixels.iter().enumerate() {
                let shade = (255.0 * (1.0 - (v - lo) / scale)) as u8;
                let (r, c) = ((i / side) as i32, (i % side) as i32);
                root.draw(&Rectangle::new(
                    [
                        (x0 + c * px, y0 + r * px),
                        (x0 + (c + 1) * px, y0 + (r + 1) * px),
                    ],
                    RGBColor(shade, shade, shade).filled(),
                ))?;
            }
            root.draw(&Text::new(
                caption.clone(),
                (x0, y0 + cell as i32 + 4),
                ("sans-serif", 12),
            ))?;
        }
        root.present()?;
        Ok(())
    }

    /// The 32 learned 3×3 filters of the first convolution.
    pub fn filters(path: &std::path::Path, model: &DigitsCnn) -> Drawn {
        let (_, weight) = model
            .named_params()
            .into_iter()
            .find(|(name, _)| name == "0.weight")
            .ok_or("no 0.weight")?;
        let w = weight.value();
        let images: Vec<_> = w
            .data()
            .chunks(9)
            .enumerate()
            .map(|(i, f)| (f.to_vec(), format!("filter {i}")))
            .collect();
        grid(path, "First-layer filters (dark = positive)", &images, 8)
    }

    /// The misclassified test digits, each captioned with its label and the prediction.
    pub fn misclassified(
        path: &std::path::Path,
        test: &Split<f32>,
        wrong: &[(usize, usize)],
    ) -> Drawn {
        let x = test.x.data();
        let images: Vec<_> = wrong
            .iter()
            .map(|&(i, predicted)| {
                (
                    x[i * 64..(i + 1) * 64].to_vec(),
                    format!("{} → {predicted}", test.labels[i]),
                )
            })
            .collect();
        grid(
            path,
            "Misclassified test digits (label → prediction)",
            &images,
            8,
        )
    }
}
