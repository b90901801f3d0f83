"""rv64gcv: a conv/matmul kernel's requantization epilogue as RVV fixed-point instructions in int32 lanes.

The int8 lowering ends a conv/matmul in TFLite's double-rounding requantization (int8ops/emit.mbqm: every
channel's right shift r >= 1, half = 2^(r-1), multiplier 0 <= m < 2^31), in int64 elements:

    y = ((acc + bias[c]) * m[c] + 2^30) >> 31           # SaturatingRoundingDoublingHighMul
    z = (y + half[c] + (y >> 63)) >> r[c]               # RoundingDivideByPOT
    out = clamp(z + zp, lo, hi) -> int8

LLVM's loop vectorizer runs that in int64 lanes (16 per LMUL-8 group, with sign extensions, vsetvli toggles and
narrowing steps: 3-5 instructions per output). RVV has the two steps as single int32 instructions, which LLVM
cannot pattern-match from the int64 form, so here the channel loop of the epilogue is replaced (at build time,
after narrow_consts made the per-channel vectors int32) by RVV intrinsics, up to 32 int32 lanes (VLEN 128,
LMUL 8) per chunk, about 12 instructions per chunk:

    x = acc + bias                   vle32 acc, vle32 bias, vadd.vv   (int32, as TFLite adds the bias)
    y = SRDHM(x, m)                  vle32 m, vsmul.vv (vxrm = rnu)   (floor((x m + 2^30) / 2^31) exactly; the one
                                                                       saturating case x = m = -2^31 cannot occur)
    y' = y - [y < 0], saturating     vsra.vi 31, vsadd.vv             (left out after ReLU / ReLU6, below)
    z = RDBPOT(y', r) to int16       vlse16 r (low halves), vnclip.wv (rnu rounding, int16 saturation)
    out = clamp(z + zp) to int8      vsadd.vx, [vmax.vx, vmin.vx], vnclip.wi 0, vse8

rnu rounding computes floor(v / 2^r) + bit r-1 of v = floor((v + 2^(r-1)) / 2^r): round half up. TFLite's
RoundingDivideByPOT rounds half away from zero: for y >= 0 the same; for y < 0 it rounds up only when the remainder
exceeds half, which is rounding y - 1 half up (y = q 2^r + rem: rem = 0 gives q either way as 2^r - 1 >= half;
rem > 0 gives q + [rem - 1 >= half]); y = -2^31 has rem = 0, so the saturating y - 1 = -2^31 is right too. Where
the clamp's lower bound is at or above the zero point (ReLU, ReLU6) every y < 0 gives that bound either way, so the
y - 1 step is left out. A z beyond int16 saturates and still clamps to the same int8 end after the zero point.
The kernel before MobileNetV2's average pool stores the clamped value as int32 (the pool's widening cast is fused
in): there the clamp runs at int16 and vsext widens it. A chunk of 5-8 / 9-16 channels uses LMUL 2 / 4 (fewer
registers when several pixels' chunks are live). In tiles of 32 or more channels and several pixels the parameter
loads go through llvm.launder.invariant.group (as sched_rvv_dw.py's weight loads): LICM would hoist the
per-channel vectors out of the pixel loop and spill them, six instructions a reload (measured: MobileNetV2
3,244,313 -> 3,230,263 instructions, edge_cnn 5,779,917 -> 5,772,230; narrower tiles measured worse with it).

Bit-exact with the int64 form for every accumulator whose acc + bias does not overflow int32 (TFLite's reference
kernels add the bias in int32 too). `rewrite(func)` returns `func` unchanged unless its epilogue has exactly the
forms above in one serial channel loop with contiguous accesses, int32 parameter vectors and an int8 or int32
output. Tests (tests/riscv/test_sched_rvv_epilogue.py): `requant_rvv`, the sequence as the RVV spec defines each
instruction, against requant.multiply_by_quantized_multiplier on int32 extremes, ties and random values; built
kernels of each form against TFLite's reference kernels under QEMU.
"""

from __future__ import annotations

from .sched_requant import _NoMatch, find_epilogue

