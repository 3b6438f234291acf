#!/usr/bin/env python3
"""Independent check of a `neurofm export` file with numpy + safetensors only.

Usage: python3 scripts/check/export_numpy.py OUT.safetensors

Creates (once) a venv in scripts/check/.venv with numpy and safetensors, then:
  * loads OUT.safetensors with safetensors.numpy and reads its metadata;
  * checks the metadata keys (channels, recipe_hash, tokenizer, model_kind, neurofm_version),
    that `channels` and `tokenizer` parse as JSON, and that config.json sits beside the file;
  * checks every tensor's dtype (float32) and shape against OUT.safetensors.check.json;
  * recomputes the linear layer named in the check file, input @ weight.T + bias, in numpy and
    compares it with the output candle computed (relative tolerance 1e-5).
Exits 1 with a message on the first failure.
"""

import json
import os
import subprocess
import sys
import venv

HERE = os.path.dirname(os.path.abspath(__file__))
VENV = os.path.join(HERE, ".venv")
REQUIREMENTS = ["numpy==2.2.6", "safetensors==0.8.0"]


def ensure_venv():
    py = os.path.join(VENV, "bin", "python")
    if os.path.realpath(sys.prefix) == os.path.realpath(VENV):
        return
    if not os.path.exists(py):
        venv.create(VENV, with_pip=True)
        subprocess.check_call([py, "-m", "pip", "install", "--quiet", *REQUIREMENTS])
    os.execv(py, [py, *sys.argv])


def fail(msg):
    print(f"export_numpy: FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    ensure_venv()
    import numpy as np
    from safetensors import safe_open
    from safetensors.numpy import load_file

    path = sys.argv[1]
    check_path = path + ".check.json"
    for p in (path, check_path):
        if not os.path.isfile(p):
            fail(f"{p}: no such file (write it with `neurofm export --checkpoint DIR --out {path}`)")
    with open(check_path) as f:
        check = json.load(f)
    tensors = load_file(path)
    with safe_open(path, framework="numpy") as f:
        meta = f.metadata() or {}

    for key in ["channels", "recipe_hash", "tokenizer", "model_kind", "neurofm_version"]:
        if key not in meta:
            fail(f"metadata key {key!r} missing")
        if meta[key] != check["metadata"].get(key):
            fail(f"metadata {key!r} = {meta[key]!r}, check file says {check['metadata'].get(key)!r}")
    channels = json.loads(meta["channels"])
    if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
        fail("metadata 'channels' is not a JSON list of strings")
    json.loads(meta["tokenizer"])
    config_path = os.path.join(os.path.dirname(os.path.abspath(path)), "config.json")
    with open(config_path) as f:
        config = json.load(f)
    if config.get("type") != meta["model_kind"]:
        fail(f"config.json type {config.get('type')!r} != model_kind {meta['model_kind']!r}")

    if sorted(tensors) != sorted(check["shapes"]):
        fail(f"tensor names differ: {sorted(set(tensors) ^ set(check['shapes']))}")
    for name, shape in check["shapes"].items():
        t = tensors[name]
        if t.dtype != np.float32:
            fail(f"{name}: dtype {t.dtype}, expected float32")
        if list(t.shape) != shape:
            fail(f"{name}: shape {list(t.shape)}, expected {shape}")
        if not np.all(np.isfinite(t)):
            fail(f"{name}: non-finite values")

    lin = check["linear"]
    w = tensors[lin + ".weight"].astype(np.float64)
    b = tensors[lin + ".bias"].astype(np.float64)
    x = np.asarray(check["input"], dtype=np.float64)
    want = np.asarray(check["output"], dtype=np.float64)
    got = x @ w.T + b
    scale = max(1.0, float(np.abs(want).max()))
    err = float(np.abs(got - want).max()) / scale
    if err > 1e-5:
        fail(f"{lin}: numpy forward differs from candle by {err:.3g} (relative)")
    n_params = sum(int(t.size) for t in tensors.values())
    print(
        f"export_numpy: OK {path}: {len(tensors)} tensors, {n_params} parameters, "
        f"model_kind={meta['model_kind']}, {len(channels)} channels, "
        f"{lin} forward max rel err {err:.2e}"
    )


if __name__ == "__main__":
    main()
