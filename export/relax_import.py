"""Import a quantized .tflite or .onnx model into a TVM Relax IRModule (static shapes, batch 1)."""

from __future__ import annotations

from pathlib import Path

from cloudcover.train.errors import CloudcoverError


def import_model(path: str | Path):
    """Return the Relax IRModule of `path`; an operator TVM cannot import is a CloudcoverError naming it."""
    path = Path(path)
    if not path.is_file():
        raise CloudcoverError(f"model file not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".tflite":
            return _import_tflite(path)
        if suffix == ".onnx":
            return _import_onnx(path)
    except CloudcoverError:
        raise
    except Exception as exc:  # TVM frontends raise bare tvm.error / ValueError / KeyError
        # e.g. "The following operators are not supported in frontend TFLite: 'RFFT2D'"
        raise CloudcoverError(f"TVM could not import {path}: {_one_line(exc)}") from exc
    raise CloudcoverError(f"{path}: unsupported model format {suffix!r} (expected .tflite or .onnx)")


def _import_tflite(path: Path):
    import tflite
    from tvm.relax.frontend.tflite import from_tflite

    buf = path.read_bytes()
    try:
        model = tflite.Model.GetRootAsModel(buf, 0)
    except Exception as exc:
        raise CloudcoverError(f"{path} is not a TFLite flatbuffer: {_one_line(exc)}") from exc
    return from_tflite(model)


def _import_onnx(path: Path):
    import onnx
    from tvm.relax.frontend.onnx import from_onnx

    model = onnx.load(str(path))
    shape = {}
    for inp in model.graph.input:  # pin a dynamic batch dimension to 1
        dims = [d.dim_value if d.dim_value > 0 else 1 for d in inp.type.tensor_type.shape.dim]
        shape[inp.name] = dims
    return from_onnx(model, shape_dict=shape, keep_params_in_input=False)


def _one_line(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return text[:400] or type(exc).__name__
