"""Run-length encoding of binary masks in Kaggle's convention (the 38-Cloud / Understanding Clouds format).

    pixels are numbered 1..H*W down the columns (column-major, Fortran order: (0,0)=1, (1,0)=2, ...)
    the string lists "start length" pairs of the runs of 1s, separated by spaces; an empty mask is ""

Pure numpy, exact round trip: decode(encode(m), m.shape) == m for every binary mask.
"""

from __future__ import annotations

import numpy as np


def encode(mask: np.ndarray) -> str:
    """Binary (H, W) mask (bool or 0/1; any non-zero counts as 1) -> 'start length ...' (1-indexed, column-major)."""
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"RLE encodes a 2-D mask, got shape {m.shape}")
    flat = (m != 0).ravel(order="F").astype(np.int8)
    # Runs start where the padded sequence steps 0 -> 1 and end where it steps 1 -> 0.
    edges = np.flatnonzero(np.diff(np.concatenate(([0], flat, [0]))))
    starts, ends = edges[0::2], edges[1::2]
    pairs = np.empty(2 * len(starts), np.int64)
    pairs[0::2] = starts + 1
    pairs[1::2] = ends - starts
    return " ".join(map(str, pairs.tolist()))


def decode(rle: str, shape: tuple[int, int]) -> np.ndarray:
    """'start length ...' -> uint8 (H, W) mask of 0/1; raises ValueError on a malformed or out-of-range string."""
    h, w = (int(s) for s in shape)
    n = h * w
    out = np.zeros(n, np.uint8)
    text = (rle or "").strip()
    if text:
        try:
            nums = np.array(text.split(), dtype=np.int64)
        except ValueError:
            raise ValueError(f"RLE holds a non-integer token: {text[:40]!r}") from None
        if len(nums) % 2:
            raise ValueError(f"RLE has an odd number of values ({len(nums)}): needs start/length pairs")
        starts, lengths = nums[0::2] - 1, nums[1::2]
        if np.any(starts < 0) or np.any(lengths < 1) or np.any(starts + lengths > n):
            raise ValueError(f"RLE run outside a {h}x{w} mask (starts are 1-based, lengths >= 1)")
        if np.any(starts[1:] < starts[:-1] + lengths[:-1]):
            raise ValueError("RLE runs overlap or are out of order")
        # Mark +1 at each start and -1 after each end, then a running sum fills the runs.
        delta = np.zeros(n + 1, np.int32)
        np.add.at(delta, starts, 1)
        np.add.at(delta, starts + lengths, -1)
        out = (np.cumsum(delta[:-1]) > 0).astype(np.uint8)
    return out.reshape((h, w), order="F")
