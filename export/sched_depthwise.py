"""Depthwise convolution and non-MAC kernels (pooling, elementwise, requantization tails).

Placeholder: declines every kernel, so the generic schedules of schedules.py apply."""

from __future__ import annotations


def schedule(func, found, vector: bool, choose):
    return None
