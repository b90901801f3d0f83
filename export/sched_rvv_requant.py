"""rv64gcv: the requantization epilogue of a conv/matmul kernel in int32 lanes, except the one 64-bit product.

The int8 lowering ends a conv/matmul in TFLite's double-rounding requantization (int8ops/emit.mbqm, every
channel's right shift r >= 1), in int64 elements:

    y = ((acc + bias[c]) * m[c] + 2^30) >> 31           # SaturatingRoundingDoublingHighMul, m < 2^31
    z = (y + half[c] + (y >> 63)) >> r[c]               # RoundingDivideByPOT, half = 2^(r-1), 1 <= r <= 31
    out = clamp(z + zp) -> int8

On RVV (VLEN 128) LLVM vectorizes that per channel tile with int64 lanes: 16 per LMUL-8 group and a sign
extension, a vsetvli toggle and a narrowing step around each of them. Here only the product stays 64-bit:

    x = acc + bias                                      # int32, as TFLite adds the bias
    y = int32(((int64) x * m + 2^30) >> 31)             # |x * m / 2^31| < 2^31: exact in int32
    z = (y >> r) + (uint32(y & (2^r - 1)) + uint32(half + (y >> 31))) >>u r

The second line of z is RoundingDivideByPOT without overflow for every int32 y: with y = q * 2^r + rem
(0 <= rem < 2^r), floor((y + half - [y < 0]) / 2^r) = q + floor((rem + half - [y < 0]) / 2^r), and
0 <= rem + half - [y < 0] < 2^r + 2^(r-1) <= 2^32 - 2^30 because half >= 1 (r >= 1). So z equals the int64
form for every y; z fits int32 (|z| <= 2^30) and is handed back widened, so the clamp that follows is the
same expression, and LLVM folds sext/trunc pairs: the epilogue's vector code runs at e32 (measured with
kernel_bench, see sched_rvv.build_kernels). x in int32 is what TFLite's reference kernels compute (they add the
bias in int32), so results agree with them wherever their int32 arithmetic does not overflow.

Measured per shape (kernel_bench), this form won where a 16- or 32-channel tile's epilogue ran in int64 but
LLVM still vectorized it 16 lanes at a time (the 64-bit product sets the factor). It is superseded by
sched_rvv_epilogue.py, which every rv64gcv build applies to the original form (vsmul / vnclip in 32 int32 lanes:
fewer instructions on every shape measured, MobileNetV2 0.398 -> 0.357 instr/MAC with the recorded "-rvvq" /
"-dwq" tiles). So `narrow_epilogue` now returns the kernel unchanged: the recorded tile names stay valid and
build as their "-rvv" / "-dw" twins. What stays here is shared: `requant32` (the int32 arithmetic as numpy) and
the matchers `_match_y` / `_match_z` of the epilogue's two blocks (sched_rvv_epilogue.py finds them with them).
"""

from __future__ import annotations

from .sched_requant import _NoMatch

ROUND = 1 << 30


def requant32(acc, bias, mult, half, right):
    """numpy twin of the rewritten epilogue (int32 lanes, one int64 product): z before the zero point."""
    import numpy as np

    acc, bias, mult, half, right = (np.asarray(v, np.int64) for v in (acc, bias, mult, half, right))
    x = ((acc + bias + (1 << 31)) % (1 << 32)) - (1 << 31)  # int32 addition (wraps as the lanes do)
    y = (x * mult + ROUND) >> 31
    rem = y & ((np.int64(1) << right) - 1)
    up = (rem + ((half + (y >> 31)) % (1 << 32))) % (1 << 32)  # uint32 lanes
    return (y >> right) + (up >> right)


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


def _as32(e):
    """`e` (int64 holding an int32 value: a widened int32 expression or a parameter) as an int32 expression."""
    from tvm import tirx

    if isinstance(e, tirx.Cast) and _dtype(e.value) == "int32":
        return e.value
    return e if _dtype(e) == "int32" else tirx.Cast("int32", e)


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


def narrow_epilogue(func):
    """`func` unchanged: the int32-lane epilogue is sched_rvv_epilogue.rewrite's, applied at every rv64gcv build
    (module doc); kept so that "-rvvq" / "-dwq" tiles (schedules.json, sched_depthwise) still schedule."""
    return func
