"""Cloud coverage and coverage classes: pure functions over CloudSEN12 label codes.

Every source is converted to CloudSEN12's codes before it reaches this module (38-Cloud's gt 255 becomes
THICK), so one definition of "cloud" holds for all of them:

    coverage % = cloud pixels / valid pixels x 100,   cloud = thick + thin (+ shadow with count_shadow)

The original CloudSEN12 scripts counted every non-zero code (shadow included) and dropped a patch at
exactly 75 %; here the rule is explicit and the bins are half-open with the last one closed, so every
value in [0, 100] lands in exactly one class.
"""

from __future__ import annotations

import math

import numpy as np

from cloudcover.train.errors import CloudcoverError

CLEAR, THICK, THIN, SHADOW = 0, 1, 2, 3
CODES = {CLEAR: "clear", THICK: "thick cloud", THIN: "thin cloud", SHADOW: "cloud shadow"}
DEFAULT_BINS = (0.0, 25.0, 50.0, 75.0, 100.0)


def code_counts(mask: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Pixel count per code 0..3 over the valid pixels (one pass; coverage and shadow share it).

    Raises ValueError when a valid pixel holds a code outside 0..3: a mask in another convention
    (e.g. 38-Cloud's 0/255) must be converted first, never silently counted as clear.
    """
    m = np.asarray(mask)
    if valid is not None:
        valid = np.asarray(valid, dtype=bool)
        if valid.shape != m.shape:
            raise ValueError(f"valid has shape {valid.shape} but mask has shape {m.shape}")
        m = m[valid]
    if m.dtype.kind == "f":
        if not np.all(np.isfinite(m)):
            raise ValueError("mask holds NaN/inf among valid pixels; pass them as invalid")
        if np.any(m != np.round(m)):
            raise ValueError("mask holds non-integer codes")
    if m.size and (m.min() < 0 or m.max() > SHADOW):
        bad = sorted({int(v) for v in np.unique(m) if v < 0 or v > SHADOW})[:5]
        raise ValueError(f"mask holds codes {bad} outside 0..3 (0 clear, 1 thick, 2 thin, 3 shadow)")
    return np.bincount(m.astype(np.int64, copy=False).ravel(), minlength=4)[:4]


def coverage_from_counts(counts: np.ndarray, count_shadow: bool = False) -> float:
    """Cloud share in percent from per-code counts; 0.0 when no pixel is valid is avoided by callers."""
    total = int(counts.sum())
    if total == 0:
        raise ValueError("no valid pixels: coverage is undefined")
    cloud = int(counts[THICK]) + int(counts[THIN]) + (int(counts[SHADOW]) if count_shadow else 0)
    return 100.0 * cloud / total


def coverage_pct(mask: np.ndarray, valid: np.ndarray | None = None, count_shadow: bool = False) -> float:
    """Percent of valid pixels that are cloud (thick + thin; shadow too when count_shadow)."""
    return coverage_from_counts(code_counts(mask, valid), count_shadow)


def shadow_pct(mask: np.ndarray, valid: np.ndarray | None = None) -> float:
    """Percent of valid pixels that are cloud shadow."""
    counts = code_counts(mask, valid)
    total = int(counts.sum())
    if total == 0:
        raise ValueError("no valid pixels: shadow share is undefined")
    return 100.0 * int(counts[SHADOW]) / total


def parse_bins(text: str) -> list[float]:
    """Parse '0,25,50,75,100' into edges; they must rise strictly from 0 to 100 (the --bins flag)."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        edges = [float(p) for p in parts]
    except ValueError:
        raise CloudcoverError(f"--bins {text!r}: not a comma-separated list of numbers") from None
    if len(edges) < 2:
        raise CloudcoverError(f"--bins {text!r}: need at least two edges (e.g. 0,50,100)")
    if any(not math.isfinite(e) for e in edges):
        raise CloudcoverError(f"--bins {text!r}: edges must be finite numbers")
    if edges[0] != 0 or edges[-1] != 100:
        raise CloudcoverError(f"--bins {text!r}: edges must start at 0 and end at 100")
    if any(b <= a for a, b in zip(edges, edges[1:])):
        raise CloudcoverError(f"--bins {text!r}: edges must be strictly increasing")
    return edges


def bin_index(pct: float, bins: list[float] | tuple[float, ...]) -> int:
    """Class index of a coverage: bins are half-open [lo, hi) except the last, which is closed [lo, 100]."""
    if not (bins[0] <= pct <= bins[-1]):
        raise ValueError(f"coverage {pct} outside [{bins[0]}, {bins[-1]}]")
    for i in range(len(bins) - 1):
        if pct < bins[i + 1]:
            return i
    return len(bins) - 2


def _edge(v: float) -> str:
    return f"{v:g}".replace(".", "p")


def class_names(bins: list[float] | tuple[float, ...]) -> list[str]:
    """['clouds_0_25', 'clouds_25_50', ...]; fractional edges use 'p' (12.5 -> '12p5') to stay path-safe."""
    return [f"clouds_{_edge(a)}_{_edge(b)}" for a, b in zip(bins, bins[1:])]