LANES = 32  # int32 lanes of an LMUL-8 group at VLEN 128 (rv64gcv's minimum)
RNU = 0  # vxrm: round to nearest, ties up
ROUND = 1 << 30  # SaturatingRoundingDoublingHighMul's rounding term, as the int8 lowering emits it
# wider channel tiles keep LLVM's epilogue: their per-channel vectors, hoisted out of the pixel loop, spill (measured:
# MobileNetV2's 1x112 tile of 336 -> 112, 95k instructions with LLVM's int64 form, 112k with four 32-lane chunks)
MAX_CHANNELS = 3 * LANES


def requant_rvv(acc, bias, mult, right, add: int, lo: int, hi: int, relu: bool):
    """numpy model of one chunk's instructions as the RVV 1.0 spec defines them (vxrm = rnu: roundoff(v, d) =
    (v >> d) + bit d-1 of v; vsadd / vnclip saturate): the int8 outputs for int32 `acc` and per-channel int32
    `bias`, `mult` (0 <= m < 2^31), `right` (1..31)."""
    import numpy as np

    def sat(v, bits):
        return np.clip(v, -(1 << (bits - 1)), (1 << (bits - 1)) - 1)

    def roundoff(v, d):
        d = np.asarray(d, np.int64)
        return (v >> d) + np.where(d > 0, (v >> np.maximum(d - 1, 0)) & 1, 0)

    acc, bias, mult, right = (np.asarray(v, np.int64) for v in (acc, bias, mult, right))
    x = ((acc + bias + (1 << 31)) % (1 << 32)) - (1 << 31)  # vadd.vv wraps
    y = sat(roundoff(x * mult, 31), 32)  # vsmul.vv
    if not relu:
        y = sat(y + (y >> 31), 32)  # vsra.vi 31, vsadd.vv
    z = sat(roundoff(y, right & 31), 16)  # vnclip.wv (the shift's low 5 bits)
    z = sat(z + add, 16)  # vsadd.vx
    z = np.minimum(np.maximum(z, lo), hi)  # vmax.vx / vmin.vx (left out where they are no-ops)
    return sat(z, 8)  # vnclip.wi 0


def rewrite(func):
    """`func` with its requantization epilogue as RVV intrinsics (module doc), or `func` unchanged."""
    try:
        return _rewrite(func)
    except _NoMatch:
        return func


def _rewrite(func):
    import tvm_ffi
    from tvm import ir, tirx

    from .lowering import _collect

    params = [p for p in func.params if isinstance(p.ty, tirx.BufferType)]
    _, _, (yblock, acc, bias, mult), (zblock, zexpr, yload, half, right) = find_epilogue(func, _match_y, _match_z)
    loop = _channel_loop(func.body, yblock, zblock)
    yreal = next((r for r in _collect(loop.body, _is_realize) if r.block.same_as(yblock)), None)
    zreal = next((r for r in _collect(loop.body, _is_realize) if r.block.same_as(zblock)), None)
    if yreal is None or zreal is None or not _is_true(yreal.predicate) or not _is_true(zreal.predicate):
        raise _NoMatch
    units = {x.loop_var: x for x in _collect(loop.body, lambda n: isinstance(n, tirx.For))}
    if any(not _int(f.extent, 1) for f in units.values()):
        raise _NoMatch
    if not isinstance(acc, ir.TensorLoad) or str(acc.ty) != "int32":
        raise _NoMatch
    store = zblock.body
    wide = str(store.buffer.ty.dtype)  # int8, or int32 where a consumer's widening cast was fused in (avg pool)
    if wide not in ("int8", "int32") or str(store.value.ty) != wide:
        raise _NoMatch  # e.g. a residual add that reads the requantized value before its own clamp
    lo, hi, add = _clamp_chain(store.value, zexpr)
    pc = int(loop.extent) if isinstance(loop.extent, tirx.IntImm) else 0
    if not 0 < pc <= MAX_CHANNELS:
        raise _NoMatch

    def at(expr_load, real, c0):
        """address of `expr_load` (a load in block `real`) with the channel loop at c0, contiguous along it."""
        load = _int32_load(expr_load, params) if not expr_load.same_as(acc) else acc
        idx = [_bind(i, real, loop.loop_var, c0, units) for i in load.indices]
        nxt = [_bind(i, real, loop.loop_var, c0 + 1, units) for i in load.indices]
        _contiguous(idx, nxt, load.source)
        return tirx.address_of(tirx.BufferLoad(load.source, idx))

    out_idx = lambda c0: [_bind(i, zreal, loop.loop_var, c0, units) for i in store.indices]  # noqa: E731
    _contiguous(out_idx(0), out_idx(1), store.buffer)
    relu = lo >= add  # every z <= 0 clamps to lo: the y < 0 rounding case cannot show
    parents = [f for f in _collect(func.body, lambda n: isinstance(n, tirx.For)) if f.body.same_as(loop)]
    pixels = int(parents[0].extent) if len(parents) == 1 and isinstance(parents[0].extent, tirx.IntImm) else 1
    stmts = []
    for c0 in range(0, pc, LANES):
        vl = min(LANES, pc - c0)
        stmts += _chunk(vl, at(acc, yreal, c0), at(bias, yreal, c0), at(mult, yreal, c0), at(right, zreal, c0),
                        tirx.address_of(tirx.BufferLoad(store.buffer, out_idx(c0))), add, lo, hi, relu,
                        wide == "int32", launder=pc >= LANES and pixels > 1)
    new = tirx.SeqStmt(stmts)

    def on_for(f, m):
        return new if f.same_as(loop) else m.default_mutate(f)

    return func.with_body(tvm_ffi.structural_mutate(func.body, [(tirx.For, on_for)]))


