#!/usr/bin/env bash
# Benchmark: the eegmat-200hz recipe over the 28 EEGMAT recordings with `neurofm prepare`
# (release build) vs the same pipeline in MNE (scripts/bench/mne_prepare_eegmat.py), in one run.
# Prints wall time and CPU time (user + sys, all threads) of each measurement.
# Usage: scripts/bench/prepare_eegmat.sh   (EEGMAT from $NEUROFM_SHARED/data/eegmat, default
# <repo>/../shared/data/eegmat)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
shared="${NEUROFM_SHARED:-$root/../shared}"
eegmat="$shared/data/eegmat"
[ -d "$eegmat" ] || { echo "error: $eegmat not found (set NEUROFM_SHARED)" >&2; exit 1; }
cd "$root"
cargo build --release -q -p neurofm
bin="$root/target/release/neurofm"
recipe="$root/configs/recipes/eegmat-200hz.toml"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# prints "<wall s> <cpu s>" of a command (its children included)
timed() {
  python3 - "$@" <<'PY'
import resource, subprocess, sys, time
t = time.perf_counter()
subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print(f"{time.perf_counter() - t:.3f} {r.ru_utime + r.ru_stime:.3f}")
PY
}
# warm the MNE venv (first run may install it) so its setup is not timed
python3 scripts/bench/mne_prepare_eegmat.py /nonexistent >/dev/null 2>&1 || true

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)"
read -r ing_w ing_c < <(timed "$bin" -q ingest "$eegmat" --out "$work/raw" \
  --pattern 'Subject(?P<subject>\d+)_(?P<run>\d)\.edf')
read -r all_w all_c < <(timed "$bin" -q prepare --recipe "$recipe" --input "$work/raw" --output "$work/p_all")
read -r one_w one_c < <(timed "$bin" -q prepare --recipe "$recipe" --input "$work/raw" --output "$work/p_1" --jobs 1)
read -r mne_w mne_c < <(timed python3 scripts/bench/mne_prepare_eegmat.py "$eegmat")
python3 - "$ing_w" "$ing_c" "$all_w" "$all_c" "$one_w" "$one_c" "$mne_w" "$mne_c" <<'PY'
import sys
iw, ic, aw, ac, ow, oc, mw, mc = map(float, sys.argv[1:])
rows = [
    ("neurofm ingest (28 EDF -> store)", iw, ic),
    ("neurofm prepare, all cores", aw, ac),
    ("neurofm prepare, --jobs 1", ow, oc),
    ("neurofm ingest + prepare (all cores)", iw + aw, ic + ac),
    ("neurofm ingest + prepare (--jobs 1)", iw + ow, ic + oc),
    ("MNE read_raw_edf .. epochs (1 process)", mw, mc),
]
print(f"{'':42s} {'wall s':>8s} {'cpu s':>8s}")
for name, w, c in rows:
    print(f"{name:42s} {w:8.2f} {c:8.2f}")
print(f"MNE / neurofm ingest+prepare --jobs 1:  wall {mw / (iw + ow):.1f}x, cpu {mc / (ic + oc):.1f}x")
print(f"MNE / neurofm ingest+prepare all cores: wall {mw / (iw + aw):.1f}x")
PY
