"""The Keras side of the segmentation task: mask loading, joint augmentation, masked losses, the Dice metric.

Targets are uint8 masks, 0 clear, 1 cloud, 255 nodata (written by `cloudcover data prepare --task
segmentation`); nodata pixels carry no loss and count in no metric. The model outputs one logit per pixel.
Augmentation moves image and mask with the same random transform (Keras preprocessing layers given
{"images", "segmentation_masks"}: bilinear for the image, nearest for the mask, so labels stay 0/1/255).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cloudcover.train.errors import CloudcoverError

if TYPE_CHECKING:
    import tensorflow as tf

    from cloudcover.train.preprocess import Preprocess
    from cloudcover.train.training import Augment

LABELS = (0, 1, 255)
IGNORE = 255
LOSSES = ("bce", "bce_dice")


# ----------------------------------------------------------------------------------------------------
# Data


def read_mask(path: Path) -> np.ndarray:
    """A prepared mask PNG -> uint8 (H, W); a clear error for a missing, multi-band or out-of-set file."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            m = np.asarray(im)
    except FileNotFoundError:
        raise CloudcoverError(f"mask not found: {path}") from None
    except Exception as exc:
        raise CloudcoverError(f"cannot decode mask {path}: {exc}") from exc
    if m.ndim != 2:
        raise CloudcoverError(f"mask {path} has shape {m.shape}; a mask is one band (0 clear, 1 cloud, 255 nodata)")
    bad = ~np.isin(m, LABELS)
    if bad.any():
        vals = sorted({int(v) for v in np.unique(m[bad])})[:5]
        raise CloudcoverError(f"mask {path} holds values {vals} outside the label set 0 clear, 1 cloud, 255 nodata")
    return m.astype(np.uint8, copy=False)


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """Nearest neighbour (labels are never blended)."""
    if mask.shape == (size, size):
        return mask
    from PIL import Image

    return np.asarray(Image.fromarray(mask).resize((size, size), Image.Resampling.NEAREST))


def load_pair(image: Path, mask: Path, pre: "Preprocess") -> tuple[np.ndarray, np.ndarray]:
    """One image and its mask at the model's size: float32 (S, S, C) raw values, uint8 (S, S)."""
    from cloudcover.train.preprocess import _read_pixels_or_fail, _resize

    arr = _read_pixels_or_fail(image)
    if arr.shape[-1] != pre.bands:
        raise CloudcoverError(f"image {image} has {arr.shape[-1]} bands, the model takes {pre.bands}")
    m = read_mask(mask)
    if m.shape != arr.shape[:2]:
        raise CloudcoverError(f"mask {mask} is {m.shape[0]}x{m.shape[1]} but its image {image} is "
                              f"{arr.shape[0]}x{arr.shape[1]}")
    return _resize(arr, pre.input_size, pre.resize), resize_mask(m, pre.input_size)


def check_dataset(info, where: str = "--data") -> None:
    """A segmenter needs a segmentation dataset: say so once, before any decoding."""
    if info.task != "segmentation":
        raise CloudcoverError(f"{info.root}: a {info.task} dataset (dataset.json task); segmentation models need "
                              "masks: prepare one with 'cloudcover data prepare --task segmentation'")