def _chunk(vl: int, p_acc, p_bias, p_mult, p_right, p_out, add: int, lo: int, hi: int, relu: bool,
           out32: bool = False, launder: bool = False) -> list:
    """The statements of one chunk of `vl` channels, in the smallest register group that holds them (LMUL 8 for
    17-32 int32 lanes, 4 for 9-16, 2 for 5-8, 1 below: fewer registers, no spills when several pixels' chunks
    are live). Every intrinsic's pass-through is a never-written local (LLVM reads it as undef: tail-agnostic,
    no register copy). The shift is read as the low halves of the int32 vector (a strided vlse16) so that one
    vnclip.wv does RoundingDivideByPOT and the narrowing to int16 (saturating: a value beyond int16 clamps the
    same way after the zero point), then vsadd adds the zero point and vnclip.wi (or vmax/vmin, vnsrl) clamps
    and narrows to int8 (`out32`: clamps at int16 and sign-extends to an int32 output instead)."""
    from tvm import ir, tirx

    n = 16 if vl > 16 else 8 if vl > 8 else 4 if vl > 4 else 2
    v32, v16, v8 = f"int32xvscalex{n}", f"int16xvscalex{n}", f"int8xvscalex{n}"
    vlen = tirx.const(vl, "int64")
    evl = tirx.const(vl, "int32")
    ones = tirx.Broadcast(tirx.const(True, "bool"), tirx.vscale() * n)
    out = []
    undef = {}
    for dt in (v32, v16, v8):
        buf = tirx.decl_buffer((1,), dt, f"undef_{dt.split('x')[0]}", scope="local")
        out.append(tirx.AllocBuffer(buf))
        undef[dt] = tirx.BufferLoad(buf, [0])

    def bind(name, dtype, value):
        v = ir.Var(name, dtype)
        out.append(tirx.Bind(v, value))
        return v

    def keep(ptr):  # an opaque copy of the address: LICM cannot hoist the load (and spill what it hoisted)
        return tirx.call_llvm_intrin("handle", "llvm.launder.invariant.group", ptr) if launder else ptr

    def vp_load(name, ptr):
        return bind(name, v32, tirx.call_llvm_intrin(v32, "llvm.vp.load", ptr, ones, evl))

    def rvv(name, op, dtype, *args):
        return bind(name, dtype, tirx.call_llvm_intrin(dtype, f"llvm.riscv.{op}", undef[dtype], *args, vlen))

    rnu = tirx.const(RNU, "int64")
    a = vp_load("acc", p_acc)
    b = vp_load("bias", keep(p_bias))
    x = rvv("x", "vadd", v32, a, b)
    m = vp_load("m", keep(p_mult))
    y = rvv("y", "vsmul", v32, x, m, rnu)
    if not relu:
        s = rvv("sign", "vsra", v32, y, tirx.const(31, "int64"))
        y = rvv("y1", "vsadd", v32, y, s)
    r = bind("r", v16, tirx.call_llvm_intrin(v16, "llvm.experimental.vp.strided.load", keep(p_right),
                                             tirx.const(4, "int64"), ones, evl))
    z = rvv("z", "vnclip", v16, y, r, rnu)
    if add:
        z = rvv("z1", "vsadd", v16, z, tirx.const(add, "int16"))
    if lo > -128 or out32:
        z = rvv("z2", "vmax", v16, z, tirx.const(lo, "int16"))
    if hi < 127 or out32:
        z = rvv("z3", "vmin", v16, z, tirx.const(hi, "int16"))
    if out32:
        w = bind("w", v32, tirx.call_llvm_intrin(v32, "llvm.vp.sext", z, ones, evl))
        out.append(tirx.Evaluate(tirx.call_llvm_intrin("void", "llvm.vp.store", w, p_out, ones, evl)))
        return out
    q = rvv("q", "vnclip", v8, z, tirx.const(0, "int64"), rnu)
    out.append(tirx.Evaluate(tirx.call_llvm_intrin("void", "llvm.vp.store", q, p_out, ones, evl)))
    return out


