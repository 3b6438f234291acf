#!/usr/bin/env python3
"""Reference values for neurofm-eval, computed with scikit-learn / scipy / numpy.

Writes crates/neurofm-eval/tests/fixtures/reference.json (committed; small):
  - metrics: accuracy, balanced accuracy, Cohen's kappa, weighted F1, ROC AUC, average precision,
    confusion matrix on fixed label / probability vectors (binary with ties, 3 classes, imbalanced);
  - logreg: LogisticRegression(multi_class="multinomial", solver="lbfgs", C=...) coefficients,
    intercepts and probabilities on fixed data (with and without class_weight="balanced");
  - welch: scipy.signal.welch PSDs;
  - ea: Euclidean alignment (R = mean window covariance, R^{-1/2} by numpy eigh).

Run from anywhere: `python3 scripts/reference/make_metrics_reference.py`. It creates its own venv
in scripts/.venv (gitignored) and installs the pinned packages below into it with pip.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / "scripts" / ".venv"
PINS = ["numpy==1.26.4", "scipy==1.13.1", "scikit-learn==1.5.2"]
OUT = ROOT / "crates" / "neurofm-eval" / "tests" / "fixtures" / "reference.json"


def ensure_venv():
    py = VENV / "bin" / "python"
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    if not py.exists():
        subprocess.check_call([sys.executable, "-m", "venv", str(VENV)])
    subprocess.check_call([str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *PINS])
    os.execv(str(py), [str(py), __file__, *sys.argv[1:]])


def metrics_case(name, y_true, y_pred, proba, n_classes):
    import numpy as np
    from sklearn import metrics as M

    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    proba = np.asarray(proba, dtype=np.float64)
    labels = list(range(n_classes))
    if n_classes == 2:
        auc = M.roc_auc_score(y_true, proba[:, 1])
        ap = M.average_precision_score(y_true, proba[:, 1])
    else:
        auc = M.roc_auc_score(y_true, proba, multi_class="ovr", average="macro", labels=labels)
        ap = M.average_precision_score(np.eye(n_classes)[y_true], proba, average="macro")
    return {
        "name": name,
        "n_classes": n_classes,
        "y_true": y_true.tolist(),
        "y_pred": y_pred.tolist(),
        "proba": proba.ravel().tolist(),
        "accuracy": M.accuracy_score(y_true, y_pred),
        "balanced_accuracy": M.balanced_accuracy_score(y_true, y_pred),
        "cohen_kappa": M.cohen_kappa_score(y_true, y_pred),
        "f1_weighted": M.f1_score(y_true, y_pred, average="weighted", zero_division=0),
        "auroc": auc,
        "pr_auc": ap,
        "confusion": M.confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }


def main():
    ensure_venv()
    import warnings

    import numpy as np
    import scipy
    import sklearn
    from scipy.signal import welch
    from sklearn.linear_model import LogisticRegression

    warnings.filterwarnings("ignore")
    rng = np.random.RandomState(20261127)

    # --- metrics -------------------------------------------------------------------------
    cases = []
    n = 60
    y = rng.randint(0, 2, n)
    s = np.clip(0.5 + 0.25 * (y - 0.5) + rng.normal(0, 0.25, n), 0, 1).round(1)  # ties
    p = np.stack([1 - s, s], 1)
    cases.append(metrics_case("binary_ties", y, (s >= 0.5).astype(int), p, 2))
    y = rng.randint(0, 3, 90)
    logits = rng.randint(0, 4, (90, 3)).astype(float) + 1.5 * np.eye(3)[y] * rng.randint(0, 2, (90, 1))
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    cases.append(metrics_case("three_class_ties", y, p.argmax(1), p, 3))
    y = np.array([0] * 45 + [1] * 15)
    s = rng.uniform(0, 1, 60) * 0.45 + 0.3 * y
    pred = np.zeros(60, dtype=int)  # a classifier that never predicts class 1
    cases.append(metrics_case("imbalanced_majority_only", y, pred, np.stack([1 - s, s], 1), 2))

    # --- logistic regression -----------------------------------------------------------------
    lr_cases = []
    for name, counts, d in [("three_class", [40, 30, 20], 4), ("binary", [45, 25], 3)]:
        k = len(counts)
        y = np.repeat(np.arange(k), counts)  # imbalanced, so class_weight matters
        nn = len(y)
        X = rng.normal(0, 1, (nn, d)) + 0.8 * rng.normal(0, 1, (k, d))[y]
        fits = []
        for C in [0.05, 1.0, 20.0]:
            for cw in [None, "balanced"]:
                m = LogisticRegression(C=C, multi_class="multinomial", solver="lbfgs", tol=1e-12,
                                       max_iter=100000, class_weight=cw)
                m.fit(X, y)
                fits.append({
                    "c": C,
                    "class_weight": cw or "none",
                    "coef": m.coef_.ravel().tolist(),
                    "coef_rows": int(m.coef_.shape[0]),
                    "intercept": m.intercept_.tolist(),
                    "proba": m.predict_proba(X).ravel().tolist(),
                })
        lr_cases.append({"name": name, "n_classes": k, "d": d, "x": X.ravel().tolist(), "y": y.tolist(),
                         "fits": fits})

    # --- Welch PSD -----------------------------------------------------------------------------
    welch_cases = []
    for nn, fs, nperseg in [(600, 200.0, 256), (401, 160.0, 125)]:
        t = np.arange(nn) / fs
        x = np.sin(2 * np.pi * 10 * t) + 0.5 * rng.normal(0, 1, nn) + 0.3
        f, pxx = welch(x, fs=fs, nperseg=nperseg)
        welch_cases.append({"fs": fs, "nperseg": nperseg, "x": x.tolist(), "freqs": f.tolist(),
                            "psd": pxx.tolist()})

    # --- Euclidean alignment -----------------------------------------------------------------
    c, t, nw = 4, 50, 5
    mix = rng.normal(0, 1, (c, c))
    X = np.einsum("ij,wjt->wit", mix, rng.normal(0, 1, (nw, c, t)))
    covs = [np.cov(w, bias=True) for w in X]
    R = np.mean(covs, 0)
    vals, vecs = np.linalg.eigh(R)
    Rinv = vecs @ np.diag(vals ** -0.5) @ vecs.T
    aligned = np.einsum("ij,wjt->wit", Rinv, X)
    ea = {"n_channels": c, "window_len": t, "x": X.ravel().tolist(), "aligned": aligned.ravel().tolist()}

    out = {
        "generator": "scripts/reference/make_metrics_reference.py",
        "versions": {"numpy": np.__version__, "scipy": scipy.__version__, "scikit-learn": sklearn.__version__},
        "metrics": cases,
        "logreg": lr_cases,
        "welch": welch_cases,
        "ea": ea,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    tmp = OUT.with_suffix(".json.tmp")
    with open(tmp, "w") as fh:
        json.dump(out, fh, indent=None, separators=(",", ":"))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, OUT)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
