"""Vector (rv64gcv) schedule family: RVV kernels beyond the generic SLP-vectorized tile.

Placeholder: declines every kernel, so the generic schedules of schedules.py apply."""

from __future__ import annotations


def schedule(func, found, vector: bool, choose):
    return None
