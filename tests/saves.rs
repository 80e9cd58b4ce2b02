//! Nothing is lost: a save replaces the old checkpoint whole or not at all, a reader racing a
//! writer sees one complete file or the other, and two tensors under one name are an error.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64;
use tapegrad::nn::{
    Linear, Module, Visitor, load_safetensors, load_safetensors_bytes, save_safetensors,
};
use tapegrad::{Error, Param, Tensor};

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tapegrad-saves-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn layer(fill: f32) -> Linear<f32> {
    // 1 MiB of weights, so a write takes long enough for a racing reader to catch it half done.
    Linear::from_tensors(
        Tensor::full(&[512, 512], fill).unwrap(),
        Some(Tensor::full(&[512], fill).unwrap()),
    )
    .unwrap()
}

#[test]
fn a_reader_racing_a_writer_sees_a_whole_file_every_time() {
    let dir = scratch("race");
    let path = dir.join("model.safetensors");
    save_safetensors(&layer(1.0), &path).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (path, done) = (path.clone(), Arc::clone(&done));
        std::thread::spawn(move || {
            for i in 0..60 {
                save_safetensors(&layer(if i % 2 == 0 { 2.0 } else { 1.0 }), &path).unwrap();
            }
            done.store(true, Ordering::SeqCst);
        })
    };
    let mut reads = 0;
    let model = layer(0.0);
    while !done.load(Ordering::SeqCst) || reads < 10 {
        let bytes = std::fs::read(&path).unwrap();
        load_safetensors_bytes(&model, &bytes)
            .unwrap_or_else(|e| panic!("read {reads} saw a partial file: {e}"));
        let first = model.weight.value().data()[0];
        assert!(first == 1.0 || first == 2.0);
        assert!(model.weight.value().data().iter().all(|&v| v == first));
        reads += 1;
    }
    writer.join().unwrap();
    // No temporary file is left behind.
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["model.safetensors"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_failed_save_leaves_the_old_checkpoint_loadable() {
    let dir = scratch("fail");
    let path = dir.join("model.safetensors");
    save_safetensors(&layer(1.0), &path).unwrap();
    // Saving to a path that is a directory fails at the rename, after the bytes were written.
    let blocked = dir.join("blocked");
    std::fs::create_dir_all(blocked.join("x")).unwrap();
    assert!(matches!(
        save_safetensors(&layer(2.0), &blocked),
        Err(Error::Io { .. })
    ));
    // Saving into a directory that does not exist fails before anything is written.
    assert!(save_safetensors(&layer(2.0), dir.join("missing/model.safetensors")).is_err());
    let model = layer(0.0);
    load_safetensors(&model, &path).unwrap();
    assert_eq!(model.weight.value().data()[0], 1.0);
    let leftovers = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".tmp-")
        })
        .count();
    assert_eq!(leftovers, 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A custom module that reports the name `w` for two different parameters.
struct Twice {
    a: Param<f32>,
    b: Param<f32>,
}

impl Module<f32> for Twice {
    fn visit(&self, v: &mut Visitor<'_, f32>) {
        v.param("w", &self.a);
        v.param("w", &self.b);
    }
}

#[test]
fn duplicate_names_are_an_error_at_save_and_at_load() {
    let twice = Twice {
        a: Param::new("w", Tensor::zeros(&[2]).unwrap()),
        b: Param::new("w", Tensor::ones(&[3]).unwrap()),
    };
    let dir = scratch("dup");
    let path = dir.join("twice.safetensors");
    let err = save_safetensors(&twice, &path).unwrap_err();
    assert!(
        matches!(&err, Error::DuplicateName { name, .. } if name == "w"),
        "{err}"
    );
    assert!(!path.exists(), "nothing was written");
    // A file with one `w`, loaded into the module with two.
    let single = Linear::<f32>::from_tensors(
        Tensor::zeros(&[1, 1]).unwrap(),
        Some(Tensor::zeros(&[1]).unwrap()),
    )
    .unwrap();
    save_safetensors(&single, &path).unwrap();
    let err = load_safetensors(&twice, &path).unwrap_err();
    assert!(matches!(err, Error::DuplicateName { .. }), "{err}");
    assert_eq!(twice.a.value().dims(), &[2], "the model is unchanged");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn random_bytes_never_load_and_never_panic() {
    let mut rng = Pcg64::seed_from_u64(3);
    let model = layer(0.0);
    let good = tapegrad::nn::to_safetensors_bytes(&layer(1.0)).unwrap();
    for trial in 0..2000 {
        let mut bytes = if trial % 2 == 0 {
            good.clone()
        } else {
            (0..rng.random_range(0..64)).map(|_| rng.random()).collect()
        };
        if trial % 2 == 0 {
            // Flip a few bytes of the header, or truncate.
            for _ in 0..3 {
                let i = rng.random_range(0..bytes.len().min(200));
                bytes[i] = rng.random();
            }
            if trial % 4 == 0 {
                bytes.truncate(rng.random_range(0..bytes.len()));
            }
        }
        // Either a typed error (and the model untouched) or a complete load.
        if load_safetensors_bytes(&model, &bytes).is_err() {
            assert!(
                model
                    .weight
                    .value()
                    .data()
                    .iter()
                    .all(|&v| v == 0.0 || v == 1.0)
            );
        }
    }
}
