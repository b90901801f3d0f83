"""Prepare an ONNX graph for TVM's importer: batch 1, shape arithmetic folded, QDQ edges moved to the host.

- Dynamic input dimensions (the batch of a PyTorch or tf2onnx export) are fixed to 1.
- `Shape` of a tensor whose shape is then static becomes a constant, and every small integer computation on
  constants (Gather, Unsqueeze, Concat, Slice, Cast ... of shapes: PyTorch's flatten, Keras's reshape) is
  folded with ONNX's reference evaluator, so TVM sees constant shapes ("has no static shape" otherwise).
- Unused optional outputs (MaxPool indices, Dropout mask ...) are removed; Identity nodes are bypassed; Dropout (inference) becomes Identity and is bypassed too.
- Operator-format quantized nodes (QLinearConv, QLinearMatMul, and onnxruntime's com.microsoft QGemm,
  QLinearAdd, QLinearMul, QLinearAveragePool, QLinearGlobalAveragePool, QLinearConcat, QLinearSigmoid,
  QLinearLeakyRelu), which TVM's importer lacks, are written out as the DequantizeLinear -> op ->
  QuantizeLinear they define, so the QDQ integer lowerings take them.
- `int8_edges`: a QuantizeLinear right after the input and DequantizeLinear right before an output are removed;
  the compiled model then reads and writes the int8 (uint8) tensors, and `Edges` records their quantization.
  Float elementwise ops with a constant between the input and that QuantizeLinear (the normalization
  (x - mean) / std that onnxruntime's quantizer leaves unquantized) move to the host with it
  (`host_ops`, applied by `host_preprocess` in float32 exactly as onnxruntime computes them).
- Input and output element types other than float32, int8 and uint8 are refused, naming the tensor.
"""

from __future__ import annotations

import numpy as np

from cloudcover.train.errors import CloudcoverError

IO_DTYPES = ("float32", "int8", "uint8")
FOLD_MAX_ELEMENTS = 4096  # constant folding is for shape arithmetic, never for weights


def _dtype_name(elem_type: int) -> str:
    from onnx import helper

    return np.dtype(helper.tensor_dtype_to_np_dtype(elem_type)).name


def prepare(model, int8_edges: bool = False):
    """(new ModelProto, relax_import.Edges); the input model is not modified."""
    import onnx

    from .relax_import import Edges

    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    inits = {i.name for i in g.initializer}
    real_inputs = [i for i in g.input if i.name not in inits]
    if len(real_inputs) != 1:
        raise CloudcoverError(f"the model has {len(real_inputs)} inputs "
                              f"({', '.join(i.name for i in real_inputs)}); only single-input models are supported")
    for t, what in [(real_inputs[0], "input")] + [(o, "output") for o in g.output]:
        et = t.type.tensor_type.elem_type
        dt = _dtype_name(et) if et else "undefined"
        if dt not in IO_DTYPES:
            raise CloudcoverError(f"model {what} {t.name!r} is {dt}; supported input/output dtypes: "
                                  f"{', '.join(IO_DTYPES)}")
        for d in t.type.tensor_type.shape.dim:
            if what == "input" and not d.dim_value > 0:
                d.Clear()
                d.dim_value = 1
    _drop_unused_optional_outputs(g)
    _bypass_identities(g)
    _expand_qlinear(g)
    _fold_constants(m)
    edges = Edges(outputs=[None] * len(g.output))
    if int8_edges:
        edges = _strip_edges(g)
    return m, edges


def _bypass_identities(g) -> None:
    """Remove Identity and inference Dropout nodes, renaming their consumers' inputs (and graph outputs)."""
    out_names = {o.name for o in g.output}
    changed = True
    while changed:
        changed = False
        for n in list(g.node):
            if n.op_type not in ("Identity", "Dropout"):
                continue
            if n.op_type == "Dropout" and len(n.output) > 1 and n.output[1] and _used(g, n.output[1]):
                continue  # a mask someone reads: leave it to the importer
            src, dst = n.input[0], n.output[0]
            if dst in out_names:
                if src in out_names or any(i.name == src for i in g.input):
                    continue  # an output that is the input itself or another output: keep the copy
                for o in g.output:
                    if o.name == dst:
                        o.name = src
                out_names = {o.name for o in g.output}
            _rename_uses(g, dst, src)
            g.node.remove(n)
            changed = True
            break


