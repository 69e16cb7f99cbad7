#!/usr/bin/env python3
"""Write the evaluation protocol's reference values (Docs/evaluation.md) into Fixtures/eval/:

  * logreg.json: scikit-learn's multinomial logistic regression (lbfgs, L2, intercept fitted and not penalised) on
    two small seeded problems, the values PrimaEval.LogisticRegression must reproduce at the optimum
    (PrimaEvalTests/LogisticRegressionTests);
  * metrics.json: seeded fold predictions of two systems and what scikit-learn and numpy make of them, the values
    PrimaEval.EvaluationReport must reproduce (PrimaEvalTests/EvaluationReportTests; layout below).

logreg.json
-----------

scikit-learn 1.9.1 minimises, for n samples without sample weights (sklearn/linear_model/_logistic.py,
_logistic_regression_path: l2_reg_strength = 1 / (C * sw_sum), sw_sum = n; _linear_loss.py, LinearModelLoss.loss):

    (1/n) sum_i [logsumexp_k(x_i . w_k + b_k) - (x_i . w_{y_i} + b_{y_i})] + 1/(2 C n) sum_k ||w_k||^2

over the classes present in y (LabelEncoder: a class absent from y has no row in coef_ and no column in
predict_proba). Problems:

  * "rare": N = 90, D = 4, K = 4, class 3 has 3 samples; C = 0.7.
  * "absent": K = 5 declared, no training sample of class 2 (sklearn fits the four present classes); C = 2.0.

Each problem records the training rows, labels, C, the classes sklearn saw, coef_ [K_present][D], intercept_
[K_present], held-out rows and predict_proba on them [N_test][K_present], and the largest |gradient| of the objective
above at sklearn's solution (how far from the exact optimum sklearn stopped; the Swift test's tolerance must exceed
what that allows).

metrics.json
------------
Classes ACK, BCC, MEL, NEV. System "alpha": folds 0, 1, 2 (25, 24, 23 cases); system "beta": folds 0 and 1, where
fold 1 has no MEL case and no case is ever predicted NEV. Probabilities are seeded softmaxes leaning to the true class.
Per system, "folds" holds each fold's predictions (the FoldPredictions JSON members) and scikit-learn's numbers:
precision_recall_fscore_support(labels=range(K), zero_division=0), f1_score(average="macro", labels=range(K),
zero_division=0), accuracy_score, balanced_accuracy_score, confusion_matrix(labels=range(K)). "summary" holds
numpy's mean and std(ddof=1) over the folds of macro F1, accuracy, balanced accuracy and the per-class scores, the
summed confusion matrix, and the calibration over every case of the system: 10 bins, case in bin
#{b in 1..9 : confidence >= b / 10} (confidence = top-class probability), per bin count, mean confidence and
accuracy (null when empty), and ECE = sum_b count_b / N * |accuracy_b - confidence_b|.

Deterministic; byte-identical on re-run. Run with the venv where scikit-learn 1.9.1 is installed:
    /work/venv/bin/python Fixtures/eval/make_logreg_fixture.py
"""

import json
import sys
from pathlib import Path

import numpy as np
import sklearn
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score,
                             precision_recall_fscore_support)

PINNED = {"sklearn": "1.9.1", "numpy": "2.4.6"}
OUTPUT = Path(__file__).resolve().parent / "logreg.json"
METRICS_OUTPUT = Path(__file__).resolve().parent / "metrics.json"
CLASSES = ["ACK", "BCC", "MEL", "NEV"]
BINS = 10
SEED = 20261203


def check_versions():
    have = {"sklearn": sklearn.__version__, "numpy": np.__version__}
    wrong = [f"{name}: installed {have[name]}, pinned {want}" for name, want in PINNED.items() if have[name] != want]
    if wrong:
        sys.exit("make_logreg_fixture.py: " + "; ".join(wrong))


def problem(rng, counts, dims, shift, test_count):
    """Rows of class k are N(shift * mean_k, 1) with seeded class means; counts[k] rows of class k, shuffled."""
    means = rng.normal(size=(len(counts), dims))
    x = np.concatenate([rng.normal(size=(n, dims)) + shift * means[k] for k, n in enumerate(counts)])
    y = np.concatenate([np.full(n, k) for k, n in enumerate(counts)])
    order = rng.permutation(len(y))
    test = rng.normal(size=(test_count, dims)) + shift * means[rng.integers(0, len(counts), size=test_count)]
    return x[order], y[order], test


def objective_gradient(x, y, coef, intercept, c):
    """Largest |d objective / d parameter| at (coef, intercept), y as indices into the present classes."""
    n = len(y)
    z = x @ coef.T + intercept
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(n), y] -= 1
    grad_w = p.T @ x / n + coef / (c * n)
    grad_b = p.sum(axis=0) / n
    return float(max(np.abs(grad_w).max(), np.abs(grad_b).max()))


def fit(name, x, y, class_count, c, test):
    model = LogisticRegression(C=c, tol=1e-14, max_iter=100000).fit(x, y)
    present = [int(k) for k in model.classes_]
    local = np.searchsorted(model.classes_, y)
    return {
        "name": name,
        "c": c,
        "class_count": class_count,
        "features": x.tolist(),
        "labels": [int(v) for v in y],
        "present_classes": present,
        "coef": model.coef_.tolist(),
        "intercept": model.intercept_.tolist(),
        "test_features": test.tolist(),
        "test_probabilities": model.predict_proba(test).tolist(),
        "max_gradient": objective_gradient(x, local, model.coef_, model.intercept_, c),
    }


