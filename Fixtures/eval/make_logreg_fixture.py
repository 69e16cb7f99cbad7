#!/usr/bin/env python3
"""Write Fixtures/eval/logreg.json: scikit-learn's multinomial logistic regression (lbfgs, L2, intercept fitted and
not penalised) on two small seeded problems, the values PrimaEval.LogisticRegression must reproduce at the optimum
(PrimaEvalTests/LogisticRegressionTests).

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

Deterministic; byte-identical on re-run. Run with the venv where scikit-learn 1.9.1 is installed:
    /work/venv/bin/python Fixtures/eval/make_logreg_fixture.py
"""

import json
import sys
from pathlib import Path

import numpy as np
import sklearn
from sklearn.linear_model import LogisticRegression

PINNED = {"sklearn": "1.9.1", "numpy": "2.4.6"}
OUTPUT = Path(__file__).resolve().parent / "logreg.json"
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


if __name__ == "__main__":
    main()
