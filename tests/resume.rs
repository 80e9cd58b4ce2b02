//! Resumable training: 20 steps, a checkpoint, a restore into freshly built objects (other
//! initial weights, a new optimizer, a new scheduler, a new generator), 20 more steps — the same
//! bits as 40 uninterrupted steps. The run uses everything that carries state: dropout masks
//! drawn from the generator, AdamW's moments and step count, a warm-up + cosine schedule,
//! gradient clipping, and a shuffled DataLoader resumed in the middle of an epoch.

use rand::SeedableRng;
use rand_pcg::Pcg64;
use tapegrad::data::{DataLoader, LabeledDataset};
use tapegrad::nn::{Context, Dropout, Forward, Linear, Module, ReLU, Sequential};
use tapegrad::optim::lr_scheduler::{CosineAnnealingLR, LinearLR, SequentialLR};
use tapegrad::optim::{Adam, AdamConfig, LrScheduler, Optimizer, clip_grad_norm};
use tapegrad::training::{Progress, TrainingCheckpoint};
use tapegrad::{Error, Result, Tape, Tensor};

type Loader = DataLoader<LabeledDataset<f32>>;

struct Run {
    model: Sequential<f32>,
    adamw: Adam<f32>,
    schedule: SequentialLR,
    rng: Pcg64,
}

fn build(init_seed: u64) -> Result<Run> {
    let mut init = Pcg64::seed_from_u64(init_seed);
    let model = Sequential::new()
        .push(Linear::new(6, 16, &mut init)?)
        .push(ReLU)
        .push(Dropout::new(0.3)?)
        .push(Linear::new(16, 3, &mut init)?);
    let mut adamw = Adam::new(
        model.named_params(),
        AdamConfig {
            lr: 0.01,
            ..AdamConfig::adamw()
        },
    )?;
    let warmup = LinearLR::new(&mut adamw, 0.1, 1.0, 8)?;
    let cosine = CosineAnnealingLR::new(&mut adamw, 32, 1e-4)?;
    let schedule = SequentialLR::new(
        &mut adamw,
        vec![Box::new(warmup), Box::new(cosine)],
        vec![8],
    )?;
    Ok(Run {
        model,
        adamw,
        schedule,
        rng: Pcg64::seed_from_u64(init_seed + 1000),
    })
}

fn loader() -> Result<Loader> {
    let mut data = Pcg64::seed_from_u64(5);
    let x = Tensor::normal(&[52, 6], 0.0, 1.0, &mut data)?;
    let labels = (0..52).map(|i| (i * 7) % 3).collect();
    // 52 rows in batches of 8: 7 batches an epoch (the last of 4), so step 20 is mid-epoch.
    Ok(DataLoader::new(LabeledDataset::new(x, labels)?, 8)?.shuffle(11))
}

/// Trains until `progress.step == until`, starting from `progress`.
fn train(run: &mut Run, loader: &Loader, mut progress: Progress, until: u64) -> Result<Progress> {
    while progress.step < until {
        let batches = loader.epoch_from(progress.epoch, progress.batch as usize)?;
        for batch in batches {
            let (x, y) = batch?;
            let tape = Tape::new();
            let logits = run
                .model
                .forward(&mut Context::train(&mut run.rng), tape.constant(x))?;
            let mut grads = logits.cross_entropy(&y)?.backward()?;
            clip_grad_norm(&mut grads, run.adamw.params(), 0.5, 2.0, true)?;
            run.adamw.step(&grads)?;
            run.schedule.step(&mut run.adamw)?;
            progress.step += 1;
            progress.batch += 1;
            if progress.step == until {
                return Ok(progress);
            }
        }
        progress.epoch += 1;
        progress.batch = 0;
    }
    Ok(progress)
}

fn params(run: &Run) -> Vec<(String, Vec<u32>)> {
    run.model
        .named_params()
        .into_iter()
        .map(|(n, p)| (n, p.value().data().iter().map(|v| v.to_bits()).collect()))
        .collect()
}

fn temp(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("tapegrad-resume-{}-{name}", std::process::id()))
}

