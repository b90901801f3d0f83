"""Faster int8 kernel schedules, chosen per operator, shape and target (on top of lowering.schedule_kernels).

`schedule_module` is what a plain compile uses ("tuned" schedules).
"""

from __future__ import annotations


def schedule_module(mod, vector: bool = False):
    from .lowering import schedule_kernels

    return schedule_kernels(mod, vector)
