"""The liveness memory planner: live buffers never overlap, the arena never exceeds the sum of the buffers."""

from __future__ import annotations

import json
import random
import re

import pytest

from cloudcover.export.memplan import Buffer, check_plan, lifetimes_overlap, live_peak, plan_memory


def test_chain_reuses_memory():
    # a -> b -> c -> d: a and c never live together, so they can share bytes
    bufs = [Buffer("a", 1000, 0, 1), Buffer("b", 1000, 1, 2), Buffer("c", 1000, 2, 3), Buffer("d", 1000, 3, 4)]
    plan = plan_memory(bufs, alignment=64)
    check_plan(bufs, plan)
    assert plan.arena_bytes == 2 * 1024
    assert plan.offsets["a"] == plan.offsets["c"]


def test_chain_where_the_largest_first_greedy_misses_by_a_buffer():
    """The demo classifier's chain (pad and conv outputs, 64-byte alignment): largest first, `c` (55296 B, live
    with `b` and `d`) misses the gap between them by 64 bytes and goes on top; the best plan stacks it under `d`.
    Hand-computed: the largest live pair is d + e = 110592 + 115248; e at 0, d above it at 115264 (aligned), c at 0
    and b (live with c only) at 55296 -> arena 115264 + 110592 = 225856."""
    bufs = [Buffer("a", 55296, 2, 3), Buffer("b", 60000, 3, 4), Buffer("c", 55296, 4, 5), Buffer("d", 110592, 5, 6),
            Buffer("e", 115248, 6, 7), Buffer("f", 27648, 7, 8)]
    greedy = plan_memory(bufs, alignment=64, rounds=0)
    assert greedy.arena_bytes == 115264 + 110592 + 55296  # c on top of d: 24 % over the bound
    plan = plan_memory(bufs, alignment=64)
    check_plan(bufs, plan)
    assert live_peak(bufs) == 110592 + 115248 and plan.arena_bytes == 225856


def test_kernel_output_never_aliases_its_input():
    bufs = [Buffer("in", 256, 0, 1), Buffer("out", 256, 1, 2)]
    plan = plan_memory(bufs)
    assert plan.offsets["in"] != plan.offsets["out"]


@pytest.mark.parametrize("seed", range(20))
def test_random_lifetimes(seed):
    rng = random.Random(seed)
    bufs = []
    for i in range(rng.randint(1, 40)):
        first = rng.randint(0, 30)
        bufs.append(Buffer(f"t{i}", rng.randint(1, 5000), first, first + rng.randint(0, 8)))
    plan = plan_memory(bufs, alignment=16)
    check_plan(bufs, plan)
    assert plan.arena_bytes <= sum((b.size + 15) // 16 * 16 for b in bufs)
    peak = max(sum(b.size for b in bufs if b.first_use <= s <= b.last_use) for s in range(40))
    assert plan.arena_bytes >= peak and live_peak(bufs) == peak
    assert plan.arena_bytes <= plan_memory(bufs, alignment=16, rounds=0).arena_bytes  # never above the plain greedy


def test_check_plan_catches_overlap():
    bufs = [Buffer("a", 100, 0, 2), Buffer("b", 100, 1, 3)]
    from cloudcover.export.memplan import Plan

    with pytest.raises(AssertionError, match="live buffers overlap"):
        check_plan(bufs, Plan({"a": 0, "b": 64}, 256, 64))
    assert lifetimes_overlap(bufs[0], bufs[1])


def model_c_tables(src: str) -> tuple[list[dict], list[list[int]], int]:
    """The tables runtime/run.c walks, read back from a generated model.c: every tensor (where, arena offset,
    bytes), every step's tensor indices (output last) and the arena size."""
    tensors = [{"where": m[0], "offset": int(m[1]), "bytes": int(m[2])} for m in
               re.findall(r"\{(CC_\w+), -?\d+, \d+, \d+, (\d+)u, (\d+)u, \w+, shape_\d+\},", src)]
    body = re.search(r"static const uint16_t args\[\] = \{\n(.*?)\n\};", src, re.S).group(1)
    flat = [int(v) for v in re.findall(r"\d+", body)]
    steps = [flat[int(first): int(first) + int(n)] for first, n in
             re.findall(r"\{__tvm_ffi_\w+, \"[^\"]*\", (\d+), (\d+)\},", src)]
    arena = int(re.search(r"\.arena_bytes = (\d+)u", src).group(1))
    return tensors, steps, arena


def check_model_c_arena(model_dir) -> dict:
    """What the generated program does with its arena, checked without the planner: liveness taken from the
    call list model.c runs (a tensor lives from the first step that touches it to the last), then a sweep over
    the steps: the arena ranges of the tensors live at each step are disjoint and inside the arena."""
    tensors, steps, arena = model_c_tables((model_dir / "model.c").read_text())
    assert steps and len(tensors) == 1 + max(max(s) for s in steps)
    live: dict[int, list[int]] = {}
    for k, args in enumerate(steps):
        for i in args:
            if tensors[i]["where"] == "CC_ARENA":
                live.setdefault(i, [k, k])[1] = k
    peak = 0
    for k in range(len(steps)):
        spans = sorted((tensors[i]["offset"], tensors[i]["offset"] + tensors[i]["bytes"], i)
                       for i, (a, b) in live.items() if a <= k <= b)
        for (s0, e0, i0), (s1, e1, i1) in zip(spans, spans[1:]):
            assert e0 <= s1, f"step {k}: tensors {i0} [{s0}, {e0}) and {i1} [{s1}, {e1}) share arena bytes"
        assert all(0 <= s and e <= arena for s, e, _ in spans), f"step {k}: a tensor leaves the {arena} B arena"
        peak = max(peak, sum(e - s for s, e, _ in spans))
    return {"arena": arena, "peak_live": peak, "arena_tensors": sorted(live), "steps": len(steps)}


@pytest.mark.slow
@pytest.mark.parametrize("target", ["rv64gc", "rv64gcv", "host"])
def test_real_model_plan(compiled, target):
    """The compiled tiny model's arena, as model.c lays it out, never lets two live tensors share bytes."""
    model_dir = compiled / "model" / target
    info = json.loads((model_dir / "model.json").read_text())
    got = check_model_c_arena(model_dir)
    # every intermediate of the plan is an arena tensor of model.c; the model output is not (it is the caller's)
    assert len(got["arena_tensors"]) == len(info["memory_plan"]) == got["steps"] - 1
    assert got["arena"] == info["arena_bytes"]
    assert got["peak_live"] <= got["arena"] <= info["intermediate_bytes_sum"]
    assert got["arena"] < info["intermediate_bytes_sum"]  # reuse happened: the chain has dead buffers to recycle
    assert info["live_peak_bytes"] == got["peak_live"]  # the planner's bound, recounted from model.c
    assert got["arena"] <= 1.1 * got["peak_live"]  # #11: at most 10 % above the largest live sum
