"""Relax construction helpers shared by the lowerings: constants of a match, and an emitter that writes one
binding per op into a dataflow block (a deeply nested expression makes Relax normalization exponential)."""

from __future__ import annotations

import numpy as np


def value(c) -> np.ndarray:
    """numpy value of a Relax constant."""
    return c.value.numpy()


def scalar(c) -> float | int:
    """The single value of a Relax constant; ValueError if it holds more (a per-channel parameter)."""
    v = value(c)
    if v.size != 1:
        raise ValueError("not a scalar")
    return v.reshape(()).item()


def is_const(e) -> bool:
    from tvm import ir

    return isinstance(e, ir.expr.GenericConst)  # TVM 0.27's Relax constant


def dtype(e) -> str:
    """dtype of a Relax tensor expression ('' if it has none)."""
    return str(getattr(e.ty, "dtype", ""))


def shape(e) -> list[int]:
    return [int(d) for d in e.ty.shape.values]


class Emitter:
    """Emits one binding per op into a dataflow block; `finish` returns the SeqExpr a rewriter returns."""

    def __init__(self):
        from tvm import relax

        self.R = relax
        self.op = relax.op
        self.bb = relax.BlockBuilder()
        self.bb._begin_dataflow_block()

    def __call__(self, expr):
        return self.bb.emit(expr)

    def i64(self, arr):
        return self.R.const(np.asarray(arr, np.int64), "int64")

    def i32(self, arr):
        return self.R.const(np.asarray(arr, np.int32), "int32")

    def finish(self, expr):
        var = self.bb.emit(expr)
        block = self.bb._end_block()
        return self.R.SeqExpr([block], var)

    def requant(self, acc, mult, shift, zp_out: int, lo: int = -128, hi: int = 127):
        """int64 acc -> int8: MultiplyByQuantizedMultiplier (per-channel vectors allowed), + zero point, clamp."""
        op = self.op
        x = self(op.add(mbqm(self, acc, mult, shift), self.i64(zp_out)))
        x = self(op.clip(x, lo, hi))
        return op.astype(x, "int8")


def mbqm(e: Emitter, x, mult, shift):
    """MultiplyByQuantizedMultiplier on an int64 Relax tensor holding int32 values; `mult`/`shift` scalars or
    vectors along the last axis. The short exact form of `requant.mbqm_short` (7 elementwise ops, 3 when the
    shift is 0): after the TIR schedule of lowering.py this is the conv/matmul epilogue on one register."""
    op = e.op
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


def table_lookup(x, table: np.ndarray):
    """An int8 -> int8 function given as its 256 values (table[i] for x = i - 128), looked up per element
    with the index x + 128 in int32 (a uint8 reinterpretation of x would be cheaper, but TVM's simplifier
    fails on a uint8 cast of a clamped int8 chain when the schedule inlines it: "cannot make uint from
    negative value"). lowering.py marks such a lookup injective so it fuses with its neighbours."""
    table = np.asarray(table)
    if table.shape != (256,):
        raise ValueError(f"a lookup table has 256 entries, not {table.shape}")
    e = Emitter()
    idx = e(e.op.add(e.op.astype(x, "int32"), e.i32(128)))
    return e.finish(e.op.take(e.R.const(table.astype(np.int8), "int8"), idx, axis=0))


def unary_table(a, b, fn):
    """With one operand a constant scalar, an int8 binary op is a function of the other int8 operand alone: a
    256-entry table computed here with the same integer arithmetic (`fn`), looked up per element (two loads
    instead of three requantizations; e.g. a model's input Rescaling). None if neither operand is constant."""
    consts = [is_const(t) and value(t).size == 1 for t in (a, b)]
    if consts[0] == consts[1]:
        return None
    xs = np.arange(-128, 128, dtype=np.int64)
    if consts[0]:
        table, x = fn(np.full_like(xs, int(scalar(a))), xs), b
    else:
        table, x = fn(xs, np.full_like(xs, int(scalar(b)))), a
    return table_lookup(x, table)
