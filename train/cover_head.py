"""Coverage head: a classifier that counts cloud, cell by cell, and reads its class off the count.

Why: a GAP -> Dense classifier trained on synthetic scenes learned the scenes' global look rather than cloud;
on the real CloudSEN12 `cloudy` patch (56.8 %) its read sat at 41-53 % over every generator variant and seed.
The same backbone trained with a per-cell cloud-fraction target read that patch at 55-60 % on every seed
(`python -m cloudcover.train.data.realism`, README). So this head makes the count the output:

    features (12 x 12 at 96 px) -> 1x1 conv -> ReLU6 ("cover": 6 x the cloud fraction of each cell)
        -> global average ("pool": 6 x the patch's cloud fraction) -> fixed Dense ("bin_logits")
        -> ReLU ("logits": a floor far below the winner, see `bin_logits`)

The Dense layer is not trained: its kernel and bias place the decision edges exactly on the coverage bins
(`bin_logits`), so argmax(logits) is the bin of the counted coverage and softmax's expected coverage is
the count, softened by `SHARPNESS`. Training adds `weight` x the binary cross-entropy of each cell's
fraction against the mask's (`CoverLoss`), so every cell is supervised rather than one label per patch.
Every op (conv, ReLU6, mean, fully connected + ReLU) is one int8 TFLite and the TVM lowering already run.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cloudcover.train.errors import CloudcoverError

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

# Logit gap between neighbouring classes per coverage point away from their shared edge, / bin width:
# 0.018 x 25 = 0.45 logits per point (5 points past an edge: 90 % confidence).
SHARPNESS = 0.018
FLOOR = 5.0  # logits more than this below the lowest winning logit are clamped (see `bin_logits`)
RELU_MAX = 6.0  # the cell value is 6 x its cloud fraction (ReLU6 keeps the int8 range of the edge blocks)
DEFAULT_WEIGHT = 3.0  # of the per-cell loss beside the class cross-entropy (1, 3, 10 measured; README)


def bin_logits(bins: Sequence[float], sharpness: float = SHARPNESS) -> tuple[np.ndarray, np.ndarray]:
    """(kernel [1, K], bias [K]) mapping the pooled cover value v (= RELU_MAX x fraction) to K logits whose
    argmax is the bin of coverage c = 100 v / RELU_MAX: logit_k = s (m_k c - m_k^2 / 2) + const, m_k the bin
    centres, i.e. the nearest centre wins, and for equal-width bins the edges between centres are the bin edges.

    The constant puts the lowest value the winning logit takes over 0-100 % at FLOOR, so a ReLU after this layer
    clamps only classes at least FLOOR logits behind the winner (probability < e^-FLOOR): the int8 output then
    spans 0..~28 logits instead of -46..21, a 2.4x finer step where the decision is made (measured: the int8
    logit step had been 0.54 coverage points, and every int8 flip lay within 0.6 points of a bin edge)."""
    edges = np.asarray(bins, dtype=np.float64)
    if edges.ndim != 1 or len(edges) < 3 or np.any(np.diff(edges) <= 0):
        raise CloudcoverError(f"coverage head: bins must be >= 3 increasing edges, got {list(bins)}")
    widths = np.diff(edges)
    if not np.allclose(widths, widths[0]):
        raise CloudcoverError(f"coverage head: bins must be of equal width (nearest-centre decision), got "
                              f"{list(bins)}")
    centres = (edges[:-1] + edges[1:]) / 2
    mid = (edges[0] + edges[-1]) / 2  # a common slope s * mid, removed: the winner is as high at 0 % as at 100 %
    s = sharpness / (widths[0] / 25.0)
    kernel = s * (centres - mid) * (100.0 / RELU_MAX)
    bias = -s * (centres ** 2 - mid ** 2) / 2
    c = np.linspace(edges[0], edges[-1], 2001)
    lowest_win = (c[:, None] * s * (centres - mid)[None, :] + bias[None, :]).max(axis=1).min()
    bias = bias - lowest_win + FLOOR
    return kernel[None, :].astype(np.float32), bias.astype(np.float32)


def head(features: "keras.KerasTensor", num_classes: int, bins: Sequence[float] | None) -> "keras.KerasTensor":
    """The layers above the backbone; `bins` default: num_classes equal bins over 0-100 %."""
    import keras

    bins = list(bins) if bins is not None else list(np.linspace(0.0, 100.0, num_classes + 1))
    if len(bins) != num_classes + 1:
        raise CloudcoverError(f"coverage head: {num_classes} classes need {num_classes + 1} bin edges, got {bins}")
    x = keras.layers.Conv2D(1, 1, name="cover_conv")(features)
    x = keras.layers.ReLU(RELU_MAX, name="cover")(x)
    # A pooled scalar (int8 rounds it to 0.39 coverage points) measured as good as the cells' sum folded into a
    # [cells, K] dense kernel (rounded once, at the output): 3-8 of 216 test images flipped either way, no QAT.
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    kernel, bias = bin_logits(bins)
    dense = keras.layers.Dense(num_classes, name="bin_logits", trainable=False,
                               kernel_initializer=keras.initializers.Constant(kernel),
                               bias_initializer=keras.initializers.Constant(bias))
    return keras.layers.ReLU(name="logits")(dense(x))


def has_cover_head(model: "keras.Model") -> bool:
    return any(layer.name == "cover" for layer in model.layers)


# ----------------------------------------------------------------------------------------------------
# Per-cell targets, from the masks the dataset was prepared from


def mask_fractions(cloud: np.ndarray, valid: np.ndarray, size: int) -> np.ndarray:
    """(size, size, 2) float32: per output pixel, the area share of cloud-and-valid and of valid source pixels
    (box resampling of any source size, as `resize_bands`; the ratio of the two is the cloud fraction)."""
    h, w = cloud.shape
    out = np.zeros((size, size, 2), np.float64)
    rows = np.minimum(((np.arange(h) + 0.5) * size / h).astype(int), size - 1)
    cols = np.minimum(((np.arange(w) + 0.5) * size / w).astype(int), size - 1)
    count = np.zeros((size, size))
    np.add.at(out[..., 0], (rows[:, None], cols[None, :]), (cloud & valid).astype(np.float64))
    np.add.at(out[..., 1], (rows[:, None], cols[None, :]), valid.astype(np.float64))
    np.add.at(count, (rows[:, None], cols[None, :]), 1.0)
    return (out / np.maximum(count, 1.0)[..., None]).astype(np.float32)


def _read_cloud(path: Path, source: str, cloud_codes: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    from cloudcover.train.data.raster import open_raster, read_raster

    if not path.is_file():
        raise CloudcoverError(f"{path}: mask not found; a coverage-head model trains on the masks its dataset "
                              f"was prepared from (manifest.csv column 'mask')")
    with open_raster(path) as src:
        raw = read_raster(src, path, 1)
        nodata = src.nodata
    if source == "38cloud":  # gt 0 clear / 255 cloud, every pixel labelled
        return raw == 255, np.ones(raw.shape, bool)
    valid = np.isfinite(raw) if raw.dtype.kind == "f" else np.ones(raw.shape, bool)
    if nodata is not None:
        valid &= raw != nodata
    return np.isin(raw, list(cloud_codes)) & valid, valid


def load_targets(data_dir: str | Path, split: str, size: int) -> np.ndarray:
    """[N, size, size, 2] (cloud, valid) area shares for the rows of `split`, in `load_split`'s order."""
    from cloudcover.train.preprocess import read_dataset

    info = read_dataset(data_dir)
    rule = info.meta.get("rule") or {}
    codes = rule.get("cloud_codes") or [1, 2]
    source = str(info.meta.get("source") or "cloudsen12")
    out = []
    for r in info.split_rows(split):
        path = Path(r["mask"])
        path = path if path.is_absolute() else info.root / path
        cloud, valid = _read_cloud(path, source, codes)
        out.append(mask_fractions(cloud, valid, size))
    return np.stack(out) if out else np.zeros((0, size, size, 2), np.float32)