def _is_realize(node) -> bool:
    from tvm import s_tir

    return isinstance(node, s_tir.SBlockRealize)


def _is_true(e) -> bool:
    from tvm import tirx

    return isinstance(e, bool) and e or isinstance(e, tirx.IntImm) and int(e.value) == 1


def _int(e, value: int) -> bool:
    from tvm import tirx

    return isinstance(e, tirx.IntImm) and int(e.value) == value


def _dtype(e) -> str:
    return str(e.ty)


def _param_load(e, params):
    """The int32/int64 per-channel parameter load under `e` (a load, or a cast of one), else None."""
    from tvm import ir, tirx

    inner = e.value if isinstance(e, tirx.Cast) else e
    if isinstance(inner, ir.TensorLoad) and len(inner.indices) == 1 and any(inner.source.same_as(p) for p in params) \
            and _dtype(inner) in ("int32", "int64"):
        return e
    return None


def _match_y(value, params):
    """((int64(acc) + bias) * m + 2^30) >> 31 -> (acc int32 expression, bias, m)."""
    from tvm import tirx

    if not (isinstance(value, tirx.RShift) and _int(value.b, 31) and _dtype(value) == "int64"):
        raise _NoMatch
    add = value.a
    if not (isinstance(add, tirx.Add) and _int(add.b, ROUND) and isinstance(add.a, tirx.Mul)):
        raise _NoMatch
    mul = add.a
    if not (isinstance(mul.a, tirx.Add) and _param_load(mul.b, params) is not None):
        raise _NoMatch
    acc, bias = mul.a.a, mul.a.b
    if not (isinstance(acc, tirx.Cast) and _dtype(acc.value) == "int32" and _param_load(bias, params) is not None):
        raise _NoMatch
    return acc.value, bias, mul.b


def _match_z(e, ybuf, params):
    """(y + half + (y >> 63)) >> r with y loads of `ybuf` -> (y load, half, r); None when `e` is not that."""
    from tvm import ir, tirx

    if not (isinstance(e, tirx.RShift) and _dtype(e) == "int64" and _param_load(e.b, params) is not None):
        return None
    s = e.a
    if not (isinstance(s, tirx.Add) and isinstance(s.a, tirx.Add) and isinstance(s.b, tirx.RShift)):
        return None
    y, half = s.a.a, s.a.b
    y2 = s.b.a
    if not (isinstance(y, ir.TensorLoad) and y.source.same_as(ybuf) and isinstance(y2, ir.TensorLoad)
            and y2.source.same_as(ybuf) and _int(s.b.b, 63) and _param_load(half, params) is not None):
        return None
    return y, half, e.b


