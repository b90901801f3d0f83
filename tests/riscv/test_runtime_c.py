"""The C runtime on the host: unit tests and the compiled tiny model under AddressSanitizer + UBSan (ctest)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from cloudcover.riscv.toolchain import build_infer

pytestmark = pytest.mark.slow


@pytest.mark.skipif(shutil.which("cmake") is None or shutil.which("ctest") is None, reason="cmake missing (make setup)")
def test_ctest_with_sanitizers(compiled, tmp_path):
    build = tmp_path / "host-asan"
    build_infer(compiled / "model" / "host", build, "host", sanitize=True)
    p = subprocess.run(["ctest", "--test-dir", str(build), "--output-on-failure"], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "100% tests passed" in p.stdout


@pytest.mark.device
@pytest.mark.parametrize("target", ["rv64gc", "rv64gcv"])
def test_ctest_cross_under_qemu(riscv_built, target):
    """The same C tests, cross-built for riscv64 and run through qemu-riscv64 (CMAKE_CROSSCOMPILING_EMULATOR)."""
    p = subprocess.run(["ctest", "--test-dir", str(riscv_built / "cmake" / target), "--output-on-failure"],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
