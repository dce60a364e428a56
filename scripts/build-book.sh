#!/usr/bin/env bash
# Build the HTML book strictly: every notebook executed, warnings are errors.
# Usage: bash scripts/build-book.sh [output-dir]   (the HTML lands in <output-dir>/_build/html; default: ./_build/html)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
out=${1:-.}
# Offline by default unless a cluster is reachable (llmserve.world.mode decides per notebook).
start=$(date +%s)
.venv/bin/jupyter-book build . --path-output "$out" -W -n --keep-going
echo "book built in $(( $(date +%s) - start )) s: open $out/_build/html/index.html"
