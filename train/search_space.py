"""The hyperparameter search space of `cloudcover tune`, and how a trial's choices become a TrainConfig.

The defaults are the original system's space made real: optimizer (SGD with momentum, Adam, Adagrad,
Adadelta, Nadam), learning rate log-uniform 1e-4..1e-1, width/height shift 0..0.5, flips, rotation
0..45 degrees, zoom 0..1 and brightness (searched *and applied* this time), plus batch size, dropout,
label smoothing, the architecture itself and, for the edge models (the ones with a width multiplier),
their width and input size. A JSON file (`--space`) may narrow any entry; a list is a set of choices,
a two-element [low, high] a range, and low == high pins the value.

Each hyperparameter is named where it is suggested (optuna example style) so the study's plots, the
best.json and this file use the same names.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from cloudcover.train.errors import CloudcoverError
from cloudcover.train.models import list_models, model_config

OPTIMIZERS = ("sgd", "adam", "adagrad", "adadelta", "nadam")
# Width multipliers worth trying per edge family (edge_cnn maps alpha < 0.5 to 1.0, so it starts at 0.5).
DEFAULT_WIDTHS = {"mobilenet": [0.35, 0.5, 0.75, 1.0], "mobilenet_v3_small": [0.5, 0.75, 1.0],
                  "edge_cnn": [0.5, 0.75, 1.0], "unet_resnet18": [0.25, 0.5, 1.0], "unet_resnet34": [0.25, 0.5]}
FALLBACK_WIDTHS = [0.5, 0.75, 1.0]
# Input sides tried for edge models, cut to what the dataset's patches can feed without upsampling.
DEFAULT_INPUT_SIZES = [32, 48, 64, 96, 128]

_RANGES = ("lr", "momentum", "width_shift", "height_shift", "rotation", "zoom", "brightness", "dropout",
           "label_smoothing")
_CHOICES = ("models", "optimizers", "hflip", "vflip", "batch_size", "input_sizes")


@dataclass
class SearchSpace:
    """Ranges are [low, high] (inclusive); choices are lists. `widths` maps an edge model to its alphas."""

    models: list[str]
    optimizers: list[str] = field(default_factory=lambda: list(OPTIMIZERS))
    lr: list[float] = field(default_factory=lambda: [1e-4, 1e-1])  # log-uniform
    momentum: list[float] = field(default_factory=lambda: [0.5, 0.99])  # SGD only
    width_shift: list[float] = field(default_factory=lambda: [0.0, 0.5])
    height_shift: list[float] = field(default_factory=lambda: [0.0, 0.5])
    hflip: list[bool] = field(default_factory=lambda: [False, True])
    vflip: list[bool] = field(default_factory=lambda: [False, True])
    rotation: list[float] = field(default_factory=lambda: [0.0, 45.0])  # degrees
    zoom: list[float] = field(default_factory=lambda: [0.0, 1.0])
    brightness: list[float] = field(default_factory=lambda: [0.0, 0.5])
    batch_size: list[int] = field(default_factory=lambda: [16, 32, 64])
    dropout: list[float] = field(default_factory=lambda: [0.0, 0.5])
    label_smoothing: list[float] = field(default_factory=lambda: [0.0, 0.2])
    widths: dict[str, list[float]] = field(default_factory=dict)
    input_sizes: list[int] = field(default_factory=lambda: list(DEFAULT_INPUT_SIZES))

    # ------------------------------------------------------------------------------------------------
    @classmethod
    def build(cls, models: list[str], image_size: int, overrides: dict[str, Any] | None = None,
              source: str = "--space") -> "SearchSpace":
        """The default space for `models` on patches of `image_size` px, narrowed by `overrides`.

        Raises CloudcoverError for unknown model names, unknown keys, empty choices and bad ranges.
        """
        overrides = dict(overrides or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise CloudcoverError(f"{source}: unknown search-space key(s) {', '.join(unknown)}; "
                                  f"known: {', '.join(sorted(known))}")
        models = [m.strip() for m in overrides.pop("models", models) if str(m).strip()]
        if not models:
            raise CloudcoverError("empty search space: no architecture to try (--models)")
        for name in models:
            model_config(name)  # raises with the list of known models
        space = cls(models=list(dict.fromkeys(models)), **overrides)
        space.widths = {m: list(space.widths.get(m, DEFAULT_WIDTHS.get(m, FALLBACK_WIDTHS)))
                        for m in space.models if model_config(m).uses_alpha}
        space.input_sizes = space.fit_input_sizes(image_size)
        space.validate(source)
        return space

    def fit_input_sizes(self, image_size: int) -> list[int]:
        """Keep the requested sides that the patches can feed without upsampling (else the patch size)."""
        sizes = sorted({int(s) for s in self.input_sizes if int(s) <= image_size})
        return sizes or [int(image_size)]

    def validate(self, source: str = "--space") -> None:
        for name in _CHOICES:
            if not list(getattr(self, name)):
                raise CloudcoverError(f"empty search space: {name!r} lists no choice ({source})")
        for name in _RANGES:
            rng = getattr(self, name)
            if len(rng) != 2 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in rng):
                raise CloudcoverError(f"search space {name!r} must be [low, high], got {rng!r} ({source})")
            if rng[0] > rng[1]:
                raise CloudcoverError(f"empty search space: {name!r} has low {rng[0]} > high {rng[1]} ({source})")
        if self.lr[0] <= 0:
            raise CloudcoverError(f"search space 'lr' is log-uniform and needs low > 0, got {self.lr[0]} ({source})")
        unknown_opt = sorted(set(self.optimizers) - set(OPTIMIZERS))
        if unknown_opt:
            raise CloudcoverError(f"unknown optimizer(s) {', '.join(unknown_opt)} ({source}); "
                                  f"known: {', '.join(OPTIMIZERS)}")
        for model, alphas in self.widths.items():
            if not alphas:
                raise CloudcoverError(f"empty search space: no width for {model!r} ({source})")
        if any(int(b) < 1 for b in self.batch_size):
            raise CloudcoverError(f"batch sizes must be >= 1, got {self.batch_size} ({source})")

    @classmethod
    def from_file(cls, path: str | Path, models: list[str], image_size: int) -> "SearchSpace":
        path = Path(path)
        try:
            overrides = json.loads(path.read_text())
        except OSError as exc:
            raise CloudcoverError(f"cannot read search space file {path}: {exc.strerror}") from None
        except json.JSONDecodeError as exc:
            raise CloudcoverError(f"search space file {path} is not JSON: {exc.msg} (line {exc.lineno})") from None
        if not isinstance(overrides, dict):
            raise CloudcoverError(f"search space file {path} must hold a JSON object")
        return cls.build(models, image_size, overrides, source=str(path))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    # ------------------------------------------------------------------------------------------------
    def suggest(self, trial: Any, image_size: int) -> dict[str, Any]:
        """Ask `trial` for every hyperparameter; returns the flat dict `to_train_kwargs` understands.

        Conditional names (`momentum` only for SGD; `<model>.alpha` and `<model>.input_size` only for
        edge models) keep each Optuna distribution fixed across trials.
        """
        model = trial.suggest_categorical("model", self.models)
        optimizer = trial.suggest_categorical("optimizer", self.optimizers)
        params: dict[str, Any] = {"model": model, "optimizer": optimizer}
        params["lr"] = trial.suggest_float("lr", *self.lr, log=True)
        if optimizer == "sgd":
            params["momentum"] = trial.suggest_float("momentum", *self.momentum)
        params["batch_size"] = trial.suggest_categorical("batch_size", [int(b) for b in self.batch_size])
        params["dropout"] = trial.suggest_float("dropout", *self.dropout)
        params["label_smoothing"] = trial.suggest_float("label_smoothing", *self.label_smoothing)
        params["width_shift"] = trial.suggest_float("width_shift", *self.width_shift)
        params["height_shift"] = trial.suggest_float("height_shift", *self.height_shift)
        params["hflip"] = trial.suggest_categorical("hflip", [bool(v) for v in self.hflip])
        params["vflip"] = trial.suggest_categorical("vflip", [bool(v) for v in self.vflip])
        params["rotation"] = trial.suggest_float("rotation", *self.rotation)
        params["zoom"] = trial.suggest_float("zoom", *self.zoom)
        params["brightness"] = trial.suggest_float("brightness", *self.brightness)
        cfg = model_config(model)
        if cfg.uses_alpha:
            params["alpha"] = trial.suggest_categorical(f"{model}.alpha", [float(a) for a in self.widths[model]])
            # UNets need a multiple of their total stride (32): other sides are not offered to them
            sizes = [s for s in self.input_sizes if s >= cfg.min_size and s % cfg.size_multiple == 0] or [
                max(cfg.min_size, image_size // cfg.size_multiple * cfg.size_multiple)]
            params["input_size"] = trial.suggest_categorical(f"{model}.input_size", sizes)
        else:
            # Heavy backbones: the patch size as is (or the architecture's minimum, e.g. 75 for Inception).
            params["input_size"] = max(int(image_size), cfg.min_size)
        return params


def params_from_trial(trial_params: dict[str, Any], image_size: int) -> dict[str, Any]:
    """Rebuild `suggest`'s flat dict from a finished trial's `params` (e.g. the best trial)."""
    model = trial_params["model"]
    out = {k: v for k, v in trial_params.items() if "." not in k}
    cfg = model_config(model)
    if cfg.uses_alpha:
        out["alpha"] = trial_params[f"{model}.alpha"]
        out["input_size"] = trial_params[f"{model}.input_size"]
    else:
        out["input_size"] = max(int(image_size), cfg.min_size)
    return out


def to_train_config(params: dict[str, Any], *, data: str | Path, out: str | Path, epochs: int, seed: int,
                    patience: int | None = None) -> Any:
    """A `training.TrainConfig` from `suggest`'s dict (imports the training stack lazily)."""
    from cloudcover.train.training import Augment, TrainConfig

    augment = Augment(hflip=bool(params["hflip"]), vflip=bool(params["vflip"]), rotation=float(params["rotation"]),
                      width_shift=float(params["width_shift"]), height_shift=float(params["height_shift"]),
                      zoom=float(params["zoom"]), brightness=float(params["brightness"]))
    kwargs: dict[str, Any] = dict(
        data=Path(data), out=Path(out), model=params["model"], input_size=int(params["input_size"]),
        epochs=int(epochs), batch_size=int(params["batch_size"]), optimizer=params["optimizer"],
        lr=float(params["lr"]), momentum=float(params.get("momentum", 0.0)), dropout=float(params["dropout"]),
        label_smoothing=float(params["label_smoothing"]), augment=augment, seed=int(seed),
        patience=int(patience if patience is not None else epochs),
    )
    if "alpha" in params:
        kwargs["alpha"] = float(params["alpha"])
    return TrainConfig(**kwargs)


def available_models() -> list[str]:
    return list_models()
