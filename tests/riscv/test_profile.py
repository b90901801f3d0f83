"""The per-kernel profile (riscv/profile.py) of the tiny model under the plugin QEMU: the kernel calls add up to
the whole inference, counted here independently with QEMU run directly; each kernel's MACs come from its TIR
and add up to the hand count of the architecture."""

from __future__ import annotations

import json
import re
import subprocess

import numpy as np
import pytest

from cloudcover.export.targets import get_target
from cloudcover.riscv import qemu

from .test_parity import TINY_MACS

pytestmark = [pytest.mark.slow, pytest.mark.device]


def _count(binary, target, work, data: bytes, extra=()) -> tuple[int, int]:
    """(exit status, total instructions) of one run started here as the toolchain notes give it."""
    emu = qemu.find_emulator()
    work.mkdir(parents=True, exist_ok=True)
    (work / "in.bin").write_bytes(data)
    p = subprocess.run(["env", "-i", str(emu.qemu), "-cpu", get_target(target).qemu_cpu, "-plugin",
                        f"{emu.plugin},inline=on", "-d", "plugin", str(binary), "in.bin", "out.bin", *extra],
                       cwd=work, capture_output=True, text=True, timeout=300)
    m = re.search(r"total insns: (\d+)", p.stdout + p.stderr)
    return p.returncode, int(m.group(1)) if m else -1


@pytest.mark.parametrize("target", ["rv64gc", "rv64gcv"])
def test_kernels_add_up_to_the_whole_inference(riscv_built, artifacts, target, tmp_path):
    from cloudcover.riscv.harness import Artifacts
    from cloudcover.riscv.profile import profile_model

    if not qemu.find_emulator().counts:
        pytest.skip("plugin QEMU not built (make qemu)")
    binary = riscv_built / "riscv64" / ("cloudcover-infer" if target == "rv64gc" else f"cloudcover-infer-{target}")
    model_dir = riscv_built / "model" / target
    x = Artifacts.load(artifacts).int8_inputs()[:1]
    prof = profile_model(model_dir, binary, x, tmp_path / "prof", log=lambda m: None)
    steps = json.loads((model_dir / "model.json").read_text())["steps"]
    assert [c.kernel for c in prof.calls] == steps
    # the oracle: the same image twice minus once, plain runs started here (start-up cancels out)
    rc2, two = _count(binary, target, tmp_path / "two", x.tobytes() * 2)
    rc1, one = _count(binary, target, tmp_path / "one", x.tobytes())
    assert rc1 == rc2 == 0
    total = sum(c.instructions for c in prof.calls) + prof.runtime_instructions
    assert total == pytest.approx(two - one, rel=0.01)
    assert abs(total - prof.instructions_per_inference) <= 0.01 * prof.instructions_per_inference
    assert all(c.instructions > 0 for c in prof.calls)
    assert sum(c.macs for c in prof.calls) == TINY_MACS
    runtime_share = prof.runtime_instructions / prof.instructions_per_inference  # the driver around the kernels
    assert sum(c.share for c in prof.calls) + runtime_share == pytest.approx(1.0, abs=1e-3)
    if target == "rv64gc":  # no multiply-accumulate instruction: every MAC costs a mul and an add at least
        assert all(c.instructions >= 2 * c.macs for c in prof.calls)
    from cloudcover.riscv.profile import format_top

    md = format_top(json.loads(json.dumps(prof.to_json())), 3)  # from bench.json's stored form
    assert "| kernel | calls |" in md and f"{prof.instructions_per_inference:,}" in md
    top = prof.top(3)
    assert top[0]["instructions"] == max(sum(c.instructions for c in prof.calls if c.kernel == k) for k in steps)


def test_steps_option_is_checked(riscv_built, tmp_path):
    binary = riscv_built / "riscv64" / "cloudcover-infer"
    n = len(json.loads((riscv_built / "model" / "rv64gc" / "model.json").read_text())["steps"])
    emu = qemu.find_emulator()
    (tmp_path / "in.bin").write_bytes(b"")
    for bad in (f"--steps={n + 1}", "--steps=", "--steps=2x"):
        p = subprocess.run([str(emu.qemu), "-cpu", "rv64", str(binary), "in.bin", "out.bin", bad], cwd=tmp_path,
                           capture_output=True, text=True)
        assert p.returncode == 2 and "expected --steps=K" in p.stderr
