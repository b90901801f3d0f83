"""QUANTIZE int8 -> int8 (a requantization, e.g. before a CONCATENATION): reference_ops::Requantize,
MultiplyByQuantizedMultiplier(x - z_in, s_in / s_out) + z_out, as a 256-entry table."""

from __future__ import annotations

from .emit import table_lookup
from .lut import requantize_table, unary_params
from .registry import Lowering, register


def _pattern():
    from tvm.relax.dpl import is_const, is_op, wildcard

    x, sx, zx = wildcard(), is_const(), is_const()
    q = is_op("relax.quantize")(is_op("relax.dequantize")(x, sx, zx), is_const(), is_const())
    return q, dict(x=x, sx=sx, zx=zx, q=q)


def _rewrite(m, p):
    found = unary_params(m, p)
    return None if found is None else table_lookup(found[0], requantize_table(*found[1]))


LOWERING = register(Lowering("requantize", ("QUANTIZE",), _pattern, _rewrite))
