"""Classification metrics for coverage classes: pure functions over labels and probabilities.

Everything is computed by scikit-learn (never by hand) so that `cloudcover evaluate` and the tuning
objective agree with any other tool that reads the same predictions. Results are plain dicts of floats
and lists, ready for `json.dumps`. No TensorFlow here: the module is cheap to import and test.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    auc,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    roc_auc_score,
    roc_curve,
)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (models output logits)."""
    z = np.asarray(logits, dtype=np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def macro_f1(y_true: Sequence[int], y_pred: Sequence[int], n_classes: int) -> float:
    """The tuning objective: unweighted mean of the per-class F1 over *all* classes.

    Classes absent from both labels and predictions count as F1 0 (zero_division=0), so a model that
    never predicts a rare class cannot score well by ignoring it.
    """
    return float(f1_score(y_true, y_pred, labels=list(range(n_classes)), average="macro", zero_division=0))


def bin_centres(bins: Sequence[float]) -> np.ndarray:
    """Centre of each coverage bin, e.g. bins [0,25,50,75,100] -> [12.5, 37.5, 62.5, 87.5]."""
    edges = np.asarray(bins, dtype=np.float64)
    if edges.ndim != 1 or len(edges) < 2:
        raise ValueError(f"bins must list at least two edges, got {list(bins)}")
    return (edges[:-1] + edges[1:]) / 2.0


def expected_coverage(proba: np.ndarray, bins: Sequence[float]) -> np.ndarray:
    """Expected cloud coverage in percent: sum over classes of probability x bin centre.

    A soft estimate that moves smoothly between classes, unlike the arg-max class.
    """
    proba = np.asarray(proba, dtype=np.float64)
    centres = bin_centres(bins)
    if proba.shape[-1] != len(centres):
        raise ValueError(f"{proba.shape[-1]} class probabilities but {len(centres)} bins")
    return proba @ centres


@dataclass(frozen=True)
class DiscardDecision:
    """What on-board screening would do: drop every image predicted at or above `threshold_class`.

    discard_share        share of all images that would be dropped (saves downlink)
    false_discard_rate   share of the *usable* images (true class below threshold) that would be dropped
                         (the data a mission loses by screening)
    wrong_among_discarded share of the dropped images that were in fact usable
    missed_discard_rate  share of the truly cloudy images (true class at/above threshold) kept anyway
    """

    threshold_class: str
    threshold_index: int
    n_images: int
    discard_share: float
    false_discard_rate: float | None
    wrong_among_discarded: float | None
    missed_discard_rate: float | None
    n_discarded: int
    n_false_discards: int


def discard_decision(y_true: Sequence[int], y_pred: Sequence[int], threshold_index: int,
                     class_names: Sequence[str]) -> DiscardDecision:
    """Score the binary 'discard' decision derived from the class predictions (see DiscardDecision)."""
    if not 0 <= threshold_index < len(class_names):
        raise ValueError(f"threshold class index {threshold_index} outside 0..{len(class_names) - 1}")
    truth = np.asarray(y_true) >= threshold_index
    drop = np.asarray(y_pred) >= threshold_index
    # Binary confusion matrix from scikit-learn: rows truth (usable, cloudy), columns decision (keep, drop).
    (tn, fp), (fn, tp) = confusion_matrix(truth, drop, labels=[False, True])
    n = int(len(truth))

    def ratio(a: int, b: int) -> float | None:
        return float(a / b) if b else None

    return DiscardDecision(
        threshold_class=str(class_names[threshold_index]),
        threshold_index=int(threshold_index),
        n_images=n,
        discard_share=float(drop.mean()) if n else 0.0,
        false_discard_rate=ratio(int(fp), int(tn + fp)),
        wrong_among_discarded=ratio(int(fp), int(fp + tp)),
        missed_discard_rate=ratio(int(fn), int(fn + tp)),
        n_discarded=int(fp + tp),
        n_false_discards=int(fp),
    )


def roc_curves(y_true: Sequence[int], proba: np.ndarray, class_names: Sequence[str]) -> dict:
    """One-vs-rest ROC per class plus micro and macro averages.

    A class with no positive (or no negative) sample has no ROC curve; it is reported with auc None
    and left out of the macro average instead of making the whole report fail.
    """
    y_true = np.asarray(y_true)
    proba = np.asarray(proba, dtype=np.float64)
    n = len(class_names)
    onehot = np.eye(n, dtype=int)[y_true]
    per_class: dict[str, dict] = {}
    defined: list[int] = []
    for k, name in enumerate(class_names):
        pos = int(onehot[:, k].sum())
        if pos == 0 or pos == len(y_true):
            per_class[name] = {"fpr": [], "tpr": [], "auc": None, "positives": pos}
            continue
        fpr, tpr, _ = roc_curve(onehot[:, k], proba[:, k])
        per_class[name] = {"fpr": fpr.tolist(), "tpr": tpr.tolist(),
                           "auc": float(roc_auc_score(onehot[:, k], proba[:, k])), "positives": pos}
        defined.append(k)

    micro: dict = {"fpr": [], "tpr": [], "auc": None}
    if 0 < onehot.sum() < onehot.size:
        fpr, tpr, _ = roc_curve(onehot.ravel(), proba.ravel())
        micro = {"fpr": fpr.tolist(), "tpr": tpr.tolist(),
                 "auc": float(roc_auc_score(onehot, proba, average="micro"))}

    macro: dict = {"fpr": [], "tpr": [], "auc": None, "classes": [class_names[k] for k in defined]}
    if defined:
        # Macro curve as in scikit-learn's ROC example: mean TPR over the union of FPR points.
        grid = np.unique(np.concatenate([per_class[class_names[k]]["fpr"] for k in defined]))
        mean_tpr = np.mean([np.interp(grid, per_class[class_names[k]]["fpr"], per_class[class_names[k]]["tpr"])
                            for k in defined], axis=0)
        macro.update(fpr=grid.tolist(), tpr=mean_tpr.tolist(),
                     auc=float(roc_auc_score(onehot[:, defined], proba[:, defined], average="macro")),
                     curve_auc=float(auc(grid, mean_tpr)))
    return {"per_class": per_class, "micro": micro, "macro": macro}


def classification_metrics(y_true: Sequence[int], proba: np.ndarray, class_names: Sequence[str],
                           threshold_index: int | None = None) -> dict:
    """Every number `cloudcover evaluate` reports, as a JSON-ready dict.

    y_true: true class indices (N,); proba: class probabilities (N, C), rows summing to 1.
    threshold_index: the first class counted as 'too cloudy' for the discard decision (default: last).
    """
    y_true = np.asarray(y_true, dtype=int)
    proba = np.asarray(proba, dtype=np.float64)
    n = len(class_names)
    if proba.ndim != 2 or proba.shape[1] != n or len(y_true) != len(proba):
        raise ValueError(f"expected labels (N,) and probabilities (N, {n}); got {y_true.shape} and {proba.shape}")
    if len(y_true) == 0:
        raise ValueError("no samples to evaluate")
    y_pred = proba.argmax(axis=1)
    labels = list(range(n))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    per_class = {name: {"precision": float(p[k]), "recall": float(r[k]), "f1": float(f[k]), "support": int(s[k])}
                 for k, name in enumerate(class_names)}

    def averaged(kind: str) -> dict:
        ap, ar, af, _ = precision_recall_fscore_support(y_true, y_pred, labels=labels, average=kind, zero_division=0)
        return {"precision": float(ap), "recall": float(ar), "f1": float(af), "support": int(len(y_true))}

    cm = confusion_matrix(y_true, y_pred, labels=labels)
    cm_norm = confusion_matrix(y_true, y_pred, labels=labels, normalize="true")
    threshold = n - 1 if threshold_index is None else threshold_index
    return {
        "n_samples": int(len(y_true)),
        "classes": list(class_names),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": macro_f1(y_true, y_pred, n),
        "per_class": per_class,
        "macro_avg": averaged("macro"),
        "weighted_avg": averaged("weighted"),
        "confusion_matrix": cm.tolist(),
        "confusion_matrix_normalized": np.nan_to_num(cm_norm).tolist(),
        "roc": roc_curves(y_true, proba, class_names),
        "discard": asdict(discard_decision(y_true, y_pred, threshold, class_names)),
    }
