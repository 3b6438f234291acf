"""Shared by the synth / EDF+ check scripts.

`ensure()` re-executes the calling script with the project's Python environment (`.venv`, made
by `scripts/setup-python.sh` from the pinned `scripts/requirements.txt`) and returns once the script
runs inside it.
"""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def ensure():
    venv = ROOT / ".venv"
    if Path(sys.prefix).resolve() == venv.resolve():
        return
    py = subprocess.check_output(
        ["bash", str(ROOT / "scripts" / "setup-python.sh")], text=True
    ).strip()
    os.execv(py, [py, *sys.argv])


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
