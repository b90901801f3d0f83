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
    outputs: list[int] = field(default_factory=list)  # in the model's output order

    @property
    def output(self) -> int:
        """The first (for most models the only) output."""
        return self.outputs[0]

    def of_kind(self, kind: str) -> list[Tensor]:
        return [t for t in self.tensors if t.kind == kind]


UNROLL_MAX = 8  # innermost reduction loops up to this extent are unrolled by the schedule
# relay/relax OpPatternKind (include/tvm/relax/op_attr_types.h): AnnotateTIROpPattern's "op_pattern" attribute;
# TVM 0.27 exposes no Python enum for it
OP_PATTERN_INJECTIVE = 2  # kInjective
OP_PATTERN_OPAQUE = 8  # kOpaque
PIPELINE_NAMES = ("LegalizeOps", "AnnotateTIROpPattern", "FoldConstant", "FuseOps", "FuseTIR",
                  "DeadCodeElimination", "AttachGlobalSymbol")


SCHEDULES = ("tuned", "naive")  # tuned: export/schedules.py with the recorded export/schedules.json; naive: the first
DEFAULT_SCHEDULES = "tuned"


def lower(mod, schedule: bool | str = True, vector: bool = False, pads_alone: bool | None = None):
    """Run the runtime-free pass pipeline from the notes, then schedule the kernels (`schedule`: True or
    "tuned" = export/schedules, "naive" = `schedule_kernels` alone, False = none); returns the lowered IRModule."""
    import tvm
    from tvm import relax

    first = tvm.transform.Sequential([getattr(relax.transform, name)() for name in PIPELINE_NAMES[:2]])
    rest = tvm.transform.Sequential([getattr(relax.transform, name)() for name in PIPELINE_NAMES[2:]])
    # pads alone for the tiled schedules (`pads_alone` None); the search lowers unscheduled with True to see the
    # same kernels as the build it tunes
    tiled = schedule not in (False, "naive") if pads_alone is None else pads_alone
    try:
        with tvm.transform.PassContext(opt_level=3):
            annotated = _table_lookups_injective(first(mod))
            lowered = rest(_pads_alone(annotated) if tiled else annotated)
    except Exception as exc:
        raise CloudcoverError(f"TVM lowering failed: {' '.join(str(exc).split())[:400]}") from exc
    if schedule is False:
        return lowered
    if schedule is True:
        schedule = DEFAULT_SCHEDULES
    if schedule == "naive":
        return schedule_kernels(lowered, vector)
    from . import schedules

    if schedule == "tuned":
        return schedules.schedule_module(lowered, vector)
    if str(schedule).endswith(".json"):  # another schedule file (what --tune measures candidates with)
        return schedules.schedule_module(lowered, vector, db_path=schedule)
    raise CloudcoverError(f"unknown schedules {schedule!r} (expected one of {', '.join(SCHEDULES)} or a .json "
                          "schedule file)")


def _table_lookups_injective(mod):
    """AnnotateTIROpPattern calls every `take` opaque (a data-dependent index), so FuseOps leaves each one
    alone in a kernel of its own. A lookup in a 256-entry int8 table (int8_lowering's unary add/mul tables) is
    injective in its index tensor: mark it so, and it fuses with its neighbours like any elementwise op."""
    from tvm import tirx

    for gv, f in list(mod.functions.items()):
        if (isinstance(f, tirx.PrimFunc) and gv.name_hint.startswith("take") and f.attrs is not None
                and "op_pattern" in f.attrs and int(f.attrs["op_pattern"]) == OP_PATTERN_OPAQUE
                and len(f.params) == 3):
            table = f.params[0].ty  # a buffer type: shape, dtype
            if [int(d) for d in table.shape] == [256] and str(table.dtype) == "int8":
                mod[gv] = f.with_attr("op_pattern", OP_PATTERN_INJECTIVE)
    return mod


def _pads_alone(mod):
    """Keep each `pad` in a kernel of its own (opaque to FuseOps). Fused after a conv, the pad is the kernel's
    output block and its loop nest is the padded shape, which the tiled conv schedule (schedules.py) cannot
    block; as its own kernel it is one cheap copy (about 1 instruction per byte)."""
    from tvm import tirx

    for gv, f in list(mod.functions.items()):
        if (isinstance(f, tirx.PrimFunc) and gv.name_hint.startswith("pad") and f.attrs is not None
                and "op_pattern" in f.attrs):
            mod[gv] = f.with_attr("op_pattern", OP_PATTERN_OPAQUE)
    return mod