OPTIONAL_OUTPUTS = ("MaxPool", "Dropout", "BatchNormalization", "LayerNormalization", "LSTM", "GRU", "RNN")


def _drop_unused_optional_outputs(g) -> None:
    """Trailing optional outputs nobody reads (MaxPool's indices, Dropout's mask, BatchNormalization's training
    statistics ...) are removed: TVM's converters produce only the first one and refuse the node otherwise."""
    used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    for n in g.node:
        if n.op_type not in OPTIONAL_OUTPUTS:
            continue
        outs = list(n.output)
        while len(outs) > 1 and (not outs[-1] or outs[-1] not in used):
            outs.pop()
        if len(outs) != len(n.output):
            del n.output[:]
            n.output.extend(outs)


def _expand_qlinear(g) -> None:
    """Rewrite QLinear* / QGemm nodes as DequantizeLinear -> float op -> QuantizeLinear (their definition)."""
    from onnx import helper, numpy_helper

    if not any(n.op_type.startswith("QLinear") or n.op_type == "QGemm" for n in g.node):
        return
    inits = {i.name: i for i in g.initializer}
    out_nodes = []
    counter = [0]

    def fresh(base: str) -> str:
        counter[0] += 1
        return f"{base}__cc{counter[0]}"

    def dq(x, s, z, axis=None):
        y = fresh(x + "_dq")
        ins = [x, s] + ([z] if z else [])
        out_nodes.append(helper.make_node("DequantizeLinear", ins, [y], **({"axis": axis} if axis is not None else {})))
        return y

    def q(x, s, z, y):
        out_nodes.append(helper.make_node("QuantizeLinear", [x, s] + ([z] if z else []), [y]))

    def arr(name):
        return numpy_helper.to_array(inits[name]) if name in inits else None

    def bias(b, xs, ws, axis=0):
        """DequantizeLinear of an int32 bias with scale x_scale * w_scale (a new initializer)."""
        sx, sw = arr(xs), arr(ws)
        if sx is None or sw is None:
            raise CloudcoverError(f"quantized bias {b}: scales are not constant")
        name = fresh(b + "_scale")
        g.initializer.append(numpy_helper.from_array((sx.astype(np.float32) * sw.astype(np.float32)).reshape(-1)
                                                     if np.asarray(sw).size > 1 else
                                                     np.float32(sx * sw).reshape(()), name))
        return dq(b, name, None, axis if np.asarray(sw).size > 1 else None)

    def attrs(n, drop=()):
        return {a.name: helper.get_attribute_value(a) for a in n.attribute if a.name not in drop}

    for n in g.node:
        t, i = n.op_type, list(n.input) + [""] * 9
        if t == "QLinearConv":
            x, w = dq(i[0], i[1], i[2]), dq(i[3], i[4], i[5], axis=0)
            ins = [x, w] + ([bias(i[8], i[1], i[4])] if i[8] else [])
            y = fresh(n.output[0] + "_f")
            out_nodes.append(helper.make_node("Conv", ins, [y], **attrs(n)))
            q(y, i[6], i[7], n.output[0])
        elif t == "QLinearMatMul":
            a, b = dq(i[0], i[1], i[2]), dq(i[3], i[4], i[5], axis=1)
            y = fresh(n.output[0] + "_f")
            out_nodes.append(helper.make_node("MatMul", [a, b], [y]))
            q(y, i[6], i[7], n.output[0])
        elif t == "QGemm":
            at = attrs(n)
            a, b = dq(i[0], i[1], i[2]), dq(i[3], i[4], i[5], axis=0 if at.get("transB", 0) else 1)
            ins = [a, b] + ([bias(i[6], i[1], i[4])] if i[6] else [])
            y = fresh(n.output[0] + "_f") if i[7] else n.output[0]
            out_nodes.append(helper.make_node("Gemm", ins, [y], **{k: v for k, v in at.items()
                                                                    if k in ("alpha", "transA", "transB")}))
            if i[7]:
                q(y, i[7], i[8], n.output[0])
        elif t in ("QLinearAdd", "QLinearMul"):
            a, b = dq(i[0], i[1], i[2]), dq(i[3], i[4], i[5])
            y = fresh(n.output[0] + "_f")
            out_nodes.append(helper.make_node(t[len("QLinear"):], [a, b], [y]))
            q(y, i[6], i[7], n.output[0])
        elif t in ("QLinearAveragePool", "QLinearGlobalAveragePool", "QLinearSigmoid", "QLinearLeakyRelu"):
            at = attrs(n, drop=("channels_last",))
            if attrs(n).get("channels_last", 0):
                raise CloudcoverError(f"{t} {n.name!r} with channels_last=1 is not supported")
            x = dq(i[0], i[1], i[2])
            y = fresh(n.output[0] + "_f")
            out_nodes.append(helper.make_node(t[len("QLinear"):], [x], [y], **at))
            q(y, i[3], i[4], n.output[0])
        elif t == "QLinearConcat":
            parts = [dq(i[k], i[k + 1], i[k + 2]) for k in range(2, len(n.input), 3)]
            y = fresh(n.output[0] + "_f")
            out_nodes.append(helper.make_node("Concat", parts, [y], **attrs(n)))
            q(y, i[0], i[1], n.output[0])
        elif t.startswith("QLinear"):
            raise CloudcoverError(f"quantized operator {t} ({n.name or n.output[0]}) is not supported; "
                                  "quantize the model in QDQ format (onnxruntime: quant_format=QuantFormat.QDQ)")
        else:
            out_nodes.append(n)
    del g.node[:]
    g.node.extend(out_nodes)


