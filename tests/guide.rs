//! The guide cannot drift from the engine:
//! - `docs/engine.md` shows regions of `src/tape.rs` marked `// ANCHOR: name`; each shown block must
//!   equal its region;
//! - `docs/worked-example.md` shows what `examples/worked_example.rs` prints; the page must equal the
//!   program's output, and every number must equal the formulas of `docs/derivations.md` computed
//!   here with plain loops;
//! - `docs/models.md` shows whole example files after `<!-- file: path -->`; each must equal the file;
//! - the graph figures (`docs/img/*.dot`, `*.svg`) must match what the engine draws now
//!   (`scripts/figures.sh` redraws them).

use std::collections::BTreeMap;

use rand::SeedableRng;
use rand_pcg::Pcg64;
use tapegrad::BitMask;

#[allow(dead_code)]
#[path = "../examples/worked_example.rs"]
mod worked_example;

#[allow(dead_code)]
#[path = "../examples/tape_tour.rs"]
mod tape_tour;

fn read(path: &str) -> String {
    let full = format!("{}/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}

/// The regions `// ANCHOR: name` … `// ANCHOR_END: name` of a source file, indentation removed.
fn anchors(source: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut open: Option<(String, Vec<&str>)> = None;
    for line in source.lines() {
        let t = line.trim();
        if let Some(name) = t.strip_prefix("// ANCHOR: ") {
            assert!(open.is_none(), "nested anchor {name}");
            open = Some((name.to_string(), Vec::new()));
        } else if let Some(name) = t.strip_prefix("// ANCHOR_END: ") {
            let (start, lines) = open.take().expect("ANCHOR_END without ANCHOR");
            assert_eq!(start, name, "anchor {start} closed as {name}");
            out.insert(name.to_string(), dedent(&lines));
        } else if let Some((_, lines)) = open.as_mut() {
            lines.push(line);
        }
    }
    assert!(open.is_none(), "an anchor is never closed");
    out
}

fn dedent(lines: &[&str]) -> String {
    let indent = lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    lines
        .iter()
        .map(|l| l.get(indent..).unwrap_or("").trim_end())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The fenced block that follows each `<!-- include: path#name -->` line of a page.
fn included_blocks(page: &str) -> Vec<(String, String)> {
    blocks_after(page, "<!-- include: ")
}

/// The fenced block that follows each `{marker}spec -->` line of a page, with its spec.
fn blocks_after(page: &str, marker: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = page.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(spec) = line
            .trim()
            .strip_prefix(marker)
            .and_then(|s| s.strip_suffix(" -->"))
        else {
            continue;
        };
        assert!(
            lines[i + 1].starts_with("```"),
            "{spec}: a fenced block must follow the {marker}… line"
        );
        let body: Vec<&str> = lines[i + 2..]
            .iter()
            .take_while(|l| !l.starts_with("```"))
            .copied()
            .collect();
        out.push((spec.to_string(), body.join("\n")));
    }
    out
}

#[test]
fn the_engine_chapter_shows_the_real_source() {
    let page = read("docs/engine.md");
    let blocks = included_blocks(&page);
    let mut shown = Vec::new();
    for (spec, body) in &blocks {
        let (path, name) = spec.split_once('#').expect("include: path#anchor");
        let regions = anchors(&read(path));
        let region = regions
            .get(name)
            .unwrap_or_else(|| panic!("{path} has no anchor {name}"));
        assert_eq!(
            body, region,
            "docs/engine.md's block {spec} differs from the source: copy the region again"
        );
        shown.push(name.to_string());
    }
    // Every region marked in tape.rs is on the page.
    for name in anchors(&read("src/tape.rs")).keys() {
        assert!(
            shown.contains(name),
            "anchor {name} is not shown in docs/engine.md"
        );
    }
    assert!(shown.len() >= 4, "{shown:?}");
}

#[test]
fn the_models_chapter_shows_the_real_examples() {
    let blocks = blocks_after(&read("docs/models.md"), "<!-- file: ");
    for (path, body) in &blocks {
        assert_eq!(
            body,
            read(path).trim_end(),
            "docs/models.md's copy of {path} differs from the file: copy it again"
        );
    }
    assert_eq!(blocks.len(), 2, "the side-by-side loop shows both programs");
}

#[test]
fn anchors_are_found_and_dedented() {
    let src =
        "fn a() {\n    // ANCHOR: x\n    let y = 1;\n        nested();\n    // ANCHOR_END: x\n}";
    assert_eq!(anchors(src)["x"], "let y = 1;\n    nested();");
}

#[test]
fn the_worked_example_page_is_what_the_program_prints() {
    let page = read("docs/worked-example.md");
    let begin = "<!-- worked_example output: begin -->\n```text\n";
    let end = "```\n<!-- worked_example output: end -->";
    let start = page.find(begin).expect("begin marker") + begin.len();
    let stop = page.find(end).expect("end marker");
    let printed = worked_example::render(&worked_example::compute().unwrap());
    assert_eq!(
        &page[start..stop],
        printed,
        "docs/worked-example.md is stale: paste `cargo run --release --example worked_example` again"
    );
}

/// Matrix helpers for the independent computation.
fn matmul(a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
    let mut out = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            for p in 0..k {
                out[i * n + j] += a[i * k + p] * b[p * n + j];
            }
        }
    }
    out
}

