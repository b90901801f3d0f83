"""Photometric augmentation: domain randomization for models trained on synthetic scenes.

A model trained on `data synth` alone sees one rendering of the world: its scenes' brightness, contrast,
colour balance and sharpness. Real patches differ in exactly those (the realism benchmark measures real
cloud greyer and smoother than synthetic cloud, real ground brighter and twice as smooth), so training
randomizes them per image and the model has to rely on what does not change: shape, context, relative
brightness. Everything is relative to the image's own mean, so it suits 8-bit renderings and raw DN alike.

Per image, in this order (x >= 0, m = the image's mean over pixels and bands):

    blur      x <- (1 - w) x + w * (x smoothed by the 3 x 3 binomial kernel [1 2 1]^T [1 2 1] / 16), w ~ U(0, blur)
    contrast  x <- m + k (x - m),              k ~ U(1 - contrast, 1 + contrast)
    gamma     x <- m (max(x, 0) / m) ** g,     g = exp(U(-gamma, gamma))
    colour    x_c <- x_c * exp(U(-color, color)) per band
    noise     x <- x + noise * m * N(0, 1) per pixel and band
    clip      x <- max(x, 0)

`photometric` is the pure map (the draws are arguments, so tests can check it against numpy);
`random_photometric` draws them with TensorFlow's seeded random ops (training enables op determinism, so
one seed gives one sequence of draws).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import tensorflow as tf

FIELDS = ("contrast", "gamma", "color", "blur", "noise")  # Augment fields read here
EPS = 1e-6


@dataclass(frozen=True)
class Draws:
    """One image batch's random draws; shapes broadcast against images [B, H, W, C]."""

    blur: "tf.Tensor"  # [B, 1, 1, 1] blend weight of the smoothed image, 0..1
    contrast: "tf.Tensor"  # [B, 1, 1, 1]
    gamma: "tf.Tensor"  # [B, 1, 1, 1] exponent (> 0)
    gain: "tf.Tensor"  # [B, 1, 1, C] per-band factor
    noise: "tf.Tensor"  # [B, H, W, C] noise in units of the image mean (already scaled)


def enabled(aug) -> bool:
    return any(float(getattr(aug, f, 0.0)) > 0 for f in FIELDS)


def smooth3(images: "tf.Tensor") -> "tf.Tensor":
    """3 x 3 binomial smoothing per band, edges repeated (what a slightly wider point spread looks like)."""
    import tensorflow as tf

    k = tf.constant([1.0, 2.0, 1.0]) / 4.0
    kernel = (k[:, None] * k[None, :])[:, :, None, None]
    c = tf.shape(images)[-1]
    padded = tf.pad(images, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="SYMMETRIC")
    return tf.nn.depthwise_conv2d(padded, tf.tile(kernel, [1, 1, c, 1]), [1, 1, 1, 1], "VALID")


def photometric(images: "tf.Tensor", d: Draws) -> "tf.Tensor":
    """The map in the module doc for given draws (images float32 [B, H, W, C], raw values >= 0)."""
    import tensorflow as tf

    x = images + d.blur * (smooth3(images) - images)
    m = tf.reduce_mean(images, axis=(1, 2, 3), keepdims=True) + EPS
    x = m + d.contrast * (x - m)
    x = m * tf.pow(tf.maximum(x, 0.0) / m, d.gamma)
    x = x * d.gain + d.noise * m
    return tf.maximum(x, 0.0)


def random_draws(aug, shape: "tf.Tensor") -> Draws:
    """Draws for a batch of `shape` [B, H, W, C] from the ranges `aug` names (0 = that step off)."""
    import tensorflow as tf

    b, c = shape[0], shape[3]

    def u(lo: float, hi: float, s) -> "tf.Tensor":
        return tf.random.uniform(s, lo, hi) if hi > lo else tf.fill(s, tf.constant(lo, tf.float32))

    one = tf.stack([b, 1, 1, 1])
    blur = min(max(float(aug.blur), 0.0), 1.0)
    noise = tf.random.normal(shape) * float(aug.noise) if aug.noise > 0 else tf.zeros(shape)
    return Draws(blur=u(0.0, blur, one), contrast=u(1.0 - aug.contrast, 1.0 + aug.contrast, one),
                 gamma=tf.exp(u(-aug.gamma, aug.gamma, one)),
                 gain=tf.exp(u(-aug.color, aug.color, tf.stack([b, 1, 1, c]))), noise=noise)


def random_photometric(images: "tf.Tensor", aug) -> "tf.Tensor":
    """`photometric` with fresh draws, or the images unchanged when `aug` asks for none of it."""
    if not enabled(aug):
        return images
    import tensorflow as tf

    return photometric(images, random_draws(aug, tf.shape(images)))
