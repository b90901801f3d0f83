"""Scalar (rv64gc) schedule family: SIMD within a 64-bit register (two int32 lanes per multiply).

Placeholder: declines every kernel, so the generic schedules of schedules.py apply."""

from __future__ import annotations


def schedule(func, found, vector: bool, choose):
    return None
