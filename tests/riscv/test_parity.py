"""The riscv64 binaries under qemu-riscv64: parity with TFLite's reference kernels and the float model, and the
bench report, for both targets (real cross compiler, real QEMU)."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

from cloudcover.riscv import qemu
from cloudcover.riscv.cli import main as cli_main
from cloudcover.riscv.report import REQUIRED_KEYS

pytestmark = [pytest.mark.slow, pytest.mark.device]


def test_static_riscv_elf(riscv_built):
    for name in ("cloudcover-infer", "cloudcover-infer-rv64gcv"):
        out = subprocess.run(["file", str(riscv_built / "riscv64" / name)], capture_output=True, text=True).stdout
        assert "UCB RISC-V" in out and "statically linked" in out


@pytest.fixture(scope="module")
def bench(riscv_built, artifacts, tmp_path_factory):
    out = tmp_path_factory.mktemp("reports")
    rc = cli_main(["bench", "--artifacts", str(artifacts), "--build", str(riscv_built), "--targets",
                   "rv64gc,rv64gcv", "--out", str(out)])
    assert rc == 0
    return json.loads((out / "bench.json").read_text()), (out / "bench.md").read_text()


@pytest.mark.parametrize("target", ["rv64gc", "rv64gcv"])
def test_parity(bench, target, riscv_built, artifacts, tmp_path):
    entries, md = bench
    e = next(e for e in entries if e["target"] == target)
    assert set(REQUIRED_KEYS) <= set(e)
    assert e["top1_agreement_tflite"] >= 0.99, e
    assert e["top1_agreement_float"] >= 0.99, e
    assert e["int8_compute"] is True
    assert e["max_abs_diff_lsb"] == 0  # integer kernels: bit-exact with TFLite's reference kernels
    assert e["macs"] == TINY_MACS  # compile counts them on the Relax IR; the oracle is the architecture itself
    if qemu.find_emulator().counts:
        # Re-measured here with QEMU run directly (not the harness) on 1 and on 3 images: the difference is two
        # inferences, start-up cancels out. The bench measures N images against 0.
        per_image = direct_count(riscv_built, target, artifacts, 3, tmp_path) - direct_count(
            riscv_built, target, artifacts, 1, tmp_path)
        assert e["instructions_per_inference"] == pytest.approx(per_image / 2, rel=0.02)
        if target == "rv64gc":  # RV64GC has no integer multiply-accumulate: a MAC is at least a mul and an add
            assert e["instructions_per_inference"] >= 2 * TINY_MACS
        # the per-kernel profile: its kernel calls plus the driver add up to the directly measured inference
        prof = e["profile"]
        total = sum(c["instructions"] for c in prof["calls"]) + prof["runtime_instructions"]
        assert total == pytest.approx(per_image / 2, rel=0.01)
        assert sum(c["macs"] for c in prof["calls"]) == TINY_MACS
        assert "Top kernels" in md
    else:
        assert e["instructions_per_inference"] is None
    assert target in md and "How each figure was measured" in md


# MACs of tests/riscv/conftest.build_model at 32x32x3, by hand: output elements x reduction length per layer.
TINY_MACS = (16 * 16 * 8 * (3 * 3 * 3)  # conv 3x3 stride 2, 3 -> 8 channels
             + 16 * 16 * 8 * (3 * 3)  # depthwise 3x3
             + 16 * 16 * 8 * 8  # pointwise 8 -> 8
             + 8 * 8 * 16 * (3 * 3 * 8)  # conv 3x3 stride 2, 8 -> 16
             + 3 * 16)  # dense 16 -> 3


def direct_count(build, target: str, artifacts, n: int, tmp_path) -> int:
    """Guest instructions of one cloudcover-infer run on the first `n` test images: qemu-riscv64 with the insn
    plugin, started here the way the toolchain notes give it (env -i, fixed relative file names)."""
    import re

    from cloudcover.export.targets import get_target
    from cloudcover.riscv.harness import Artifacts

    emu = qemu.find_emulator()
    binary = build / "riscv64" / ("cloudcover-infer" if target == "rv64gc" else f"cloudcover-infer-{target}")
    work = tmp_path / f"{target}-{n}"
    work.mkdir()
    (work / "in.bin").write_bytes(Artifacts.load(artifacts).int8_inputs()[:n].tobytes())
    p = subprocess.run(["env", "-i", str(emu.qemu), "-cpu", get_target(target).qemu_cpu, "-plugin",
                        f"{emu.plugin},inline=on", "-d", "plugin", str(binary), "in.bin", "out.bin"],
                       cwd=work, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-500:]
    assert (work / "out.bin").stat().st_size == n * 3  # one int8 score per class and image
    return int(re.search(r"total insns: (\d+)", p.stdout + p.stderr).group(1))


def test_instruction_counts_are_deterministic(riscv_built, artifacts, tmp_path):
    emu = qemu.find_emulator()
    if not emu.counts:
        pytest.skip("plugin QEMU not built (make qemu)")
    binary = riscv_built / "riscv64" / "cloudcover-infer"
    x = np.zeros((2, 32, 32, 3), np.int8).tobytes()
    a = qemu.run_infer(emu, binary, "rv64gc", x, tmp_path / "a")
    b = qemu.run_infer(emu, binary, "rv64gc", x, tmp_path / "b")
    assert a.instructions == b.instructions and a.output == b.output


def test_wrong_input_size_is_refused(riscv_built, tmp_path):
    emu = qemu.find_emulator()
    (tmp_path / "in.bin").write_bytes(b"\0" * (32 * 32 * 3 + 1))
    p = subprocess.run([str(emu.qemu), "-cpu", "rv64", str(riscv_built / "riscv64" / "cloudcover-infer"), "in.bin",
                        "out.bin"], cwd=tmp_path, capture_output=True, text=True)
    assert p.returncode == 2
    assert "3073 bytes is not a whole number of model inputs (3072 bytes each)" in p.stderr
    assert not (tmp_path / "out.bin").exists() and not (tmp_path / "out.bin.part").exists()
