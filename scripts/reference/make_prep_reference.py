#!/usr/bin/env python3
"""Reference outputs for neurofm's preprocessing steps, computed with MNE / scipy on real EEGMAT EDFs.

Usage: python3 scripts/reference/make_prep_reference.py [OUT_DIR]

Creates (once) its own virtual environment in scripts/reference/.venv with pinned numpy / scipy /
mne, re-runs itself inside it, reads EEGMAT recordings from $NEUROFM_SHARED/data/eegmat (default:
<repo>/../shared/data/eegmat) with mne.io.read_raw_edf, and writes to OUT_DIR (default
<repo>/data/cache/prep-reference, gitignored):

  <case>.input.npy      float64 [n_channels, n_samples], volts, the data the step was applied to
  <case>.<step>.npy     float64, the reference output of that step
  manifest.json         per case: file, channels, sfreq, and each step's exact parameters

crates/neurofm-data/tests/prep_reference.rs reads these files and compares neurofm's steps.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
VENV = HERE / ".venv"
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
import numpy as np  # noqa: E402
import scipy  # noqa: E402
from scipy import signal  # noqa: E402

mne.set_log_level("ERROR")

SHARED = Path(os.environ.get("NEUROFM_SHARED", REPO.parent / "shared"))
EEGMAT = SHARED / "data" / "eegmat"
OUT = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "data" / "cache" / "prep-reference"

MONTAGE_19 = ["Fp1", "Fp2", "F7", "F3", "Fz", "F4", "F8", "T3", "C3", "Cz", "C4", "T4",
              "T5", "P3", "Pz", "P4", "T6", "O1", "O2"]  # EEGMAT spells T7/T8/P7/P8 as T3/T4/T5/T6


def load(name, picks, start_s=None, stop_s=None):
    raw = mne.io.read_raw_edf(EEGMAT / name, preload=True, verbose="ERROR")
    data = raw.get_data(picks=picks)
    sf = raw.info["sfreq"]
    if start_s is not None:
        data = data[:, int(round(start_s * sf)) : int(round(stop_s * sf))]
    return np.ascontiguousarray(data, dtype=np.float64), sf


def save(name, arr):
    np.save(OUT / f"{name}.npy", np.ascontiguousarray(arr, dtype=np.float64))


def main():
    if not EEGMAT.is_dir():
        sys.exit(f"error: EEGMAT recordings not found in {EEGMAT} (set NEUROFM_SHARED)")
    OUT.mkdir(parents=True, exist_ok=True)
    manifest = {
        "versions": {"mne": mne.__version__, "scipy": scipy.__version__, "numpy": np.__version__},
        "cases": [],
    }

    # Per-step cases on a few channels.
    per_step = [
        ("s00_2_three", "Subject00_2.edf", ["EEG Fp1", "EEG Cz", "EEG O2"], None, None),
        ("s05_1_segment", "Subject05_1.edf", ["EEG F7", "EEG T4"], 40.0, 52.3),
    ]
    for case, fname, picks, t0, t1 in per_step:
        x, sf = load(fname, picks, t0, t1)
        save(f"{case}.input", x)
        steps = []

        def step(name, params, y):
            save(f"{case}.{name}", y)
            steps.append({"name": name, **params})

        step("notch50", {"kind": "notch", "freqs": [50.0]},
             mne.filter.notch_filter(x, sf, [50.0]))
        step("notch50_100", {"kind": "notch", "freqs": [50.0, 100.0]},
             mne.filter.notch_filter(x, sf, [50.0, 100.0]))
        step("bandpass_0.3_75", {"kind": "bandpass", "l_freq": 0.3, "h_freq": 75.0},
             mne.filter.filter_data(x, sf, 0.3, 75.0))
        step("highpass_1", {"kind": "bandpass", "l_freq": 1.0, "h_freq": None},
             mne.filter.filter_data(x, sf, 1.0, None))
        step("lowpass_40", {"kind": "bandpass", "l_freq": None, "h_freq": 40.0},
             mne.filter.filter_data(x, sf, None, 40.0))
        for up, down in [(2, 5), (4, 3), (1, 4)]:
            step(f"resample_{up}_{down}", {"kind": "resample", "up": up, "down": down},
                 signal.resample_poly(x, up, down, axis=-1))
        for order, wn, btype in [(4, [1.0, 40.0], "bandpass"), (3, 30.0, "lowpass"),
                                 (5, 0.5, "highpass"), (2, [48.0, 52.0], "bandstop")]:
            sos = signal.butter(order, wn, btype=btype, fs=sf, output="sos")
            wn_list = wn if isinstance(wn, list) else [wn]
            step(f"butter_{btype}_{order}", {"kind": "butter", "order": order, "btype": btype,
                                             "freqs": wn_list},
                 signal.sosfiltfilt(sos, x, axis=-1))
        manifest["cases"].append({"case": case, "file": fname, "channels": picks, "sfreq": sf,
                                  "start_s": t0, "stop_s": t1, "steps": steps})

    # The whole eegmat-200hz chain (configs/recipes/eegmat-200hz.toml) on one recording.
    picks = [f"EEG {c}" for c in MONTAGE_19]
    x, sf = load("Subject01_2.edf", picks)
    save("chain_s01_2.input", x)
    y = mne.filter.notch_filter(x, sf, [50.0])
    y = mne.filter.filter_data(y, sf, 0.3, 75.0)
    y = signal.resample_poly(y, 2, 5, axis=-1)
    y = y / 100e-6
    save("chain_s01_2.output", y)
    manifest["cases"].append({
        "case": "chain_s01_2", "file": "Subject01_2.edf", "channels": picks, "sfreq": sf,
        "steps": [{"name": "output", "kind": "chain",
                   "recipe": "notch 50 Hz; band-pass 0.3-75 Hz; resample_poly 2/5; / 100 uV"}],
    })

    tmp = OUT / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, OUT / "manifest.json")
    print(f"wrote reference outputs to {OUT}")


if __name__ == "__main__":
    main()
