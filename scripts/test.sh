#!/usr/bin/env bash
# The test suite: Rust unit and integration tests, then the checks against reference libraries
# (MNE, scipy, scikit-learn, nibabel golden values) and the real recordings in ../shared.
# Needs only the Rust toolchain and Python 3; Python packages go into .venv.
# Under CI (CI set), checks that need ../shared fail instead of skipping when it is missing.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export NEUROFM_SHARED="${NEUROFM_SHARED:-$root/../shared}"
py="$(scripts/setup-python.sh)"
export NEUROFM_PYTHON="$py"

echo "== cargo test"
cargo test --workspace --locked

bin="$root/target/debug/neurofm"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

echo "== the store is readable from Python (docs/store-format.md)"
"$bin" synth --quiet --preset tiny --out "$tmp/synth" --edf-dir "$tmp/synth-edf"
"$py" scripts/check/read_store.py "$tmp/synth"

echo "== MNE reads our EDF+ files"
"$py" scripts/check/mne_reads_our_edf.py "$tmp/synth-edf"

echo "== reader conformance against MNE golden values on real files"
cargo run --quiet --locked -p neurofm-io --example conformance -- --shared "$NEUROFM_SHARED"
