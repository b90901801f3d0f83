"""Activation ranges for int8 post-training quantization: plain min/max, percentile, or MSE-optimal clipping.

Why: TFLite's converter and onnxruntime's default calibrator take each activation's range as the min and max
seen over the calibration images. One rare outlier then stretches the range and every other value of that
tensor gets a coarser step, and near-tied images flip class. Clipping the range (percentile) or choosing the
clip that minimizes the quantization error (MSE) is what TensorRT, onnxruntime and the PTQ literature do.

TFLite has no option for it, so `convert_tflite` splits the converter in two at its seam: calibrate only
(a float .tflite whose tensors carry the observed min/max), replace those ranges with ours, then run the
converter's own quantizer (`mlir_quantize`) on the edited model. The model's input (raw pixels, quantized
losslessly) and output (the logits: clipping them would turn clear winners into ties) keep min/max.
For ONNX, onnxruntime's own calibrators do the same job (`onnx_method`).

`+affine` (e.g. `minmax+affine`) also rewrites the model's input Normalization layer, before conversion, as the
float-identical 1x1 depthwise convolution x / std - mean / std (`affine_normalization`). Why: the converter
lowers Normalization to SUB and MUL by constants that it quantizes per tensor to int8; the demo's band means
(173-180) land on a grid of 0.705 pixel levels, off by -0.27 / +0.33 / 0.00 in R / G / B, so every int8 image
is slightly redder and less green than the float one, a systematic shift that moves near ties one class down
in cloud cover (measured, README). A depthwise convolution keeps the weights per channel and the offset as an
int32 bias at 1/127 of a weight step, so only the rounding of the normalized image remains.
`+bc` also applies empirical bias correction (bias_correction.py) to the convolutions, measured on the
calibration images through this same route; both rewrites happen in `prepare` and change no float weight but
the batch-norm offsets, so the int8 model is compared with the original float model.
"""

from __future__ import annotations

import struct
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from cloudcover.train.errors import CloudcoverError

if TYPE_CHECKING:
    import keras

# Values sampled per tensor per image: enough for the 99.99th percentile over a few hundred images, and the MSE
# of a candidate range is an average, so a uniform sample estimates it without bias.
SAMPLE_PER_IMAGE = 4096
OBSERVE_IMAGES = 256
METHODS = ("minmax", "percentile", "mse")
SUFFIXES = ("affine", "bc")


@dataclass(frozen=True)
class Calibration:
    """How activation ranges are chosen: `minmax`, `percentile` (keep `percentile` % of the values inside),
    or `mse` (the clip of the min/max range with the least quantization error)."""

    method: str = "minmax"
    percentile: float = 99.99
    affine_norm: bool = False  # Normalization as a per-channel depthwise conv (module doc)
    bias_correct: bool = False  # empirical bias correction of the conv biases (bias_correction.py)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise CloudcoverError(f"unknown calibration method {self.method!r}; choose one of {', '.join(METHODS)}")
        if not 50.0 < self.percentile <= 100.0:
            raise CloudcoverError(f"calibration percentile must be in (50, 100], got {self.percentile}")

    @classmethod
    def parse(cls, spec: str) -> "Calibration":
        """`minmax`, `mse`, `percentile` or `percentile:99.9`, optionally followed by `+affine` and/or `+bc`."""
        base, *extras = spec.split("+")
        if any(e not in SUFFIXES for e in extras) or len(set(extras)) != len(extras):
            raise CloudcoverError(f"bad calibration {spec!r}: suffixes are +affine and +bc (e.g. minmax+affine+bc)")
        name, _, arg = base.partition(":")
        flags = {"affine_norm": "affine" in extras, "bias_correct": "bc" in extras}
        try:
            return cls(name, float(arg), **flags) if arg else cls(name, **flags)
        except ValueError:
            raise CloudcoverError(f"bad calibration {spec!r}: expected minmax, mse, percentile or percentile:P, "
                                  f"optionally +affine, +bc") from None

    def __str__(self) -> str:
        name = f"percentile:{self.percentile:g}" if self.method == "percentile" else self.method
        return name + ("+affine" if self.affine_norm else "") + ("+bc" if self.bias_correct else "")

    @property
    def rewrites(self) -> bool:
        """Whether the model is rewritten before conversion (`prepare`)."""
        return self.affine_norm or self.bias_correct


