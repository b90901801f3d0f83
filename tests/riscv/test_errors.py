"""Missing tools and missing build outputs: one clear line naming what to run."""

from __future__ import annotations

import shutil

import pytest

from cloudcover.riscv import qemu, toolchain
from cloudcover.riscv.cli import main as cli_main
from cloudcover.train.errors import CloudcoverError


def _hide(monkeypatch, *names):
    real = shutil.which
    monkeypatch.setattr(shutil, "which", lambda n, *a, **k: None if n in names else real(n, *a, **k))


def test_missing_cross_compiler(monkeypatch, tmp_path):
    _hide(monkeypatch, "riscv64-linux-gnu-gcc")
    (tmp_path / "model.c").write_text("")
    with pytest.raises(CloudcoverError, match=r"riscv64-linux-gnu-gcc.*make setup"):
        toolchain.build_infer(tmp_path, tmp_path / "b", "rv64gc")


def test_missing_qemu(monkeypatch, tmp_path):
    _hide(monkeypatch, "qemu-riscv64")
    monkeypatch.setenv("CLOUDCOVER_QEMU_DIR", str(tmp_path / "no-qemu"))
    with pytest.raises(CloudcoverError, match="qemu-riscv64 not found.*make setup"):
        qemu.find_emulator()


def test_bench_without_build(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CLOUDCOVER_QEMU_DIR", str(tmp_path / "no-qemu"))
    _hide(monkeypatch, "qemu-riscv64")
    rc = cli_main(["bench", "--artifacts", str(tmp_path), "--build", str(tmp_path), "--out", str(tmp_path / "r")])
    assert rc == 1
    err = capsys.readouterr().err
    assert err.startswith("cloudcover bench: error:") and "make setup" in err


def test_bench_rejects_unknown_target(tmp_path, capsys):
    assert cli_main(["bench", "--artifacts", str(tmp_path), "--targets", "x86", "--out", str(tmp_path)]) == 1
    assert "unknown target" in capsys.readouterr().err


def test_elf_sizes_refuse_non_elf(tmp_path):
    (tmp_path / "x").write_bytes(b"not an elf")
    with pytest.raises(CloudcoverError, match="not a 64-bit little-endian ELF"):
        toolchain.elf_section_sizes(tmp_path / "x")
