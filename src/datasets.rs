//! Small real data sets shipped with the crate.
//!
//! [`Digits`]: the UCI handwritten digits (1,797 8×8 images, 10 classes), stored in
//! `data/digits/digits.txt` with its licence and attribution in `data/digits/README.md`.

use std::path::Path;

use crate::data::{Dataset, random_split};
use crate::element::Float;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Pixels per image (8×8).
pub const DIGIT_PIXELS: usize = 64;

/// The handwritten digits: images of 64 pixel counts in 0..=16, and labels 0..=9.
///
/// ```
/// use tapegrad::datasets::Digits;
/// let digits = Digits::parse("# a comment\n7 0000000000000000000000000000000000000000000000000000000000000g0g\n", "inline")?;
/// assert_eq!((digits.len(), digits.labels[0], digits.images[0][63]), (1, 7, 16));
/// let err = Digits::parse("7 00\n", "inline").unwrap_err();
/// assert_eq!(err.to_string(), "inline:1: expected 64 pixels, found 2");
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Digits {
    /// Pixel counts (0..=16), row by row.
    pub images: Vec<[u8; DIGIT_PIXELS]>,
    /// Labels (0..=9).
    pub labels: Vec<u8>,
}

/// One side of a split: features scaled to [0, 1] and labels.
#[derive(Clone, Debug)]
pub struct Split<T: Float> {
    /// Features, [n, 64], pixel counts divided by 16.
    pub x: Tensor<T>,
    /// Labels.
    pub labels: Vec<usize>,
}

impl Digits {
    /// The path of the shipped file, relative to the crate root.
    pub const SHIPPED: &'static str =
        concat!(env!("CARGO_MANIFEST_DIR"), "/data/digits/digits.txt");

    /// Reads the shipped data set.
    pub fn load_shipped() -> Result<Digits> {
        Self::load(Self::SHIPPED)
    }