DEFAULT_CALIBRATION = Calibration("minmax")


def choose_range(values: np.ndarray, lo: float, hi: float, cal: Calibration) -> tuple[float, float]:
    """The range to quantize a tensor with, from a sample of its values and its observed [lo, hi].

    Always contains 0 (int8 must represent zero exactly) and never widens the observed range."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    if cal.method == "minmax" or values.size == 0 or hi - lo <= 0:
        return lo, hi
    v = values.astype(np.float64)
    if cal.method == "percentile":
        q_lo, q_hi = np.percentile(v, [100.0 - cal.percentile, cal.percentile])
        return max(lo, min(float(q_lo), 0.0)), min(hi, max(float(q_hi), 0.0))
    best, best_err = (lo, hi), np.inf
    for r in np.linspace(0.2, 1.0, 33):
        a, b = lo * r, hi * r
        step = (b - a) / 255.0
        q = np.clip(np.round((v - a) / step), 0, 255) * step + a
        err = float(np.mean((q - v) ** 2))
        if err < best_err:
            best, best_err = (a, b), err
    return best


def _range_slots(buf: bytes) -> dict[int, tuple[int, int]]:
    """Byte offsets of the one-element min and max floats of every tensor of the main subgraph that has them."""
    import tflite

    model = tflite.Model.GetRootAs(buf, 0)
    sub = model.Subgraphs(0)
    slots = {}
    for t in range(sub.TensorsLength()):
        q = sub.Tensors(t).Quantization()
        if q is None or q.MinLength() != 1 or q.MaxLength() != 1:
            continue
        # the position of element 0 of each float vector (field slots 4 = min, 6 = max of QuantizationParameters)
        slots[t] = tuple(q._tab.Vector(q._tab.Offset(field)) for field in (4, 6))
    return slots


def _observe(buf: bytes, calib: np.ndarray, tensors: list[int], seed: int = 0) -> dict[int, np.ndarray]:
    """A uniform sample of each tensor's values over (up to OBSERVE_IMAGES) calibration images, float model."""
    from ai_edge_litert.interpreter import Interpreter

    with warnings.catch_warnings():  # "preserve_all_tensors is for debugging": reading them is the point here
        warnings.simplefilter("ignore", UserWarning)
        interp = Interpreter(model_content=bytes(buf), experimental_preserve_all_tensors=True)
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]["index"]
    rng = np.random.default_rng(seed)
    samples: dict[int, list[np.ndarray]] = {t: [] for t in tensors}
    for i in range(min(len(calib), OBSERVE_IMAGES)):
        interp.set_tensor(inp, calib[i : i + 1].astype(np.float32))
        interp.invoke()
        for t in tensors:
            v = interp.get_tensor(t).ravel()
            samples[t].append(v if v.size <= SAMPLE_PER_IMAGE else rng.choice(v, SAMPLE_PER_IMAGE, replace=False))
    return {t: np.concatenate(s) for t, s in samples.items()}


def affine_normalization(model: "keras.Model") -> "keras.Model":
    """`model` with each Normalization layer replaced by the float-identical DepthwiseConv2D(1) computing
    x * (1 / std) + (-mean / std) per channel; every other layer is shared, not copied (module doc)."""
    import keras

    def swap(layer):
        if not isinstance(layer, keras.layers.Normalization):
            return layer
        mean = np.asarray(layer.mean, np.float64).reshape(-1)
        std = np.sqrt(np.maximum(np.asarray(layer.variance, np.float64).reshape(-1), keras.backend.epsilon()))
        conv = keras.layers.DepthwiseConv2D(1, use_bias=True, name=layer.name)
        conv.build((None, None, None, mean.size))
        conv.set_weights([(1.0 / std).reshape(1, 1, -1, 1).astype(np.float32), (-mean / std).astype(np.float32)])
        return conv

    return keras.models.clone_model(model, clone_function=swap)