def load_split(data_dir: str | Path, split: str, pre: "Preprocess", workers: int = 2
               ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """All image/mask pairs of one split: (x float32 [N,S,S,C], masks uint8 [N,S,S], patch_ids)."""
    from cloudcover.train.preprocess import read_dataset

    info = read_dataset(data_dir)
    check_dataset(info)
    rows = info.split_rows(split)
    s = pre.input_size
    x = np.empty((len(rows), s, s, pre.bands), np.float32)
    y = np.empty((len(rows), s, s), np.uint8)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pairs = pool.map(lambda r: load_pair(info.root / r["image"], info.root / r["target"], pre), rows)
        for i, (a, m) in enumerate(pairs):
            x[i], y[i] = a, m
    return x, y, [r["patch_id"] for r in rows]


def augmenter(aug: "Augment", seed: int):
    """(images [B,H,W,C], masks [B,H,W,1]) -> both moved by the same random geometric transform; brightness
    changes the image only, and so do the photometric steps (train/augment.py)."""
    import tensorflow as tf

    from cloudcover.train.augment import random_photometric
    from cloudcover.train.pipeline import geometric_layers

    layers = geometric_layers(aug, seed)

    def apply(images: "tf.Tensor", masks: "tf.Tensor") -> tuple["tf.Tensor", "tf.Tensor"]:
        for layer in layers:
            out = layer({"images": images, "segmentation_masks": masks}, training=True)
            images, masks = out["images"], out["segmentation_masks"]
        if aug.brightness > 0:
            batch = tf.shape(images)[0]
            images = images * tf.random.uniform((batch, 1, 1, 1), 1.0 - aug.brightness, 1.0 + aug.brightness)
        return random_photometric(images, aug), masks

    return apply


def train_dataset(x: np.ndarray, y: np.ndarray, batch_size: int, aug: "Augment", seed: int) -> "tf.data.Dataset":
    """Shuffled, jointly augmented batches of (images, masks [B,H,W,1] float32 0/1/255)."""
    import tensorflow as tf

    apply = augmenter(aug, seed)
    ds = tf.data.Dataset.from_tensor_slices((x, y[..., None].astype(np.float32)))
    ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True).batch(batch_size)
    ds = ds.map(apply, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def eval_dataset(x: np.ndarray, y: np.ndarray, batch_size: int) -> "tf.data.Dataset":
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((x, y[..., None].astype(np.float32))).batch(batch_size)
    return ds.cache().prefetch(tf.data.AUTOTUNE)


# ----------------------------------------------------------------------------------------------------
# Loss and metric (nodata pixels excluded from both)


def masked_bce(y_true, logits):
    """Mean binary cross-entropy over the valid pixels of the batch (numerically stable, from logits)."""
    from keras import ops

    valid = ops.cast(ops.not_equal(y_true, IGNORE), "float32")
    t = ops.where(y_true == 1, 1.0, 0.0)
    # max(z, 0) - z t + log(1 + exp(-|z|)): the usual stable form of sigmoid cross-entropy
    per_px = ops.relu(logits) - logits * t + ops.log1p(ops.exp(-ops.abs(logits)))
    return ops.sum(per_px * valid) / ops.maximum(ops.sum(valid), 1.0)


def soft_dice_loss(y_true, logits, smooth: float = 1.0):
    """1 - soft Dice of the batch's valid pixels (probabilities, not thresholded, so it has a gradient)."""
    from keras import ops

    valid = ops.cast(ops.not_equal(y_true, IGNORE), "float32")
    t = ops.where(y_true == 1, 1.0, 0.0)
    p = ops.sigmoid(logits) * valid
    inter = ops.sum(p * t)
    return 1.0 - (2.0 * inter + smooth) / (ops.sum(p) + ops.sum(t) + smooth)


def make_loss(name: str):
    """'bce' (the original system's loss) or 'bce_dice' (BCE + soft Dice, for thin or rare clouds)."""
    if name == "bce":
        def bce(y_true, logits):
            return masked_bce(y_true, logits)
        return bce
    if name == "bce_dice":
        def bce_dice(y_true, logits):
            return masked_bce(y_true, logits) + soft_dice_loss(y_true, logits)
        return bce_dice
    raise CloudcoverError(f"unknown segmentation loss {name!r}; choose one of {', '.join(LOSSES)} (--loss)")


def _dice_metric_class():
    import keras
    from keras import ops

    class DiceMetric(keras.metrics.Metric):
        """Dice over every valid pixel seen since the last reset (confusion counts, threshold logit 0 = p 0.5)."""

        def __init__(self, name: str = "dice", **kw):
            super().__init__(name=name, **kw)
            self.tp = self.add_variable((), initializer="zeros", name="tp", dtype="float32")
            self.fp = self.add_variable((), initializer="zeros", name="fp", dtype="float32")
            self.fn = self.add_variable((), initializer="zeros", name="fn", dtype="float32")

        def update_state(self, y_true, y_pred, sample_weight=None):
            valid = ops.cast(ops.not_equal(y_true, IGNORE), "float32")
            t = ops.cast(ops.equal(y_true, 1), "float32")
            p = ops.cast(y_pred >= 0, "float32") * valid
            self.tp.assign_add(ops.sum(p * t))
            self.fp.assign_add(ops.sum(p * (1 - t)))
            self.fn.assign_add(ops.sum((1 - p) * t))

        def result(self):
            den = 2 * self.tp + self.fp + self.fn
            return ops.where(den > 0, 2 * self.tp / ops.maximum(den, 1.0), 1.0)

        def reset_state(self):
            for v in (self.tp, self.fp, self.fn):
                v.assign(0.0)

    return DiceMetric


def DiceMetric(name: str = "dice"):  # noqa: N802 - a factory standing in for the class (keras imported lazily)
    return _dice_metric_class()(name=name)
