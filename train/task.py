"""What a model is trained to do: one notion of a task, owning everything that differs between tasks.

    classification   one coverage class per patch (GAP -> dropout -> Dense logits, softmax cross-entropy; a model
                     registered with head="coverage" counts cloud per cell instead: cover_head.py)
    segmentation     one cloud/clear decision per pixel (1-channel logit map, binary cross-entropy)

Every stage asks the task instead of testing for it: how `prepare` encodes the target and which manifest
columns it writes, how the tf.data pipeline loads and augments targets, the model head, the loss, the
metrics and the checkpoint monitor, the tuning objective, the parity comparison and the report columns.
Every artifact JSON (`dataset.json`, `preprocess.json`, `quant.json`) records its task under "task"; a
missing field means classification, so artifacts written before tasks existed still load. Verbs read the
task from there, never from a flag. Adding a task means adding one class here (and its own modules).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from cloudcover.train.errors import CloudcoverError

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

CLASSIFICATION = "classification"
SEGMENTATION = "segmentation"
MANIFEST_COLUMNS = ("patch_id", "roi", "image", "mask", "coverage_pct", "shadow_pct", "label", "split")


class Task:
    """The interface; see the two implementations below."""

    name: ClassVar[str]
    objective: ClassVar[str]  # what `tune` maximizes (also its report column)
    score_name: ClassVar[str]  # the headline score of a parity row (accuracy, dice)
    monitor: ClassVar[str]  # Keras log key the best checkpoint and early stopping follow
    monitor_mode: ClassVar[str]  # "min" or "max"
    curves: ClassVar[tuple[str, ...]]  # history keys drawn in history.png (each also as val_<key>)
    manifest_columns: ClassVar[tuple[str, ...]]
    predict_columns: ClassVar[tuple[str, ...]]  # leading CSV columns of `cloudcover predict`

    # -- data -----------------------------------------------------------------------------------------
    def load_split(self, data_dir: str | Path, split: str, pre) -> tuple[np.ndarray, np.ndarray, list[str]]:
        raise NotImplementedError

    def train_dataset(self, x: np.ndarray, y: np.ndarray, num_classes: int, batch_size: int, aug, seed: int,
                      repeat: bool = False) -> "tf.data.Dataset":
        raise NotImplementedError

    def eval_dataset(self, x: np.ndarray, y: np.ndarray, num_classes: int, batch_size: int) -> "tf.data.Dataset":
        raise NotImplementedError

    # -- model ----------------------------------------------------------------------------------------
    def head(self, features: "keras.KerasTensor", num_classes: int, dropout: float) -> "keras.KerasTensor":
        raise NotImplementedError

    def loss(self, config) -> Any:
        raise NotImplementedError

    def metrics(self) -> list:
        raise NotImplementedError

    def class_weights(self, y: np.ndarray, num_classes: int) -> dict[int, float] | None:
        return None

    def val_metrics(self, logits: np.ndarray, y: np.ndarray, class_names: Sequence[str]) -> dict:
        raise NotImplementedError

    def headline(self, val_metrics: dict) -> str:
        """One phrase for the `train` summary line."""
        raise NotImplementedError

    # -- export ---------------------------------------------------------------------------------------
    def compare(self, logits: np.ndarray, reference: np.ndarray, y: np.ndarray) -> dict[str, float]:
        """Parity of one backend's outputs with the float model's: the task's score against the truth `y`, and
        the share of decisions (images, or valid pixels) that agree with the float model's."""
        raise NotImplementedError

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """What a user reads off the logits (softmax over classes, or a per-pixel sigmoid)."""
        raise NotImplementedError


