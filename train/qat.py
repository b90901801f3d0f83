"""Quantization-aware fine-tuning: a few epochs that make the float model and its int8 export agree.

Why: after post-training quantization the int8 model flips the float model's class on near-tied images. The
demo classifier's flips had float top-2 gaps of 0.01-0.18 against an int8 logit error of standard deviation
0.06-0.10, random rather than systematic, so neither calibration nor bias correction removes them (measured,
see README). What removes them is teaching the network to be insensitive to int8 rounding.

How: a twin of the model shares every layer (and so every weight) with it, but fake-quantizes to 8 bits each
tensor an int8 kernel reads: the inputs of convolutions, dense layers, pooling, additions and concatenations,
i.e. the tensors TFLite quantizes after it fuses batch norm and activations into the convolution. Ranges are the
float model's min/max over calibration images, as the converters will take them. Each step minimizes

    CE(labels, float logits) + CE(labels, fake-quant logits) + consistency * mean((float - fake-quant logits)^2)

with batch norm in inference mode (its statistics are what the converter folds) and dropout off. The twin is
only a training device: the fine-tuned float model is an ordinary Keras model, exported as before.

Options, each measured by `python -m cloudcover.export.fidelity_bench --qat-variant` (README):
- `quantize_weights`: the twin also rounds each kernel to int8 per output channel, as the converters store it.
- `noise`: the twin's activations get uniform noise of one rounding step, drawn afresh each step, instead of
  the fixed rounding. The twin's per-image error correlates only ~0.4 with the real int8 model's (rounding is
  chaotic: any small difference upstream, e.g. TFLite rounding the input normalization, changes every
  rounding after it), so a twin that always rounds the same image the same way teaches the network that one
  error pattern rather than insensitivity to rounding in general.
- What no option reaches (measured on the demo, seed 0, test split): the real int8 model's error has a
  systematic part the twin lacks. Between the float model's top two classes it moves the decision toward the
  lower cloud-cover class by 0.03-0.07 logits on average (15 of 16 flips go one class down), where the twin's
  error is unbiased (|mean| < 0.01). Per-class mean error stays under 0.03, so it is not a per-class offset
  but an under-estimate of the cloudiness the classes are ordered by; input clipping is ruled out (no test
  pixel leaves the input's calibrated range) and so are TFLite's MEAN and dense kernels (the last
  convolution's int8 output, averaged and multiplied in float, already carries it). Its sources: the int8
  Normalization constants and rounding bias in the convolution stack (`cloudcover.export.bias_correction`);
  `--calibration minmax+affine+bc` removes it (what the demo exports with).
- `track_ranges`: re-observe the ranges each epoch, as the weights move them; `quantize_output`: round the
  logits too; `distill`: the twin learns the float model's softmax rather than the label; `margin`: a hinge
  that keeps the float model's class in the twin by that many logits.

OUT is written in a temp folder and renamed: a copy of RUN with the fine-tuned model.keras and qat.json.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cloudcover.train.atomic import atomic_dir, check_replaceable
from cloudcover.train.errors import CloudcoverError

if TYPE_CHECKING:
    import keras

MARKER = "qat.json"


@dataclass
class QATConfig:
    run: Path
    out: Path
    data: Path | None = None  # default: the dataset recorded in the run
    epochs: int = 4
    lr: float = 1e-4
    consistency: float = 10.0
    batch_size: int = 16
    calib_samples: int = 200
    seed: int = 0
    # agreement terms (see module doc): the fake-quant logits learn the float model's own class, not only the label
    distill: bool = False
    margin: float = 0.0  # hinge: fake-quant logit of the float's top-1 class above every other by this much
    quantize_output: bool = False  # also round the logits, as the int8 output tensor does
    track_ranges: bool = False  # re-observe the fake-quant ranges at each epoch (the weights move them)
    quantize_weights: bool = False  # round kernels per output channel to int8 as the converters do
    noise: bool = False  # train against rounding-sized uniform noise instead of the fixed rounding (see doc)

    def check(self) -> None:
        if self.epochs < 0:
            raise CloudcoverError(f"--epochs must be at least 0, got {self.epochs}")
        if not self.lr > 0:
            raise CloudcoverError(f"--lr must be positive, got {self.lr}")
        if self.consistency < 0:
            raise CloudcoverError(f"--consistency must be >= 0, got {self.consistency}")
        if self.batch_size < 1:
            raise CloudcoverError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.margin < 0:
            raise CloudcoverError(f"--margin must be >= 0, got {self.margin}")


# Layers whose inputs an int8 kernel reads. BatchNormalization, activations and dropout are absent on purpose:
# TFLite folds or fuses them into the producing kernel, so nothing is rounded between those layers.
QUANTIZED_INPUT_LAYERS = ("Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Conv2DTranspose", "Dense", "Add",
                          "Subtract", "Multiply", "Concatenate", "MaxPooling2D", "AveragePooling2D",
                          "GlobalAveragePooling2D", "GlobalMaxPooling2D", "UpSampling2D", "Resizing")


def _fake_quant_layer_class():
    import keras
    import tensorflow as tf

    class FakeQuant8(keras.layers.Layer):
        """8-bit fake quantization with a fixed range; `observing` records the range instead (float pass)."""

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.observing = True
            self.noise = False  # read when traced: a tf.function traced with noise keeps it

        def build(self, input_shape):
            self.lo = self.add_weight(shape=(), initializer=keras.initializers.Constant(np.inf), trainable=False,
                                      name="lo")
            self.hi = self.add_weight(shape=(), initializer=keras.initializers.Constant(-np.inf),
                                      trainable=False, name="hi")

        def call(self, x):
            if self.observing:
                self.lo.assign(tf.minimum(self.lo, tf.reduce_min(x)))
                self.hi.assign(tf.maximum(self.hi, tf.reduce_max(x)))
                return x
            # zero must be representable, as in the converters (the op also nudges the range to a whole zero point)
            lo, hi = tf.minimum(self.lo, 0.0), tf.maximum(self.hi, 0.0)
            if self.noise:  # the rounding error's distribution, drawn afresh each step: nothing to memorize
                step = (hi - lo) / 255.0
                clipped = tf.clip_by_value(x, lo, hi)
                return clipped + tf.stop_gradient(tf.random.uniform(tf.shape(x), -0.5, 0.5) * step)
            return tf.quantization.fake_quant_with_min_max_vars(x, lo, hi, num_bits=8)

    return FakeQuant8


# Layers whose kernel the converters store as int8, symmetric per output channel (scale = max|w| / 127). Batch norm
# folded into the kernel scales each output channel, and per-channel rounding commutes with that scaling, so
# rounding the unfolded kernel here rounds exactly what the converter rounds.
QUANTIZED_WEIGHT_LAYERS = ("Conv2D", "DepthwiseConv2D", "Dense")


def fake_quant_kernel(kernel, depthwise: bool = False):
    """`kernel` rounded to symmetric int8 per output channel (the last axis; depthwise: the last two), with a
    straight-through gradient."""
    import tensorflow as tf

    k = tf.convert_to_tensor(kernel)
    flat = tf.reshape(k, [*k.shape[:-2], 1, -1]) if depthwise else k
    bound = tf.stop_gradient(tf.reduce_max(tf.abs(flat), axis=list(range(len(flat.shape) - 1))) + 1e-12)
    q = tf.quantization.fake_quant_with_min_max_vars_per_channel(flat, -bound, bound, num_bits=8, narrow_range=True)
    q = tf.reshape(q, tf.shape(k))
    return k + tf.stop_gradient(q - k)


def _quant_weights_layer_class():
    import keras

    class QuantWeightsCall(keras.layers.Layer):
        """Calls a Conv2D / DepthwiseConv2D / Dense layer with its kernel rounded to int8 (its variables shared)."""

        def __init__(self, inner, **kwargs):
            super().__init__(**kwargs)
            self.inner = inner

        def call(self, x):
            from keras import ops

            layer = self.inner
            kind = type(layer).__name__
            k = fake_quant_kernel(layer.kernel, depthwise=kind == "DepthwiseConv2D")
            if kind == "Dense":
                y = ops.matmul(x, k)
            elif kind == "DepthwiseConv2D":
                y = ops.depthwise_conv(x, k, strides=layer.strides, padding=layer.padding,
                                       data_format=layer.data_format, dilation_rate=layer.dilation_rate)
            else:
                y = ops.conv(x, k, strides=layer.strides, padding=layer.padding, data_format=layer.data_format,
                             dilation_rate=layer.dilation_rate)
            if layer.use_bias:
                y = y + (layer.bias if kind == "Dense" or layer.data_format == "channels_last"
                         else ops.reshape(layer.bias, (1, -1, 1, 1)))
            return layer.activation(y) if layer.activation is not None else y

    return QuantWeightsCall


def fake_quant_twin(model: "keras.Model", quantize_output: bool = False,
                    quantize_weights: bool = False) -> tuple["keras.Model", list]:
    """A model that shares `model`'s layers and fake-quantizes the inputs of int8 kernels (and, if asked, its
    output, which full-integer export also rounds to int8); its FakeQuant layers."""
    import keras

    fq_class = _fake_quant_layer_class()
    qw_class = _quant_weights_layer_class()
    inserted: list = []

    def quantize(t):
        layer = fq_class(name=f"fq_{len(inserted)}")
        inserted.append(layer)
        return layer(t)

    def call_function(layer, *args, **kwargs):
        if type(layer).__name__ in QUANTIZED_INPUT_LAYERS and args:
            first = args[0]
            args = ([quantize(t) for t in first] if isinstance(first, (list, tuple)) else quantize(first),
                    *args[1:])
        kind = type(layer).__name__
        if quantize_weights and kind in QUANTIZED_WEIGHT_LAYERS and getattr(layer, "groups", 1) == 1:
            return qw_class(layer, name=f"qw_{layer.name}")(args[0])
        return layer(*args, **kwargs)

    twin = keras.models.clone_model(model, clone_function=lambda layer: layer, call_function=call_function,
                                    recursive=True)
    if not inserted:
        raise CloudcoverError(f"model {model.name!r} has no layer that int8 quantizes "
                              f"({', '.join(QUANTIZED_INPUT_LAYERS)}): nothing to fine-tune for")
    if quantize_output:
        twin = keras.Model(twin.inputs, quantize(twin.outputs[0]), name=f"{model.name}_fq")
    return twin, inserted


def observe_ranges(twin: "keras.Model", fqs: list, calib: np.ndarray) -> None:
    """Reset each FakeQuant's range to the float min/max over `calib` (what the converters will calibrate)."""
    for fq in fqs:
        fq.lo.assign(np.inf)
        fq.hi.assign(-np.inf)
        fq.observing = True
    for i in range(0, len(calib), 32):
        twin(calib[i : i + 32], training=False)
    for fq in fqs:
        fq.observing = False


