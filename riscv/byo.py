"""Bring your own model: feed a compiled model (any format and dtype) and compare it with the model's own runtime.

What `cloudcover bench --model FILE --inputs FILE.npz` needs, independent of cloudcover's artifacts folder:
- `encode_inputs`: float (or already integer) arrays -> the bytes cloudcover-infer reads, using model.json
  (an int8/uint8 input of a QDQ model is quantized as ONNX QuantizeLinear does: x / scale rounded half to
  even, + zero point, saturated; a TFLite int8 input likewise with TFLite's rounding, which is the same
  for the scale-1 inputs of cloudcover's exports);
- `decode_outputs`: cloudcover-infer's output bytes -> one array per model output (raw and, where the output
  is quantized, dequantized);
- `reference_outputs`: the model's own runtime on the same inputs: onnxruntime (CPUExecutionProvider) for
  .onnx, ai-edge-litert with the reference kernels (BUILTIN_REF) for .tflite; raw outputs, as the model
  file defines them (float for a QDQ model);
- `compare`: per output, the largest difference (absolute, relative to the reference's largest magnitude,
  and in LSB of the output scale) and the top-1 agreement of the last axis.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from cloudcover.train.errors import CloudcoverError


def quantize(x: np.ndarray, scale: float, zero_point: int, dtype: str, rounding: str = "half_to_even") -> np.ndarray:
    """ONNX QuantizeLinear (and onnxruntime's): saturate(round_half_even(x / scale) + zero_point), in float32;
    rounding "half_away_from_zero" is TFLite's QUANTIZE (std::round)."""
    info = np.iinfo(dtype)
    v = np.asarray(x, np.float32) / np.float32(scale)
    r = np.sign(v) * np.floor(np.abs(v) + np.float32(0.5)) if rounding == "half_away_from_zero" else np.rint(v)
    q = r + np.float32(zero_point)
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """ONNX DequantizeLinear: (q - zero_point) * scale in float32."""
    return (np.asarray(q, np.int32) - np.int32(zero_point)).astype(np.float32) * np.float32(scale)


def encode_inputs(info: dict, x: np.ndarray) -> bytes:
    """N inputs as cloudcover-infer reads them (model.json `info`): x has shape [N, *input shape[1:]]."""
    spec = info["input"]
    x = np.asarray(x)
    if list(x.shape[1:]) != list(spec["shape"][1:]):
        raise CloudcoverError(f"inputs have shape {list(x.shape[1:])} per image; the model takes {spec['shape'][1:]}")
    dt = spec["dtype"]
    if dt == "float32":
        arr = x.astype(np.float32)
    elif x.dtype == np.dtype(dt):
        arr = x
    elif "scale" in spec:
        if spec.get("host_ops"):  # the float normalization before an ONNX QDQ model's first QuantizeLinear
            from cloudcover.export.onnx_prep import host_preprocess

            x = host_preprocess(x, spec["host_ops"])
        arr = quantize(x, spec["scale"], spec["zero_point"], dt, spec.get("rounding", "half_to_even"))
    else:
        raise CloudcoverError(f"the model takes {dt} input without a known scale; give the inputs as {dt}")
    return np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()


def decode_outputs(info: dict, raw: bytes, n: int) -> list[np.ndarray]:
    """One array per output, [n, *shape[1:]], in the output's own dtype."""
    per = info.get("output_bytes", info["output"]["bytes"])
    if len(raw) != n * per:
        raise CloudcoverError(f"cloudcover-infer wrote {len(raw)} bytes for {n} inputs; expected {n * per}")
    buf = np.frombuffer(raw, np.uint8).reshape(n, per)
    outs = []
    for o in info.get("outputs", [dict(info["output"], offset=0)]):
        chunk = np.ascontiguousarray(buf[:, o["offset"]: o["offset"] + o["bytes"]])
        outs.append(chunk.view(np.dtype(o["dtype"]).newbyteorder("<")).reshape(n, *o["shape"][1:]))
    return outs


def as_float(info: dict, outs: list[np.ndarray]) -> list[np.ndarray]:
    """Outputs in real values: quantized ones dequantized with their scale and zero point."""
    specs = info.get("outputs", [info["output"]])
    return [dequantize(a, s["scale"], s["zero_point"]) if "scale" in s and np.issubdtype(a.dtype, np.integer) else
            a.astype(np.float32) for a, s in zip(outs, specs)]


def reference_outputs(model_path: str | Path, x: np.ndarray) -> list[np.ndarray]:
    """The model's own runtime on each input (batch 1 each): onnxruntime CPU for .onnx, ai-edge-litert
    BUILTIN_REF for .tflite; x in the model's input dtype (float for float/QDQ models)."""
    model_path = Path(model_path)
    if model_path.suffix.lower() == ".onnx":
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        sess = ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        runs = [sess.run(None, {name: x[i: i + 1]}) for i in range(len(x))]
    else:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        it = Interpreter(model_path=str(model_path), experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
        it.allocate_tensors()
        inp = it.get_input_details()[0]
        runs = []
        if np.issubdtype(inp["dtype"], np.integer) and not np.issubdtype(np.asarray(x).dtype, np.integer):
            scale, zp = inp["quantization"]  # float inputs of a full-integer model: its own input quantization
            x = quantize(x, scale, zp, np.dtype(inp["dtype"]).name)
        for i in range(len(x)):
            it.set_tensor(inp["index"], x[i: i + 1].astype(inp["dtype"]))
            it.invoke()
            runs.append([it.get_tensor(o["index"]) for o in it.get_output_details()])
    if not runs:
        return []
    return [np.concatenate([r[k] for r in runs]) for k in range(len(runs[0]))]


@dataclass
class OutputParity:
    output: int
    shape: list[int]
    max_abs: float
    max_rel: float  # max |device - reference| / max |reference|
    max_lsb: int | None  # in steps of the output scale (quantized outputs)
    lsb_histogram: dict | None  # {"0": n, "1": n, ...}
    top1_agreement: float | None  # fraction of inputs whose argmax (last axis, flattened) agrees
    mask_agreement: float | None = None  # one-channel outputs (mask logits): fraction of elements with the same sign


def compare(device: list[np.ndarray], reference: list[np.ndarray], specs: list[dict]) -> list[OutputParity]:
    """Per output: device (real values) vs reference (real values)."""
    rows = []
    for k, (d, r, s) in enumerate(zip(device, reference, specs)):
        d, r = np.asarray(d, np.float64).reshape(len(d), -1), np.asarray(r, np.float64).reshape(len(r), -1)
        if d.shape != r.shape:
            raise CloudcoverError(f"output {k}: device shape {d.shape} differs from the reference's {r.shape}")
        diff = np.abs(d - r)
        lsb = hist = None
        if "scale" in s:
            steps = np.rint(diff / s["scale"]).astype(np.int64)
            lsb = int(steps.max()) if steps.size else 0
            vals, counts = np.unique(steps, return_counts=True)
            hist = {str(int(v)): int(c) for v, c in zip(vals, counts)}
        shape = list(s["shape"])
        one_channel = len(shape) == 4 and 1 in (shape[1], shape[-1])
        top1 = float(np.mean(d.argmax(1) == r.argmax(1))) if d.shape[1] > 1 and len(d) and not one_channel else None
        mask = float(np.mean((d > 0) == (r > 0))) if one_channel and d.size else None
        scale = float(np.abs(r).max()) if r.size else 0.0
        rows.append(OutputParity(k, shape, float(diff.max()) if diff.size else 0.0,
                                 float(diff.max() / scale) if diff.size and scale > 0 else 0.0, lsb, hist, top1, mask))
    return rows


def to_json(rows: list[OutputParity]) -> list[dict]:
    return [asdict(r) for r in rows]
