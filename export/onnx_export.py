"""ONNX forms of a trained model: fp32 through tf2onnx (opset 17), int8 through onnxruntime static QDQ.

The int8 ONNX keeps a float input and output (QuantizeLinear / DequantizeLinear at the edges) and
quantizes weights per channel and activations per tensor, calibrated on the same images as TFLite.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cloudcover.export.calibration import Calibration, onnx_method
from cloudcover.train.errors import CloudcoverError

if TYPE_CHECKING:
    import keras

OPSET = 17
INPUT_NAME = "input"


def convert_fp32(model: "keras.Model", path: str | Path) -> None:
    import tensorflow as tf
    import tf2onnx

    _, h, w, c = model.input_shape
    spec = (tf.TensorSpec((None, h, w, c), tf.float32, name=INPUT_NAME),)
    # tf2onnx prints a non-fatal transpose-optimizer traceback on some models (MobileNetV3); keep it quiet.
    with contextlib.redirect_stdout(io.StringIO()):
        tf2onnx.convert.from_keras(model, input_signature=spec, opset=OPSET, output_path=str(path))


class _Calibration:
    """onnxruntime CalibrationDataReader over a float32 array, one image per call."""

    def __init__(self, x: np.ndarray, input_name: str):
        self._x, self._name, self._i = x, input_name, 0

    def get_next(self):
        if self._i >= len(self._x):
            return None
        self._i += 1
        return {self._name: self._x[self._i - 1 : self._i].astype(np.float32)}

    def rewind(self):
        self._i = 0


def quantize_int8(fp32_path: str | Path, calib: np.ndarray, path: str | Path, cal: Calibration | None = None) -> None:
    """Static QDQ int8 (per-channel weights) of an fp32 ONNX model; activation ranges chosen by `cal`."""
    import onnxruntime as ort
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if len(calib) == 0:
        raise CloudcoverError("calibration set is empty: the train split has no images or --calib-samples is 0")
    name = ort.InferenceSession(str(fp32_path), providers=["CPUExecutionProvider"]).get_inputs()[0].name
    method, extra = onnx_method(cal or Calibration())
    with tempfile.TemporaryDirectory() as tmp:
        prepped = Path(tmp) / "prepped.onnx"
        quant_pre_process(str(fp32_path), str(prepped), skip_symbolic_shape=True)
        quantize_static(str(prepped), str(path), _Calibration(calib, name), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        calibrate_method=method, extra_options=extra)


def run(path: str | Path, x: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Logits of an ONNX model (fp32 or QDQ int8) on float32 images, with onnxruntime on the CPU."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    outs = [sess.run(None, {name: x[i : i + batch_size].astype(np.float32)})[0] for i in range(0, len(x), batch_size)]
    return np.concatenate(outs) if outs else np.zeros((0, 0), np.float32)


def embed_metadata(path: str | Path, meta: dict) -> None:
    """Embed cloudcover's metadata (task, class names) in the ONNX file's metadata_props (model_meta)."""
    from cloudcover.export.model_meta import onnx_embed

    onnx_embed(path, meta)