def _used(g, name: str) -> bool:
    return any(name in n.input for n in g.node) or any(o.name == name for o in g.output)


def _rename_uses(g, old: str, new: str) -> None:
    for n in g.node:
        for k, i in enumerate(n.input):
            if i == old:
                n.input[k] = new


def _fold_constants(m) -> None:
    """Fold Shape of statically shaped tensors and small integer node chains on constants into initializers."""
    import onnx
    from onnx import numpy_helper, shape_inference
    from onnx.reference import ReferenceEvaluator

    g = m.graph
    if not any(n.op_type == "Shape" for n in g.node):
        return
    try:
        inferred = shape_inference.infer_shapes(m)
    except Exception:
        return
    shapes = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        dims = vi.type.tensor_type.shape.dim
        if dims and all(d.dim_value > 0 for d in dims):
            shapes[vi.name] = [d.dim_value for d in dims]
    consts = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    for i in g.initializer:
        shapes.setdefault(i.name, list(i.dims))
    new_nodes = []
    for n in g.node:
        value = None
        if n.op_type == "Constant" and len(n.output) == 1:
            value = ReferenceEvaluator(_single(n, [])).run(None, {})[0]
        elif n.op_type == "Shape" and n.input[0] in shapes:
            s = np.array(shapes[n.input[0]], np.int64)
            attrs = {a.name: a.i for a in n.attribute}
            value = s[attrs.get("start", 0): attrs["end"] if "end" in attrs else None]
        elif (n.op_type not in ("DequantizeLinear", "QuantizeLinear") and n.input
              and all(i in consts for i in n.input if i) and len(n.output) == 1
              and all(consts[i].size <= FOLD_MAX_ELEMENTS for i in n.input if i)
              and all(consts[i].dtype.kind in "iub" for i in n.input if i)):
            try:
                value = ReferenceEvaluator(_single(n, [(i, consts[i]) for i in n.input if i])).run(
                    None, {i: consts[i] for i in n.input if i})[0]
            except Exception:
                value = None
        if value is not None:
            value = np.asarray(value)
            consts[n.output[0]] = value
            shapes[n.output[0]] = list(value.shape)
            g.initializer.append(numpy_helper.from_array(value, n.output[0]))
            continue
        new_nodes.append(n)
    del g.node[:]
    g.node.extend(new_nodes)
    # initializers nobody reads any more (folded shape chains) are dropped
    used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    keep = [i for i in g.initializer if i.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)
    _ = onnx  # (imported for the type; kept explicit)


