"""metrics.py reports what scikit-learn reports (through other sklearn entry points than the module uses)."""

import numpy as np
import pytest
from sklearn.metrics import classification_report, confusion_matrix, roc_auc_score

from cloudcover.train.metrics import (
    bin_centres,
    classification_metrics,
    discard_decision,
    expected_coverage,
    macro_f1,
)

NAMES = ["clouds_0_25", "clouds_25_50", "clouds_50_75", "clouds_75_100"]


def _random_predictions(seed=0, n=200):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    logits = rng.normal(size=(n, 4)) + 2.0 * np.eye(4)[y] * rng.uniform(0, 1, (n, 1))
    p = np.exp(logits)
    return y, p / p.sum(axis=1, keepdims=True)


def test_equals_scikit_learn_report():
    y, p = _random_predictions()
    m = classification_metrics(y, p, NAMES)
    ref = classification_report(y, p.argmax(1), labels=range(4), target_names=NAMES, output_dict=True,
                                zero_division=0)
    assert m["accuracy"] == pytest.approx(ref["accuracy"])
    for name in NAMES:
        for key, ref_key in (("precision", "precision"), ("recall", "recall"), ("f1", "f1-score"), ("support", "support")):
            assert m["per_class"][name][key] == pytest.approx(ref[name][ref_key])
    for ours, theirs in (("macro_avg", "macro avg"), ("weighted_avg", "weighted avg")):
        assert m[ours]["f1"] == pytest.approx(ref[theirs]["f1-score"])
        assert m[ours]["precision"] == pytest.approx(ref[theirs]["precision"])
        assert m[ours]["recall"] == pytest.approx(ref[theirs]["recall"])
    assert m["macro_f1"] == pytest.approx(ref["macro avg"]["f1-score"])
    assert m["confusion_matrix"] == confusion_matrix(y, p.argmax(1)).tolist()
    rows = np.asarray(m["confusion_matrix_normalized"])
    assert np.allclose(rows.sum(axis=1), 1.0)
    assert m["roc"]["macro"]["auc"] == pytest.approx(roc_auc_score(y, p, multi_class="ovr", average="macro"))
    assert m["roc"]["micro"]["auc"] == pytest.approx(roc_auc_score(np.eye(4)[y], p, average="micro"))
    for k, name in enumerate(NAMES):
        assert m["roc"]["per_class"][name]["auc"] == pytest.approx(roc_auc_score(y == k, p[:, k]))


def test_missing_class_has_no_roc_but_report_survives():
    y, p = _random_predictions(1)
    keep = y != 2
    m = classification_metrics(y[keep], p[keep], NAMES)
    assert m["roc"]["per_class"]["clouds_50_75"]["auc"] is None
    assert m["per_class"]["clouds_50_75"]["support"] == 0
    assert m["roc"]["macro"]["classes"] == ["clouds_0_25", "clouds_25_50", "clouds_75_100"]


def test_discard_decision_by_hand():
    # truth: 3 usable (0,1,2) and 2 cloudy (3); the screen drops predicted 3s.
    d = discard_decision([0, 1, 2, 3, 3], [3, 1, 2, 3, 0], 3, NAMES)
    assert d.discard_share == pytest.approx(2 / 5)
    assert d.false_discard_rate == pytest.approx(1 / 3)  # one usable image of three thrown away
    assert d.wrong_among_discarded == pytest.approx(1 / 2)
    assert d.missed_discard_rate == pytest.approx(1 / 2)
    assert d.threshold_class == "clouds_75_100"


def test_expected_coverage_and_macro_f1():
    assert bin_centres([0, 25, 50, 75, 100]).tolist() == [12.5, 37.5, 62.5, 87.5]
    p = np.array([[1, 0, 0, 0], [0.5, 0, 0, 0.5], [0, 0, 0, 1.0]])
    assert expected_coverage(p, [0, 25, 50, 75, 100]).tolist() == [12.5, 50.0, 87.5]
    # a model that always says class 0 scores F1 0 on the three other classes
    assert macro_f1([0, 1, 2, 3], [0, 0, 0, 0], 4) == pytest.approx(0.4 / 4)  # class 0: precision 1/4, recall 1
    with pytest.raises(ValueError, match="bins"):
        expected_coverage(p, [0, 50, 100])