def schedule_kernels(mod, vector: bool = False):
    """Fuse the loops of each fused kernel so that it keeps no per-op intermediate buffer.

    FuseTIR puts the blocks of a fused group into one PrimFunc but leaves one loop nest and one full-size
    buffer per op (each a TVMBackendAllocWorkspace): an int8 conv followed by a 20-op requantization chain
    walked the output 20 times through 20 int64 buffers. Here every elementwise/injective block is inlined
    into its consumer, and a remaining reduction (conv, matmul, sum) is computed at the innermost loop of
    its single consumer, so its accumulator shrinks to one element (a register) and the epilogue runs on it
    directly. Blocks that cannot be moved stay as they are (the result is the same computation).
    With `vector` (RVV targets) a reduction is computed one loop further out instead, with its output-channel
    loop innermost: acc[c] += x * w[..., c] runs over contiguous weights and a row of Cout int32
    accumulators, which LLVM vectorizes; the epilogue then runs per element as before.
    """
    import tvm
    from tvm import s_tir, tirx

    out = {}
    for gv, func in mod.functions.items():
        if isinstance(func, tirx.PrimFunc):
            try:
                func = _schedule_func(func, vector)
            except Exception as exc:  # refusals are caught per primitive; anything else is a bug: say where
                raise CloudcoverError(f"scheduling kernel {gv.name_hint} failed: {' '.join(str(exc).split())[:300]}") from exc
        out[gv] = func
    new = tvm.IRModule(out, attrs=mod.attrs) if mod.attrs is not None else tvm.IRModule(out)
    return new


def _count(node, pred) -> int:
    """Nodes of a TIR tree for which `pred` holds (tvm_ffi's structural visitor: TVM 0.27 has no Python TIR
    visitor)."""
    import tvm_ffi

    n = 0

    def visit(x, visitor):
        nonlocal n
        n += bool(pred(x))
        return visitor.default_visit(x)

    tvm_ffi.structural_visit(node, visit)
    return n


def _collect(node, pred) -> list:
    """Nodes of a TIR tree for which `pred` holds, in pre-order (e.g. its blocks, or the loads of an expression)."""
    import tvm_ffi

    out = []

    def visit(x, visitor):
        if pred(x):
            out.append(x)
        return visitor.default_visit(x)

    tvm_ffi.structural_visit(node, visit)
    return out


def _first(node, match):
    """(node, result) for the first sub-tree (pre-order) for which `match` returns a value other than None; None if
    there is none. The search does not descend into a match."""
    import tvm_ffi

    found = []

    def visit(x, visitor):
        if found:
            return None
        r = match(x)
        if r is not None:
            found.append((x, r))
            return None
        return visitor.default_visit(x)

    tvm_ffi.structural_visit(node, visit)
    return found[0] if found else None


def _is_block(node) -> bool:
    from tvm import s_tir

    return isinstance(node, s_tir.SBlock)


def _is_load(node) -> bool:
    from tvm import ir

    return isinstance(node, ir.TensorLoad)


def _is_if_then_else(node) -> bool:
    from tvm import ir

    return isinstance(node, ir.Call) and isinstance(node.op, ir.Op) and node.op.name == "prim.if_then_else"


def _schedule_func(func, vector: bool = False):
    from tvm import s_tir

    sch = s_tir.Schedule(func)
    inline_elementwise(sch)
    _compute_at_output(sch, vector, _attempt)
    return sch.mod["main"]


def _attempt(fn, *args) -> bool:
    """Apply one schedule primitive; False (schedule unchanged) where TVM refuses it for this kernel."""
    from tvm import s_tir

    try:
        fn(*args)
        return True
    except s_tir.ScheduleError:
        return False


def _is_output(sch, root, b) -> bool:
    """Whether block `b` writes one of the function's outputs (asked afresh: inlining changes the set)."""
    return any(sch.get(b).same_as(sch.get(o)) for o in sch.get_output_blocks(root))


def _is_reduction(sch, b) -> bool:
    from tvm import tirx

    return any(int(iv.iter_type) != tirx.IterVar.DataPar for iv in sch.get(b).iter_vars)


def inline_elementwise(sch) -> None:
    """Inline every elementwise/injective block into its consumer where that duplicates nothing (step 1 of
    the fused-loop schedule)."""
    from tvm import ir

    root = sch.get_sblock("root")
    attempt = _attempt

    def is_output(b) -> bool:
        return _is_output(sch, root, b)

    def is_reduction(b) -> bool:
        return _is_reduction(sch, b)

    def loads(consumer, buffer) -> int:
        return _count(sch.get(consumer).body, lambda n: isinstance(n, ir.TensorLoad) and n.source.same_as(buffer))

    # 1. inline a block into its consumer where that duplicates nothing: one consumer, which reads it once
    #    (inlining a value read several times, e.g. by a rounding step, copies its whole expression tree
    #    and grows exponentially along a requantization chain)
    changed = True
    while changed:
        changed = False
        for b in sch.get_child_blocks(root):
            blk = sch.get(b)
            if is_output(b) or len(blk.writes) != 1 or is_reduction(b):
                continue
            consumers = sch.get_consumers(b)
            if len(consumers) != 1 or loads(consumers[0], blk.writes[0].source) != 1:
                continue
            if is_reduction(consumers[0]) and _count(blk.body, _is_if_then_else):
                continue  # a padding block stays a buffer: inlined, it would test bounds at every MAC
            if attempt(sch.compute_inline, b):
                changed = True
                break


