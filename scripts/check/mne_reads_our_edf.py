#!/usr/bin/env python3
"""MNE reads the EDF+ files that neurofm writes: same channels, rate, length, start, patient id,
annotations, and data within the 16-bit quantization step.

Usage:
    python3 scripts/check/mne_reads_our_edf.py            # generates its own cases with the CLI
    python3 scripts/check/mne_reads_our_edf.py --store S --edf-dir D   # checks existing output

Without arguments it runs `neurofm synth` (through cargo) twice into a temporary directory:
the `tiny` preset (19 channels, 200 Hz, 4 classes, 50 Hz line) and a 250 Hz / 3-channel /
2-class / 60 Hz variant with 2 runs, then compares every EDF+ file MNE reads with the recording in
the store (read straight from its safetensors file). Exits 1 on any mismatch.

Runs in the project venv `.venv` (scripts/setup-python.sh, scripts/requirements.txt): mne, numpy.
"""

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _synth_common as common  # noqa: E402



def edf_header(path: Path):
    """Physical/digital ranges per signal, parsed from the header bytes (independent of MNE)."""
    b = path.read_bytes()
    ns = int(b[252:256].decode().strip())
    off = 256

    def take(width):
        nonlocal off
        vals = [b[off + i * width : off + (i + 1) * width].decode().strip() for i in range(ns)]
        off += ns * width
        return vals

    labels = take(16)
    take(80)
    take(8)
    pmin = [float(v) for v in take(8)]
    pmax = [float(v) for v in take(8)]
    dmin = [float(v) for v in take(8)]
    dmax = [float(v) for v in take(8)]
    return {
        lab: (pmin[i], pmax[i], dmin[i], dmax[i])
        for i, lab in enumerate(labels)
        if lab != "EDF Annotations"
    }


def check_one(edf: Path, entry, data) -> list:
    import mne
    import numpy as np

    errors = []
    raw = mne.io.read_raw_edf(edf, preload=True, verbose="error")
    names = [c["name"] for c in entry["channels"]]
    if raw.ch_names != names:
        errors.append(f"channel names {raw.ch_names} != {names}")
    if raw.info["sfreq"] != entry["sfreq_hz"]:
        errors.append(f"sfreq {raw.info['sfreq']} != {entry['sfreq_hz']}")
    if raw.n_times != entry["n_samples"]:
        errors.append(f"n_times {raw.n_times} != {entry['n_samples']}")
    want_date = entry["meas_date"].replace("Z", "+00:00")
    got_date = raw.info["meas_date"].isoformat()
    if got_date != want_date:
        errors.append(f"meas_date {got_date} != {want_date}")
    his_id = (raw.info.get("subject_info") or {}).get("his_id")
    if his_id != entry["subject"]:
        errors.append(f"patient id {his_id!r} != subject {entry['subject']!r}")
    ann = entry["annotations"]
    got = raw.annotations
    if len(got) != len(ann):
        errors.append(f"{len(got)} annotations != {len(ann)}")
    else:
        for a, o, d, t in zip(ann, got.onset, got.duration, got.description):
            if abs(o - a["onset_s"]) > 1e-6 or abs(d - a["duration_s"]) > 1e-6 or t != a["description"]:
                errors.append(f"annotation {(o, d, t)} != {a}")
                break
    if errors:
        return errors
    hdr = edf_header(edf)
    x = raw.get_data()  # volts
    worst = 0.0
    for i, name in enumerate(names):
        pmin, pmax, dmin, dmax = hdr[name]
        step = (pmax - pmin) / (dmax - dmin) * 1e-6  # µV -> V
        err = float(np.max(np.abs(x[i] - data[i].astype(np.float64))))
        worst = max(worst, err / step)
        if err > 0.5 * step * (1 + 1e-6) + 1e-15:
            errors.append(f"{name}: max |MNE - store| = {err:.3e} V > half a step ({step:.3e} V)")
    print(
        f"ok  {edf.name}: {len(names)} ch, {raw.info['sfreq']:g} Hz, {raw.n_times} samples, "
        f"{len(ann)} annotations, worst error {worst:.3f} quantization steps"
    )
    return errors


def check_dir(store: Path, edf_dir: Path) -> int:
    entries, load = common.read_store(store)
    n_bad = 0
    n = 0
    for e in entries:
        edf = edf_dir / f"sub-{e['subject']}_task-{e['task']}_run-{e['run']}.edf"
        if not edf.exists():
            continue
        n += 1
        errs = check_one(edf, e, load(e))
        for msg in errs:
            print(f"FAIL {edf.name}: {msg}")
        n_bad += bool(errs)
    if n == 0:
        print(f"FAIL no EDF+ file in {edf_dir} matches a recording of {store}")
        return 1
    return n_bad


def main():
    common.ensure()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path)
    ap.add_argument("--edf-dir", type=Path)
    args = ap.parse_args()
    if (args.store is None) != (args.edf_dir is None):
        ap.error("--store and --edf-dir go together")
    if args.store:
        bad = check_dir(args.store, args.edf_dir)
    else:
        bad = 0
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            cases = {
                "tiny": ["--preset", "tiny"],
                "variant": [
                    "--preset", "tiny", "--subjects", "2", "--runs", "2", "--sfreq", "250",
                    "--classes", "2", "--channels", "C3,Cz,C4", "--line-freq", "60", "--seed", "7",
                ],
            }
            for name, extra in cases.items():
                store, edf = tmp / name / "store", tmp / name / "edf"
                common.neurofm("synth", "--quiet", "--out", store, "--edf-dir", edf, *extra)
                bad += check_dir(store, edf)
    total = "all files match" if bad == 0 else f"{bad} file(s) differ"
    print(f"mne_reads_our_edf: {total}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
