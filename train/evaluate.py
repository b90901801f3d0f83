"""`cloudcover evaluate`: score a trained run on a dataset split with exactly its stored preprocessing.

(This module scores classifiers; segmentation runs go to seg_evaluate.py, chosen by the run's task.)

The images go through `preprocess.load_split` with the run's own `preprocess.json` (input size, bands,
resize method; normalization is inside the model), never through a second, hand-made pipeline: the
original system evaluated with a different preprocessing than it trained with, and its numbers were off.

EVAL_DIR/ (written whole or not at all)
    metrics.json          accuracy, per-class P/R/F1/support, macro/weighted averages, ROC + AUCs, confusion
                          matrix (counts, row-normalized), the discard decision, expected-coverage error
    predictions.csv       patch_id, true and predicted class, probabilities, expected coverage %
    confusion_matrix.png  heatmap (row-normalized colour, counts written in)
    roc.png               one-vs-rest ROC per class with micro and macro averages
    misclassified.png     gallery of the most confidently wrong patches
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from cloudcover.train.atomic import atomic_dir, check_replaceable
from cloudcover.train.errors import CloudcoverError
from cloudcover.train.metrics import softmax



def predict_proba(model, x: np.ndarray, batch_size: int = 64, progress: bool = False, desc: str = "") -> np.ndarray:
    """Class probabilities for a float32 batch array, in chunks (with an optional progress bar)."""
    from tqdm import tqdm

    out = []
    for start in tqdm(range(0, len(x), batch_size), desc=desc, unit="batch", disable=not progress, leave=False):
        out.append(np.asarray(model.predict_on_batch(x[start:start + batch_size])))
    return softmax(np.concatenate(out)) if out else np.zeros((0, 0))


def threshold_index(name_or_index: str | int | None, class_names: list[str]) -> int:
    """The first 'too cloudy to keep' class, given by name or index (default: the last class)."""
    if name_or_index is None or name_or_index == "":
        return len(class_names) - 1
    if str(name_or_index) in class_names:
        return class_names.index(str(name_or_index))
    try:
        i = int(name_or_index)
    except ValueError:
        raise CloudcoverError(f"unknown discard class {name_or_index!r} (--discard-class); "
                              f"classes: {', '.join(class_names)}") from None
    if not 0 <= i < len(class_names):
        raise CloudcoverError(f"discard class index {i} outside 0..{len(class_names) - 1} (--discard-class)")
    return i


def evaluate(run_dir: str | Path, data_dir: str | Path | None, out: str | Path, split: str = "test",
             discard_class: str | int | None = None, gallery: int = 24, batch_size: int = 64,
             progress: bool = True, threshold: float | None = None) -> dict:
    """Evaluate `run_dir` on `split` of `data_dir` (default: the dataset it was trained on); write `out`.

    A segmentation run (preprocess.json task) is scored by seg_evaluate.evaluate_segmentation instead."""
    from cloudcover.train.preprocess import Preprocess

    if Preprocess.load(run_dir).task == "segmentation":
        from cloudcover.train.seg_evaluate import evaluate_segmentation

        return evaluate_segmentation(run_dir, data_dir, out, split=split, discard_class=discard_class,
                                     gallery=min(gallery, 12), batch_size=batch_size, threshold=threshold,
                                     progress=progress)
    check_replaceable(out, "metrics.json", "an evaluation folder")
    if batch_size < 1:
        raise CloudcoverError(f"--batch-size must be at least 1, got {batch_size}")
    from cloudcover.train.metrics import classification_metrics, expected_coverage
    from cloudcover.train.plots import plot_confusion, plot_gallery, plot_roc, to_display_rgb
    from cloudcover.train.preprocess import load_split, read_dataset
    from cloudcover.train.training import load_run

    model, pre = load_run(run_dir)
    data_dir = Path(data_dir or pre.data_dir or "")
    if not str(data_dir):
        raise CloudcoverError(f"{run_dir}: preprocess.json names no dataset; pass --data")
    info = read_dataset(data_dir)
    if not info.split_rows(split):
        splits = sorted({r["split"] for r in info.rows})
        raise CloudcoverError(f"{data_dir / 'manifest.csv'} has no {split!r} rows (--split); splits: {', '.join(splits)}")
    x, y, ids = load_split(data_dir, split, pre)
    proba = predict_proba(model, x, batch_size, progress=progress, desc=f"evaluate {split}")
    names = list(pre.class_names)
    t_idx = threshold_index(discard_class, names)
    metrics = classification_metrics(y, proba, names, threshold_index=t_idx)

    # Expected coverage (sum of probability x bin centre) against the measured coverage of each patch.
    rows = {r["patch_id"]: r for r in info.split_rows(split)}
    exp_cov = expected_coverage(proba, pre.bins) if len(pre.bins) == len(names) + 1 else None
    if exp_cov is not None:
        truth = np.array([float(rows[i].get("coverage_pct") or "nan") for i in ids])
        ok = np.isfinite(truth)
        metrics["expected_coverage"] = {
            "mae_pct": float(np.mean(np.abs(exp_cov[ok] - truth[ok]))) if ok.any() else None,
            "n": int(ok.sum()),
            "definition": "sum over classes of probability x bin centre, against manifest coverage_pct",
        }
    metrics.update(run_dir=str(Path(run_dir).resolve()), data_dir=str(data_dir.resolve()), split=split,
                   preprocess=asdict(pre))

    y_pred = proba.argmax(axis=1)
    wrong = np.flatnonzero(y_pred != y)
    wrong = wrong[np.argsort(-proba[wrong, y_pred[wrong]])][:gallery]
    with atomic_dir(out, "metrics.json", "an evaluation folder") as tmp:
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["patch_id", "true", "predicted", "confidence", "expected_coverage_pct",
                    *[f"p_{c}" for c in names]])
        for k, pid in enumerate(ids):
            w.writerow([pid, names[y[k]], names[y_pred[k]], f"{proba[k, y_pred[k]]:.4f}",
                        "" if exp_cov is None else f"{exp_cov[k]:.2f}", *[f"{p:.5f}" for p in proba[k]]])
        (tmp / "predictions.csv").write_text(buf.getvalue())
        plot_confusion(metrics["confusion_matrix"], metrics["confusion_matrix_normalized"], names,
                       tmp / "confusion_matrix.png")
        plot_roc(metrics["roc"], tmp / "roc.png")
        plot_gallery([to_display_rgb(x[i], pre.value_range) for i in wrong],
                     [f"{ids[i]}\n{names[y[i]]} -> {names[y_pred[i]]} ({proba[i, y_pred[i]]:.2f})" for i in wrong],
                     tmp / "misclassified.png",
                     title=f"{len(np.flatnonzero(y_pred != y))} of {len(y)} misclassified ({split})")
    return metrics
