#!/usr/bin/env bash
# Redraws the guide's graph figures from the engine: the DOT each example prints is written next to
# its SVG (docs/img/*.dot), then rendered with Graphviz's `dot` (Debian: apt-get install graphviz).
# `cargo test --release --test guide` fails when a committed .dot or .svg no longer matches what the
# engine prints, and names this script.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v dot >/dev/null || { echo "figures.sh: needs Graphviz's dot (apt-get install -y graphviz)" >&2; exit 1; }
cargo build --release --example tape_tour --example worked_example
target/release/examples/tape_tour --dot > docs/img/lesson_graph.dot
target/release/examples/worked_example --dot > docs/img/worked_graph.dot
for name in lesson_graph worked_graph; do
  dot -Tsvg "docs/img/$name.dot" -o "docs/img/$name.svg"
  echo "docs/img/$name.svg"
done
# The digits curves take a minute of training: redraw them with
#   cargo run --release --example digits -- --plots docs/img
