"""The liveness memory planner: live buffers never overlap, the arena never exceeds the sum of the buffers."""

from __future__ import annotations

import json
import random

import pytest

from cloudcover.export.memplan import Buffer, check_plan, lifetimes_overlap, plan_memory


def test_chain_reuses_memory():
    # a -> b -> c -> d: a and c never live together, so they can share bytes
    bufs = [Buffer("a", 1000, 0, 1), Buffer("b", 1000, 1, 2), Buffer("c", 1000, 2, 3), Buffer("d", 1000, 3, 4)]
    plan = plan_memory(bufs, alignment=64)
    check_plan(bufs, plan)
    assert plan.arena_bytes == 2 * 1024
    assert plan.offsets["a"] == plan.offsets["c"]


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
    assert plan.arena_bytes >= peak


def test_check_plan_catches_overlap():
    bufs = [Buffer("a", 100, 0, 2), Buffer("b", 100, 1, 3)]
    from cloudcover.export.memplan import Plan

    with pytest.raises(AssertionError, match="live buffers overlap"):
        check_plan(bufs, Plan({"a": 0, "b": 64}, 256, 64))
    assert lifetimes_overlap(bufs[0], bufs[1])


@pytest.mark.slow
@pytest.mark.parametrize("target", ["rv64gc", "rv64gcv", "host"])
def test_real_model_plan(compiled, target):
    info = json.loads((compiled / "model" / target / "model.json").read_text())
    bufs = [Buffer(b["name"], b["size"], b["first_use"], b["last_use"]) for b in info["memory_plan"]]
    from cloudcover.export.memplan import Plan

    plan = Plan({b["name"]: b["offset"] for b in info["memory_plan"]}, info["arena_bytes"], 64)
    check_plan(bufs, plan)
    assert info["arena_bytes"] <= info["intermediate_bytes_sum"]
    assert len(bufs) == len(info["steps"]) - 1  # every kernel output but the model output lives in the arena