class Classification(Task):
    name = CLASSIFICATION
    objective = "macro_f1"
    score_name = "accuracy"
    monitor = "val_loss"
    monitor_mode = "min"
    curves = ("loss", "accuracy")
    manifest_columns = MANIFEST_COLUMNS
    predict_columns = ("path", "class", "confidence", "expected_coverage_pct")

    def load_split(self, data_dir, split, pre):
        from cloudcover.train.preprocess import load_split

        return load_split(data_dir, split, pre)

    def train_dataset(self, x, y, num_classes, batch_size, aug, seed, repeat=False):
        from cloudcover.train import pipeline

        ds = pipeline.train_dataset(x, y, num_classes, batch_size, aug, seed)
        return ds.repeat() if repeat else ds

    def eval_dataset(self, x, y, num_classes, batch_size):
        from cloudcover.train import pipeline

        return pipeline.eval_dataset(x, y, num_classes, batch_size)

    def head(self, features, num_classes, dropout):
        import keras

        x = keras.layers.GlobalAveragePooling2D(name="pool")(features)
        if dropout > 0:
            x = keras.layers.Dropout(dropout, name="dropout")(x)
        return keras.layers.Dense(num_classes, name="logits")(x)

    def loss(self, config):
        import keras

        return keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=config.label_smoothing)

    def metrics(self):
        import keras

        return [keras.metrics.CategoricalAccuracy(name="accuracy")]

    def class_weights(self, y, num_classes):
        from cloudcover.train.training import class_weights

        return class_weights(y, num_classes)

    def val_metrics(self, logits, y, class_names):
        from cloudcover.train.training import classification_metrics

        return classification_metrics(logits, y, class_names)

    def headline(self, m):
        return f"val accuracy {m['accuracy'] * 100:.2f} %"

    def probabilities(self, logits):
        from cloudcover.train.metrics import softmax

        return softmax(logits)

    def compare(self, logits, reference, y):
        pred, ref_pred = logits.argmax(axis=1), reference.argmax(axis=1)
        return {"score": float((pred == y).mean()), "agreement": float((pred == ref_pred).mean())}


class Segmentation(Task):
    name = SEGMENTATION
    objective = "val_dice"
    score_name = "dice"
    monitor = "val_dice"
    monitor_mode = "max"
    curves = ("loss", "dice")
    manifest_columns = MANIFEST_COLUMNS + ("target",)
    predict_columns = ("path", "mask", "coverage_pct", "class", "cloud_pixels", "valid_pixels")

    def load_split(self, data_dir, split, pre):
        from cloudcover.train.segmentation import load_split

        return load_split(data_dir, split, pre)

    def train_dataset(self, x, y, num_classes, batch_size, aug, seed, repeat=False):
        from cloudcover.train.segmentation import train_dataset

        ds = train_dataset(x, y, batch_size, aug, seed)
        return ds.repeat() if repeat else ds

    def eval_dataset(self, x, y, num_classes, batch_size):
        from cloudcover.train.segmentation import eval_dataset

        return eval_dataset(x, y, batch_size)

    def head(self, features, num_classes, dropout):
        import keras

        return keras.layers.Conv2D(1, 1, name="logits")(features)

    def loss(self, config):
        from cloudcover.train.segmentation import make_loss

        return make_loss(config.loss)

    def metrics(self):
        from cloudcover.train.segmentation import DiceMetric

        return [DiceMetric(name="dice")]

    def val_metrics(self, logits, y, class_names):
        from cloudcover.train.seg_metrics import split_metrics

        return split_metrics(logits, y)

    def headline(self, m):
        return f"val Dice {m['dice']:.4f}, IoU {m['iou']:.4f}"

    def probabilities(self, logits):
        return 1.0 / (1.0 + np.exp(-np.asarray(logits, np.float64)))

    def compare(self, logits, reference, y):
        from cloudcover.train.seg_metrics import confusion_counts, scores

        logits, reference = np.asarray(logits), np.asarray(reference)
        if logits.ndim == 4:  # (N, H, W, 1) model output
            logits, reference = logits[..., 0], reference[..., 0]
        pred, ref_pred = logits >= 0, reference >= 0
        valid = y <= 1
        score = scores(confusion_counts(pred, y))["dice"]
        return {"score": float(score), "agreement": float((pred == ref_pred)[valid].mean()) if valid.any() else 1.0}


TASKS: dict[str, Task] = {t.name: t for t in (Classification(), Segmentation())}


def get_task(name: str | None) -> Task:
    """The task called `name` (None: classification, the meaning of artifacts older than tasks)."""
    name = name or CLASSIFICATION
    if name not in TASKS:
        raise CloudcoverError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}")
    return TASKS[name]


def task_of(meta: dict, where: str | Path = "") -> Task:
    """The task an artifact JSON records (a missing "task" field means classification)."""
    name = meta.get("task") if isinstance(meta, dict) else None
    if name is not None and name not in TASKS:
        raise CloudcoverError(f"{where}: unknown task {name!r}; known tasks: {', '.join(TASKS)}")
    return get_task(name)