    /// Reads and validates a digits file.
    pub fn load(path: impl AsRef<Path>) -> Result<Digits> {
        let name = path.as_ref().display().to_string();
        let bytes = std::fs::read(path.as_ref()).map_err(|source| Error::Io {
            op: "Digits::load",
            path: name.clone(),
            source,
        })?;
        // Not UTF-8: name the first line that is not, rather than failing the whole read.
        let text = match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(e) => {
                let valid = e.utf8_error().valid_up_to();
                let line = e.as_bytes()[..valid]
                    .iter()
                    .filter(|&&b| b == b'\n')
                    .count()
                    + 1;
                return Err(Error::BadData {
                    path: name,
                    line,
                    reason: format!("not UTF-8 text (invalid byte at offset {valid})"),
                });
            }
        };
        Self::parse(&text, &name)
    }

    /// Checks the public fields against each other: one label per image, labels 0–9, pixel counts
    /// 0–16. [`Digits::parse`] only builds valid data sets, but the fields can be changed.
    pub fn validate(&self) -> Result<()> {
        let bad = |reason: String| Error::BadData {
            path: "Digits".to_string(),
            line: 0,
            reason,
        };
        if self.images.len() != self.labels.len() {
            return Err(bad(format!(
                "{} images but {} labels",
                self.images.len(),
                self.labels.len()
            )));
        }
        if let Some(i) = self.labels.iter().position(|&l| l > 9) {
            return Err(bad(format!(
                "label {} of image {i} is not 0-9",
                self.labels[i]
            )));
        }
        if let Some(i) = self.images.iter().position(|im| im.iter().any(|&p| p > 16)) {
            return Err(bad(format!("image {i} has a pixel count above 16")));
        }
        Ok(())
    }

    /// Parses the text format: `#` comment lines, then one image per line, `label` (0–9), a space,
    /// and 64 base-17 digits (`0`–`9`, `a`–`g`). Any malformed line is an error naming `source` and
    /// its 1-based line number.
    pub fn parse(text: &str, source: &str) -> Result<Digits> {
        let bad = |line: usize, reason: String| Error::BadData {
            path: source.to_string(),
            line,
            reason,
        };
        let mut digits = Digits {
            images: Vec::new(),
            labels: Vec::new(),
        };
        for (index, line) in text.lines().enumerate() {
            let number = index + 1;
            let line = line.trim_end();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (label, pixels) = line
                .split_once(' ')
                .ok_or_else(|| bad(number, "expected `label pixels`".to_string()))?;
            let label = match label.as_bytes() {
                [d @ b'0'..=b'9'] => d - b'0',
                _ => return Err(bad(number, format!("label `{label}` is not a digit 0-9"))),
            };
            if pixels.len() != DIGIT_PIXELS {
                return Err(bad(
                    number,
                    format!("expected {DIGIT_PIXELS} pixels, found {}", pixels.len()),
                ));
            }
            let mut image = [0u8; DIGIT_PIXELS];
            for (slot, (column, c)) in image.iter_mut().zip(pixels.chars().enumerate()) {
                *slot = c
                    .to_digit(17)
                    .and_then(|v| u8::try_from(v).ok())
                    .ok_or_else(|| {
                        bad(
                            number,
                            format!("pixel {column} is `{c}`, not a base-17 digit 0-g"),
                        )
                    })?;
            }
            digits.images.push(image);
            digits.labels.push(label);
        }
        if digits.images.is_empty() {
            return Err(bad(0, "no images".to_string()));
        }
        Ok(digits)
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.images.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    /// The images at `indices` as features scaled to [0, 1], with their labels.
    pub fn subset<T: Float>(&self, indices: &[usize]) -> Result<Split<T>> {
        self.validate()?;
        let mut data = crate::kernels::pool::try_empty(
            "Digits::subset",
            indices.len().saturating_mul(DIGIT_PIXELS),
        )?;
        let mut labels = Vec::with_capacity(indices.len());
        let scale = T::ONE / T::from_f64(16.0);
        for &i in indices {
            let image = self.images.get(i).ok_or_else(|| Error::IndexOutOfBounds {
                index: vec![i],
                shape: crate::Shape::new(&[self.len()]).unwrap_or_default(),
            })?;
            data.extend(image.iter().map(|&p| T::from_f64(f64::from(p)) * scale));
            labels.push(usize::from(self.labels[i]));
        }
        Ok(Split {
            x: Tensor::from_vec(data, &[indices.len(), DIGIT_PIXELS])?,
            labels,
        })
    }

    /// A shuffled split into `test_count` test images and the rest for training, fixed by `seed`:
    /// [`random_split`] into `[test_count, len − test_count]`, the test part first.
    pub fn split<T: Float>(&self, test_count: usize, seed: u64) -> Result<(Split<T>, Split<T>)> {
        let test_count = test_count.min(self.len());
        let parts = random_split(self.len(), &[test_count, self.len() - test_count], seed)?;
        Ok((self.subset(&parts[1])?, self.subset(&parts[0])?))
    }
}

/// Item `i`: image `i`'s pixel counts (0–16) and its label.
impl Dataset for Digits {
    type Item = ([u8; DIGIT_PIXELS], u8);
    fn len(&self) -> usize {
        self.images.len()
    }
    fn get(&self, index: usize) -> Result<Self::Item> {
        match (self.images.get(index), self.labels.get(index)) {
            (Some(image), Some(&label)) => Ok((*image, label)),
            _ => Err(crate::data::dataset_index_error(
                "Digits::get",
                index,
                self.images.len().min(self.labels.len()),
            )),
        }
    }
}

impl<T: Float> Split<T> {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// Item `i`: image `i`'s 64 features and its label, so a [`crate::data::DataLoader`] over a split
/// yields `(x: [batch, 64], labels)`.
///
/// ```
/// use tapegrad::data::DataLoader;
/// use tapegrad::datasets::Digits;
/// let (train, _test) = Digits::load_shipped()?.split::<f32>(360, 0)?;
/// let loader = DataLoader::new(train, 64)?.shuffle(2);
/// let (x, labels) = loader.epoch(0)?.next().unwrap()?;
/// assert_eq!((x.dims(), labels.len()), (&[64, 64][..], 64));
/// # Ok::<(), tapegrad::Error>(())
/// ```
impl<T: Float> Dataset for Split<T> {
    type Item = (Tensor<T>, usize);
    fn len(&self) -> usize {
        self.labels.len()
    }
    fn get(&self, index: usize) -> Result<Self::Item> {
        let label = *self.labels.get(index).ok_or_else(|| {
            crate::data::dataset_index_error("Split::get", index, self.labels.len())
        })?;
        Ok((
            crate::data::tensor_row("Split::get", &self.x, index)?,
            label,
        ))
    }
}
