"""Shared by the synth / EDF+ check scripts: run inside scripts/check/.venv-synth with pinned packages.

`ensure(requirements)` re-executes the calling script with the venv's python (creating the venv
and pip-installing the requirements the first time, or when one is missing) and returns once the
script runs inside it.
"""

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Own venv: other check scripts pin other numpy/scipy versions.
VENV = ROOT / "scripts" / "check" / ".venv-synth"


def _venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _missing(requirements):
    missing = []
    for req in requirements:
        name, _, version = req.partition("==")
        try:
            if importlib.metadata.version(name) != version:
                missing.append(req)
        except importlib.metadata.PackageNotFoundError:
            missing.append(req)
    return missing


def ensure(requirements):
    py = _venv_python()
    if Path(sys.prefix).resolve() != VENV.resolve():
        if not py.exists():
            print(f"creating {VENV}", file=sys.stderr)
            subprocess.check_call([sys.executable, "-m", "venv", str(VENV)])
        os.execv(str(py), [str(py), *sys.argv])
    missing = _missing(requirements)
    if missing:
        print(f"installing {' '.join(missing)} into {VENV}", file=sys.stderr)
        subprocess.check_call([str(py), "-m", "pip", "install", "-q", *missing])


def neurofm(*args):
    """Runs the neurofm CLI through cargo (debug build) from the repository root."""
    cmd = ["cargo", "run", "-q", "-p", "neurofm", "--", *map(str, args)]
    print("+ " + " ".join(cmd), file=sys.stderr)
    subprocess.check_call(cmd, cwd=ROOT)


def read_store(store: Path):
    """(manifest entries, loader) for a neurofm store; loader(entry) -> float32 [channels, samples]."""
    import json

    import numpy as np

    manifest = json.loads((store / "manifest.json").read_text())
    if manifest.get("format") != "neurofm-store":
        raise SystemExit(f"{store}: not a neurofm store")

    def load(entry):
        path = store / entry["path"]
        raw = path.read_bytes()
        n = int.from_bytes(raw[:8], "little")
        header = json.loads(raw[8 : 8 + n])
        t = header["data"]
        if t["dtype"] != "F32":
            raise SystemExit(f"{path}: data dtype {t['dtype']}")
        start, stop = t["data_offsets"]
        base = 8 + n
        return np.frombuffer(raw[base + start : base + stop], dtype="<f4").reshape(t["shape"])

    return manifest["recordings"], load
