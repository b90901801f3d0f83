"""Map a function over work items on a process pool, in order, with a progress bar."""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
from collections.abc import Callable, Sequence
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    """All cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def pmap(func: Callable[[T], R], items: Sequence[T], workers: int, desc: str, unit: str = "patch",
         progress: bool = True) -> list[R]:
    """[func(x) for x in items] over `workers` processes; the first exception stops the pool and propagates.

    fork (fast, and safe for scripts without a __main__ guard) unless TensorFlow or PyTorch is loaded:
    their thread pools do not survive fork, so then forkserver. One worker runs inline.
    """
    bar = tqdm(total=len(items), desc=desc, unit=unit, disable=not progress, dynamic_ncols=True)
    try:
        if workers <= 1 or len(items) <= 1:
            out = []
            for item in items:
                out.append(func(item))
                bar.update()
            return out
        threaded = any(m in sys.modules for m in ("tensorflow", "torch", "jax"))
        ctx = mp.get_context("forkserver" if threaded else "fork")
        chunk = max(1, min(8, len(items) // (workers * 8)))
        with ctx.Pool(min(workers, len(items))) as pool:
            out = []
            for r in pool.imap(func, items, chunksize=chunk):
                out.append(r)
                bar.update()
            return out
    finally:
        bar.close()
