"""`cloudcover evaluate` for a segmentation run: pixel metrics, scenes, coverage classes, discard decision.

The split goes through the run's own preprocessing (`segmentation.load_split` with its preprocess.json), as
for classifiers. A pixel is cloud when sigmoid(logit) >= the threshold (0.5 unless --threshold); nodata
pixels (mask 255) count nowhere.

EVAL_DIR/ (written whole or not at all)
    metrics.json          pooled pixel figures (Dice, IoU, precision, recall, specificity, accuracy) and their
                          per-patch distribution; per-scene figures when the patch names carry 38-Cloud's
                          layout; coverage error; the coverage class of each predicted mask under the run's
                          bins against the true class (agreement, confusion matrix); the discard decision
    per_patch.csv         patch_id, classes, true and predicted coverage, Dice, IoU, precision, recall, counts
    gallery.png           image | truth | prediction for the worst patches (lowest Dice first)
    confusion_matrix.png  predicted coverage class vs true coverage class
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


def rgb_indexes(band_names: list[str], bands: int) -> list[int]:
    """Which bands to show as red, green, blue: by name when known (38-Cloud, Sentinel-2), else the first three."""
    names = [b.lower() for b in band_names]
    for trio in (("red", "green", "blue"), ("b4", "b3", "b2")):
        if all(t in names for t in trio):
            return [names.index(t) for t in trio]
    return [0, 1, 2] if bands >= 3 else [0, 0, 0]


def display(x: np.ndarray, pre) -> np.ndarray:
    """One raw model input -> uint8 RGB for a picture (2-98 % stretch unless it is already 8-bit)."""
    from cloudcover.train.plots import to_display_rgb

    return to_display_rgb(x[..., rgb_indexes(pre.band_names, pre.bands)], pre.value_range)


def overlay(rgb: np.ndarray, mask: np.ndarray, color: tuple[int, int, int], alpha: float = 0.45) -> np.ndarray:
    out = rgb.astype(np.float32).copy()
    sel = np.asarray(mask, bool)
    out[sel] = (1 - alpha) * out[sel] + alpha * np.asarray(color, np.float32)
    return out.astype(np.uint8)


def error_view(rgb: np.ndarray, pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Prediction over the image: hits white, false cloud red, missed cloud blue, nodata dark."""
    t = truth == 1
    out = overlay(rgb, pred & t, (255, 255, 255))
    out = overlay(out, pred & (truth == 0), (255, 40, 40), 0.6)
    out = overlay(out, ~pred & t, (40, 90, 255), 0.6)
    return overlay(out, truth == 255, (0, 0, 0), 0.7)