# ----------------------------------------------------------------------------------------------------
# Training: the model plus a second input (the targets) and the per-cell loss


def cell_loss(cover, target):
    """Mean binary cross-entropy of each cell's cloud fraction (cover / RELU_MAX) against the mask's, over the
    valid area; `target` [B,H,W,2] (cloud, valid) shares at the input size, pooled here to the cells."""
    from keras import ops

    cells = ops.shape(cover)[1]
    pool = ops.shape(target)[1] // cells
    shares = ops.average_pool(target, pool_size=pool, strides=pool, padding="valid")
    valid = shares[..., 1:2]
    frac = ops.where(valid > 0, shares[..., 0:1] / ops.maximum(valid, 1e-6), 0.0)
    p = ops.clip(cover / RELU_MAX, 1e-6, 1.0 - 1e-6)
    bce = -(frac * ops.log(p) + (1.0 - frac) * ops.log(1.0 - p))
    return ops.sum(bce * valid) / ops.maximum(ops.sum(valid), 1e-6)


def _cover_loss_class():
    import keras

    class CoverLoss(keras.layers.Layer):
        """Adds weight x `cell_loss`; passes the logits through (so the layer stays on the graph's path to the
        output)."""

        def __init__(self, weight: float, **kwargs):
            super().__init__(**kwargs)
            self.weight = float(weight)

        def call(self, logits, cover, target):
            self.add_loss(self.weight * cell_loss(cover, target))
            return logits

    return CoverLoss


def training_model(model: "keras.Model", weight: float) -> "keras.Model":
    """(pixels, targets [B,H,W,2]) -> logits, sharing every layer with `model`, with the per-cell loss added."""
    import keras

    size = int(model.input.shape[1])
    target = keras.Input((size, size, 2), name="cover_target")
    out = _cover_loss_class()(weight, name="cover_loss")(model.output, model.get_layer("cover").output, target)
    return keras.Model([model.input, target], out, name=model.name + "_train")


def train_dataset(x: np.ndarray, t: np.ndarray, y: np.ndarray, num_classes: int, batch_size: int, aug,
                  seed: int) -> "tf.data.Dataset":
    """Shuffled batches of ((images, targets), one-hot labels); the targets move with the image's geometric
    augmentation (the segmenter's joint augmenter), photometric steps change the image only."""
    import tensorflow as tf

    from cloudcover.train.segmentation import augmenter

    apply = augmenter(aug, seed)
    ds = tf.data.Dataset.from_tensor_slices(((x, t), tf.one_hot(y, num_classes)))
    ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True).batch(batch_size)
    ds = ds.map(lambda xt, lab: (apply(*xt), lab), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def eval_dataset(x: np.ndarray, t: np.ndarray, y: np.ndarray, num_classes: int, batch_size: int) -> "tf.data.Dataset":
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices(((x, t), tf.one_hot(y, num_classes))).batch(batch_size)
    return ds.cache().prefetch(tf.data.AUTOTUNE)
