"""MAXIMUM and MINIMUM: TFLite's int8 kernel compares the raw int8 values (the converter gives inputs and
output one scale and zero point), so the integer op is the int8 maximum/minimum itself."""

from __future__ import annotations

from . import binary
from .emit import Emitter
from .registry import Lowering, register


def _rewrite(relax_op: str):
    def rewrite(m, p):
        from tvm import relax

        found = binary.operands(m, p)
        if found is None:
            return None
        a, b, s1, z1, s2, z2, so, zo = found
        if not (s1 == s2 == so and z1 == z2 == zo) or p["relu"] in m or p["clip"] in m:
            return None  # not what TFLite computes; leave it (named by float_ops)
        e = Emitter()
        return e.finish(getattr(relax.op, relax_op)(a, b))

    return rewrite


MAXIMUM = register(Lowering("maximum", ("MAXIMUM",), lambda: binary.pattern("relax.maximum"), _rewrite("maximum")))
MINIMUM = register(Lowering("minimum", ("MINIMUM",), lambda: binary.pattern("relax.minimum"), _rewrite("minimum")))
