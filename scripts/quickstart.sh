#!/usr/bin/env bash
# The main job on the embedded default data, end to end:
#   1. `neurofm synth`     synthetic multi-subject EEG (8 subjects, 19 channels, 200 Hz,
#                          left/right/feet/rest trials; deterministic, seed 0) -> data/synth
#   2. `neurofm prepare`   configs/recipes/synth-200hz.toml (notch, band-pass, /100 uV) -> data/synth-200hz
#   3. `neurofm pretrain`  configs/pretrain/quickstart.toml: a tiny masked autoencoder, 300 steps
#                          -> checkpoints/quickstart/{step-N/, metrics.jsonl, loss.png}
#   4. `neurofm probe`     configs/tasks/synth-motor-imagery.toml: leave-one-subject-out, the frozen
#                          pretrained encoder's features and log band power (baseline), each +
#                          logistic regression, with and without Euclidean alignment
#                          -> runs/quickstart/{report.md, report.json, *.png}
# Needs only the Rust toolchain. Re-running reuses the stores and the checkpoint that exist
# (delete checkpoints/quickstart to pretrain again).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
cargo build --release --locked -p neurofm
# The binary cargo just built: under $CARGO_TARGET_DIR when that is set (relative to the
# repository root, where cargo ran), else under target/.
target="${CARGO_TARGET_DIR:-target}"
case "$target" in /*) ;; *) target="$root/$target" ;; esac
bin="$target/release/neurofm"
if [ ! -f data/synth/manifest.json ]; then
  "$bin" synth --out data/synth
fi
if [ ! -f data/synth-200hz/manifest.json ]; then
  "$bin" prepare --recipe configs/recipes/synth-200hz.toml --input data/synth --output data/synth-200hz
fi
"$bin" inspect data/synth-200hz | head -8
if [ ! -d checkpoints/quickstart/step-300 ]; then
  if [ -d checkpoints/quickstart ] && ls checkpoints/quickstart | grep -q '^step-'; then
    "$bin" pretrain --config configs/pretrain/quickstart.toml --resume
  else
    "$bin" pretrain --config configs/pretrain/quickstart.toml
  fi
fi
"$bin" probe --task configs/tasks/synth-motor-imagery.toml --store data/synth-200hz \
  --checkpoint checkpoints/quickstart --seeds 0 --ea both --out runs/quickstart
echo
cat runs/quickstart/report.md