def prepare(model: "keras.Model", calib: np.ndarray, cal: Calibration) -> tuple["keras.Model", Calibration]:
    """The model to convert under `cal` (its +affine / +bc rewrites applied) and `cal` without them."""
    from dataclasses import replace

    if not cal.rewrites:
        return model, cal
    plain = replace(cal, affine_norm=False, bias_correct=False)
    if cal.affine_norm:
        model = affine_normalization(model)
    if cal.bias_correct:
        from cloudcover.export.bias_correction import bias_corrected
        from cloudcover.export.tflite_export import convert_int8

        model = bias_corrected(model, calib, lambda m, c, path: convert_int8(m, c, path, plain))
    return model, plain


def int8_converter(model: "keras.Model", calib: np.ndarray):
    """TFLiteConverter set up for full-integer int8 ops, calibrated on `calib` one image at a time."""
    import tensorflow as tf

    def representative():
        for i in range(len(calib)):
            yield [calib[i : i + 1].astype(np.float32)]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return converter


def calibrated_ranges(model: "keras.Model", calib: np.ndarray, cal: Calibration) -> tuple[bytes, dict]:
    """The converter's calibrated float model with activation ranges chosen by `cal`, and what changed."""
    model, cal = prepare(model, calib, cal)
    converter = int8_converter(model, calib)
    converter._experimental_calibrate_only = True  # stop after calibration: min/max recorded, nothing quantized
    buf = bytearray(converter.convert())
    slots = _range_slots(bytes(buf))
    if cal.method == "minmax":
        return bytes(buf), {}
    from ai_edge_litert.interpreter import Interpreter

    probe = Interpreter(model_content=bytes(buf))
    keep = {d["index"] for d in probe.get_input_details()} | {d["index"] for d in probe.get_output_details()}
    tensors = sorted(t for t in slots if t not in keep)
    values = _observe(buf, calib, tensors)
    changed = {}
    for t in tensors:
        lo_at, hi_at = slots[t]
        lo, hi = struct.unpack_from("<f", buf, lo_at)[0], struct.unpack_from("<f", buf, hi_at)[0]
        new_lo, new_hi = choose_range(values[t], lo, hi, cal)
        struct.pack_into("<f", buf, lo_at, new_lo)
        struct.pack_into("<f", buf, hi_at, new_hi)
        changed[t] = {"observed": [lo, hi], "chosen": [new_lo, new_hi]}
    return bytes(buf), changed


def convert_tflite(model: "keras.Model", calib: np.ndarray, cal: Calibration) -> bytes:
    """Full-integer .tflite (int8 in, int8 out, int8 builtin ops) with activation ranges chosen by `cal`."""
    import tensorflow as tf
    from tensorflow.lite.python import convert

    buf, _ = calibrated_ranges(model, calib, cal)
    return convert.mlir_quantize(buf, input_data_type=tf.int8, output_data_type=tf.int8)


def onnx_method(cal: Calibration) -> tuple[object, dict]:
    """onnxruntime's calibrator for `cal`: (CalibrationMethod, extra_options for quantize_static)."""
    from onnxruntime.quantization import CalibrationMethod

    if cal.method == "minmax":
        return CalibrationMethod.MinMax, {}
    if cal.method == "percentile":
        return CalibrationMethod.Percentile, {"CalibPercentile": cal.percentile}
    # onnxruntime has no MSE calibrator; its entropy (KL) calibrator is the closest error-minimizing choice
    return CalibrationMethod.Entropy, {}
