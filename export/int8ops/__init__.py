"""Integer lowerings of quantized TFLite operators, one module per operator.

Each module holds the dpl pattern of the importer's float route for its operator, the integer rewrite that
reproduces TFLite's reference kernel bit for bit, and a numpy reference of the same arithmetic; it registers
a `registry.Lowering`. Adding an operator is adding a module and its name below (the order is the order the
pass tries the patterns). Shared: requant.py (TFLite's multiplier/shift math), emit.py (Relax construction).
"""

from __future__ import annotations

# importing a module registers its lowerings; this order is the order the pass tries them
from . import conv, dense, add, mul, mean, avg_pool, concat, minmax, resize  # noqa: F401,I001
from . import hard_swish, logistic, requantize  # noqa: F401,I001  (after the others: quantize(dequantize(x)) last)
from .registry import Lowering, lowerings

__all__ = ["Lowering", "lowerings"]