def _compute_at_output(sch, vector: bool, attempt) -> None:
    root = sch.get_sblock("root")

    def is_output(b) -> bool:
        return _is_output(sch, root, b)

    def is_reduction(b) -> bool:
        return _is_reduction(sch, b)

    # 2. compute everything else (multi-use values, the conv/matmul/sum reduction) at the innermost loop of
    #    the output block, last producer first: each buffer shrinks to the element the epilogue needs, i.e.
    #    a register, and the whole kernel is one loop nest
    outs = sch.get_output_blocks(root)
    if len(outs) == 1:
        loops = sch.get_loops(outs[0])
        if loops:
            for b in reversed(sch.get_child_blocks(root)):
                if is_output(b) or any(is_reduction(c) for c in sch.get_consumers(b)):
                    continue  # (a reduction's input would be recomputed for every output)
                if vector and is_reduction(b) and len(loops) >= 2 and _channel_inner(sch, b, loops[-2], attempt):
                    continue
                attempt(sch.compute_at, b, loops[-1], True)
            for b in sch.get_child_blocks(root):  # zero the accumulator once, not under the reduction loops
                if not is_reduction(b):
                    continue
                depth = len(loops) - (1 if vector and _under(sch, b, loops[-2]) and not _under(sch, b, loops[-1]) else 0)
                own = sch.get_loops(b)[depth:]
                if own:
                    attempt(sch.decompose_reduction, b, own[0])
                    inner = sch.get_loops(b)[-1]  # a short innermost reduction loop (3x3 window): unrolled
                    extent = sch.get(inner).extent
                    if not vector and hasattr(extent, "value") and 1 < int(extent.value) <= UNROLL_MAX:
                        attempt(sch.unroll, inner)


def _under(sch, block, loop) -> bool:
    return any(sch.get(l).same_as(sch.get(loop)) for l in sch.get_loops(block))


def _channel_inner(sch, block, loop, attempt) -> bool:
    """compute_at `block` (a reduction) under `loop` and move its last spatial loop (the output channel)
    inside its reduction loops; undo nothing on failure of the reorder (the order is then TVM's)."""
    from tvm import tirx

    if not attempt(sch.compute_at, block, loop, True):
        return False
    iters = sch.get(block).iter_vars
    n_sp = sum(int(iv.iter_type) == tirx.IterVar.DataPar for iv in iters)
    n_red = len(iters) - n_sp
    own = sch.get_loops(block)[-(n_sp + n_red):]
    if n_red and n_sp:
        attempt(sch.reorder, *own[n_sp:], own[n_sp - 1])
    return True


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
            if v.op.name not in ("relax.nn.conv2d", "relax.matmul", "relax.nn.dense", "relax.linear"):
                continue  # (shape arithmetic such as shape_of has no tensor shape)
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
            if isinstance(v, relax.Tuple) and all(isinstance(f, relax.Var) and f in index for f in v.fields):
                index[b.var] = [index[f] for f in v.fields]  # a tuple of computed values (several outputs)
                continue
            if isinstance(v, relax.TupleGetItem) and isinstance(v.tuple_value, relax.Var) \
                    and isinstance(index.get(v.tuple_value), list):
                index[b.var] = index[v.tuple_value][int(v.index)]  # one field of a kernel's tuple result
                continue
            if not (isinstance(v, relax.Call) and isinstance(v.op, ir.Op) and v.op.name == "relax.call_tir"):
                raise CloudcoverError(f"unsupported operator after lowering: {_describe(v)} "
                                      "(no TIR legalization; only models that lower fully to call_tir are supported)")
            if len(v.args) > 2:
                raise CloudcoverError(f"kernel {v.args[0].name_hint} takes symbolic shape arguments; only static shapes are supported")
            fields = list(b.var.ty.fields) if isinstance(b.var.ty, relax.TupleType) else [b.var.ty]
            if not all(isinstance(f, relax.TensorType) for f in fields):
                raise CloudcoverError(f"kernel {v.args[0].name_hint} returns {b.var.ty}; only tensors and tuples "
                                      "of tensors are supported by the C driver")
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
            # Relax names repeat across blocks: prefix the tensor index to make them unique; a kernel with a
            # tuple result writes one tensor per field (all after its inputs, destination-passing style)
            outs = [add(Tensor(f"t{len(g.tensors)}_{b.var.name}" + (f"_{k}" if len(fields) > 1 else ""),
                               _shape(f), _dtype(f), "intermediate", first_use=step_no, last_use=step_no))
                    for k, f in enumerate(fields)]
            index[b.var] = outs if isinstance(b.var.ty, relax.TupleType) else outs[0]
            args.extend(outs)
            g.steps.append(Step(v.args[0].name_hint, args))

    ret = main.body.body
    rets = list(ret.fields) if isinstance(ret, relax.Tuple) else [ret]
    outs = []
    for r in rets:
        i = index.get(r) if isinstance(r, relax.Var) else None
        flat = i if isinstance(i, list) else [i]
        for j in flat:
            if j is None or g.tensors[j].kind != "intermediate":
                raise CloudcoverError(f"a model output is not computed by a kernel ({_describe(r)}: the input "
                                      "itself, a constant or an output listed twice); not supported")
            g.tensors[j].kind = "output"
            outs.append(j)
    g.outputs = outs
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