def agreement_margin(float_logits, quant_logits, margin: float):
    """Mean hinge max(0, margin - (q[c] - max_{j != c} q[j])), c = the float model's class (no gradient through c).

    Zero once the fake-quant logits keep the float's class by `margin`: it acts only on the near ties that flip."""
    import tensorflow as tf

    c = tf.argmax(tf.stop_gradient(float_logits), axis=-1)
    onehot = tf.one_hot(c, tf.shape(quant_logits)[-1], dtype=quant_logits.dtype)
    top = tf.reduce_sum(quant_logits * onehot, axis=-1)
    other = tf.reduce_max(quant_logits - 1e9 * onehot, axis=-1)
    return tf.reduce_mean(tf.nn.relu(margin - (top - other)))


@dataclass
class QATResult:
    out: Path
    report: dict  # the content of qat.json


def _agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.argmax(a, axis=-1) == np.argmax(b, axis=-1)))


def finetune(cfg: QATConfig, log=print, progress: bool = True) -> QATResult:
    """Quantization-aware fine-tuning of the classifier in cfg.run; writes cfg.out (see module doc)."""
    import keras
    import tensorflow as tf
    from tqdm import tqdm

    from cloudcover.train.preprocess import load_images, load_split, read_dataset
    from cloudcover.train.training import load_run

    cfg.check()
    run, out = Path(cfg.run), Path(cfg.out)
    if run.resolve() == out.resolve():
        raise CloudcoverError(f"--out {out} is the run itself: write the fine-tuned run to a new folder")
    check_replaceable(out, MARKER, "a fine-tuned run")
    model, pre = load_run(run)
    if getattr(pre, "task", "classification") != "classification":
        raise CloudcoverError(f"{run} is a {pre.task} run: quantization-aware fine-tuning supports classifiers")
    data = Path(cfg.data or pre.data_dir)
    info = read_dataset(data)
    train_cfg = json.loads((run / "train.json").read_text()).get("config", {}) if (run / "train.json").is_file() else {}
    smoothing = float(train_cfg.get("label_smoothing", 0.0))

    tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(cfg.seed)
    x, y, _ = load_split(data, "train", pre)
    xv, yv, _ = load_split(data, "val", pre)
    if len(x) == 0:
        raise CloudcoverError(f"{data / 'manifest.csv'} has no train images to fine-tune on")
    classes = int(model.output_shape[-1])
    targets = keras.utils.to_categorical(y, classes) * (1.0 - smoothing) + smoothing / classes

    # A coverage head (cover_head.py) keeps its per-cell loss here too: with the class cross-entropy alone the
    # cells stop counting cloud (measured: the demo's val accuracy fell from 89.8 to 82.9 % in 4 epochs).
    from cloudcover.train import cover_head

    counting = cover_head.has_cover_head(model)
    cell_targets = cover_head.load_targets(data, "train", pre.input_size) if counting else None
    cover_weight = float(train_cfg.get("cover_weight", cover_head.DEFAULT_WEIGHT))
    twin, fqs = fake_quant_twin(model, cfg.quantize_output, cfg.quantize_weights)
    rows = info.split_rows("train")
    pick = np.random.default_rng(cfg.seed).permutation(len(rows))[: cfg.calib_samples]
    calib = load_images([info.root / rows[i]["image"] for i in sorted(pick)], pre)
    observe_ranges(twin, fqs, calib)
    for fq in fqs:
        fq.noise = cfg.noise
    log(f"qat: {len(fqs)} quantization points, ranges from {len(calib)} calibration images")

    before_val = model.predict(xv, batch_size=64, verbose=0) if len(xv) else np.zeros((0, classes))
    spec = tf.TensorSpec([None, *x.shape[1:]], tf.float32)
    float_fn = tf.function(lambda a: model(a, training=False), input_signature=[spec])
    if counting:
        cells = keras.Model(model.input, [model.output, model.get_layer("cover").output])
        cells_fn = tf.function(lambda a: cells(a, training=False), input_signature=[spec])
        t_spec = tf.TensorSpec([None, *cell_targets.shape[1:]], tf.float32)
    else:
        t_spec = tf.TensorSpec([None], tf.float32)  # unused
    quant_fn = tf.function(lambda a: twin(a, training=False), input_signature=[spec])
    ce = keras.losses.CategoricalCrossentropy(from_logits=True)
    opt = keras.optimizers.Adam(cfg.lr)
    variables = model.trainable_variables

    @tf.function(input_signature=[spec, tf.TensorSpec([None, classes], tf.float32), t_spec])
    def step(xb, yb, tb):
        with tf.GradientTape() as tape:
            if counting:
                a, cover = cells_fn(xb)
            else:
                a = float_fn(xb)
            q = quant_fn(xb)
            gap = tf.reduce_mean(tf.square(a - q))
            q_target = tf.nn.softmax(tf.stop_gradient(a)) if cfg.distill else yb
            loss = ce(yb, a) + ce(q_target, q) + cfg.consistency * gap
            if counting:
                loss += cover_weight * cover_head.cell_loss(cover, tb)
            if cfg.margin > 0:
                loss += agreement_margin(a, q, cfg.margin)
        opt.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss, gap

    rng = np.random.default_rng(cfg.seed)
    history = []
    t0 = time.perf_counter()
    for epoch in range(cfg.epochs):
        if cfg.track_ranges and epoch:
            observe_ranges(twin, fqs, calib)
        order = rng.permutation(len(x))
        losses, gaps = [], []
        bar = tqdm(range(0, len(x), cfg.batch_size), desc=f"qat epoch {epoch + 1}/{cfg.epochs}", unit="batch",
                   disable=not progress, leave=False)
        for i in bar:
            b = order[i : i + cfg.batch_size]
            tb = cell_targets[b] if counting else np.zeros(len(b), np.float32)
            loss, gap = step(tf.constant(x[b]), tf.constant(targets[b], tf.float32), tf.constant(tb))
            losses.append(float(loss))
            gaps.append(float(gap))
        history.append({"epoch": epoch + 1, "loss": float(np.mean(losses)), "logit_gap_mse": float(np.mean(gaps))})
        log(f"qat epoch {epoch + 1}/{cfg.epochs}: loss {history[-1]['loss']:.4f}, "
            f"float vs fake-quant logit MSE {history[-1]['logit_gap_mse']:.5f}")

    for fq in fqs:
        fq.noise = False
    if cfg.track_ranges:
        observe_ranges(twin, fqs, calib)
    after_val = model.predict(xv, batch_size=64, verbose=0) if len(xv) else np.zeros((0, classes))
    round_fn = tf.function(lambda a: twin(a, training=False), input_signature=[spec])  # traced with rounding
    quant_val = round_fn(tf.constant(xv)).numpy() if len(xv) else np.zeros((0, classes))
    report = {
        "run": str(run.resolve()), "data": str(data.resolve()), "config": {**asdict(cfg), "run": str(cfg.run),
                                                                          "out": str(cfg.out),
                                                                          "data": str(data)},
        "label_smoothing": smoothing, "quantization_points": len(fqs), "history": history,
        "val_accuracy_before": float(np.mean(np.argmax(before_val, -1) == yv)) if len(xv) else None,
        "val_accuracy_after": float(np.mean(np.argmax(after_val, -1) == yv)) if len(xv) else None,
        "val_agreement_float_vs_fake_quant": _agreement(after_val, quant_val) if len(xv) else None,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    with atomic_dir(out, MARKER, "a fine-tuned run") as tmp:
        for f in run.iterdir():
            if f.is_file() and f.name != "model.keras":
                shutil.copy2(f, tmp / f.name)
        model.save(tmp / "model.keras")
        (tmp / MARKER).write_text(json.dumps(report, indent=2) + "\n")
    return QATResult(out, report)
