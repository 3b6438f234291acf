#!/usr/bin/env python3
"""The eegmat-200hz recipe in MNE, timed: read_raw_edf(preload=True), pick the 19 10-20 channels
in order, notch_filter(50), filter(0.3, 75), resample(200, method='polyphase'), divide by 100 uV,
5 s fixed-length epochs. Usage: mne_prepare_eegmat.py EEGMAT_DIR. Prints the wall time in seconds.

Runs inside scripts/reference/.venv (created with the same pins as make_prep_reference.py).
"""

import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENV = HERE.parent / "reference" / ".venv"
PINS = ["numpy==2.2.6", "scipy==1.15.3", "mne==1.13.2"]


def ensure_venv():
    py = VENV / "bin" / "python"
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    stamp = VENV / "pins.txt"
    if not py.exists():
        subprocess.check_call([sys.executable, "-m", "venv", str(VENV)])
    if not stamp.exists() or stamp.read_text() != "\n".join(PINS):
        subprocess.check_call([str(py), "-m", "pip", "install", "-q", *PINS])
        stamp.write_text("\n".join(PINS))
    os.execv(str(py), [str(py), str(Path(__file__).resolve()), *sys.argv[1:]])


ensure_venv()

import mne  # noqa: E402

mne.set_log_level("ERROR")
MONTAGE = ["Fp1", "Fp2", "F7", "F3", "Fz", "F4", "F8", "T3", "C3", "Cz", "C4", "T4",
           "T5", "P3", "Pz", "P4", "T6", "O1", "O2"]


def main():
    files = sorted(Path(sys.argv[1]).glob("Subject*_*.edf"))
    t0 = time.perf_counter()
    n_epochs = 0
    for f in files:
        raw = mne.io.read_raw_edf(f, preload=True)
        raw.pick([f"EEG {c}" for c in MONTAGE])
        raw.notch_filter(50.0)
        raw.filter(0.3, 75.0)
        raw.resample(200.0, method="polyphase")
        raw.apply_function(lambda x: x / 1e-4)
        epochs = mne.make_fixed_length_epochs(raw, duration=5.0, preload=True)
        n_epochs += len(epochs)
    dt = time.perf_counter() - t0
    print(f"{dt:.3f} {len(files)} {n_epochs}")


if __name__ == "__main__":
    main()
