"""How a runtime's int8 cloud masks compare with the float segmenter's and with TFLite's reference kernels.

Pure numpy over whole test splits; the bench (harness.py) calls `compare` for the device and for every peer.
Definitions are the project's own (train/seg_metrics.py, train/data/coverage.py):

- a pixel is cloud when sigmoid(logit) >= the run's threshold (`seg_metrics.predict_mask`); an int8 output
  is first dequantized with quant.json's output scale and zero point, (q - zp) * scale;
- only valid pixels count (ground truth 0 or 1; 255 = nodata), as in `cloudcover export`'s parity and
  `cloudcover evaluate`;
- IoU = TP / (TP + FP + FN) of the cloud class from confusion counts (0/0 = 1: nothing to find, nothing found);
  against the float mask the float mask plays the truth;
- the coverage class of a mask is `coverage.bin_index(coverage_pct(mask over valid pixels), bins)` with the
  run's bins and class names (preprocess.json), a patch without valid pixels counting as 0 % like
  `cloudcover evaluate` does.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cloudcover.train.data.coverage import bin_index
from cloudcover.train.seg_metrics import IGNORE, ZERO, confusion_counts, coverage_pct, predict_mask, scores


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return (np.asarray(q, np.float64) - float(zero_point)) * float(scale)


def masks_from_int8(q: np.ndarray, out_quant: dict, threshold: float) -> np.ndarray:
    """(N, pixels) int8 logits -> (N, pixels) bool cloud masks."""
    return predict_mask(dequantize(q, out_quant["scale"], out_quant["zero_point"]), threshold)


def coverage_classes(masks: np.ndarray, truth: np.ndarray, bins: Sequence[float]) -> np.ndarray:
    """Coverage class index of each mask over the valid pixels of its truth (no valid pixel: 0 %)."""
    out = []
    for m, t in zip(masks, truth):
        pct = coverage_pct(m, t)
        out.append(bin_index(0.0 if not np.isfinite(pct) else pct, list(bins)))
    return np.asarray(out, np.int64)


def _as_truth(mask: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """A bool mask as a 0/1/255 truth image (255 where not valid), so seg_metrics' counts can score against it."""
    return np.where(valid, mask.astype(np.uint8), IGNORE).astype(np.uint8)


def compare(dev_q: np.ndarray, ref_q: np.ndarray, float_logits: np.ndarray, truth: np.ndarray, out_quant: dict,
            threshold: float, bins: Sequence[float], class_names: Sequence[str] | None = None,
            ids: Sequence[str] | None = None) -> dict:
    """Figures of one runtime's int8 outputs `dev_q` (N, pixels) against TFLite-ref's int8 outputs `ref_q`, the
    float model's logits (N, pixels) and the ground-truth masks `truth` (N, pixels; 0, 1, 255).

    Pooled figures count every valid pixel of the split once; per-image lists give the worst image.
    """
    n = len(dev_q)
    dev_q, ref_q = np.asarray(dev_q).reshape(n, -1), np.asarray(ref_q).reshape(n, -1)
    float_logits, truth = np.asarray(float_logits).reshape(n, -1), np.asarray(truth).reshape(n, -1)
    diff = np.abs(dev_q.astype(np.int32) - ref_q.astype(np.int32))
    dev = masks_from_int8(dev_q, out_quant, threshold)
    ref = masks_from_int8(ref_q, out_quant, threshold)
    flt = predict_mask(float_logits, threshold)
    valid = truth != IGNORE

    def agree(a: np.ndarray, b: np.ndarray) -> float:
        v = int(valid.sum())
        return float(((a == b) & valid).sum() / v) if v else 1.0

    per_float = [confusion_counts(d, _as_truth(f, v)) for d, f, v in zip(dev, flt, valid)]
    per_truth = [confusion_counts(d, t) for d, t in zip(dev, truth)]
    float_truth = sum((confusion_counts(f, t) for f, t in zip(flt, truth)), ZERO)
    cls_dev, cls_float = coverage_classes(dev, truth, bins), coverage_classes(flt, truth, bins)
    img_agree = [float(((d == f) & v).sum() / v.sum()) if v.any() else 1.0 for d, f, v in zip(dev, flt, valid)]
    names = list(class_names) if class_names else [str(i) for i in range(len(bins) - 1)]
    per_image = [{"id": None if ids is None else str(ids[k]),
                  "max_abs_diff_lsb": int(diff[k].max()) if diff.shape[1] else 0,
                  "pixel_agreement_float": round(img_agree[k], 6),
                  "iou_device_float": round(scores(per_float[k])["iou"], 6),
                  "coverage_class_device": names[cls_dev[k]], "coverage_class_float": names[cls_float[k]],
                  "iou_truth_device": round(scores(per_truth[k])["iou"], 6)}
                 for k in range(n)]
    return {
        "pixel_agreement_float": agree(dev, flt),
        "pixel_agreement_tflite": agree(dev, ref),
        "max_abs_diff_lsb": int(diff.max()) if diff.size else 0,
        "iou_device_float": scores(sum(per_float, ZERO))["iou"],
        "coverage_class_agreement_float": float(np.mean(cls_dev == cls_float)) if n else 1.0,
        "iou_truth_device": scores(sum(per_truth, ZERO))["iou"],
        "iou_truth_float": scores(float_truth)["iou"],
        "min_image_pixel_agreement_float": min(img_agree) if n else 1.0,
        "min_image_iou_device_float": min(p["iou_device_float"] for p in per_image) if n else 1.0,
        "images_at_0_lsb": int(np.sum(diff.max(axis=1) == 0)) if diff.size else n,
        "valid_pixels": int(valid.sum()),
        "lsb_histogram": {str(k): int(v) for k, v in zip(*np.unique(diff, return_counts=True))},
        "per_image": per_image,
    }
