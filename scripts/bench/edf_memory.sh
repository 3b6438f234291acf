#!/usr/bin/env bash
# Bounded-memory check: writes a 1 GiB EDF (64 channels x 512 Hz x 16384 one-second records,
# random int16, with numpy) in a temp dir, reads all of it through the segment API in blocks of
# 10 s (release `read_all --block-seconds 10`) under /usr/bin/time -v, prints peak RSS.
# Target: < 256 MiB. The file is deleted afterwards.
#
# Usage: scripts/bench/edf_memory.sh   (needs python3 with numpy: uses scripts/.venv, created and
# pip-installed with numpy if missing)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
VENV=$ROOT/scripts/.venv
if [ ! -x "$VENV/bin/python" ]; then python3 -m venv "$VENV"; fi
"$VENV/bin/pip" install -q numpy
cd "$ROOT"
cargo build --release -q -p neurofm-io --example read_all
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
F=$TMP/big.edf
"$VENV/bin/python" - "$F" <<'PY'
import sys, numpy as np
path = sys.argv[1]
nch, fs, nrec = 64, 512, 16384
def f(s, w): return s.encode("ascii").ljust(w, b" ")
h = f("0", 8) + f("X X X X", 80) + f("Startdate 01-JAN-2020 X X X", 80) + f("01.01.20", 8)
h += f("00.00.00", 8) + f(str(256 * (nch + 1)), 8) + f("EDF+C", 44) + f(str(nrec), 8)
h += f("1", 8) + f(str(nch), 4)
for w, v in [(16, None), (80, ""), (8, "uV"), (8, "-3276.8"), (8, "3276.7"), (8, "-32768"),
             (8, "32767"), (80, ""), (8, str(fs)), (32, "")]:
    for i in range(nch):
        h += f(f"EEG {i:03d}" if v is None else v, w)
rng = np.random.default_rng(0)
with open(path, "wb") as out:
    out.write(h)
    for start in range(0, nrec, 256):
        out.write(rng.integers(-32768, 32767, size=(min(256, nrec - start), nch * fs),
                               dtype="<i2").tobytes())
PY
ls -l "$F" | awk '{printf "file: %.2f GiB\n", $5 / 1073741824}'
/usr/bin/time -v "${CARGO_TARGET_DIR:-target}/release/examples/read_all" --block-seconds 10 "$F" 2> "$TMP/time.txt"
grep -E "Maximum resident set size|Elapsed" "$TMP/time.txt"
awk '/Maximum resident set size/ {printf "peak RSS: %.1f MiB\n", $6 / 1024}' "$TMP/time.txt"
