#!/usr/bin/env bash
# Ingest speed on the 28 EEGMAT EDF files, in one run:
#   neurofm read_all   (release example: open + decode every sample to f32 SI, in memory, one
#                       file after the other; each file's read uses both the hash thread and
#                       the rayon pool)
#   neurofm read_all --jobs 2   (the same, two files at a time)
#   neurofm ingest     (release CLI: read + write a store (fsync'd, atomic) into a fresh temp dir)
#   MNE 1.13.2         (read_raw_edf(preload=True) + get_data(), in-process)
#   MNE + npy          (the same, then np.save of the float32 array per file into a temp dir)
#   MNE + fif          (read_raw_edf(preload=True) + raw.save(fif) per file into a temp dir)
#   pyedflib 0.1.42    (EdfReader + readSignal for every channel, in-process)
# The tools run interleaved (one run of each per round) after one warm-up round (page cache
# warm for everyone); prints the best and median wall time of REPEATS rounds (default 5) and the
# load average before and after. Python tools are timed in-process (interpreter start and
# imports excluded); neurofm is timed as a subprocess (process start included).
#
# Usage: scripts/bench/ingest_eegmat.sh   (NEUROFM_SHARED overrides ../shared; INGEST=0 leaves
# out `neurofm ingest`, which needs a release build of the whole CLI; BIN_DIR=DIR times the
# binaries DIR/neurofm and DIR/examples/read_all instead of building them)
# Creates scripts/.venv (gitignored) and pip-installs mne==1.13.2 pyedflib==0.1.42 numpy scipy.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SHARED=${NEUROFM_SHARED:-$ROOT/../shared}
DATA=$SHARED/data/eegmat
REPEATS=${REPEATS:-5}
VENV=$ROOT/scripts/.venv
if [ ! -x "$VENV/bin/python" ]; then python3 -m venv "$VENV"; fi
"$VENV/bin/pip" install -q mne==1.13.2 pyedflib==0.1.42 numpy scipy
cd "$ROOT"
INGEST=${INGEST:-1}
# Build, then time copies taken right away. When the target directory is shared with other
# checkouts, cargo names their artifacts alike and may reuse or overwrite them: then build and
# copy the binaries yourself and pass the folder as BIN_DIR (neurofm, examples/read_all).
BIN=$(mktemp -d); trap 'rm -rf "$BIN"' EXIT
mkdir -p "$BIN/examples"
if [ -n "${BIN_DIR:-}" ]; then
    cp "$BIN_DIR/examples/read_all" "$BIN/examples/read_all"
    if [ "$INGEST" = 1 ]; then cp "$BIN_DIR/neurofm" "$BIN/neurofm"; fi
else
    REL=${CARGO_TARGET_DIR:-$ROOT/target}/release
    cargo build --release -q -p neurofm-io -p neurofm --bins --example read_all
    cp "$REL/examples/read_all" "$BIN/examples/read_all"
    if [ "$INGEST" = 1 ]; then cp "$REL/neurofm" "$BIN/neurofm"; fi
fi
if [ "$INGEST" = 1 ]; then
    "$BIN/neurofm" ingest-connectome --help > /dev/null ||
        { echo "the neurofm binary is another checkout's build (see BIN_DIR above)" >&2; exit 1; }
fi
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores"
"$VENV/bin/python" - "$DATA" "$REPEATS" "$BIN" "$INGEST" <<'PY'
import glob, os, shutil, statistics, subprocess, sys, tempfile, time
import mne, numpy as np, pyedflib

data, repeats, rel, ingest = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4] == "1"
files = sorted(glob.glob(os.path.join(data, "Subject*.edf")))
assert len(files) == 28, f"expected 28 EEGMAT files, found {len(files)}"
mb = sum(os.path.getsize(f) for f in files) / 1e6

def neurofm_read_all():
    subprocess.run([os.path.join(rel, "examples", "read_all"), *files], check=True,
                   stdout=subprocess.DEVNULL)

def neurofm_read_all_jobs2():
    subprocess.run([os.path.join(rel, "examples", "read_all"), "--jobs", "2", *files],
                   check=True, stdout=subprocess.DEVNULL)

def neurofm_ingest():
    d = tempfile.mkdtemp()
    try:
        subprocess.run([os.path.join(rel, "neurofm"), "--quiet", "ingest", *files,
                        "--out", os.path.join(d, "store")], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    finally:
        shutil.rmtree(d)

def mne_read():
    for f in files:
        mne.io.read_raw_edf(f, preload=True, verbose="error").get_data()

def mne_npy():
    d = tempfile.mkdtemp()
    try:
        for i, f in enumerate(files):
            x = mne.io.read_raw_edf(f, preload=True, verbose="error").get_data()
            np.save(os.path.join(d, f"{i}.npy"), x.astype(np.float32))
    finally:
        shutil.rmtree(d)

def mne_fif():
    d = tempfile.mkdtemp()
    try:
        for i, f in enumerate(files):
            raw = mne.io.read_raw_edf(f, preload=True, verbose="error")
            raw.save(os.path.join(d, f"{i}_raw.fif"), verbose="error")
    finally:
        shutil.rmtree(d)

def pyedflib_read():
    for f in files:
        r = pyedflib.EdfReader(f)
        try:
            for i in range(r.signals_in_file):
                r.readSignal(i)
        finally:
            r.close()

tools = [("neurofm read_all", neurofm_read_all), ("neurofm read_all -j2", neurofm_read_all_jobs2)]
if ingest:
    tools.append(("neurofm ingest", neurofm_ingest))
tools += [("MNE read_raw_edf", mne_read), ("MNE + npy", mne_npy), ("MNE + fif", mne_fif),
          ("pyedflib", pyedflib_read)]
print("load average before:", open("/proc/loadavg").read().split()[:3])
for name, fn in tools:
    fn()  # warm-up round
import resource
def cpu_s():
    # this process (Python tools) plus waited-for children (neurofm runs as a subprocess)
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime
times = {name: [] for name, _ in tools}
cpus = {name: [] for name, _ in tools}
for _ in range(repeats):
    for name, fn in tools:
        c = cpu_s(); t = time.perf_counter(); fn()
        times[name].append(time.perf_counter() - t); cpus[name].append(cpu_s() - c)
print("load average after: ", open("/proc/loadavg").read().split()[:3])
res = {name: (min(ts), statistics.median(ts)) for name, ts in times.items()}
base = res["MNE read_raw_edf"][1]
print(f"EEGMAT: {len(files)} files, {mb:.1f} MB; best / median of {repeats} runs")
print(f"{'tool':<20} {'best s':>8} {'median s':>9} {'MB/s':>8} {'vs MNE':>7} {'vs MNE+npy':>10} {'vs MNE+fif':>10}")
npy, fif = res["MNE + npy"][1], res["MNE + fif"][1]
for name, (best, med) in res.items():
    print(f"{name:<20} {best:8.3f} {med:9.3f} {mb / med:8.1f} {base / med:6.1f}x {npy / med:9.1f}x {fif / med:9.1f}x")
# CPU time (user + sys, all threads) does not depend on how busy the machine is the way wall
# time does; neurofm uses more than one thread, so its wall time can be below its CPU time.
cpu = {name: statistics.median(cs) for name, cs in cpus.items()}
print(f"\n{'tool':<20} {'CPU s (median)':>14} {'vs MNE':>7}")
for name, c in cpu.items():
    print(f"{name:<20} {c:14.3f} {cpu['MNE read_raw_edf'] / c:6.1f}x")
PY
