#!/usr/bin/env python3
"""Reads a neurofm store with only numpy + safetensors, as docs/store-format.md shows.

Usage: read_store.py STORE

Checks, for every recording: the manifest snippet from the docs works; the tensor shape equals the
manifest's; a numpy.memmap of one window (computed from the raw header, no safetensors code) equals
the same slice of the fully loaded tensor; values are finite. Exits 1 on any mismatch.
"""
import json
import pathlib
import struct
import sys

import numpy as np
from safetensors.numpy import load_file


def memmap_window(path, ch, start, length):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    info = header["data"]
    assert info["dtype"] == "F32", info
    c, t = info["shape"]
    base = 8 + n + info["data_offsets"][0]
    mm = np.memmap(path, dtype="<f4", mode="r", offset=base, shape=(c, t))
    return np.array(mm[ch, start:start + length])


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    store = pathlib.Path(sys.argv[1])
    # --- the snippet from docs/store-format.md ---
    manifest = json.loads((store / "manifest.json").read_text())
    assert manifest["format"] == "neurofm-store" and manifest["format_version"] <= 1
    entry = manifest["recordings"][0]
    data = load_file(store / entry["path"])["data"]
    print(entry["id"], data.shape, entry["sfreq_hz"], [c["name"] for c in entry["channels"]][:4])
    # --- checks over every recording ---
    failures = 0
    for e in manifest["recordings"]:
        tensors = load_file(store / e["path"])
        d = tensors["data"]
        problems = []
        if list(d.shape) != e["shape"]:
            problems.append(f"shape {list(d.shape)} != manifest {e['shape']}")
        if d.dtype != np.float32:
            problems.append(f"dtype {d.dtype}")
        if not np.isfinite(d).all():
            problems.append("non-finite values")
        for name in e.get("extras", []):
            if name not in tensors:
                problems.append(f"extra tensor {name} missing")
        if len(e["shape"]) == 2 and e["shape"][1] > 0:
            c, t = e["shape"]
            ch, start = c // 2, t // 3
            length = min(100, t - start)
            w = memmap_window(store / e["path"], ch, start, length)
            if not np.array_equal(w, d[ch, start:start + length]):
                problems.append("memmap window differs from the loaded tensor")
        for a in e["annotations"]:
            if a["onset_s"] < 0 or a["onset_s"] > e["n_samples"] / e["sfreq_hz"] + 1e-9:
                problems.append(f"annotation outside the recording: {a}")
        status = "PASS" if not problems else "FAIL " + "; ".join(problems)
        failures += bool(problems)
        print(f"{status:4} {e['id']} {list(d.shape)}")
    n = len(manifest["recordings"])
    print(f"{n - failures} passed, {failures} failed")
    return 1 if failures or n == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
