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
def test_parity(bench, target):
    entries, md = bench
    e = next(e for e in entries if e["target"] == target)
    assert set(REQUIRED_KEYS) <= set(e)
    assert e["top1_agreement_tflite"] >= 0.99, e
    assert e["top1_agreement_float"] >= 0.99, e
    assert e["int8_compute"] is True
    assert e["max_abs_diff_lsb"] == 0  # integer kernels: bit-exact with TFLite's reference kernels
    if qemu.find_emulator().counts:
        assert e["instructions_per_inference"] > e["macs"] * 0.5
        assert e["instructions_per_mac"] == pytest.approx(e["instructions_per_inference"] / e["macs"], rel=1e-2)
    else:
        assert e["instructions_per_inference"] is None
    assert target in md and "How each figure was measured" in md


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