def _single(node, inputs):
    """A one-node model to run `node` with the reference evaluator."""
    from onnx import TensorProto, helper

    ins = [helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(v.dtype), list(v.shape))
           for name, v in inputs]
    outs = [helper.make_tensor_value_info(o, TensorProto.UNDEFINED, None) for o in node.output]
    return helper.make_model(helper.make_graph([node], "fold", ins, outs),
                             opset_imports=[helper.make_opsetid("", 17)])


HOST_OPS = ("Sub", "Add", "Mul", "Div")


def _used_as_output(g, name: str) -> bool:
    return any(o.name == name for o in g.output)


def _const_array(g, name: str):
    from onnx import numpy_helper

    for i in g.initializer:
        if i.name == name:
            return numpy_helper.to_array(i)
    return None


def host_preprocess(x: np.ndarray, host_ops: list[dict]) -> np.ndarray:
    """Apply the float ops the import moved to the host (Edges.input["host_ops"]) in float32, as onnxruntime does."""
    fns = {"Sub": np.subtract, "Add": np.add, "Mul": np.multiply, "Div": np.divide}
    x = np.asarray(x, np.float32)
    for h in host_ops:
        c = np.asarray(h["const"], np.float32).reshape(h["shape"])
        x = fns[h["op"]](c, x) if h["const_first"] else fns[h["op"]](x, c)
        x = np.asarray(x, np.float32)
    return x


def _const_scalar(g, name: str):
    from onnx import numpy_helper

    for i in g.initializer:
        if i.name == name:
            v = numpy_helper.to_array(i)
            return v.reshape(()) if v.size == 1 else None
    return None


def _qparams(g, node) -> dict | None:
    """{"scale", "zero_point", "dtype"} of a per-tensor Quantize/DequantizeLinear with constant parameters."""
    scale = _const_scalar(g, node.input[1])
    zp = _const_scalar(g, node.input[2]) if len(node.input) > 2 and node.input[2] else np.uint8(0)
    if scale is None or zp is None or zp.dtype.name not in ("int8", "uint8"):
        return None
    return {"scale": float(scale), "zero_point": int(zp), "dtype": zp.dtype.name}


def _strip_edges(g):
    from onnx import helper

    from .relax_import import Edges

    edges = Edges(outputs=[None] * len(g.output))
    inp = [i for i in g.input if i.name not in {t.name for t in g.initializer}][0]
    in_shape = [d.dim_value for d in inp.type.tensor_type.shape.dim]
    chain, host_ops, cur = [], [], inp.name
    while True:
        users = [n for n in g.node if cur in n.input]
        if len(users) != 1 or _used_as_output(g, cur):
            break
        n = users[0]
        if n.op_type == "QuantizeLinear" and n.input[0] == cur:
            q = _qparams(g, n)
            if q is not None:
                for c in chain + [n]:
                    g.node.remove(c)
                inp.name = n.output[0]
                inp.type.tensor_type.elem_type = helper.np_dtype_to_tensor_dtype(np.dtype(q["dtype"]))
                edges.input = dict(q, host_ops=host_ops) if host_ops else q
            break
        # the quantizer leaves a float normalization (x - mean) * k before the first QuantizeLinear: an
        # elementwise op with a constant that keeps the input's shape moves to the host with it
        if n.op_type not in HOST_OPS or len(host_ops) >= 4 or len(n.input) != 2:
            break
        k = 1 if n.input[0] == cur else 0
        c = _const_array(g, n.input[k])
        if c is None or c.dtype != np.float32 or list(np.broadcast_shapes(tuple(in_shape), c.shape)) != in_shape:
            break
        host_ops.append({"op": n.op_type, "const": c.astype(float).tolist(), "shape": list(c.shape),
                         "const_first": k == 0})
        chain.append(n)
        cur = n.output[0]
    for k, o in enumerate(g.output):
        prod = [n for n in g.node if o.name in n.output]
        if len(prod) != 1 or prod[0].op_type != "DequantizeLinear":
            continue
        n = prod[0]
        q = _qparams(g, n)
        if q is None or sum(o.name in m.input for m in g.node) or n.input[0] in {x.name for x in g.output}:
            continue
        o.name = n.input[0]
        o.type.tensor_type.elem_type = helper.np_dtype_to_tensor_dtype(np.dtype(q["dtype"]))
        g.node.remove(n)
        edges.outputs[k] = q
    return edges