def fold_predictions(rng, system, fold, size, label_weights, never_predicted):
    """One fold: labels drawn with label_weights; logits N(0, 1) plus 1.4 on the true class (so that most, not
    all, top classes are right); a never_predicted class gets -30 (its probability stays ~1e-13, never the top)."""
    labels = rng.choice(len(CLASSES), size=size, p=np.asarray(label_weights) / sum(label_weights))
    logits = rng.normal(size=(size, len(CLASSES)))
    logits[np.arange(size), labels] += 1.4
    if never_predicted is not None:
        logits[:, never_predicted] = -30.0
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    predicted = p.argmax(axis=1)
    labels_k = list(range(len(CLASSES)))
    precision, recall, f1, support = precision_recall_fscore_support(labels, predicted, labels=labels_k, zero_division=0)
    return {
        "predictions": {"system": system, "fold": fold, "classes": CLASSES,
                        "cases": [f"PAT_{fold}_{system}_{i}.png" for i in range(size)],
                        "labels": [int(v) for v in labels], "probabilities": p.tolist()},
        "precision": precision.tolist(), "recall": recall.tolist(), "f1": f1.tolist(),
        "support": [int(v) for v in support],
        "macro_f1": float(f1_score(labels, predicted, labels=labels_k, average="macro", zero_division=0)),
        "accuracy": float(accuracy_score(labels, predicted)),
        "balanced_accuracy": float(balanced_accuracy_score(labels, predicted)),
        "confusion": confusion_matrix(labels, predicted, labels=labels_k).tolist(),
    }


def summary(folds):
    def spread(values):
        values = np.asarray(values, dtype=float)
        return {"mean": float(values.mean(axis=0).tolist()) if values.ndim == 1 else values.mean(axis=0).tolist(),
                "sd": (values.std(axis=0, ddof=1).tolist() if values.ndim > 1 else float(values.std(ddof=1)))
                if len(values) > 1 else None}
    labels = np.concatenate([f["predictions"]["labels"] for f in folds])
    p = np.concatenate([np.asarray(f["predictions"]["probabilities"]) for f in folds])
    confidence = p.max(axis=1)
    correct = p.argmax(axis=1) == labels
    bins = sum((confidence >= b / BINS).astype(int) for b in range(1, BINS))
    table, ece = [], 0.0
    for b in range(BINS):
        inside = bins == b
        count = int(inside.sum())
        if count:
            acc, conf = float(correct[inside].mean()), float(confidence[inside].mean())
            ece += count / len(labels) * abs(acc - conf)
        table.append({"count": count, "mean_confidence": conf if count else None, "accuracy": acc if count else None})
    return {
        "macro_f1": spread([f["macro_f1"] for f in folds]),
        "accuracy": spread([f["accuracy"] for f in folds]),
        "balanced_accuracy": spread([f["balanced_accuracy"] for f in folds]),
        "precision": spread([f["precision"] for f in folds]),
        "recall": spread([f["recall"] for f in folds]),
        "f1": spread([f["f1"] for f in folds]),
        "confusion": np.sum([f["confusion"] for f in folds], axis=0).tolist(),
        "bins": table,
        "ece": ece,
    }


def write_metrics(rng):
    alpha = [fold_predictions(rng, "alpha", fold, size, [3, 4, 1, 2], None) for fold, size in enumerate([25, 24, 23])]
    beta = [fold_predictions(rng, "beta", 0, 22, [3, 4, 1, 2], 3), fold_predictions(rng, "beta", 1, 21, [3, 4, 0, 2], 3)]
    systems = [{"system": name, "folds": folds, "summary": summary(folds)} for name, folds in (("alpha", alpha), ("beta", beta))]
    METRICS_OUTPUT.write_text(json.dumps({"format": "prima-eval-metrics-fixture", "version": 1, "sklearn": sklearn.__version__,
                                          "classes": CLASSES, "bins": BINS, "systems": systems}, indent=1) + "\n")


def main():
    check_versions()
    rng = np.random.default_rng(SEED)
    x, y, test = problem(rng, [40, 27, 20, 3], dims=4, shift=1.2, test_count=12)
    rare = fit("rare", x, y, 4, 0.7, test)
    x, y, test = problem(rng, [15, 20, 12, 13], dims=3, shift=1.5, test_count=10)
    y = np.where(y >= 2, y + 1, y)  # labels 0, 1, 3, 4 of K = 5: class 2 never occurs
    absent = fit("absent", x, y, 5, 2.0, test)
    for case in (rare, absent):
        print(f"{case['name']}: max |gradient| at sklearn's solution {case['max_gradient']:.3g}")
    OUTPUT.write_text(json.dumps({"format": "prima-logreg-fixture", "version": 1, "sklearn": sklearn.__version__,
                                  "problems": [rare, absent]}, indent=1) + "\n")
    write_metrics(rng)


if __name__ == "__main__":
    main()
