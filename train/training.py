"""Train one classifier on a prepared dataset and write a run folder.

RUN_DIR/ after a finished run:
    model.keras        best-validation-loss weights, normalization inside (takes raw pixels)
    preprocess.json    input size, bands, train-split mean/std, class names, bins (see preprocess.py)
    history.json       per-epoch loss / accuracy / val_loss / val_accuracy / lr
    history.png        loss and accuracy curves
    val_metrics.json   accuracy, loss, per-class accuracy and confusion matrix on the val split
    train.json         the TrainConfig, class weights, best epoch, training images/s
During a run, RUN_DIR/checkpoint/ holds the resume state (last-epoch weights, best weights, a CSV
history); it is removed when the run finishes, so an interrupted run picks up where it stopped.
"""

from __future__ import annotations

import json
import math
import shutil
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cloudcover.train import pipeline
from cloudcover.train.atomic import atomic_path, write_text
from cloudcover.train.errors import CloudcoverError
from cloudcover.train.models import count_macs, create_model, model_config
from cloudcover.train.preprocess import Preprocess, band_stats, detect_bands, load_split, read_dataset

if TYPE_CHECKING:
    import keras

OPTIMIZERS = ("sgd", "adam", "adagrad", "adadelta", "nadam", "rmsprop")
CHECKPOINT_DIR = "checkpoint"
WARMUP_EPOCHS = 8  # epochs early stopping ignores (see train)


@dataclass
class Augment:
    """Train-time augmentation; the tune verb searches over these."""

    hflip: bool = True
    vflip: bool = True
    rotation: float = 0.0  # degrees, max
    width_shift: float = 0.0  # fraction of the width
    height_shift: float = 0.0
    zoom: float = 0.0  # fraction
    brightness: float = 0.0  # max relative change
    # photometric domain randomization (train/augment.py), each relative to the image's own mean
    contrast: float = 0.0  # k ~ U(1 - c, 1 + c) around the mean
    gamma: float = 0.0  # exponent exp(U(-g, g))
    color: float = 0.0  # per-band gain exp(U(-c, c))
    blur: float = 0.0  # max blend weight (0..1) of a 3 x 3 binomial smoothing
    noise: float = 0.0  # Gaussian noise, standard deviation as a fraction of the mean


@dataclass
class TrainConfig:
    data: Path
    out: Path
    model: str = "mobilenet"
    input_size: int = 96
    alpha: float = 0.35
    epochs: int = 30
    batch_size: int = 16
    optimizer: str = "adam"  # sgd (momentum), adam, adagrad, adadelta, nadam, rmsprop
    lr: float = 1e-3
    momentum: float = 0.9
    dropout: float = 0.2
    label_smoothing: float = 0.0
    augment: Augment = field(default_factory=Augment)
    patience: int = 8
    seed: int = 0
    weights: Path | None = None
    loss: str = "bce"  # segmentation: bce | bce_dice (classifiers: softmax cross-entropy, always)
    schedule: str = "cosine"  # cosine (per epoch) | onecycle (per step); see schedules.py
    lr_find: bool = False  # run the LR range test first and train at its suggested rate
    finetune_size: int | None = None  # then continue from the best weights at this input size
    finetune_epochs: int | None = None  # default: max(1, epochs // 3)
    cover_weight: float = 3.0  # coverage-head models (edge_cover): weight of the per-cell cloud loss

    def to_json(self) -> dict:
        d = asdict(self)
        for k in ("data", "out", "weights"):
            d[k] = None if d[k] is None else str(d[k])
        return d


@dataclass
class TrainResult:
    run_dir: Path
    history: dict[str, list[float]]
    val_metrics: dict
    best_epoch: int  # 0-based index into history
    images_per_s: float  # training throughput (forward + backward + augmentation), median over epochs


def make_optimizer(name: str, lr: float, momentum: float = 0.9) -> "keras.optimizers.Optimizer":
    import keras

    factories = {
        "sgd": lambda: keras.optimizers.SGD(lr, momentum=momentum),
        "adam": lambda: keras.optimizers.Adam(lr),
        "adagrad": lambda: keras.optimizers.Adagrad(lr),
        "adadelta": lambda: keras.optimizers.Adadelta(lr),
        "nadam": lambda: keras.optimizers.Nadam(lr),
        "rmsprop": lambda: keras.optimizers.RMSprop(lr),
    }
    if name not in factories:
        raise CloudcoverError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)} (--optimizer)")
    if not lr > 0:
        raise CloudcoverError(f"learning rate must be positive, got {lr} (--lr)")
    return factories[name]()


