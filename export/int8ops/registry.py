"""The registry of integer lowerings: one `Lowering` per quantized pattern, each defined in its own module.

A lowering matches the TFLite importer's float route for one operator (dequantize -> float op -> quantize,
found with `tvm.relax.dpl`) and returns the integer arithmetic of TFLite's reference kernel, or None to leave
the match alone (e.g. an attribute it does not handle); what is left is named by `float_ops`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Lowering:
    name: str  # key of model.json's int8_ops (the Relax op it replaces, e.g. "conv2d")
    tflite_ops: tuple[str, ...]  # TFLite builtins it lowers (documentation and messages)
    pattern: Callable[[], tuple[object, dict]]  # () -> (root dpl pattern, {part name: sub-pattern}); lazy (tvm)
    rewrite: Callable[[dict, dict], object]  # (matches, parts) -> integer relax.SeqExpr, or None: leave it
    source: str = "tflite"  # whose importer's patterns and whose arithmetic: "tflite" or "onnx" (QDQ)


_REGISTRY: dict[str, Lowering] = {}


def register(lowering: Lowering) -> Lowering:
    """Add a lowering; names are unique (a second one of the same name is a programming error)."""
    if lowering.name in _REGISTRY:
        raise ValueError(f"int8 lowering {lowering.name!r} is registered twice")
    _REGISTRY[lowering.name] = lowering
    return lowering


def lowerings(source: str | None = "tflite") -> list[Lowering]:
    """The registered lowerings of one model format (`source`; None: all), in registration order (the order
    the pass tries them)."""
    return [low for low in _REGISTRY.values() if source is None or low.source == source]