fn transpose(a: &[f64], rows: usize, cols: usize) -> Vec<f64> {
    let mut out = vec![0.0; a.len()];
    for i in 0..rows {
        for j in 0..cols {
            out[j * rows + i] = a[i * cols + j];
        }
    }
    out
}

fn column_sums(a: &[f64], rows: usize, cols: usize) -> Vec<f64> {
    (0..cols)
        .map(|j| (0..rows).map(|i| a[i * cols + j]).sum())
        .collect()
}

#[test]
fn every_number_of_the_worked_example_follows_the_formulas() {
    let (n, d, h, k) = (2, 2, 4, 3);
    let inputs = worked_example::inputs().unwrap();
    let get = |name: &str| {
        inputs
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap()
            .1
            .data()
            .to_vec()
    };
    let (x, w1, b1, w2, b2) = (get("X"), get("W1"), get("b1"), get("W2"), get("b2"));
    let labels = worked_example::LABELS;
    let mask = BitMask::dropout(
        n * h,
        worked_example::P,
        &mut Pcg64::seed_from_u64(worked_example::MASK_SEED),
    )
    .unwrap();
    let m: Vec<f64> = (0..n * h)
        .map(|i| if mask.get(i) { 1.0 } else { 0.0 })
        .collect();
    let s_scale = 1.0 / (1.0 - worked_example::P);

    // Forward.
    let mut z1 = matmul(&x, &w1, n, d, h);
    z1.iter_mut().enumerate().for_each(|(i, v)| *v += b1[i % h]);
    let h1: Vec<f64> = z1.iter().map(|&v| v.max(0.0)).collect();
    let d1: Vec<f64> = h1.iter().zip(&m).map(|(v, m)| v * m * s_scale).collect();
    let mut s = matmul(&d1, &w2, n, h, k);
    s.iter_mut().enumerate().for_each(|(i, v)| *v += b2[i % k]);
    let mut p = vec![0.0; n * k];
    for i in 0..n {
        let z: f64 = (0..k).map(|j| s[i * k + j].exp()).sum();
        for j in 0..k {
            p[i * k + j] = s[i * k + j].exp() / z;
        }
    }
    let log_p: Vec<f64> = p.iter().map(|v| v.ln()).collect();
    let loss = -(0..n).map(|i| log_p[i * k + labels[i]]).sum::<f64>() / n as f64;

    // Backward, as docs/derivations.md derives it.
    let mut onehot = vec![0.0; n * k];
    for i in 0..n {
        onehot[i * k + labels[i]] = 1.0;
    }
    let g_log_p: Vec<f64> = onehot.iter().map(|y| -y / n as f64).collect();
    let g_s: Vec<f64> = p
        .iter()
        .zip(&onehot)
        .map(|(p, y)| (p - y) / n as f64)
        .collect();
    let g_b2 = column_sums(&g_s, n, k);
    let g_w2 = matmul(&transpose(&d1, n, h), &g_s, h, n, k);
    let g_d1 = matmul(&g_s, &transpose(&w2, h, k), n, k, h);
    let g_h1: Vec<f64> = g_d1.iter().zip(&m).map(|(g, m)| g * m * s_scale).collect();
    let g_z1: Vec<f64> = g_h1
        .iter()
        .zip(&z1)
        .map(|(g, z)| if *z > 0.0 { *g } else { 0.0 })
        .collect();
    let g_b1 = column_sums(&g_z1, n, h);
    let g_w1 = matmul(&transpose(&x, n, d), &g_z1, d, n, h);

    let want: BTreeMap<&str, Vec<f64>> = [
        ("X", x.clone()),
        ("W1", w1.clone()),
        ("b1", b1.clone()),
        ("Z1", z1),
        ("H1", h1),
        ("D1", d1),
        ("W2", w2.clone()),
        ("b2", b2.clone()),
        ("S", s),
        ("P", p),
        ("log P", log_p),
        ("G_log P", g_log_p),
        ("G_S", g_s),
        ("G_b2", g_b2),
        ("G_W2", g_w2),
        ("G_D1", g_d1),
        ("G_H1", g_h1),
        ("G_Z1", g_z1),
        ("G_b1", g_b1),
        ("G_W1", g_w1),
    ]
    .into_iter()
    .collect();

    let worked = worked_example::compute().unwrap();
    assert_eq!(worked.values.len(), want.len());
    for (name, _, value) in &worked.values {
        let expected = &want[name];
        assert_eq!(value.data().len(), expected.len(), "{name}");
        for (got, want) in value.data().iter().zip(expected) {
            assert!((got - want).abs() <= 1e-12, "{name}: {got} vs {want}");
        }
    }
    assert_eq!(
        worked.mask,
        (0..n * h).map(|i| mask.get(i)).collect::<Vec<_>>()
    );
    assert!((worked.loss - loss).abs() <= 1e-12);
    // The example is worth reading: the mask drops something in each row, and ReLU zeroes
    // something that dropout kept.
    for row in worked.mask.chunks(h) {
        assert!(row.contains(&false) && row.contains(&true));
    }
}

