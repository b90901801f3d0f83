"""Integer lowerings of quantized TFLite operators, one module per operator.

Each module holds the dpl pattern of the importer's float route for its operator, the integer rewrite that
reproduces TFLite's reference kernel (BUILTIN_REF) bit for bit, and a numpy reference of the same arithmetic;
it registers a `registry.Lowering`. Adding an operator is adding a module and its name in the import below
(that order is the order the pass tries the patterns).

    conv        CONV_2D, DEPTHWISE_CONV_2D        dense       FULLY_CONNECTED
    add         ADD, SUB (+ fused activation)     mul         MUL (+ fused activation)
    mean        MEAN                              avg_pool    AVERAGE_POOL_2D
    concat      CONCATENATION                     minmax      MAXIMUM, MINIMUM
    resize      RESIZE_NEAREST_NEIGHBOR, RESIZE_BILINEAR
    hard_swish  HARD_SWISH                        logistic    LOGISTIC
    requantize  QUANTIZE int8 -> int8

ONNX QDQ models (DequantizeLinear -> op -> QuantizeLinear; `source="onnx"`, ONNX's rounding half to even):
    qdq_conv    Conv                              qdq_matmul  Gemm, MatMul
    qdq_binary  Add, Sub, Mul of two tensors      qdq_mean    GlobalAveragePool, ReduceMean
    qdq_avg_pool AveragePool                      qdq_concat  Concat
    qdq_move    Transpose, Reshape, MaxPool ...   qdq_table   functions of one tensor (by a constant, Relu ...)

Shared: requant.py (TFLite's multiplier/shift math), emit.py (Relax construction), binary.py (elementwise
binary patterns), lut.py (256-entry tables), ir.py (IR queries: float_ops, int8_compute). Operators that only
move int8 values (PAD, MAX_POOL_2D, RESHAPE, TILE ...) need no lowering: relax_import.py admits them and
TVM's own kernels are already integer and exact.
"""

from __future__ import annotations

# importing a module registers its lowerings; this order is the order the pass tries them
from . import conv, dense, add, mul, mean, avg_pool, concat, minmax, resize  # noqa: F401,I001
from . import hard_swish, logistic, requantize  # noqa: F401,I001  (after the others: quantize(dequantize(x)) last)
# ONNX QDQ (source="onnx"; ONNX's arithmetic, rounding half to even): the table of a function of one tensor last
from . import qdq_conv, qdq_matmul, qdq_binary, qdq_mean, qdq_avg_pool, qdq_concat, qdq_move  # noqa: F401,I001
from . import qdq_table  # noqa: F401,I001
from .registry import Lowering, lowerings

__all__ = ["Lowering", "lowerings"]
