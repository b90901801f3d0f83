"""Liveness-based static memory plan for the intermediates of a straight-line graph (pure Python).

Like TFLite Micro's greedy planner: each buffer is (size, first_use, last_use) in step numbers, inclusive;
buffers are placed largest first at the lowest aligned offset that does not overlap any already placed buffer
whose lifetime intersects its own. A kernel's output lives from its own step on, so it never aliases that
kernel's inputs (their lifetimes meet at that step).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Buffer:
    name: str
    size: int
    first_use: int
    last_use: int


@dataclass(frozen=True)
class Plan:
    offsets: dict[str, int]  # buffer name -> byte offset in the arena
    arena_bytes: int  # high-water mark, rounded up to the alignment
    alignment: int


def _align(n: int, a: int) -> int:
    return (n + a - 1) // a * a


def lifetimes_overlap(a: Buffer, b: Buffer) -> bool:
    return a.first_use <= b.last_use and b.first_use <= a.last_use


def plan_memory(buffers: list[Buffer], alignment: int = 64) -> Plan:
    """Place every buffer; the plan is deterministic for a given input."""
    names = [b.name for b in buffers]
    if len(set(names)) != len(names):
        raise ValueError("buffer names must be unique")
    for b in buffers:
        if b.size < 0 or b.first_use > b.last_use:
            raise ValueError(f"bad buffer {b}")
    order = sorted(buffers, key=lambda b: (-b.size, b.first_use, b.name))
    placed: list[tuple[int, Buffer]] = []
    for buf in order:
        clashes = sorted(((off, other) for off, other in placed if lifetimes_overlap(buf, other)), key=lambda p: p[0])
        offset = 0
        for off, other in clashes:  # first gap big enough, scanning upwards
            if offset + buf.size <= off:
                break
            offset = max(offset, _align(off + other.size, alignment))
        placed.append((offset, buf))
    high = max((off + b.size for off, b in placed), default=0)
    return Plan({b.name: off for off, b in placed}, _align(high, alignment), alignment)


def check_plan(buffers: list[Buffer], plan: Plan) -> None:
    """Raise AssertionError if two buffers with overlapping lifetimes overlap in memory, or one leaves the arena."""
    for b in buffers:
        off = plan.offsets[b.name]
        assert off % plan.alignment == 0, f"{b.name} misaligned at {off}"
        assert off + b.size <= plan.arena_bytes, f"{b.name} [{off}, {off + b.size}) past arena {plan.arena_bytes}"
    for i, a in enumerate(buffers):
        for b in buffers[i + 1:]:
            if lifetimes_overlap(a, b):
                oa, ob = plan.offsets[a.name], plan.offsets[b.name]
                assert oa + a.size <= ob or ob + b.size <= oa, (
                    f"live buffers overlap: {a.name} [{oa}, {oa + a.size}) and {b.name} [{ob}, {ob + b.size})")
