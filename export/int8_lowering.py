"""Rewrite the TFLite importer's dequantize -> float op -> quantize patterns into integer compute.

Why: TVM's importer computes int8 models in float32 (weights stored as float32, a few LSB off TFLite).
This pass replaces each quantized pattern by the integer arithmetic of TFLite's *reference* kernels
(BUILTIN_REF), so the lowered kernels are bit-exact with that oracle and weights stay int8:

- conv2d / depthwise (groups) / dense: int8 x int8 with int32 accumulation; the input zero point is
  handled as a per-channel constant `bias - zp * sum(w)` (the input is padded with its zero point, so
  the correction is the same at the borders), then TFLite's requantization.
- add / sub / mul: TFLite's left-shift-20 add with three multipliers; mul with one multiplier.
- mean (keepdims=False): TFLite's QuantizedMeanOrSum, 1/n folded into the multiplier.
- requantization = MultiplyByQuantizedMultiplier: SaturatingRoundingDoublingHighMul then
  RoundingDivideByPOT, done with int64 Relax ops, per-channel multiplier and shift vectors.

Anything else (e.g. softmax) is left on the float route; `float_ops` names what is left so the build can
say honestly that it does not compute fully in integers.
"""

from __future__ import annotations

import functools

import math

import numpy as np

from cloudcover.train.errors import CloudcoverError

# ---------------------------------------------------------------------------------------------------
# Pure quantization math (TFLite's quantization_util.cc / gemmlowp fixedpoint), numpy reference.


def quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLite QuantizeMultiplier: real = m * 2**(shift - 31), m in [2**30, 2**31) (round half away from 0)."""
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)
    q_fixed = int(math.floor(abs(q) * (1 << 31) + 0.5)) * (1 if q >= 0 else -1)  # std::round
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < -31:
        shift, q_fixed = 0, 0
    if shift > 30:
        shift, q_fixed = 30, (1 << 31) - 1
    return int(q_fixed), int(shift)


def srdhm(a, b):
    """gemmlowp SaturatingRoundingDoublingHighMul on int64 arrays holding int32 values."""
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    ab = a * b
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    v = ab + nudge
    res = np.where(v >= 0, v >> 31, -((-v) >> 31))  # C division truncates toward zero
    return np.where((a == -(1 << 31)) & (b == -(1 << 31)), (1 << 31) - 1, res)


def rounding_divide_by_pot(x, exponent):
    """gemmlowp RoundingDivideByPOT: x / 2**exponent, rounding half away from zero."""
    x, e = np.asarray(x, np.int64), np.asarray(exponent, np.int64)
    mask = (np.int64(1) << e) - 1
    rem = x & mask
    thr = (mask >> 1) + (x < 0)
    return (x >> e) + (rem > thr)


def multiply_by_quantized_multiplier(x, mult, shift):
    """TFLite MultiplyByQuantizedMultiplier (the double-rounding form the reference kernels use)."""
    shift = np.asarray(shift, np.int64)
    left, right = np.maximum(shift, 0), np.maximum(-shift, 0)
    return rounding_divide_by_pot(srdhm(np.asarray(x, np.int64) << left, mult), right)


def mean_multiplier(mult: int, shift: int, n: int) -> tuple[int, int]:
    """QuantizedMeanOrSum folds 1/n into the multiplier (reference reduce.h)."""
    s = min(63 - (64 - int(n).bit_length()) if n else 0, 32, 31 + shift)  # 63 - clz(n) = floor(log2 n)
    return int((mult << s) // n), shift - s


def round_mul_params(eff, acc_bound: int) -> tuple[np.ndarray, np.ndarray]:
    """Fixed-point (mult, shift) per channel so that round(acc * mult / 2**shift) reproduces TFLite's double
    round(acc * eff) for |acc| < acc_bound: mult keeps 62 - log2(acc_bound) bits, so acc * mult fits int64
    (exact unless acc * eff lies within ~2**-40 relative of a half-integer)."""
    eff = np.atleast_1d(np.asarray(eff, np.float64))
    bits = 62 - int(acc_bound).bit_length()
    shift = np.array([min(bits - 1 - math.frexp(v)[1], 62) if v > 0 else 1 for v in eff], np.int64)
    mult = np.array([int(round(v * 2.0 ** int(k))) for v, k in zip(eff, shift)], np.int64)
    return mult, np.maximum(shift, 1)


def round_mul(acc, mult, shift):
    """numpy reference of the rounding used with round_mul_params (half away from zero)."""
    v = np.asarray(acc, np.int64) * mult
    half = np.int64(1) << (shift - 1)
    return np.where(v >= 0, (v + half) >> shift, -((-v + half) >> shift))


def add_params(s1: float, s2: float, so: float, left_shift: int = 20):
    """TFLite int8 ADD: multipliers and shifts of both inputs and of the output (add.cc Prepare)."""
    twice_max = 2.0 * max(np.float32(s1), np.float32(s2))
    m1 = quantize_multiplier(float(np.float32(s1)) / float(twice_max))
    m2 = quantize_multiplier(float(np.float32(s2)) / float(twice_max))
    mo = quantize_multiplier(float(twice_max) / float(np.float32((1 << left_shift) * np.float32(so))))
    return m1, m2, mo


# ---------------------------------------------------------------------------------------------------
# Relax construction


def _f(c) -> np.ndarray:
    """numpy value of a Relax constant."""
    return c.value.numpy()


def _scalar(c) -> float | int:
    v = _f(c)
    if v.size != 1:
        raise ValueError("not a scalar")
    return v.reshape(()).item()


class _Emitter:
    """Emits one binding per op into a dataflow block (a nested expression makes normalization explode)."""

    def __init__(self):
        from tvm import relax

        self.R = relax
        self.bb = relax.BlockBuilder()
        self.bb._begin_dataflow_block()

    def __call__(self, expr):
        return self.bb.emit(expr)

    def i64(self, arr):
        return self.R.const(np.asarray(arr, np.int64), "int64")

    def finish(self, expr):
        var = self.bb.emit(expr)
        block = self.bb._end_block()
        return self.R.SeqExpr([block], var)

    def requant(self, acc, mult, shift, zp_out: int):
        """int64 acc -> int8: MultiplyByQuantizedMultiplier (per-channel vectors allowed), + zero point, clamp."""
        op = self.R.op
        x = self(op.add(_mbqm(self, acc, mult, shift), self.i64(zp_out)))
        x = self(op.clip(x, -128, 127))
        return op.astype(x, "int8")


# ---------------------------------------------------------------------------------------------------
# Rewriters: each returns the integer SeqExpr, or None to leave the float pattern in place.


def _rewrite_conv(m, p, log):
    R = __import__("tvm").relax
    op = R.op
    conv = m[p["conv"]]
    attrs = conv.attrs
    if str(attrs.data_layout) != "NHWC" or str(attrs.out_layout) != "NHWC":
        return None
    x, sx, zx = m[p["x"]], _scalar(m[p["sx"]]), int(_scalar(m[p["zx"]]))
    wdq = m[p["wdq"]]
    w = _f(m[p["w"]])
    if w.dtype != np.int8 or np.any(_f(wdq.args[2]) != 0):
        return None
    sw = _f(wdq.args[1]).astype(np.float32).reshape(-1)
    if p["wr"] in m:
        w = w.reshape([int(d) for d in m[p["wr"]].ty.shape.values])
    layout = str(attrs.kernel_layout)
    o_axis = layout.index("O")
    cout = w.shape[o_axis]
    if sw.size not in (1, cout):
        return None
    sw = np.broadcast_to(sw, (cout,))
    q = m[p["q"]]
    so, zo = _scalar(q.args[1]), int(_scalar(q.args[2]))
    if q.attrs.out_dtype != "int8":
        return None
    bias = np.zeros(cout, np.int64)
    if p["bdq"] in m:
        bdq = m[p["bdq"]]
        b = _f(bdq.args[0])
        if b.dtype != np.int32 or b.size != cout or np.any(_f(bdq.args[2]) != 0):
            return None
        bias = b.astype(np.int64).reshape(-1)
    sum_w = w.astype(np.int64).sum(axis=tuple(a for a in range(4) if a != o_axis))
    bias_eff = bias - zx * sum_w
    mults = [quantize_multiplier(float(np.float64(np.float32(sx)) * np.float64(s) / np.float64(np.float32(so))))
             for s in sw]
    e = _Emitter()
    pad = [int(v) for v in attrs.padding]  # top, left, bottom, right
    xin = x
    if any(pad):
        xin = e(op.nn.pad(x, [0, 0, pad[0], pad[2], pad[1], pad[3], 0, 0], pad_value=float(zx)))
    acc = e(op.nn.conv2d(xin, R.const(w, "int8"), strides=[int(v) for v in attrs.strides], padding=[0, 0, 0, 0],
                         dilation=[int(v) for v in attrs.dilation], groups=int(attrs.groups), data_layout="NHWC",
                         kernel_layout=layout, out_layout="NHWC", out_dtype="int32"))
    acc = e(op.add(op.astype(acc, "int64"), e.i64(bias_eff)))
    return e.finish(e.requant(acc, [a for a, _ in mults], [b for _, b in mults], zo))


def _rewrite_dense(m, p, log):
    R = __import__("tvm").relax
    op = R.op
    x, sx, zx = m[p["x"]], _scalar(m[p["sx"]]), int(_scalar(m[p["zx"]]))
    wdq = m[p["wdq"]]
    w = _f(m[p["w"]])
    if w.dtype != np.int8 or np.any(_f(wdq.args[2]) != 0) or w.ndim != 2:
        return None
    if p["wt"] in m:
        axes = [int(a) for a in m[p["wt"]].attrs.axes]
        w = np.transpose(w, axes)  # now [in, out]
    cout = w.shape[1]
    sw = _f(wdq.args[1]).astype(np.float32).reshape(-1)
    if sw.size not in (1, cout) or (sw.size > 1 and int(wdq.attrs.axis) != 1):
        return None
    sw = np.broadcast_to(sw, (cout,))
    q = m[p["q"]]
    so, zo = _scalar(q.args[1]), int(_scalar(q.args[2]))
    bias = np.zeros(cout, np.int64)
    if p["bdq"] in m:
        b = _f(m[p["bdq"]].args[0])
        if b.dtype != np.int32 or b.size != cout:
            return None
        bias = b.astype(np.int64).reshape(-1)
    bias_eff = bias - zx * w.astype(np.int64).sum(axis=0)
    # TFLite's reference FULLY_CONNECTED requantizes in double: round(acc * in*w/out) (half away from 0),
    # not with MultiplyByQuantizedMultiplier; emulated with a wide fixed-point multiplier (see round_mul_params)
    eff = np.float64(np.float32(sx)) * sw.astype(np.float64) / np.float64(np.float32(so))
    bound = int((np.abs(w.astype(np.int64)).sum(axis=0) * 255 + np.abs(bias)).max()) + 1
    mult, shift = round_mul_params(eff, bound)
    e = _Emitter()
    acc = e(op.matmul(x, R.const(np.ascontiguousarray(w), "int8"), out_dtype="int32"))
    acc = e(op.add(op.astype(acc, "int64"), e.i64(bias_eff)))
    # round half away from zero of v / 2**shift (shift >= 1) = floor((v + 2**(shift-1) - [v < 0]) / 2**shift)
    v = e(op.multiply(acc, e.i64(mult)))
    v = e(op.add(op.add(v, e.i64(np.int64(1) << (shift - 1))), op.right_shift(v, e.i64(63))))
    x = e(op.right_shift(v, e.i64(shift)))
    x = e(op.clip(op.add(x, e.i64(zo)), -128, 127))
    return e.finish(op.astype(x, "int8"))


def _binary_operands(m, p):
    """(a, b, s1, z1, s2, z2, so, zo) of quantize(dequantize(a) OP dequantize(b)) with scalar int8 params, else None."""
    a, b = m[p["a"]], m[p["b"]]
    da, db, q = m[p["da"]], m[p["db"]], m[p["q"]]
    try:
        s1, z1, s2, z2 = _scalar(da.args[1]), int(_scalar(da.args[2])), _scalar(db.args[1]), int(_scalar(db.args[2]))
        so, zo = _scalar(q.args[1]), int(_scalar(q.args[2]))
    except ValueError:
        return None
    if str(a.ty.dtype) != "int8" or str(b.ty.dtype) != "int8" or q.attrs.out_dtype != "int8":
        return None
    return a, b, s1, z1, s2, z2, so, zo


def _rewrite_add(m, p, log, subtract: bool = False):
    """TFLite int8 ADD, or SUB with `subtract` (sub.cc prepares the same multipliers and subtracts the two
    scaled inputs; e.g. the Normalization layer's per-channel mean)."""
    op = __import__("tvm").relax.op
    operands = _binary_operands(m, p)
    if operands is None:
        return None
    a, b, s1, z1, s2, z2, so, zo = operands
    (m1, sh1), (m2, sh2), (mo, sho) = add_params(s1, s2, so)

    def add_np(va, vb):  # the integer arithmetic emitted below, in numpy (mbqm_short is _mbqm's twin)
        sa = mbqm_short((np.asarray(va, np.int64) - z1) << 20, m1, sh1)
        sb = mbqm_short((np.asarray(vb, np.int64) - z2) << 20, m2, sh2)
        return np.clip(mbqm_short(sa - sb if subtract else sa + sb, mo, sho) + zo, -128, 127)

    lut = _unary_table(a, b, add_np)
    if lut is not None:
        return lut
    e = _Emitter()

    def scaled(t, z, mult, sh):
        v = e(op.left_shift(op.subtract(op.astype(t, "int64"), e.i64(z)), e.i64(20)))
        return _mbqm(e, v, mult, sh)

    combine = op.subtract if subtract else op.add
    s = e(combine(scaled(a, z1, m1, sh1), scaled(b, z2, m2, sh2)))
    return e.finish(e.requant(s, mo, sho, zo))


def mbqm_short(x, mult, shift):
    """numpy twin of the Relax `_mbqm`: MultiplyByQuantizedMultiplier in 3 + 4 integer ops, equal to
    `multiply_by_quantized_multiplier` for every int32 x and multiplier 0 <= mult < 2**31:
    - SaturatingRoundingDoublingHighMul: trunc((x*m + nudge) / 2**31) with nudge 2**30 or 1 - 2**30 is
      floor((x*m + 2**30) / 2**31) in both signs (for x*m < 0, adding 2**31 - 1 before the floor turns the
      truncation into a floor and the two nudges differ by exactly that); it saturates only for
      m == -2**31, which QuantizeMultiplier never produces;
    - RoundingDivideByPOT by e >= 1 (half away from zero): floor((x + 2**(e-1) - [x < 0]) / 2**e)."""
    mult, shift = np.asarray(mult, np.int64), np.asarray(shift, np.int64)
    left, right = np.maximum(shift, 0), np.maximum(-shift, 0)
    x = (np.asarray(x, np.int64) << left) * mult
    x = (x + (1 << 30)) >> 31
    half, g = (np.int64(1) << right) >> 1, -(right > 0).astype(np.int64)  # g: all ones where right > 0
    return (x + half + ((x >> 63) & g)) >> right


def _mbqm(e, x, mult, shift):
    """MultiplyByQuantizedMultiplier on an int64 Relax tensor holding int32 values; `mult`/`shift` scalars or
    vectors along the last axis. The short exact form of `mbqm_short` (7 elementwise ops, 3 when the shift
    is 0): after the TIR schedule of lowering.py this is the conv/matmul epilogue on one register."""
    op = e.R.op
    mult, shift = np.asarray(mult, np.int64), np.asarray(shift, np.int64)
    if np.any(mult < 0) or np.any(mult >= (1 << 31)):
        raise ValueError(f"quantized multiplier out of range: {mult}")
    left, right = np.maximum(shift, 0), np.maximum(-shift, 0)
    if np.any(left > 0):
        x = e(op.left_shift(x, e.i64(left)))
    x = e(op.right_shift(op.add(op.multiply(x, e.i64(mult)), e.i64(1 << 30)), e.i64(31)))
    if np.any(right > 0):
        half, g = (np.int64(1) << right) >> 1, -(right > 0).astype(np.int64)  # g: all ones where right > 0
        neg = op.right_shift(x, e.i64(63))  # -1 where x < 0, else 0
        if np.all(g == -1):
            x = e(op.add(op.add(x, e.i64(half)), neg))
        else:
            x = e(op.add(op.add(x, e.i64(half)), op.bitwise_and(neg, e.i64(g))))
        x = e(op.right_shift(x, e.i64(right)))
    return x


def _unary_table(a, b, fn):
    """With one operand a constant scalar, an int8 add/mul is a function of the other int8 operand alone: a
    256-entry table computed here with the same integer arithmetic (`fn`), looked up per element (two loads
    instead of three requantizations; e.g. a model's input Rescaling). None if neither operand is constant."""
    R = __import__("tvm").relax
    op = R.op
    consts = [isinstance(t, __import__("tvm").ir.expr.GenericConst) and _f(t).size == 1 for t in (a, b)]
    if consts[0] == consts[1]:
        return None
    xs = np.arange(-128, 128, dtype=np.int64)
    if consts[0]:
        table, x = fn(np.full_like(xs, int(_scalar(a))), xs), b
    else:
        table, x = fn(xs, np.full_like(xs, int(_scalar(b)))), a
    # indexed by the int8 value's bits as uint8 (always in bounds): entry k is for x = k - 256 * (k > 127)
    e = _Emitter()
    idx = e(op.astype(x, "uint8"))
    return e.finish(op.take(R.const(np.roll(table, 128).astype(np.int8), "int8"), idx, axis=0))


def _rewrite_mul(m, p, log):
    op = __import__("tvm").relax.op
    operands = _binary_operands(m, p)
    if operands is None:
        return None
    a, b, s1, z1, s2, z2, so, zo = operands
    mult, sh = quantize_multiplier(float(np.float64(np.float32(s1)) * np.float64(np.float32(s2)) / np.float64(np.float32(so))))

    def mul_np(va, vb):
        prod = (np.asarray(va, np.int64) - z1) * (np.asarray(vb, np.int64) - z2)
        return np.clip(mbqm_short(prod, mult, sh) + zo, -128, 127)

    lut = _unary_table(a, b, mul_np)
    if lut is not None:
        return lut
    e = _Emitter()
    va = e(op.subtract(op.astype(a, "int64"), e.i64(z1)))
    vb = e(op.subtract(op.astype(b, "int64"), e.i64(z2)))
    return e.finish(e.requant(e(op.multiply(va, vb)), mult, sh, zo))


def _rewrite_mean(m, p, log):
    op = __import__("tvm").relax.op
    x, mean, q = m[p["x"]], m[p["mean"]], m[p["q"]]
    sx, zx = _scalar(m[p["sx"]]), int(_scalar(m[p["zx"]]))
    so, zo = _scalar(q.args[1]), int(_scalar(q.args[2]))
    if bool(mean.attrs.keepdims) or str(x.ty.dtype) != "int8" or (sx == so and zx == zo):
        return None  # TFLite takes other kernels there (reference_integer_ops::Mean / plain Mean)
    shape = [int(d) for d in x.ty.shape.values]
    axes = [int(a) % len(shape) for a in mean.attrs.axis]
    n = int(np.prod([shape[a] for a in axes]))
    mult, sh = quantize_multiplier(float(np.float64(np.float32(sx)) / np.float64(np.float32(so))))
    mult, sh = mean_multiplier(mult, sh, n)
    e = _Emitter()
    s = e(op.sum(op.astype(x, "int32"), axis=axes, keepdims=False))
    s = e(op.subtract(op.astype(s, "int64"), e.i64(zx * n)))
    return e.finish(e.requant(s, mult, sh, zo))


def _patterns():
    from tvm.relax.dpl import is_const, is_op, wildcard

    deq = lambda t: is_op("relax.dequantize")(t, is_const(), is_const())  # noqa: E731
    pats = []

    # conv2d / depthwise
    x, sx, zx = wildcard(), is_const(), is_const()
    xdq = is_op("relax.dequantize")(x, sx, zx)
    w = is_const()
    wdq = deq(w)
    wr = is_op("relax.reshape")(wdq, wildcard())
    conv = is_op("relax.nn.conv2d")(xdq, wdq | wr)
    bdq = deq(is_const())
    q = is_op("relax.quantize")(is_op("relax.add")(conv, bdq) | conv, is_const(), is_const())
    pats.append(("conv2d", q, _rewrite_conv, dict(x=x, sx=sx, zx=zx, w=w, wdq=wdq, wr=wr, conv=conv, bdq=bdq, q=q)))

    # dense: matmul(dequantize(x), dequantize(permute_dims(W)))
    x, sx, zx = wildcard(), is_const(), is_const()
    xdq = is_op("relax.dequantize")(x, sx, zx)
    w = is_const()
    wt = is_op("relax.permute_dims")(w)
    wdq = is_op("relax.dequantize")(wt | w, is_const(), is_const())
    mm = is_op("relax.matmul")(xdq, wdq)
    bdq = deq(is_const())
    q = is_op("relax.quantize")(is_op("relax.add")(mm, bdq) | mm, is_const(), is_const())
    pats.append(("matmul", q, _rewrite_dense, dict(x=x, sx=sx, zx=zx, w=w, wt=wt, wdq=wdq, bdq=bdq, q=q)))

    for name, fn in (("add", _rewrite_add), ("subtract", functools.partial(_rewrite_add, subtract=True)),
                     ("multiply", _rewrite_mul)):
        a, b = wildcard(), wildcard()
        da, db = deq(a), deq(b)
        q = is_op("relax.quantize")(is_op(f"relax.{name}")(da, db), is_const(), is_const())
        pats.append((name, q, fn, dict(a=a, b=b, da=da, db=db, q=q)))

    x, sx, zx = wildcard(), is_const(), is_const()
    mean = is_op("relax.mean")(is_op("relax.dequantize")(x, sx, zx))
    q = is_op("relax.quantize")(mean, is_const(), is_const())
    pats.append(("mean", q, _rewrite_mean, dict(x=x, sx=sx, zx=zx, mean=mean, q=q)))
    return pats


def lower_int8(mod, log=None):
    """Return (module with integer compute where a pattern matched, {op name: number rewritten})."""
    import tvm
    from tvm import relax
    from tvm.relax.dpl import rewrite_call

    counts: dict[str, int] = {}
    func = mod["main"]
    for name, pat, fn, parts in _patterns():
        def rewriter(expr, matches, fn=fn, parts=parts, name=name):
            try:
                out = fn(matches, parts, log)
            except CloudcoverError:
                raise
            except Exception as exc:
                raise CloudcoverError(f"int8 lowering of {name} failed at {_where(expr)}: "
                                      f"{' '.join(str(exc).split())[:300]}") from exc
            if out is None:
                return expr
            counts[name] = counts.get(name, 0) + 1
            return out

        func = rewrite_call(pat, rewriter, func)
    mod = mod.clone() if hasattr(mod, "clone") else mod
    mod["main"] = func
    mod = relax.transform.DeadCodeElimination()(mod)
    mod = relax.transform.Normalize()(mod)
    return mod, counts


def float_ops(mod) -> list[str]:
    """Operators of `main` that still compute in floating point (what stays on the float route)."""
    from tvm import ir, relax

    left = []

    def visit(e):
        if isinstance(e, relax.Call) and isinstance(e.op, ir.Op):
            name = e.op.name
            ty = getattr(e, "ty", None)
            if name not in ("relax.dequantize", "relax.quantize") and "float" in str(getattr(ty, "dtype", "")):
                left.append(name.removeprefix("relax."))

    relax.analysis.post_order_visit(mod["main"], visit)
    return sorted(set(left))


def _where(expr) -> str:
    span = getattr(expr, "span", None)
    return str(span) if span is not None else (expr.op.name if hasattr(expr, "op") else type(expr).__name__)
