"""LOGISTIC: for int8, TFLite's reference kernel looks up a table that Prepare fills in float32
(1 / (1 + exp(-x)), LUTPopulate); the same table is built here."""

from __future__ import annotations

import numpy as np

from .emit import table_lookup
from .lut import float_lut, unary_params
from .registry import Lowering, register


def logistic_table(s_in, z_in, s_out, z_out) -> np.ndarray:
    one = np.float32(1.0)
    return float_lut(s_in, z_in, s_out, z_out, lambda v: one / (one + np.exp(-v)))


def _pattern():
    from tvm.relax.dpl import is_const, is_op, wildcard

    x, sx, zx = wildcard(), is_const(), is_const()
    q = is_op("relax.quantize")(is_op("relax.sigmoid")(is_op("relax.dequantize")(x, sx, zx)), is_const(), is_const())
    return q, dict(x=x, sx=sx, zx=zx, q=q)


def _rewrite(m, p):
    found = unary_params(m, p)
    return None if found is None else table_lookup(found[0], logistic_table(*found[1]))


LOWERING = register(Lowering("sigmoid", ("LOGISTIC",), _pattern, _rewrite))