def _channel_loop(body, yblock, zblock):
    """The innermost serial loop around both epilogue blocks (the tile's channel loop), with nothing else in it."""
    from tvm import tirx

    from .lowering import _collect

    def holds(f, b):
        return bool(_collect(f.body, lambda n: n.same_as(b)))

    loops = [f for f in _collect(body, lambda n: isinstance(n, tirx.For)) if holds(f, yblock) and holds(f, zblock)]
    if not loops:
        raise _NoMatch
    loop = loops[-1]  # pre-order: the innermost comes last
    if int(loop.kind) != int(tirx.ForKind.SERIAL):
        raise _NoMatch
    from tvm import s_tir

    blocks = _collect(loop.body, lambda n: isinstance(n, s_tir.SBlock))
    if len(blocks) != 2:
        raise _NoMatch
    return loop


def _bind(index, real, loop_var, c0: int, units: dict):
    """`index` (in block iter vars) in the loops' vars, the channel loop at c0 and the unit loops at 0."""
    import tvm
    import tvm_ffi
    from tvm import ir, tirx

    sub = {iv.var: v for iv, v in zip(real.block.iter_vars, real.iter_values)}

    def on_var(v, m):
        for k, val in sub.items():
            if v.same_as(k):
                return m.mutate(val)
        if v.same_as(loop_var):
            return tirx.const(c0, str(v.ty))
        for u in units:
            if v.same_as(u):
                return tirx.const(0, str(v.ty))
        return v

    e = tvm_ffi.structural_mutate(index, [(ir.Var, on_var)])
    from tvm import sym as arith

    return arith.Analyzer().simplify(e)


def _contiguous(idx, nxt, buf) -> None:
    """Channel c0 + 1 is the next element of `buf` after c0: only the last index moves, by one, over a compact
    last dimension."""
    import tvm

    from tvm import sym as arith

    ana = arith.Analyzer()
    for i, (a, b) in enumerate(zip(idx, nxt)):
        d = ana.simplify(b - a)
        want = 1 if i == len(idx) - 1 else 0
        if not _int(d, want):
            raise _NoMatch
    strides = list(buf.ty.strides) if buf.ty.strides is not None else []
    if strides:
        raise _NoMatch


def _int32_load(e, params):
    """The int32 parameter load under `e` (narrow_consts' `int64(load)`); int64 vectors are not rewritten."""
    from tvm import ir, tirx

    inner = e.value if isinstance(e, tirx.Cast) else e
    if not (isinstance(inner, ir.TensorLoad) and str(inner.ty) == "int32" and len(inner.indices) == 1
            and any(inner.source.same_as(p) for p in params)):
        raise _NoMatch
    return inner


def _clamp_chain(value, zexpr) -> tuple[int, int, int]:
    """(lo, hi, add) with value == clamp(z + add, lo, hi) for the stored expression `value` over z = `zexpr`:
    constant additions first, then min/max by constants and casts; the cast to int8 only of values already within
    int8 (else the chain is not a clamp: _NoMatch)."""
    from tvm import tirx

    ops = []
    e = value
    while not e.same_as(zexpr):
        if isinstance(e, (tirx.Min, tirx.Max, tirx.Add, tirx.Sub)) and isinstance(e.b, tirx.IntImm):
            ops.append((type(e).__name__, int(e.b.value)))
            e = e.a
        elif isinstance(e, tirx.Cast) and str(e.ty) in ("int8", "int32", "int64"):
            ops.append(("Cast", str(e.ty)))
            e = e.value
        else:
            raise _NoMatch
    add, lo, hi = 0, -(1 << 40), 1 << 40  # z is within int32: the bounds start wider
    clamped = False
    for op, c in reversed(ops):
        if op in ("Add", "Sub"):
            if clamped:
                raise _NoMatch
            add += c if op == "Add" else -c
        elif op == "Min":
            clamped = True
            hi, lo = min(hi, c), min(lo, c)
        elif op == "Max":
            clamped = True
            lo, hi = max(lo, c), max(hi, c)
        elif c == "int8" and not (lo >= -128 and hi <= 127):
            raise _NoMatch
    if not (-128 <= lo <= hi <= 127) or abs(add) >= 1 << 15:
        raise _NoMatch
    return lo, hi, add