/// The text of every `<text>` element of an SVG, with Graphviz's entities decoded.
fn svg_texts(svg: &str) -> Vec<String> {
    svg.split("<text")
        .skip(1)
        .filter_map(|chunk| {
            let body = chunk.split_once('>')?.1;
            let text = body.split_once("</text>")?.0;
            Some(
                text.replace("&#45;", "-")
                    .replace("&gt;", ">")
                    .replace("&lt;", "<")
                    .replace("&quot;", "\"")
                    .replace("&#39;", "'")
                    .replace("&amp;", "&"),
            )
        })
        .collect()
}

/// Every label line of a DOT graph (node and edge labels, split at `\n`).
fn dot_label_lines(dot: &str) -> Vec<String> {
    dot.split("label=\"")
        .skip(1)
        .filter_map(|chunk| chunk.split_once('"').map(|(label, _)| label.to_string()))
        .flat_map(|label| {
            label
                .split("\\n")
                .map(str::to_string)
                .collect::<Vec<String>>()
        })
        .collect()
}

fn check_figure(name: &str, dot_now: &str) {
    let committed = read(&format!("docs/img/{name}.dot"));
    assert_eq!(
        committed, dot_now,
        "docs/img/{name}.dot is stale: run scripts/figures.sh"
    );
    let texts = svg_texts(&read(&format!("docs/img/{name}.svg")));
    for line in dot_label_lines(dot_now) {
        assert!(
            texts.iter().any(|t| t == line.trim()),
            "docs/img/{name}.svg lacks {line:?}: run scripts/figures.sh"
        );
    }
}

#[test]
fn the_lesson_graph_figure_is_current() {
    check_figure("lesson_graph", &tape_tour::lesson_dot().unwrap());
}

#[test]
fn the_gradient_labelled_graph_figure_is_current() {
    let worked = worked_example::compute().unwrap();
    check_figure("worked_graph", &worked.dot);
    // Each edge carries the gradient shown on the page: the one into log_softmax is G_S.
    let g_s = &worked.values.iter().find(|v| v.0 == "G_S").unwrap().2;
    let first = format!("{:+.3}", g_s.data()[0]);
    assert!(
        worked.dot.contains(&format!("[{first}, ")),
        "{}",
        worked.dot
    );
}

#[test]
fn a_stale_svg_is_caught() {
    let dot = "digraph { n0 [label=\"#0 relu\\nx > 0\"]; }";
    let stale = "<svg><text x=\"1\">#0 relu</text><text>(4088 kept)</text></svg>";
    let texts = svg_texts(stale);
    let missing: Vec<String> = dot_label_lines(dot)
        .into_iter()
        .filter(|l| !texts.contains(l))
        .collect();
    assert_eq!(missing, ["x > 0"]);
}
