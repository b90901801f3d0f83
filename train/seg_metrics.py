"""Pixel metrics of cloud masks (the 38-Cloud set) and 38-Cloud scene stitching: pure numpy, no TensorFlow.

Every figure comes from confusion counts accumulated over all valid pixels (truth 0 or 1; 255 is nodata
and ignored), never from an average of per-patch ratios, so an empty patch cannot make a score undefined:

    dice (F1) = 2TP / (2TP + FP + FN)       jaccard (IoU) = TP / (TP + FP + FN)
    precision = TP / (TP + FP)              recall = TP / (TP + FN)
    specificity = TN / (TN + FP)            overall accuracy = (TP + TN) / (TP + TN + FP + FN)

A ratio whose denominator is 0 is reported as 1.0 when its numerator is 0 too (nothing to find and nothing
found is perfect agreement; this is how per-patch Dice of a clear patch predicted clear is scored).

38-Cloud cuts each Landsat scene into 384 x 384 patches named `patch_<n>_<row>_by_<col>_<scene id>`
(row and column 1-based) and scores whole scenes: `stitch` puts the patch masks back in place.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

IGNORE = 255
PATCH_NAME = re.compile(r"^patch_(\d+)_(\d+)_by_(\d+)_(.+)$")


@dataclass(frozen=True)
class Counts:
    tp: int
    fp: int
    fn: int
    tn: int

    def __add__(self, other: "Counts") -> "Counts":
        return Counts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.tn + other.tn)

    @property
    def valid(self) -> int:
        return self.tp + self.fp + self.fn + self.tn


ZERO = Counts(0, 0, 0, 0)


def confusion_counts(pred: np.ndarray, truth: np.ndarray) -> Counts:
    """Counts of predicted cloud (bool, any shape) against truth (0 clear, 1 cloud, 255 ignored)."""
    pred = np.asarray(pred, dtype=bool)
    truth = np.asarray(truth)
    if pred.shape != truth.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from truth shape {truth.shape}")
    valid = truth != IGNORE
    t = truth == 1
    tp = int(np.count_nonzero(pred & t))  # truth 1 is always valid
    fp = int(np.count_nonzero(pred & ~t & valid))
    fn = int(np.count_nonzero(~pred & t))
    tn = int(np.count_nonzero(valid)) - tp - fp - fn
    return Counts(tp, fp, fn, tn)


def _ratio(num: int, den: int) -> float:
    return float(num / den) if den else (1.0 if num == 0 else float("nan"))


def scores(c: Counts) -> dict[str, float]:
    """The six 38-Cloud figures from confusion counts (see the module docstring)."""
    return {
        "dice": _ratio(2 * c.tp, 2 * c.tp + c.fp + c.fn),
        "iou": _ratio(c.tp, c.tp + c.fp + c.fn),
        "precision": _ratio(c.tp, c.tp + c.fp),
        "recall": _ratio(c.tp, c.tp + c.fn),
        "specificity": _ratio(c.tn, c.tn + c.fp),
        "accuracy": _ratio(c.tp + c.tn, c.valid),
    }


def predict_mask(logits: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Logits -> bool cloud mask at probability `threshold` (compared in logit space: no overflow)."""
    if not 0 < threshold < 1:
        raise ValueError(f"threshold {threshold} must lie strictly between 0 and 1")
    z = np.asarray(logits)
    if z.ndim == 4 and z.shape[-1] == 1:  # (N, H, W, 1) model output
        z = z[..., 0]
    return z >= float(np.log(threshold / (1.0 - threshold)))


def coverage_pct(pred: np.ndarray, truth_or_valid: np.ndarray | None = None) -> float:
    """Cloud share of a predicted mask in percent, over the valid pixels (truth != 255 or a bool valid mask)."""
    pred = np.asarray(pred, dtype=bool)
    if truth_or_valid is None:
        valid = np.ones_like(pred)
    else:
        v = np.asarray(truth_or_valid)
        valid = v if v.dtype == bool else v != IGNORE
    n = int(np.count_nonzero(valid))
    return 100.0 * int(np.count_nonzero(pred & valid)) / n if n else float("nan")