#[test]
fn twenty_plus_twenty_steps_equal_forty() -> Result<()> {
    let loader = loader()?;
    let mut straight = build(1)?;
    let end = train(&mut straight, &loader, Progress::default(), 40)?;
    assert_eq!(end.step, 40);

    let mut first = build(1)?;
    let middle = train(&mut first, &loader, Progress::default(), 20)?;
    assert_eq!(
        (middle.epoch, middle.batch),
        (2, 6),
        "step 20 is in the middle of epoch 2"
    );
    let path = temp("a.safetensors");
    TrainingCheckpoint::capture(&first.model, &first.adamw, middle, &first.rng)?
        .with_scheduler(&first.schedule.state_dict())
        .save(&path)?;
    drop(first);

    // A new "process": other initial weights and generator, everything rebuilt, then restored.
    let mut resumed = build(2)?;
    let checkpoint = TrainingCheckpoint::<f32>::load(&path)?;
    let progress = checkpoint.restore(&resumed.model, &mut resumed.adamw)?;
    resumed
        .schedule
        .load_state_dict(&checkpoint.scheduler().expect("saved with a scheduler"))?;
    resumed.rng = checkpoint.rng()?;
    assert_eq!(progress, middle);
    train(&mut resumed, &loader, progress, 40)?;
    std::fs::remove_file(&path).ok();

    assert_eq!(resumed.adamw.lrs(), straight.adamw.lrs());
    assert_eq!(
        params(&resumed),
        params(&straight),
        "bit-identical parameters"
    );
    Ok(())
}

#[test]
fn without_the_generator_the_run_differs() -> Result<()> {
    // The same restore but a fresh generator: the dropout masks differ, and so do the weights —
    // the generator's state is what makes the resumed run exact.
    let loader = loader()?;
    let mut straight = build(1)?;
    train(&mut straight, &loader, Progress::default(), 40)?;
    let mut first = build(1)?;
    let middle = train(&mut first, &loader, Progress::default(), 20)?;
    let checkpoint = TrainingCheckpoint::capture(&first.model, &first.adamw, middle, &first.rng)?
        .with_scheduler(&first.schedule.state_dict());
    let mut resumed = build(2)?;
    checkpoint.restore(&resumed.model, &mut resumed.adamw)?;
    resumed
        .schedule
        .load_state_dict(&checkpoint.scheduler().expect("saved with a scheduler"))?;
    train(&mut resumed, &loader, middle, 40)?;
    assert_ne!(params(&resumed), params(&straight));
    Ok(())
}

#[test]
fn a_checkpoint_of_another_model_changes_nothing() -> Result<()> {
    let run = build(1)?;
    let checkpoint =
        TrainingCheckpoint::capture(&run.model, &run.adamw, Progress::default(), &run.rng)?;
    // A wider model: the first layer's shapes differ.
    let mut init = Pcg64::seed_from_u64(3);
    let other = Sequential::<f32>::new()
        .push(Linear::new(6, 20, &mut init)?)
        .push(ReLU)
        .push(Linear::new(20, 3, &mut init)?);
    let mut adam = Adam::new(other.named_params(), AdamConfig::default())?;
    let before: Vec<Vec<f32>> = other
        .params()
        .iter()
        .map(|p| p.value().data().to_vec())
        .collect();
    let err = checkpoint.restore(&other, &mut adam).unwrap_err();
    assert!(
        matches!(
            err,
            Error::CheckpointShape { .. }
                | Error::CheckpointMissing { .. }
                | Error::CheckpointUnexpected { .. }
        ),
        "{err}"
    );
    let after: Vec<Vec<f32>> = other
        .params()
        .iter()
        .map(|p| p.value().data().to_vec())
        .collect();
    assert_eq!(before, after);
    Ok(())
}

#[test]
fn an_optimizer_that_does_not_fit_leaves_the_model_as_it_was() -> Result<()> {
    // The model part fits but the optimizer part does not (Adam's state into SGD): the model must
    // not keep the loaded weights.
    let run = build(1)?;
    let mut trained = build(1)?;
    train(&mut trained, &loader()?, Progress::default(), 3)?;
    let checkpoint = TrainingCheckpoint::capture(
        &trained.model,
        &trained.adamw,
        Progress::default(),
        &trained.rng,
    )?;
    let mut sgd = tapegrad::optim::Sgd::new(
        run.model.named_params(),
        tapegrad::optim::SgdConfig::default(),
    )?;
    let before = params(&run);
    assert!(checkpoint.restore(&run.model, &mut sgd).is_err());
    assert_eq!(params(&run), before);
    Ok(())
}

#[test]
fn files_that_are_not_training_checkpoints_are_refused() -> Result<()> {
    let run = build(1)?;
    let path = temp("model-only.safetensors");
    tapegrad::nn::save_safetensors(&run.model, &path)?;
    let err = TrainingCheckpoint::<f32>::load(&path).unwrap_err();
    assert!(matches!(err, Error::CheckpointFormat { .. }), "{err}");
    std::fs::remove_file(&path).ok();
    Ok(())
}
