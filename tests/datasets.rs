//! The shipped digits file loads whole, and malformed lines are errors naming their line number.

use tapegrad::Error;
use tapegrad::datasets::Digits;

#[test]
fn the_shipped_digits_load() {
    let digits = Digits::load_shipped().unwrap();
    assert_eq!(digits.len(), 1797);
    let mut counts = [0usize; 10];
    digits
        .labels
        .iter()
        .for_each(|&l| counts[usize::from(l)] += 1);
    // Every class has between 174 and 183 images in this set.
    assert!(
        counts.iter().all(|&c| (174..=183).contains(&c)),
        "{counts:?}"
    );
    assert!(digits.images.iter().all(|im| im.iter().all(|&p| p <= 16)));
    let (train, test) = digits.split::<f32>(360, 0).unwrap();
    assert_eq!((train.labels.len(), test.labels.len()), (1437, 360));
    assert_eq!(train.x.dims(), &[1437, 64]);
    assert!(train.x.data().iter().all(|&v| (0.0..=1.0).contains(&v)));
    // The split is fixed by its seed.
    let (_, again) = digits.split::<f32>(360, 0).unwrap();
    assert_eq!(test.labels, again.labels);
}

#[test]
fn bad_lines_are_errors_with_their_line_number() {
    let good = format!("3 {}", "0".repeat(64));
    let cases = [
        (format!("# header\n{good}\n{}\n", "x 0"), 3, "label"),
        (format!("{good}\n12 {}\n", "0".repeat(64)), 2, "label"),
        (
            format!("{good}\n{good}\n5 {}h\n", "0".repeat(63)),
            3,
            "pixel 63",
        ),
        (
            format!("5 {}\n", "0".repeat(65)),
            1,
            "expected 64 pixels, found 65",
        ),
        ("5\n".to_string(), 1, "expected `label pixels`"),
        ("# only a comment\n".to_string(), 0, "no images"),
    ];
    for (text, line, words) in cases {
        match Digits::parse(&text, "test.txt") {
            Err(Error::BadData {
                path,
                line: got,
                reason,
            }) => {
                assert_eq!((path.as_str(), got), ("test.txt", line), "{text:?}");
                assert!(reason.contains(words), "{reason}");
            }
            other => panic!("{text:?}: {other:?}"),
        }
    }
    assert!(matches!(
        Digits::load("/nonexistent/digits.txt"),
        Err(Error::Io { .. })
    ));
}
