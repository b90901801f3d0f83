"""Lower an imported Relax module to TIR kernels plus a flat, runtime-free call list.

TVM 0.27 has no runtime that builds for riscv64 (see the notes), so we stop before the Relax VM: after the
pass pipeline below, `main` is a straight line of `call_tir(kernel, args)` over the model input, constants
and intermediates. `extract_graph` turns that into plain Python data (`Graph`) that the memory planner and
the C driver generator consume; anything else left in `main` is an unsupported operator, named in the error.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cloudcover.train.errors import CloudcoverError


@dataclass
class Tensor:
    """One value of the graph: the model input, the output, a constant (weights) or an intermediate."""

    name: str
    shape: tuple[int, ...]
    dtype: str  # numpy dtype name: int8, int32, float32 ...
    kind: str  # "input" | "output" | "const" | "intermediate"
    data: np.ndarray | None = None  # constants only
    first_use: int = -1  # step index that writes it (intermediates/output) or first reads it
    last_use: int = -1  # last step index that reads it

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize


@dataclass
class Step:
    kernel: str  # global symbol of the TIR PrimFunc (C symbol __tvm_ffi_<kernel>)
    args: list[int]  # tensor indices, output last (destination-passing style)


@dataclass
class Graph:
    tensors: list[Tensor] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    input: int = -1
    output: int = -1

    def of_kind(self, kind: str) -> list[Tensor]:
        return [t for t in self.tensors if t.kind == kind]


PIPELINE_NAMES = ("LegalizeOps", "AnnotateTIROpPattern", "FoldConstant", "FuseOps", "FuseTIR",
                  "DeadCodeElimination", "AttachGlobalSymbol")


def lower(mod):
    """Run the runtime-free pass pipeline from the notes; returns the lowered IRModule."""
    import tvm
    from tvm import relax

    seq = tvm.transform.Sequential([getattr(relax.transform, name)() for name in PIPELINE_NAMES])
    try:
        with tvm.transform.PassContext(opt_level=3):
            return seq(mod)
    except Exception as exc:
        raise CloudcoverError(f"TVM lowering failed: {' '.join(str(exc).split())[:400]}") from exc


def kernel_module(lowered):
    """The TIR PrimFuncs of a lowered module, as their own IRModule (what tvm.tirx.build takes)."""
    import tvm
    from tvm import tirx

    return tvm.IRModule({gv: f for gv, f in lowered.functions.items() if isinstance(f, tirx.PrimFunc)})


def count_macs(mod) -> int:
    """Multiply-accumulates of conv2d and matmul/dense in an imported (not yet lowered) module."""
    from tvm import relax

    macs = 0
    for block in mod["main"].body.blocks:
        for b in block.bindings:
            v = b.value
            if not isinstance(v, relax.Call) or not isinstance(v.op, __import__("tvm").ir.Op):
                continue
            out = _shape(b.var.ty)
            if v.op.name == "relax.nn.conv2d":
                w = _shape(v.args[1].ty)
                layout = str(v.attrs.kernel_layout)
                kh, kw = w[layout.index("H")], w[layout.index("W")]
                cin_per_group = w[layout.index("I")]
                macs += int(np.prod(out)) * kh * kw * cin_per_group
            elif v.op.name in ("relax.matmul", "relax.nn.dense", "relax.linear"):
                k = _shape(v.args[0].ty)[-1]
                macs += int(np.prod(out)) * k
    return macs


def extract_graph(lowered) -> Graph:
    """Flatten the lowered `main` into a Graph; raise naming any binding that is not a call_tir."""
    from tvm import ir, relax

    main = lowered["main"]
    if len(main.params) != 1:
        raise CloudcoverError(f"the model has {len(main.params)} inputs; only single-input models are supported")
    g = Graph()
    index: dict = {}  # relax Var -> tensor index

    def add(t: Tensor) -> int:
        g.tensors.append(t)
        return len(g.tensors) - 1

    p = main.params[0]
    g.input = index[p] = add(Tensor(p.name, _shape(p.ty), _dtype(p.ty), "input"))

    for block in main.body.blocks:
        for b in block.bindings:
            v = b.value
            if isinstance(v, relax.Var) and v in index:  # a plain alias
                index[b.var] = index[v]
                continue
            if not (isinstance(v, relax.Call) and isinstance(v.op, ir.Op) and v.op.name == "relax.call_tir"):
                raise CloudcoverError(f"unsupported operator after lowering: {_describe(v)} "
                                      "(no TIR legalization; only models that lower fully to call_tir are supported)")
            if len(v.args) > 2:
                raise CloudcoverError(f"kernel {v.args[0].name_hint} takes symbolic shape arguments; only static shapes are supported")
            if not isinstance(b.var.ty, relax.TensorType):
                raise CloudcoverError(f"kernel {v.args[0].name_hint} returns a tuple; not supported by the C driver")
            step_no = len(g.steps)
            args = []
            for a in v.args[1].fields:
                if isinstance(a, relax.Var):
                    if a not in index:
                        raise CloudcoverError(f"internal: {a.name} used before definition in main")
                    i = index[a]
                else:  # a constant (TVM 0.27: ir.expr.GenericConst, numpy via .value)
                    data = a.value.numpy()
                    i = add(Tensor(f"c{sum(t.kind == 'const' for t in g.tensors)}", tuple(data.shape),
                                   str(data.dtype), "const", data=np.ascontiguousarray(data)))
                t = g.tensors[i]
                if t.first_use < 0:
                    t.first_use = step_no
                t.last_use = step_no
                args.append(i)
            # Relax names repeat across blocks: prefix the tensor index to make them unique
            out = index[b.var] = add(Tensor(f"t{len(g.tensors)}_{b.var.name}", _shape(b.var.ty), _dtype(b.var.ty), "intermediate",
                                            first_use=step_no, last_use=step_no))
            args.append(out)
            g.steps.append(Step(v.args[0].name_hint, args))

    ret = main.body.body
    if not isinstance(ret, relax.Var) or ret not in index or g.tensors[index[ret]].kind != "intermediate":
        raise CloudcoverError(f"the model output is not computed by a kernel ({_describe(ret)}); not supported")
    g.output = index[ret]
    g.tensors[g.output].kind = "output"
    if not g.steps:
        raise CloudcoverError("the lowered model has no kernels")
    return g


def _shape(ty) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in ty.shape.values)
    except (AttributeError, TypeError) as exc:
        raise CloudcoverError(f"a tensor of type {ty} has no static shape; only static shapes are supported") from exc


def _dtype(ty) -> str:
    return str(ty.dtype)


def _describe(expr) -> str:
    from tvm import ir, relax

    if isinstance(expr, relax.Call):
        op = expr.op
        if isinstance(op, ir.Op):
            return op.name
        return getattr(op, "name_hint", None) or getattr(op, "name", None) or type(op).__name__
    return type(expr).__name__
