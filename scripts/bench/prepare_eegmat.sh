#!/usr/bin/env bash
# Benchmark: the eegmat-200hz recipe over the 28 EEGMAT recordings with `neurofm prepare`
# (release build) vs the same pipeline in MNE (scripts/bench/mne_prepare_eegmat.py), in one run.
# Each repeat runs, back to back: neurofm ingest, neurofm prepare (all cores), neurofm prepare
# --jobs 1, MNE (one process, single-threaded). Prints wall time and CPU time (user + sys, all
# threads) of each measurement, then best and median over the repeats, with the load average.
# Usage: REPEATS=5 scripts/bench/prepare_eegmat.sh   (EEGMAT from $NEUROFM_SHARED/data/eegmat,
# default <repo>/../shared/data/eegmat; binary built into $CARGO_TARGET_DIR, default
# <repo>/target, or $NEUROFM_BIN without building)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
shared="${NEUROFM_SHARED:-$root/../shared}"
eegmat="$shared/data/eegmat"
repeats="${REPEATS:-3}"
[ -d "$eegmat" ] || { echo "error: $eegmat not found (set NEUROFM_SHARED)" >&2; exit 1; }
cd "$root"
[ -n "${NEUROFM_BIN:-}" ] || cargo build --release -q -p neurofm
recipe="$root/configs/recipes/eegmat-200hz.toml"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# a private copy: a shared CARGO_TARGET_DIR may get another checkout's binary while we run
cp "${NEUROFM_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/neurofm}" "$work/neurofm"
bin="$work/neurofm"
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

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
results="$work/results.txt"
: > "$results"
for i in $(seq 1 "$repeats"); do
  echo "repeat $i: load $(cut -d' ' -f1-3 /proc/loadavg)"
  rm -rf "$work/raw" "$work/p_all" "$work/p_1"
  echo "ingest $(timed "$bin" -q ingest "$eegmat" --out "$work/raw" \
    --pattern 'Subject(?P<subject>\d+)_(?P<run>\d)\.edf')" >> "$results"
  echo "all $(timed "$bin" -q prepare --recipe "$recipe" --input "$work/raw" --output "$work/p_all")" >> "$results"
  echo "one $(timed "$bin" -q prepare --recipe "$recipe" --input "$work/raw" --output "$work/p_1" --jobs 1)" >> "$results"
  echo "mne $(timed python3 scripts/bench/mne_prepare_eegmat.py "$eegmat")" >> "$results"
done
echo "after: load $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$results" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    k, w, c = line.split()
    runs.setdefault(k, []).append((float(w), float(c)))
n = len(runs["mne"])
# per repeat sums, so that ingest + prepare pairs come from the same repeat
runs["ing+all"] = [(a[0] + b[0], a[1] + b[1]) for a, b in zip(runs["ingest"], runs["all"])]
runs["ing+one"] = [(a[0] + b[0], a[1] + b[1]) for a, b in zip(runs["ingest"], runs["one"])]
names = [
    ("ingest", "neurofm ingest (28 EDF -> store)"),
    ("all", "neurofm prepare, all cores"),
    ("one", "neurofm prepare, --jobs 1"),
    ("ing+all", "neurofm ingest + prepare (all cores)"),
    ("ing+one", "neurofm ingest + prepare (--jobs 1)"),
    ("mne", "MNE read_raw_edf .. epochs (1 process)"),
]
print(f"{n} repeats; best / median")
print(f"{'':40s} {'wall best':>9s} {'wall med':>9s} {'cpu best':>9s} {'cpu med':>9s}")
stat = {}
for k, name in names:
    w = [r[0] for r in runs[k]]
    c = [r[1] for r in runs[k]]
    stat[k] = (min(w), statistics.median(w), min(c), statistics.median(c))
    print(f"{name:40s} {stat[k][0]:9.2f} {stat[k][1]:9.2f} {stat[k][2]:9.2f} {stat[k][3]:9.2f}")
m = stat["mne"]
for k, name in [("ing+all", "ingest + prepare, all cores"), ("ing+one", "ingest + prepare, --jobs 1")]:
    s = stat[k]
    print(f"MNE / neurofm {name}: wall {m[0] / s[0]:.1f}x best, {m[1] / s[1]:.1f}x median; "
          f"cpu {m[2] / s[2]:.1f}x best, {m[3] / s[3]:.1f}x median")
PY
