"""What the elementwise int8 -> int8 lowerings share (HARD_SWISH, LOGISTIC, QUANTIZE int8 -> int8).

A unary int8 function has only 256 inputs: its table is computed at compile time with the integer (or, where
TFLite itself builds a table, float32) arithmetic of TFLite's reference kernel, and looked up per element
(emit.table_lookup; lowering.py fuses the lookup with its neighbours).
"""

from __future__ import annotations

import numpy as np

from .emit import dtype, scalar
from .requant import multiply_by_quantized_multiplier, rescale_multiplier

XS = np.arange(-128, 128, dtype=np.int64)  # every int8 input, in table order


def unary_params(m, p):
    """(x, (s_in, z_in, s_out, z_out)) of quantize(f(dequantize(x))) with int8 in and out, else None."""
    x, q = m[p["x"]], m[p["q"]]
    if dtype(x) != "int8" or q.attrs.out_dtype != "int8":
        return None
    try:
        return x, (scalar(m[p["sx"]]), int(scalar(m[p["zx"]])), scalar(q.args[1]), int(scalar(q.args[2])))
    except ValueError:  # per-channel parameters
        return None


def float_lut(s_in, z_in, s_out, z_out, fn) -> np.ndarray:
    """LUTPopulate: dequantize in float32, transform, multiply by float32 1/s_out, round half away from
    zero, add the zero point, clamp."""
    with np.errstate(over="ignore"):
        deq = np.float32(s_in) * (XS - z_in).astype(np.float32)
        y = fn(deq.astype(np.float32)).astype(np.float32) * (np.float32(1.0) / np.float32(s_out))
    r = np.sign(y) * np.floor(np.abs(y) + np.float32(0.5))
    return np.clip(r.astype(np.int64) + z_out, -128, 127).astype(np.int8)


def requantize_table(s_in, z_in, s_out, z_out) -> np.ndarray:
    """reference_ops::Requantize: MultiplyByQuantizedMultiplier(x - z_in, s_in / s_out) + z_out, clamped."""
    m, s = rescale_multiplier(s_in, s_out)
    return np.clip(multiply_by_quantized_multiplier(XS - z_in, m, s) + z_out, -128, 127).astype(np.int8)
