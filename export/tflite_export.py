"""Full-integer TFLite: int8 input, int8 output, int8 builtin ops only, calibrated on training images.

Because the model normalizes inside, its input is raw pixels; for 8-bit images the input quantization
comes out at scale ~1 and zero point -128, i.e. a pixel value v is fed as the int8 v - 128.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cloudcover.export.calibration import Calibration, convert_tflite, int8_converter, prepare
from cloudcover.train.errors import CloudcoverError

if TYPE_CHECKING:
    import keras

RESOLVERS = ("default", "reference")  # default = optimized kernels (+XNNPACK); reference = BUILTIN_REF, bit-exact oracle


@dataclass
class TensorQuant:
    """How a float tensor maps to int8: real = scale * (q - zero_point)."""

    shape: list[int]
    dtype: str
    scale: float
    zero_point: int

    def quantize(self, x: np.ndarray) -> np.ndarray:
        return np.clip(np.round(x / self.scale) + self.zero_point, -128, 127).astype(np.int8)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        return (q.astype(np.float32) - self.zero_point) * np.float32(self.scale)

    def to_json(self) -> dict:
        return asdict(self)


def convert_int8(model: "keras.Model", calib: np.ndarray, path: str | Path, cal: Calibration | None = None) -> None:
    """Convert `model` to a full-int8 .tflite at `path`, calibrating on `calib` (float32 [N,H,W,C]); activation
    ranges as `cal` says (default min/max, the converter's own route)."""
    import tensorflow as tf

    if len(calib) == 0:
        raise CloudcoverError("calibration set is empty: the train split has no images or --calib-samples is 0")
    if cal is not None and cal.rewrites:
        model, cal = prepare(model, calib, cal)
    if cal is not None and cal.method != "minmax":
        Path(path).write_bytes(convert_tflite(model, calib, cal))
        return
    converter = int8_converter(model, calib)
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    Path(path).write_bytes(converter.convert())


def interpreter(path: str | Path, resolver: str = "reference"):
    """An allocated ai_edge_litert Interpreter with the chosen kernels (see RESOLVERS)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    if resolver not in RESOLVERS:
        raise CloudcoverError(f"unknown TFLite resolver {resolver!r}; choose one of {', '.join(RESOLVERS)}")
    kind = OpResolverType.BUILTIN_REF if resolver == "reference" else OpResolverType.AUTO
    interp = Interpreter(model_path=str(path), experimental_op_resolver_type=kind)
    interp.allocate_tensors()
    return interp


def io_quant(path: str | Path) -> tuple[TensorQuant, TensorQuant]:
    """Quantization parameters of the model's input and output tensors."""
    interp = interpreter(path, "default")

    def one(detail) -> TensorQuant:
        scale, zp = detail["quantization"]
        return TensorQuant([int(d) for d in detail["shape"]], np.dtype(detail["dtype"]).name, float(scale), int(zp))

    return one(interp.get_input_details()[0]), one(interp.get_output_details()[0])


def run_int8(path: str | Path, x: np.ndarray, resolver: str = "reference") -> tuple[np.ndarray, np.ndarray]:
    """Run float images through the int8 model one by one: (raw int8 outputs, dequantized logits), each of shape
    [N, *output shape] ([N, K] for a classifier, [N, H, W, 1] for a segmenter)."""
    interp = interpreter(path, resolver)
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    qin = TensorQuant(list(inp["shape"]), "int8", *inp["quantization"])
    qout = TensorQuant(list(out["shape"]), "int8", *out["quantization"])
    raw = np.empty((len(x), *[int(d) for d in out["shape"][1:]]), np.int8)
    for i in range(len(x)):
        interp.set_tensor(inp["index"], qin.quantize(x[i : i + 1]))
        interp.invoke()
        raw[i] = interp.get_tensor(out["index"])[0]
    return raw, qout.dequantize(raw)


def embed_metadata(path: str | Path, meta: dict) -> None:
    """Embed cloudcover's metadata (task, class names, input/output quantization) as the flatbuffer's
    "cloudcover" metadata buffer (model_meta); the operators and tensors are unchanged."""
    from cloudcover.export.model_meta import tflite_embed

    path = Path(path)
    path.write_bytes(tflite_embed(path.read_bytes(), meta))
