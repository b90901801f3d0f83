"""tf.data input pipelines: decoded raw-pixel arrays -> augmentation -> shuffle -> batch -> prefetch.

Images are decoded and resized once by `preprocess.load_split` (the same function every later stage
uses), so the pipeline only augments. Normalization is the model's first layer, so augmentation works
on raw values and brightness is a multiplicative change that suits any bit depth.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import tensorflow as tf

    from cloudcover.train.training import Augment


def geometric_layers(aug: "Augment", seed: int) -> list:
    """The Keras random flip / rotation / translation / zoom layers `aug` asks for, seeded (shared by the
    classifier's image pipeline and the segmenter's joint image + mask one)."""
    import keras

    layers: list = []
    mode = "horizontal_and_vertical" if aug.hflip and aug.vflip else "horizontal" if aug.hflip else "vertical"
    if aug.hflip or aug.vflip:
        layers.append(keras.layers.RandomFlip(mode, seed=seed))
    if aug.rotation > 0:
        layers.append(keras.layers.RandomRotation(aug.rotation / 360.0, fill_mode="reflect", seed=seed + 1))
    if aug.width_shift > 0 or aug.height_shift > 0:
        layers.append(keras.layers.RandomTranslation(aug.height_shift, aug.width_shift, fill_mode="reflect",
                                                     seed=seed + 2))
    if aug.zoom > 0:
        layers.append(keras.layers.RandomZoom((-aug.zoom, aug.zoom), fill_mode="reflect", seed=seed + 3))
    return layers


def augmenter(aug: "Augment", seed: int):
    """A function (images [B,H,W,C], float32) -> augmented images, built from Keras preprocessing layers."""
    import tensorflow as tf

    from cloudcover.train.augment import random_photometric

    layers = geometric_layers(aug, seed)

    def apply(images: "tf.Tensor") -> "tf.Tensor":
        for layer in layers:
            images = layer(images, training=True)
        if aug.brightness > 0:
            batch = tf.shape(images)[0]
            factor = tf.random.uniform((batch, 1, 1, 1), 1.0 - aug.brightness, 1.0 + aug.brightness)
            images = images * factor
        return random_photometric(images, aug)

    return apply


def train_dataset(x: np.ndarray, y: np.ndarray, num_classes: int, batch_size: int, aug: "Augment",
                  seed: int) -> "tf.data.Dataset":
    """Shuffled, augmented, one-hot batches (one-hot because label smoothing needs it)."""
    import tensorflow as tf

    apply = augmenter(aug, seed)
    ds = tf.data.Dataset.from_tensor_slices((x, tf.one_hot(y, num_classes)))
    ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True).batch(batch_size)
    ds = ds.map(lambda a, b: (apply(a), b), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def eval_dataset(x: np.ndarray, y: np.ndarray, num_classes: int, batch_size: int) -> "tf.data.Dataset":
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((x, tf.one_hot(y, num_classes))).batch(batch_size)
    return ds.cache().prefetch(tf.data.AUTOTUNE)
