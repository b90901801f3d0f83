"""Import a .tflite or .onnx model (fp32, full-int8 TFLite, ONNX QDQ) into a TVM Relax IRModule (static
shapes, batch 1).

An ONNX QDQ model (or a TFLite int8 model with the converter's default float input and output) has a float
input and output, with QuantizeLinear after the input and DequantizeLinear before the output. For integer compute (`int8_edges`) those two edge nodes are removed before the import, so
that the compiled model takes and returns the int8 tensors (like a full-int8 TFLite model); their scale and
zero point are returned in `Edges`, and the host quantizes / dequantizes with ONNX's own rules (round half to
even), which is exactly what onnxruntime does at those two nodes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cloudcover.train.errors import CloudcoverError


@dataclass
class Edges:
    """Quantization of the compiled model's input and outputs that the import moved to the host (ONNX QDQ
    edges): {"scale", "zero_point", "dtype"} or None per tensor (None: the tensor is the model's own)."""

    input: dict | None = None
    outputs: list[dict | None] = field(default_factory=list)


def import_model(path: str | Path):
    """Return the Relax IRModule of `path`; an operator TVM cannot import is a CloudcoverError naming it."""
    return import_model_edges(path, int8_edges=False)[0]


def import_model_edges(path: str | Path, int8_edges: bool = False):
    """(Relax IRModule, Edges) of `path`; with `int8_edges` an ONNX QDQ model's edge Quantize/DequantizeLinear
    nodes are removed first (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise CloudcoverError(f"model file not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".tflite":
            mod = _import_tflite(path)
            return strip_relax_edges(mod) if int8_edges else (mod, Edges())
        if suffix == ".onnx":
            return _import_onnx(path, int8_edges)
    except CloudcoverError:
        raise
    except Exception as exc:  # TVM frontends raise bare tvm.error / ValueError / KeyError
        # e.g. "The following operators are not supported in frontend TFLite: 'RFFT2D'"
        raise CloudcoverError(f"TVM could not import {path}: {_one_line(exc)}") from exc
    raise CloudcoverError(f"{path}: unsupported model format {suffix!r} (expected .tflite or .onnx)")


# Quantized TFLite operators that only move, copy or select int8 values (or read a shape): they keep the input's
# scale and zero point, so applying the Relax op to the int8 tensor is exact. TVM 0.27's importer refuses them
# when quantized ("require explicit QDQ lowering"); our converter admits them after checking that the output
# quantization equals the input's, bit for bit (TVM's own check allows a 1e-5 difference in scale).
INT8_PASSTHROUGH_OPS = frozenset({
    "PAD", "PADV2",  # TVM pads with the input zero point, as TFLite does
    "RESIZE_NEAREST_NEIGHBOR", "EXPAND_DIMS", "SQUEEZE", "TILE", "TRANSPOSE", "STRIDED_SLICE", "SLICE",
    "GATHER", "SHAPE", "PACK", "SPACE_TO_DEPTH", "DEPTH_TO_SPACE",
})


def _converter_class(static_shapes: dict[int, list[int]]):
    """TVM's TFLite OperatorConverter, admitting INT8_PASSTHROUGH_OPS on quantized tensors (subclassed, not patched)."""
    import numpy as np
    from tvm.relax.frontend.tflite.tflite_frontend import OperatorConverter

    class CloudcoverConverter(OperatorConverter):
        _SUPPORTED_QUANTIZED_OPS = OperatorConverter._SUPPORTED_QUANTIZED_OPS | INT8_PASSTHROUGH_OPS

        def check_unsupported_ops(self):
            super().check_unsupported_ops()
            for i in range(self.subgraph.OperatorsLength()):
                op = self.subgraph.Operators(i)
                name = self.get_op_code_str(op)
                if name not in INT8_PASSTHROUGH_OPS or name in OperatorConverter._SUPPORTED_QUANTIZED_OPS:
                    continue
                ins = [t for t in self.get_input_tensors(op)[:1] if t.qnn_params]
                outs = [t for t in self.get_output_tensors(op) if t.qnn_params]
                if ins and outs and not _same_quantization(ins[0], outs[0]):
                    raise CloudcoverError(f"quantized {name} changes the scale or zero point of its input "
                                          f"(tensor {outs[0].tensor.Name().decode()}); not supported")

        def convert_expand_dims(self, op):
            """TVM 0.27 calls relax.op.expand_dims with a third argument it does not take (Keras 3's
            UpSampling2D nearest is EXPAND_DIMS + TILE + RESHAPE in TFLite)."""
            from tvm import relax

            inputs = self.get_input_tensors(op)
            axis = int(np.asarray(self.get_tensor_value(inputs[1])).reshape(-1)[0])
            return relax.op.expand_dims(self.get_tensor_expr(inputs[0]), axis)

        def convert_reshape(self, op):
            """A RESHAPE whose target shape is computed in the graph (Keras 3 builds it from SHAPE and
            STRIDED_SLICE for a dynamic batch) takes its output's static shape at batch 1 (`static_shapes`)
            instead; the shape arithmetic is then dead and removed."""
            from tvm import relax

            inputs = self.get_input_tensors(op)
            if len(inputs) == 2 and self.has_expr(inputs[1].tensor_idx):
                out = self.get_output_tensors(op)[0]
                if inputs[0].qnn_params and not _same_quantization(inputs[0], out):
                    raise CloudcoverError("quantized RESHAPE changes the scale or zero point of its input")
                shape = static_shapes.get(out.tensor_idx)
                if shape is None:
                    raise CloudcoverError(f"RESHAPE to a computed shape: no static shape for {out.tensor.Name().decode()}")
                return relax.op.reshape(self.get_tensor_expr(inputs[0]), shape)
            return super().convert_reshape(op)

    return CloudcoverConverter


def strip_relax_edges(mod):
    """A TFLite model with float input and output around int8 compute (the converter's default I/O types)
    imports as quantize(input) ... dequantize(output): the compiled model then reads and writes the int8
    tensors (like a full-int8 model) and the host quantizes with TFLite's rounding (half away from zero).
    Returns (module, Edges); a model without such edges is returned unchanged."""
    from tvm import ir, relax

    from .int8ops.emit import is_const, scalar

    f = mod["main"]
    if len(f.params) != 1 or not isinstance(f.body, relax.SeqExpr):
        return mod, Edges()
    p = f.params[0]
    bindings = [b for blk in f.body.blocks for b in blk.bindings]

    def is_call(v, name):
        return isinstance(v, relax.Call) and isinstance(v.op, ir.Op) and v.op.name == name

    def qp(call) -> dict | None:
        s, z = call.args[1], call.args[2]
        if not (is_const(s) and is_const(z)):
            return None
        try:
            return {"scale": float(scalar(s)), "zero_point": int(scalar(z)), "rounding": "half_away_from_zero"}
        except ValueError:
            return None

    uses = [b for b in bindings if any(a.same_as(p) for a in getattr(b.value, "args", []))]
    edges, remap = Edges(outputs=[None]), {}
    new_param = p
    if str(getattr(p.ty, "dtype", "")) == "float32" and len(uses) == 1 and is_call(uses[0].value, "relax.quantize"):
        q = qp(uses[0].value)
        dt = str(uses[0].value.attrs.out_dtype)
        if q is not None and dt in ("int8", "uint8"):
            new_param = relax.Var(p.name, relax.TensorType(p.ty.shape, dt))
            remap[uses[0].var] = new_param
            edges.input = dict(q, dtype=dt)
    body = f.body.body
    out_b = next((b for b in bindings if b.var.same_as(body)), None)
    if out_b is not None and is_call(out_b.value, "relax.dequantize") and isinstance(out_b.value.args[0], relax.Var):
        q = qp(out_b.value)
        if q is not None:
            edges.outputs = [dict(q, dtype=str(out_b.value.args[0].ty.dtype))]
            body = out_b.value.args[0]
    if not remap and body.same_as(f.body.body):
        return mod, Edges()
    blocks = []
    for k, blk in enumerate(f.body.blocks):
        bs = [relax.VarBinding(b.var, remap[b.var]) if b.var in remap else b for b in blk.bindings]
        if k == len(f.body.blocks) - 1 and isinstance(body, relax.DataflowVar):  # a block's output leaves as a Var
            out = relax.Var("gv", body.ty)
            bs.append(relax.VarBinding(out, body))
            body = out
        blocks.append(relax.DataflowBlock(bs) if isinstance(blk, relax.DataflowBlock) else relax.BindingBlock(bs))
    new = relax.Function([new_param], relax.SeqExpr(blocks, body), ret_ty=body.ty, attrs=f.attrs)
    mod = mod.clone() if hasattr(mod, "clone") else mod
    mod["main"] = new
    mod = relax.transform.Normalize()(relax.transform.DeadCodeElimination()(mod))
    return mod, edges


def _same_quantization(a, b) -> bool:
    import numpy as np

    qa, qb = a.qnn_params, b.qnn_params
    return all(np.array_equal(qa[k].value.numpy(), qb[k].value.numpy()) for k in ("scale", "zero_point"))


def _import_tflite(path: Path):
    import tflite
    from tvm.relax.frontend.tflite import from_tflite

    buf = path.read_bytes()
    try:
        model = tflite.Model.GetRootAsModel(buf, 0)
    except Exception as exc:
        raise CloudcoverError(f"{path} is not a TFLite flatbuffer: {_one_line(exc)}") from exc
    return from_tflite(model, op_converter=_converter_class(_static_shapes(buf)))


def _static_shapes(buf: bytes) -> dict[int, list[int]]:
    """Every tensor's shape at batch 1, by TFLite's own shape inference (allocate_tensors); {} if it fails
    (then only models with constant shape arguments import)."""
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        # no delegate: XNNPACK would announce itself on stderr and shapes are all we want
        it = Interpreter(model_content=buf,
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        it.allocate_tensors()
        return {d["index"]: [int(v) for v in d["shape"]] for d in it.get_tensor_details()}
    except Exception:
        return {}


def _import_onnx(path: Path, int8_edges: bool = False):
    import onnx
    from tvm.relax.frontend.onnx import from_onnx

    try:
        model = onnx.load(str(path))
    except Exception as exc:
        raise CloudcoverError(f"{path} is not an ONNX model: {_one_line(exc)}") from exc
    from .onnx_prep import prepare

    model, edges = prepare(model, int8_edges)
    shape = {}
    for inp in model.graph.input:  # pin dynamic dimensions (the batch) to 1
        dims = [d.dim_value if d.dim_value > 0 else 1 for d in inp.type.tensor_type.shape.dim]
        shape[inp.name] = dims
    return from_onnx(model, shape_dict=shape, keep_params_in_input=False), edges


def _one_line(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return text[:400] or type(exc).__name__
