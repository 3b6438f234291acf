#!/usr/bin/env python3
"""Cross-subject separability of `neurofm synth` trials: log band-power + logistic regression,
leave-one-subject-out (LOSO).

Usage:
    python3 scripts/check/synth_separability.py                  # quickstart preset, checks range
    python3 scripts/check/synth_separability.py --levels easy,medium,hard
    python3 scripts/check/synth_separability.py --store S        # an existing synth store

Without --store it runs `neurofm synth --preset quickstart --difficulty LEVEL` (through cargo)
into a temporary directory for each level. Features per trial: log mean Welch power (1 s Hann
segments) of every channel in the mu (8-13 Hz) and beta (13-30 Hz) bands over 0.5-3.5 s after the
cue; classifier: standardization + L2 logistic regression (scikit-learn); one fold per held-out
subject. Reports per-subject and mean accuracy against chance. For the default level (medium) it
exits 1 unless the mean accuracy is clearly above chance and clearly below 100%
(chance + 0.15 <= accuracy <= 0.90).

Runs in the project venv `.venv` (scripts/setup-python.sh, scripts/requirements.txt): numpy,
scipy, scikit-learn.
"""

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _synth_common as common  # noqa: E402

BANDS = [(8.0, 13.0), (13.0, 30.0)]


def features(store: Path):
    import numpy as np
    from scipy.signal import welch

    entries, load = common.read_store(store)
    X, y, groups = [], [], []
    classes = None
    for e in entries:
        if e.get("labels", {}).get("dataset") != "synth":
            continue
        classes = e["labels"]["classes"]
        fs = e["sfreq_hz"]
        data = load(e).astype(np.float64)
        n = int(round(3.0 * fs))
        for a in e["annotations"]:
            s = int(round((a["onset_s"] + 0.5) * fs))
            seg = data[:, s : s + n]
            f, p = welch(seg, fs=fs, nperseg=int(fs), axis=-1)
            feats = [np.log(p[:, (f >= lo) & (f < hi)].mean(axis=1)) for lo, hi in BANDS]
            X.append(np.concatenate(feats))
            y.append(classes.index(a["description"]))
            groups.append(e["subject"])
    if not X:
        raise SystemExit(f"{store}: no synth recordings")
    return np.array(X), np.array(y), np.array(groups), classes


def loso(X, y, groups):
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    accs = {}
    for g in sorted(set(groups)):
        test = groups == g
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=5000))
        clf.fit(X[~test], y[~test])
        accs[g] = float(np.mean(clf.predict(X[test]) == y[test]))
    return accs


def report(name, store):
    import numpy as np

    X, y, groups, classes = features(store)
    accs = loso(X, y, groups)
    mean = float(np.mean(list(accs.values())))
    chance = 1.0 / len(classes)
    per = " ".join(f"{g}:{a:.2f}" for g, a in accs.items())
    print(
        f"{name}: LOSO accuracy {mean:.3f} (sd {np.std(list(accs.values())):.3f}) over "
        f"{len(accs)} subjects, {len(y)} trials, {len(classes)} classes, chance {chance:.3f}"
    )
    print(f"  per subject: {per}")
    return mean, chance


def main():
    common.ensure()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, help="an existing store made by `neurofm synth`")
    ap.add_argument("--levels", default="medium", help="comma-separated difficulties to generate")
    ap.add_argument("--seed", default="42")
    args = ap.parse_args()
    if args.store:
        report(str(args.store), args.store)
        return
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        for level in args.levels.split(","):
            store = Path(tmp) / level
            common.neurofm(
                "synth", "--quiet", "--out", store, "--preset", "quickstart",
                "--difficulty", level, "--seed", args.seed,
            )
            mean, chance = report(f"quickstart difficulty={level} seed={args.seed}", store)
            if level == "medium" and not (chance + 0.15 <= mean <= 0.90):
                print(f"FAIL medium difficulty accuracy {mean:.3f} outside [{chance + 0.15:.3f}, 0.900]")
                failed = True
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