def cosine_lr(lr: float, epoch: int, epochs: int) -> float:
    """Cosine decay from `lr` to lr/20 over the run: no plateau detection to be fooled by BatchNorm warm-up."""
    t = min(epoch / max(epochs - 1, 1), 1.0)
    return float(lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t))))


def class_weights(y: np.ndarray, num_classes: int) -> dict[int, float] | None:
    """Balanced class weights (n / (k * count)), or None when the classes are balanced within 20 %."""
    counts = np.bincount(y, minlength=num_classes)
    if counts.min() * 1.2 >= counts.max():
        return None
    return {i: float(len(y) / (num_classes * c)) for i, c in enumerate(counts)}


def _throughput_callback(n_images: int, times: list[float]):
    """Seconds of the training part of each epoch (excludes validation), appended to `times`."""
    import keras

    class Throughput(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self._t0 = time.perf_counter()
            self._done = False

        def on_test_begin(self, logs=None):
            if not self._done:
                times.append(time.perf_counter() - self._t0)
                self._done = True

    return Throughput()


def _read_csv_history(path: Path) -> dict[str, list[float]]:
    """The CSVLogger history, one row per epoch (the last row wins when a resumed run repeated an epoch)."""
    import csv

    if not path.is_file():
        return {}
    by_epoch: dict[int, dict[str, float]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            epoch = int(row.pop("epoch"))
            by_epoch[epoch] = {k: float(v) for k, v in row.items() if v not in ("", None)}
    keys = sorted({k for r in by_epoch.values() for k in r})
    epochs = sorted(by_epoch)
    return {k: [by_epoch[e].get(k, math.nan) for e in epochs] for k in keys}


def plot_history(history: dict[str, list[float]], path: Path, curves: Sequence[str] = ("loss", "accuracy"),
                 marks: dict[str, int] | None = None) -> None:
    """One panel per curve (train solid, validation dashed); `marks` draws labelled vertical lines at epochs
    (e.g. where fine-tuning at a larger size began)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 4))
    for ax, metric in zip(np.atleast_1d(axes), curves):
        for key, style in ((metric, "-"), (f"val_{metric}", "--")):
            if key in history:
                ax.plot(range(1, len(history[key]) + 1), history[key], style, label=key)
        for label, epoch in (marks or {}).items():
            ax.axvline(epoch + 0.5, color="0.5", ls=":", lw=1)
            ax.text(epoch + 0.6, ax.get_ylim()[1], label, va="top", fontsize=8, color="0.3")
        values = [v for k in (metric, f"val_{metric}") for v in history.get(k, []) if np.isfinite(v)]
        if metric == "loss" and values and min(values) > 0 and max(values) / min(values) > 30:
            ax.set_yscale("log")  # from scratch, epoch 1's val_loss (BatchNorm warm-up) would flatten the rest
        ax.set_xlabel("epoch")
        ax.set_title(metric + (" (log scale)" if ax.get_yscale() == "log" else ""))
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


def classification_metrics(logits: np.ndarray, y: np.ndarray, class_names: Sequence[str]) -> dict:
    """Accuracy, mean cross-entropy, per-class accuracy and confusion matrix (rows true, columns predicted)."""
    z = logits - logits.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    pred = logits.argmax(axis=1)
    k = len(class_names)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (y, pred), 1)
    per_class = {name: (float(confusion[i, i] / confusion[i].sum()) if confusion[i].sum() else None)
                 for i, name in enumerate(class_names)}
    return {
        "n": int(len(y)),
        "accuracy": float((pred == y).mean()) if len(y) else math.nan,
        "loss": float(-logp[np.arange(len(y)), y].mean()) if len(y) else math.nan,
        "per_class_accuracy": per_class,
        "confusion": confusion.tolist(),
        "class_names": list(class_names),
    }


def _check_splits(info, config: TrainConfig, task) -> None:
    train_labels = {r["label"] for r in info.split_rows("train")}
    if not train_labels:
        raise CloudcoverError(f"{info.root / 'manifest.csv'} has no train split")
    missing = [c for c in info.classes if c not in train_labels]
    if missing and task.name == "classification":  # a segmenter learns pixels, not coverage classes
        raise CloudcoverError(f"{info.root}: class(es) {', '.join(missing)} missing from the train split")
    if not info.split_rows("val"):
        raise CloudcoverError(f"{info.root / 'manifest.csv'} has no val split (needed for early stopping)")


def _check_config(config: TrainConfig, task) -> None:
    from cloudcover.train.schedules import SCHEDULES
    from cloudcover.train.segmentation import LOSSES

    mcfg = model_config(config.model)  # unknown name -> clear error before any decoding
    if mcfg.task != task.name:
        from cloudcover.train.models import list_models

        raise CloudcoverError(f"--model {config.model} is a {mcfg.task} model but {config.data} is a {task.name} "
                              f"dataset (dataset.json task); {task.name} models: {', '.join(list_models(task.name))}")
    if config.epochs < 1 or config.batch_size < 1:
        raise CloudcoverError("--epochs and --batch-size must be at least 1")
    if config.input_size < mcfg.min_size or config.input_size % mcfg.size_multiple:
        rule = f"at least {mcfg.min_size} px" + (f" and a multiple of {mcfg.size_multiple} px"
                                                   if mcfg.size_multiple > 1 else "")
        raise CloudcoverError(f"--input-size {config.input_size}: model {config.model!r} needs an input size of {rule}")
    if not 0 <= config.dropout < 1 or not 0 <= config.label_smoothing < 1:
        raise CloudcoverError(f"--dropout and --label-smoothing must be in [0, 1), got {config.dropout} and "
                              f"{config.label_smoothing}")
    if config.schedule not in SCHEDULES:
        raise CloudcoverError(f"--schedule {config.schedule!r}: choose one of {', '.join(SCHEDULES)}")
    if task.name == "segmentation" and config.loss not in LOSSES:
        raise CloudcoverError(f"--loss {config.loss!r}: choose one of {', '.join(LOSSES)}")
    if mcfg.head == "coverage":
        if config.lr_find or config.finetune_size is not None:
            raise CloudcoverError(f"--model {config.model} (coverage head) trains with its per-cell loss; "
                                  f"--lr-find and --finetune-size are not supported with it")
        if config.cover_weight < 0:
            raise CloudcoverError(f"--cover-weight must be >= 0, got {config.cover_weight}")
    if config.finetune_size is not None:
        if config.finetune_size <= config.input_size:
            raise CloudcoverError(f"--finetune-size {config.finetune_size} must be larger than --input-size "
                                  f"{config.input_size} (progressive resizing goes up)")
        if config.finetune_size % mcfg.size_multiple:
            raise CloudcoverError(f"--finetune-size {config.finetune_size}: {config.model} needs a multiple of "
                                  f"{mcfg.size_multiple} px")
        if config.finetune_epochs is not None and config.finetune_epochs < 1:
            raise CloudcoverError(f"--finetune-epochs must be at least 1, got {config.finetune_epochs}")


def _prepare_checkpoint(ckpt: Path, config: TrainConfig, resume: bool) -> bool:
    """Make the checkpoint folder; return True when it holds an interrupted run with the same config."""
    stamp = ckpt / "config.json"
    current = json.dumps(config.to_json(), sort_keys=True)
    if ckpt.exists() and resume and stamp.is_file():
        if stamp.read_text() != current:
            raise CloudcoverError(f"{ckpt} holds an interrupted run with different settings; "
                                  "pass --no-resume to start over or choose another --out")
        return True
    shutil.rmtree(ckpt, ignore_errors=True)
    ckpt.mkdir(parents=True)
    write_text(stamp, current)
    return False


def _value_range(x: np.ndarray, first_image_dtype: str) -> list[float]:
    """What the raw pixel values span: the dtype's range for integer images, the train split's for float."""
    if first_image_dtype in ("uint8", "uint16", "int16"):
        info = np.iinfo(first_image_dtype)
        return [float(info.min), float(info.max)]
    return [float(x.min()), float(x.max())] if x.size else [0.0, 1.0]


def _compile(model, task, config: TrainConfig, lr: float) -> None:
    import keras  # noqa: F401

    model.compile(optimizer=make_optimizer(config.optimizer, lr, config.momentum), loss=task.loss(config),
                  metrics=task.metrics(),
                  jit_compile=False)  # XLA is 1.6-4x slower on CPU here


def _fit_stage(model, task, config: TrainConfig, data, ckpt: Path, lr: float, epochs: int, resuming: bool,
               extra_callbacks, verbose: int, times: list[float], targets=None) -> dict[str, list[float]]:
    """One model.fit with the crash-safe callbacks in `ckpt`; returns the stage's history (CSV, resumed too).
    `targets` (train, val per-cell cloud shares): `model` is a coverage head's training model (cover_head.py)."""
    import keras

    from cloudcover.train.backup import AtomicBackupAndRestore, AtomicBestWeights
    from cloudcover.train.schedules import onecycle_callback

    x_train, y_train, x_val, y_val, num_classes = data
    previous = _read_csv_history(ckpt / "history.csv") if resuming else {}
    done = previous.get(task.monitor) or []
    best_so_far = (min(done) if task.monitor_mode == "min" else max(done)) if done else None
    if resuming and verbose and previous.get("loss"):
        print(f"resuming the interrupted run in {ckpt.parent} after {len(previous['loss'])} epoch(s)")
    if targets is not None:
        from cloudcover.train import cover_head

        train_ds = cover_head.train_dataset(x_train, targets[0], y_train, num_classes, config.batch_size,
                                            config.augment, config.seed)
        val_ds = cover_head.eval_dataset(x_val, targets[1], y_val, num_classes, config.batch_size)
    else:
        train_ds = task.train_dataset(x_train, y_train, num_classes, config.batch_size, config.augment, config.seed)
        val_ds = task.eval_dataset(x_val, y_val, num_classes, config.batch_size)
    if config.schedule == "onecycle":
        steps = math.ceil(len(x_train) / config.batch_size) * epochs
        scheduler = onecycle_callback(lr, steps)
    else:
        scheduler = keras.callbacks.LearningRateScheduler(lambda epoch: cosine_lr(lr, epoch, epochs))
    callbacks = [
        # first, so the learning_rate it adds to the logs is in every row of the CSV history
        scheduler,
        keras.callbacks.CSVLogger(str(ckpt / "history.csv"), append=True),  # before the backup: see _read_csv_history
        # best weights before the backup, so a backup of epoch N implies the best file is complete up to N
        AtomicBestWeights(ckpt / "best.weights.h5", monitor=task.monitor, initial_best=best_so_far,
                          mode=task.monitor_mode),
        AtomicBackupAndRestore(str(ckpt / "backup")),
        # From scratch, BatchNorm's moving statistics lag the weights for the first epochs and the validation
        # figures are meaningless there: do not let those epochs count against the patience.
        keras.callbacks.EarlyStopping(monitor=task.monitor, mode=task.monitor_mode, patience=config.patience,
                                      start_from_epoch=min(WARMUP_EPOCHS, epochs // 3)),
        _throughput_callback(len(x_train), times),
        *extra_callbacks,
    ]
    model.fit(
        train_ds, validation_data=val_ds,
        epochs=epochs, callbacks=callbacks, class_weight=task.class_weights(y_train, num_classes), verbose=verbose,
        shuffle=False,  # the tf.data pipeline shuffles
    )
    if (ckpt / "best.weights.h5").is_file():
        model.load_weights(str(ckpt / "best.weights.h5"))
    return _read_csv_history(ckpt / "history.csv")


def _lr_find(model, task, config: TrainConfig, data, ckpt: Path, verbose: int) -> float:
    """The range test's suggested rate (run once; a resumed run reads it back from the checkpoint)."""
    from cloudcover.train.schedules import lr_find_json, lr_range_test, plot_lr_find

    saved = ckpt / "lr_find.json"
    if saved.is_file():
        return float(json.loads(saved.read_text())["suggested_lr"])
    x_train, y_train, _, _, num_classes = data
    ds = task.train_dataset(x_train, y_train, num_classes, config.batch_size, config.augment, config.seed,
                            repeat=True)
    steps = int(min(200, max(60, 2 * math.ceil(len(x_train) / config.batch_size))))
    try:
        result = lr_range_test(model, ds, steps=steps)
    except RuntimeError as exc:
        raise CloudcoverError(f"--lr-find: {exc}") from None
    plot_lr_find(result, ckpt / "lr_find.png")
    write_text(saved, json.dumps(lr_find_json(result), indent=2) + "\n")
    if verbose:
        print(f"lr-find: suggested learning rate {result.suggested_lr:.3g} (minimum loss at "
              f"{result.min_loss_lr:.3g}; {result.steps} steps) -> {ckpt.parent / 'lr_find.png'}")
    return result.suggested_lr


def train(config: TrainConfig, extra_callbacks: Sequence["keras.callbacks.Callback"] = (), verbose: int = 1,
          resume: bool = True) -> TrainResult:
    """Train `config.model` on `config.data`, write RUN_DIR (`config.out`), return the result.

    The dataset's task (dataset.json) decides what is trained: a classifier or a segmenter, and the model
    must be one of that task's. `extra_callbacks` run after the built-in ones, so their `on_epoch_end` logs
    hold the validation figures (`val_loss`, `val_accuracy` or `val_dice`); an exception they raise (e.g.
    optuna.TrialPruned) propagates and leaves no finished-run files. With `resume`, a run interrupted in the
    same RUN_DIR with the same config continues from its last finished epoch (of either stage).
    """
    import keras
    import tensorflow as tf

    from cloudcover.train.preprocess import _read_pixels_or_fail
    from cloudcover.train.task import get_task

    info = read_dataset(config.data)
    task = get_task(info.task)
    _check_config(config, task)
    _check_splits(info, config, task)
    bands = detect_bands(info)
    pre = Preprocess(input_size=config.input_size, bands=bands, mean=[0.0] * bands, std=[1.0] * bands,
                     class_names=info.classes, bins=info.bins, model=config.model, alpha=config.alpha,
                     data_dir=str(Path(config.data).resolve()), task=task.name,
                     band_names=[str(b) for b in info.meta.get("bands") or []][:bands])
    x_train, y_train, _ = task.load_split(config.data, "train", pre)
    x_val, y_val, _ = task.load_split(config.data, "val", pre)
    mean, std = band_stats(x_train)
    first_dtype = _read_pixels_or_fail(info.root / info.rows[0]["image"]).dtype.name
    pre = replace(pre, mean=mean, std=std, value_range=_value_range(x_train, first_dtype))
    num_classes = len(info.classes)

    run_dir = Path(config.out)
    ckpt = run_dir / CHECKPOINT_DIR
    resuming = _prepare_checkpoint(ckpt, config, resume)

    keras.backend.clear_session()
    keras.utils.set_random_seed(config.seed)
    # Same seed, same model: TensorFlow's multi-threaded CPU kernels sum in varying order, so without
    # deterministic ops one seed gave val accuracies from 0.69 to 0.91 and the demo's figures moved between runs.
    tf.config.experimental.enable_op_determinism()
    model = create_model(config.model, num_classes=num_classes, input_size=config.input_size, bands=bands,
                         alpha=config.alpha, dropout=config.dropout, mean=mean, std=std, weights=config.weights,
                         bins=info.bins)
    data = (x_train, y_train, x_val, y_val, num_classes)
    fit_model, targets = model, None
    if model_config(config.model).head == "coverage":
        from cloudcover.train import cover_head

        targets = (cover_head.load_targets(config.data, "train", config.input_size),
                   cover_head.load_targets(config.data, "val", config.input_size))
        fit_model = cover_head.training_model(model, config.cover_weight)
    lr = config.lr
    _compile(fit_model, task, config, lr)
    if config.lr_find:
        lr = _lr_find(model, task, config, data, ckpt, verbose)
        _compile(model, task, config, lr)  # a fresh optimizer: the test's steps leave no state behind

    times: list[float] = []
    stage1 = ckpt / "stage1.json"
    if stage1.is_file():  # an interrupted fine-tuning: the first stage is finished
        model.load_weights(str(ckpt / "best.weights.h5"))
        history = _read_csv_history(ckpt / "history.csv")
    else:
        history = _fit_stage(fit_model, task, config, data, ckpt, lr, config.epochs, resuming, extra_callbacks,
                             verbose, times, targets)
        if config.finetune_size:
            write_text(stage1, json.dumps({"epochs": len(history.get("loss", []))}) + "\n")
    best_epoch = _best_epoch(history, task)
    marks: dict[str, int] = {}
    fine_times: list[float] = []  # epoch seconds at --finetune-size (kept apart: another image size)
    x_eval, y_eval = x_val, y_val
    if config.finetune_size:
        # Progressive resizing: the same weights at a larger input (both heads are size-independent), the
        # data reloaded at that size, a tenth of the rate, and the best epoch of this stage kept.
        big = replace(pre, input_size=config.finetune_size)
        xb, yb, _ = task.load_split(config.data, "train", big)
        xvb, yvb, _ = task.load_split(config.data, "val", big)
        fine = create_model(config.model, num_classes=num_classes, input_size=config.finetune_size, bands=bands,
                            alpha=config.alpha, dropout=config.dropout, mean=mean, std=std)
        fine.set_weights(model.get_weights())
        _compile(fine, task, config, lr / 10)
        fdir = ckpt / "finetune"
        fresh = not (fdir / "config.json").is_file()
        if fresh:
            fdir.mkdir(parents=True, exist_ok=True)
            write_text(fdir / "config.json", "{}\n")
        n_fine = config.finetune_epochs or max(1, config.epochs // 3)
        fine_hist = _fit_stage(fine, task, config, (xb, yb, xvb, yvb, num_classes), fdir, lr / 10, n_fine,
                               not fresh, extra_callbacks, verbose, fine_times)
        marks = {f"fine-tune at {config.finetune_size} px": len(history.get("loss", []))}
        fine_best = _best_epoch(fine_hist, task)
        n1 = len(history.get("loss", []))
        keys = sorted(set(history) | set(fine_hist))
        history = {k: list(history.get(k, [math.nan] * n1)) + list(fine_hist.get(k, [math.nan] * len(fine_hist.get("loss", []))))
                   for k in keys}
        history["input_size"] = [float(config.input_size)] * n1 + [float(config.finetune_size)] * len(fine_hist.get("loss", []))
        best_epoch = n1 + fine_best
        model, pre, x_eval, y_eval = fine, big, xvb, yvb

    logits = model.predict(x_eval, batch_size=config.batch_size, verbose=0)
    val_metrics = task.val_metrics(logits, y_eval, info.classes)
    val_metrics["best_epoch"] = best_epoch
    steady = times[1:] if len(times) > 1 else times  # the first epoch traces the graph
    images_per_s = float(len(x_train) / statistics.median(steady)) if steady else math.nan

    with atomic_path(run_dir / "model.keras") as tmp:
        model.save(tmp)
    pre.save(run_dir)
    for name in ("lr_find.json", "lr_find.png"):
        if (ckpt / name).is_file():
            shutil.copy2(ckpt / name, run_dir / name)
    write_text(run_dir / "history.json", json.dumps(history, indent=2) + "\n")
    plot_history(history, run_dir / "history.png", task.curves, marks)
    write_text(run_dir / "val_metrics.json", json.dumps(val_metrics, indent=2) + "\n")
    summary = {"config": config.to_json(), "task": task.name, "train_images": int(len(x_train)),
               "val_images": int(len(x_val)), "class_weights": task.class_weights(y_train, num_classes),
               "best_epoch": best_epoch, "monitor": task.monitor, "epochs_run": len(history.get("loss", [])),
               "lr": lr, "images_per_s": images_per_s, "epoch_train_seconds": times,
               "finetune_epoch_train_seconds": fine_times,
               "macs": count_macs(model), "params": int(model.count_params()), "input_size": pre.input_size}
    write_text(run_dir / "train.json", json.dumps(summary, indent=2) + "\n")
    shutil.rmtree(ckpt, ignore_errors=True)
    return TrainResult(run_dir, history, val_metrics, best_epoch, images_per_s)


def _best_epoch(history: dict[str, list[float]], task) -> int:
    values = history.get(task.monitor)
    if not values:
        return len(history.get("loss", [1])) - 1
    return int(np.nanargmin(values) if task.monitor_mode == "min" else np.nanargmax(values))


def load_run(run_dir: str | Path) -> tuple["keras.Model", Preprocess]:
    """The trained model and its preprocessing from a run folder."""
    import keras

    run_dir = Path(run_dir)
    pre = Preprocess.load(run_dir)
    path = run_dir / "model.keras"
    if not path.is_file():
        raise CloudcoverError(f"{path} not found: the training run did not finish")
    return keras.models.load_model(path, compile=False), pre