def per_patch(preds: np.ndarray, truths: np.ndarray) -> list[Counts]:
    return [confusion_counts(p, t) for p, t in zip(preds, truths)]


def summarize(patch_counts: Sequence[Counts]) -> dict:
    """Pooled figures (counts summed over every pixel) and the distribution of per-patch Dice/IoU."""
    total = sum(patch_counts, ZERO)
    out = {**scores(total), "counts": asdict(total), "n_patches": len(patch_counts)}
    if patch_counts:
        dice = np.array([scores(c)["dice"] for c in patch_counts])
        iou = np.array([scores(c)["iou"] for c in patch_counts])
        out["per_patch"] = {"dice_mean": float(np.nanmean(dice)), "dice_median": float(np.nanmedian(dice)),
                            "dice_min": float(np.nanmin(dice)), "iou_mean": float(np.nanmean(iou))}
    return out


def split_metrics(logits: np.ndarray, truths: np.ndarray, threshold: float = 0.5) -> dict:
    """Pooled and per-patch figures of a split: logits (N, H, W[, 1]) against masks (N, H, W)."""
    preds = predict_mask(logits, threshold)
    out = summarize(per_patch(preds, truths))
    out["threshold"] = threshold
    return out


# ----------------------------------------------------------------------------------------------------
# 38-Cloud scenes


@dataclass(frozen=True)
class PatchPlace:
    number: int
    row: int  # 1-based
    col: int  # 1-based
    scene: str


def parse_patch_name(name: str) -> PatchPlace | None:
    """'patch_192_10_by_12_LC08_...' -> PatchPlace(192, 10, 12, 'LC08_...'); None when it has no scene layout."""
    m = PATCH_NAME.match(name)
    if not m:
        return None
    return PatchPlace(int(m.group(1)), int(m.group(2)), int(m.group(3)), m.group(4))


def stitch(names: Sequence[str], masks: Sequence[np.ndarray], fill: int = IGNORE) -> dict[str, np.ndarray]:
    """Patch masks -> one mask per scene, each patch at ((row-1)*h, (col-1)*w); cells no patch covers hold
    `fill`. Patches without the 38-Cloud naming are left out; all patches of a scene must share one size."""
    groups: dict[str, list[tuple[PatchPlace, np.ndarray]]] = {}
    for name, m in zip(names, masks):
        place = parse_patch_name(name)
        if place is not None:
            groups.setdefault(place.scene, []).append((place, np.asarray(m)))
    scenes = {}
    for scene, items in groups.items():
        h, w = items[0][1].shape[:2]
        if any(m.shape[:2] != (h, w) for _, m in items):
            raise ValueError(f"scene {scene}: patches of different sizes cannot be stitched")
        rows = max(p.row for p, _ in items)
        cols = max(p.col for p, _ in items)
        canvas = np.full((rows * h, cols * w), fill, dtype=items[0][1].dtype)
        for p, m in items:
            canvas[(p.row - 1) * h:p.row * h, (p.col - 1) * w:p.col * w] = m
        scenes[scene] = canvas
    return scenes


def scene_metrics(names: Sequence[str], preds: Iterable[np.ndarray], truths: Iterable[np.ndarray],
                  threshold: float) -> dict | None:
    """Per-scene figures from stitched scene masks, and their mean over scenes (38-Cloud's official way of
    averaging); None when no patch name carries the scene layout."""
    preds, truths = list(preds), list(truths)
    pred_scenes = stitch(names, [p.astype(np.uint8) for p in preds], fill=0)
    truth_scenes = stitch(names, truths, fill=IGNORE)
    if not truth_scenes:
        return None
    per_scene = {}
    for scene, truth in truth_scenes.items():
        c = confusion_counts(pred_scenes[scene].astype(bool), truth)
        per_scene[scene] = {**scores(c), "shape": list(truth.shape), "counts": asdict(c)}
    keys = ("dice", "iou", "precision", "recall", "specificity", "accuracy")
    mean = {k: float(np.nanmean([s[k] for s in per_scene.values()])) for k in keys}
    return {"n_scenes": len(per_scene), "threshold": threshold, "mean_over_scenes": mean, "scenes": per_scene}