def evaluate_segmentation(run_dir: str | Path, data_dir: str | Path | None, out: str | Path, split: str = "test",
                          discard_class: str | int | None = None, gallery: int = 12, batch_size: int = 32,
                          threshold: float | None = None, progress: bool = True) -> dict:
    """Evaluate a segmentation run on `split` of `data_dir` (default: its training dataset); write `out`."""
    from cloudcover.train.data import coverage
    from cloudcover.train.evaluate import threshold_index
    from cloudcover.train.metrics import discard_decision
    from cloudcover.train.plots import plot_confusion
    from cloudcover.train.preprocess import read_dataset
    from cloudcover.train.seg_metrics import (
        confusion_counts,
        coverage_pct,
        predict_mask,
        scene_metrics,
        scores,
        summarize,
    )
    from cloudcover.train.segmentation import check_dataset, load_split
    from cloudcover.train.training import load_run

    check_replaceable(out, "metrics.json", "an evaluation folder")
    if batch_size < 1:
        raise CloudcoverError(f"--batch-size must be at least 1, got {batch_size}")
    model, pre = load_run(run_dir)
    thr = pre.threshold if threshold is None else float(threshold)
    if not 0 < thr < 1:
        raise CloudcoverError(f"--threshold {thr}: must lie strictly between 0 and 1")
    data_dir = Path(data_dir or pre.data_dir or "")
    if not str(data_dir):
        raise CloudcoverError(f"{run_dir}: preprocess.json names no dataset; pass --data")
    info = read_dataset(data_dir)
    check_dataset(info)
    if not info.split_rows(split):
        splits = sorted({r["split"] for r in info.rows})
        raise CloudcoverError(f"{data_dir / 'manifest.csv'} has no {split!r} rows (--split); splits: {', '.join(splits)}")
    x, truth, ids = load_split(data_dir, split, pre)
    logits = _predict(model, x, batch_size, progress, f"evaluate {split}")
    pred = predict_mask(logits, thr)

    names, bins = list(pre.class_names), list(pre.bins)
    rows = {r["patch_id"]: r for r in info.split_rows(split)}
    counts = [confusion_counts(p, t) for p, t in zip(pred, truth)]
    per_patch = []
    for k, pid in enumerate(ids):
        s = scores(counts[k])
        true_cov = float(rows[pid]["coverage_pct"])
        pred_cov = coverage_pct(pred[k], truth[k])
        pred_cov = 0.0 if not np.isfinite(pred_cov) else pred_cov
        per_patch.append({"patch_id": pid, "true_class": rows[pid]["label"],
                          "predicted_class": names[coverage.bin_index(pred_cov, bins)],
                          "true_coverage_pct": true_cov, "predicted_coverage_pct": pred_cov, **s,
                          **asdict(counts[k])})
    y_true = [names.index(r["true_class"]) for r in per_patch]
    y_pred = [names.index(r["predicted_class"]) for r in per_patch]
    k = len(names)
    cm = np.zeros((k, k), np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    cm_norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    errors = np.array([r["predicted_coverage_pct"] - r["true_coverage_pct"] for r in per_patch])
    t_idx = threshold_index(discard_class, names)

    metrics = {
        "task": "segmentation",
        "split": split,
        "threshold": thr,
        "n_patches": len(ids),
        "pixels": summarize(counts),
        "scenes": scene_metrics(ids, pred, truth, thr),
        "coverage": {"mae_pct": float(np.mean(np.abs(errors))), "bias_pct": float(np.mean(errors)),
                     "max_abs_error_pct": float(np.max(np.abs(errors))),
                     "definition": "cloud share of the predicted mask over valid pixels (at the model's input "
                     "size) against the manifest's coverage_pct (at the native size)"},
        "coverage_class": {"classes": names, "bins": bins, "agreement": float(np.trace(cm) / max(cm.sum(), 1)),
                           "confusion_matrix": cm.tolist(), "confusion_matrix_normalized": cm_norm.tolist(),
                           "rows": "true class (manifest label)", "columns": "class of the predicted mask's coverage"},
        "discard": asdict(discard_decision(y_true, y_pred, t_idx, names)),
        "run_dir": str(Path(run_dir).resolve()), "data_dir": str(data_dir.resolve()),
        "preprocess": asdict(pre),
    }
    # headline figures at the top level too, so scripts read metrics["dice"] as for any run
    metrics.update({key: metrics["pixels"][key] for key in ("dice", "iou", "precision", "recall", "specificity",
                                                              "accuracy")})

    order = sorted(range(len(ids)), key=lambda i: (per_patch[i]["dice"], -abs(errors[i])))[:gallery]
    with atomic_dir(out, "metrics.json", "an evaluation folder") as tmp:
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        buf = io.StringIO()
        cols = list(per_patch[0]) if per_patch else ["patch_id"]
        w = csv.DictWriter(buf, fieldnames=cols)
        w.writeheader()
        for r in per_patch:
            w.writerow({c: (f"{v:.5f}" if isinstance(v, float) else v) for c, v in r.items()})
        (tmp / "per_patch.csv").write_text(buf.getvalue())
        panels, captions = [], []
        for i in order:
            rgb = display(x[i], pre)
            panels.append((rgb, overlay(rgb, truth[i] == 1, (0, 230, 255)), error_view(rgb, pred[i], truth[i])))
            r = per_patch[i]
            captions.append(f"{ids[i]}: Dice {r['dice']:.3f}, coverage {r['true_coverage_pct']:.1f} % -> "
                            f"{r['predicted_coverage_pct']:.1f} %")
        plot_seg_gallery(panels, captions, tmp / "gallery.png",
                         title=f"worst {len(order)} of {len(ids)} patches ({split}, threshold {thr:g})")
        plot_confusion(cm, cm_norm, names, tmp / "confusion_matrix.png")
    return metrics


def plot_seg_gallery(panels: list[tuple[np.ndarray, np.ndarray, np.ndarray]], captions: list[str], path: Path,
                     title: str = "") -> Path:
    """One row per patch: image | truth | prediction, with the patch's caption over the row."""
    from cloudcover.train.plots import _agg, _ellipsize, save_figure

    plt = _agg()
    n = max(1, len(panels))
    fig, axes = plt.subplots(n, 3, figsize=(9, 3.2 * n), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    if not panels:
        axes[0, 1].text(0.5, 0.5, "no patches", ha="center", va="center")
    for row, (imgs, cap) in enumerate(zip(panels, captions)):
        for col, img in enumerate(imgs):
            axes[row, col].imshow(img, interpolation="nearest")
        axes[row, 1].set_title(_ellipsize(cap, 100), fontsize=8)
    fig.suptitle((title + "\n" if title else "") + "image | truth (cyan) | prediction (white hit, red false cloud, "
                 "blue missed)", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, Path(path))


def _predict(model, x: np.ndarray, batch_size: int, progress: bool, desc: str) -> np.ndarray:
    from tqdm import tqdm

    out = [np.asarray(model.predict_on_batch(x[s:s + batch_size]))
           for s in tqdm(range(0, len(x), batch_size), desc=desc, unit="batch", disable=not progress, leave=False)]
    return np.concatenate(out) if out else np.zeros((0,) + x.shape[1:3] + (1,), np.float32)


def summary_lines(m: dict) -> list[str]:
    """What `cloudcover evaluate` prints for a segmentation run."""
    p = m["pixels"]
    lines = [f"{m['split']}: {m['n_patches']} patches, threshold {m['threshold']:g}: Dice {p['dice']:.4f}, IoU "
             f"{p['iou']:.4f}, precision {p['precision']:.4f}, recall {p['recall']:.4f}, specificity "
             f"{p['specificity']:.4f}, accuracy {p['accuracy']:.4f} (pooled over all valid pixels)"]
    if m.get("scenes"):
        s = m["scenes"]["mean_over_scenes"]
        lines.append(f"scenes: {m['scenes']['n_scenes']} stitched, mean Dice {s['dice']:.4f}, IoU {s['iou']:.4f}")
    c, d = m["coverage_class"], m["discard"]
    fdr = "n/a" if d["false_discard_rate"] is None else f"{d['false_discard_rate']:.1%}"
    lines.append(f"coverage: MAE {m['coverage']['mae_pct']:.2f} points; class from mask agrees with the true class "
                 f"on {c['agreement']:.1%}")
    lines.append(f"discard at {d['threshold_class']}+: {d['discard_share']:.1%} of images dropped, false-discard "
                 f"rate {fdr} ({d['n_false_discards']} usable image(s) lost)")
    return lines
