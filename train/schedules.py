"""Learning-rate schedules and the learning-rate range test ("LR finder").

cosine    per epoch, from lr down to lr/20 (the classifiers' default; see training.cosine_lr)
onecycle  per step (Smith & Topin 2018, as fastai's fit_one_cycle): a cosine warm-up from lr/25 to lr over
          the first 30 % of the steps, then a cosine decay to lr/1e4. The step is read from the optimizer's
          iteration counter, which the per-epoch backup restores, so a resumed run continues the same curve.

The range test trains a copy of the model for a few hundred steps while the learning rate rises
exponentially from 1e-7 to 10, records the loss of every step, stops once the smoothed loss exceeds four
times its minimum, and suggests the rate where the smoothed loss falls fastest (steepest negative slope of
loss against log lr), capped at a tenth of the rate of minimum loss.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

SCHEDULES = ("cosine", "onecycle")
ONECYCLE_WARMUP = 0.3
ONECYCLE_DIV = 25.0
ONECYCLE_FINAL_DIV = 1e4


def onecycle_lr(lr: float, step: int, total_steps: int) -> float:
    """The one-cycle rate at `step` of `total_steps` (see the module docstring)."""
    total = max(int(total_steps), 1)
    t = min(max(step, 0), total) / total
    lo, hi, end = lr / ONECYCLE_DIV, lr, lr / ONECYCLE_FINAL_DIV
    if t < ONECYCLE_WARMUP:
        u = t / ONECYCLE_WARMUP
        return float(hi + (lo - hi) * 0.5 * (1 + math.cos(math.pi * u)))
    u = (t - ONECYCLE_WARMUP) / (1 - ONECYCLE_WARMUP)
    return float(end + (hi - end) * 0.5 * (1 + math.cos(math.pi * u)))


def onecycle_callback(lr: float, total_steps: int) -> "keras.callbacks.Callback":
    import keras

    class OneCycle(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            step = int(self.model.optimizer.iterations.numpy())
            self.model.optimizer.learning_rate.assign(onecycle_lr(lr, step, total_steps))

        def on_epoch_end(self, epoch, logs=None):
            if logs is not None:  # so CSVLogger and history record it like LearningRateScheduler does
                logs["learning_rate"] = float(self.model.optimizer.learning_rate.numpy())

    return OneCycle()


@dataclass
class LRFindResult:
    lrs: list[float]
    losses: list[float]  # raw per-step loss
    smoothed: list[float]  # exponentially smoothed, bias-corrected (beta 0.98 as fastai)
    suggested_lr: float
    min_loss_lr: float
    steps: int
    stopped_early: bool


def lr_range_test(model: "keras.Model", dataset: "tf.data.Dataset", start_lr: float = 1e-7, end_lr: float = 10.0,
                  steps: int = 100, beta: float = 0.98, diverge: float = 4.0) -> LRFindResult:
    """Run the range test on `model` (compiled; its weights are restored afterwards) over a repeating
    `dataset`; see the module docstring."""
    weights = model.get_weights()
    opt_vars = [v.numpy() for v in model.optimizer.variables] if model.optimizer.built else None
    lrs, losses, smoothed = [], [], []
    avg, best, stopped = 0.0, math.inf, False
    mult = (end_lr / start_lr) ** (1.0 / max(steps - 1, 1))
    lr = start_lr
    for i, (x, y) in enumerate(dataset.take(steps)):
        model.optimizer.learning_rate.assign(lr)
        loss = float(model.train_on_batch(x, y, return_dict=True)["loss"])
        if not math.isfinite(loss):
            stopped = True
            break
        avg = beta * avg + (1 - beta) * loss
        s = avg / (1 - beta ** (i + 1))
        lrs.append(lr)
        losses.append(loss)
        smoothed.append(s)
        best = min(best, s)
        if s > diverge * best and i > 10:
            stopped = True
            break
        lr *= mult
    model.set_weights(weights)
    if opt_vars is not None:
        for v, val in zip(model.optimizer.variables, opt_vars):
            v.assign(val)
    if len(smoothed) < 3:
        raise RuntimeError("learning-rate range test diverged within its first steps; lower the start rate")
    sm = np.asarray(smoothed)
    log_lr = np.log10(lrs)
    i_min = int(np.argmin(sm))
    slope = np.gradient(sm, log_lr)
    # steepest descent before the minimum (beyond it the loss is already rising)
    lo = max(1, len(sm) // 10)
    window = slope[lo:i_min + 1] if i_min + 1 > lo else slope[: i_min + 1]
    i_steep = (lo if i_min + 1 > lo else 0) + int(np.argmin(window))
    suggested = min(float(lrs[i_steep]), float(lrs[i_min]) / 10.0)
    return LRFindResult([float(v) for v in lrs], losses, [float(v) for v in smoothed], suggested, float(lrs[i_min]),
                        len(lrs), stopped)


def plot_lr_find(result: LRFindResult, path: Path) -> None:
    from cloudcover.train.plots import _agg, save_figure

    plt = _agg()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(result.lrs, result.losses, color="0.75", lw=0.8, label="loss per step")
    ax.plot(result.lrs, result.smoothed, lw=2, label="smoothed")
    ax.axvline(result.suggested_lr, color="C3", ls="--", label=f"suggested {result.suggested_lr:.2e}")
    ax.axvline(result.min_loss_lr, color="0.4", ls=":", label=f"minimum loss {result.min_loss_lr:.2e}")
    ax.set_xscale("log")
    lo, hi = min(result.smoothed), max(result.smoothed)
    ax.set_ylim(lo - 0.1 * (hi - lo), min(hi, lo + 3 * (result.smoothed[0] - lo + 1e-9)) + 0.1 * (hi - lo))
    ax.set(xlabel="learning rate", ylabel="training loss", title="Learning-rate range test")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    save_figure(fig, path)


def lr_find_json(result: LRFindResult) -> dict:
    return {**asdict(result), "rule": "steepest descent of the smoothed loss vs log10(lr) before its minimum, "
            "capped at a tenth of the minimum-loss rate"}
