"""`cloudcover compile`: model.json contents, the generated driver, and clear failures."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from cloudcover.riscv.cli import main as cli_main

pytestmark = pytest.mark.slow


def test_model_json(compiled, artifacts):
    info = json.loads((compiled / "model" / "rv64gc" / "model.json").read_text())
    quant = json.loads((artifacts / "quant.json").read_text())
    assert info["input"]["shape"] == [1, 32, 32, 3] and info["input"]["dtype"] == "int8"
    assert info["input"]["scale"] == quant["input"]["scale"]
    assert info["output"]["zero_point"] == quant["output"]["zero_point"]
    assert info["class_names"] == ["clear", "thin", "thick"]
    # conv 3x3x3->8 @16x16, dw 3x3 @16x16x8, 1x1 8->8 @16x16, conv 3x3x8->16 @8x8, dense 16->3
    assert info["macs"] == 16 * 16 * 8 * 27 + 16 * 16 * 8 * 9 + 16 * 16 * 8 * 8 + 8 * 8 * 16 * 72 + 16 * 3
    assert info["weights_bytes"] > 0 and info["arena_bytes"] > 0
    # the int8 kernels requantize on the conv/matmul accumulator (lowering.schedule_kernels): no kernel
    # allocates a per-op intermediate tensor; the tuned tiles (export/schedules.py) hold only their
    # accumulator tile (8 int32 = 32 B, one 64 B block + the runtime's 64 B header)
    assert info["workspace_bytes"] <= 128
    assert info["int8_compute"] is True and info["float_ops"] == []  # default: integer kernels, none left in float
    assert set(info["steps"]) == set(info["kernels"])
    c = (compiled / "model" / "rv64gc" / "model.c").read_text()
    assert "cc_model_run" in c and "malloc" not in c
    assert (compiled / "model" / "rv64gc" / "kernels.o").read_bytes()[:4] == b"\x7fELF"


def _patch_op(src: Path, dst: Path, old: str, new: str) -> None:
    """Rewrite one operator code of a TFLite flatbuffer (e.g. MEAN -> an operator TVM cannot import)."""
    import tflite
    from tflite.BuiltinOperator import BuiltinOperator as B

    buf = bytearray(src.read_bytes())
    m = tflite.Model.GetRootAsModel(buf, 0)
    for i in range(m.OperatorCodesLength()):
        oc = m.OperatorCodes(i)
        if oc.BuiltinCode() == getattr(B, old):
            code = getattr(B, new)
            struct.pack_into("<i", buf, oc._tab.Pos + oc._tab.Offset(10), code)
            struct.pack_into("<b", buf, oc._tab.Pos + oc._tab.Offset(4), min(code, 127))
    dst.write_bytes(bytes(buf))


def test_unsupported_operator(artifacts, tmp_path, capsys):
    bad = tmp_path / "model_int8.tflite"
    _patch_op(artifacts / "model_int8.tflite", bad, "MEAN", "DYNAMIC_UPDATE_SLICE")
    out = tmp_path / "out"
    assert cli_main(["compile", "--model", str(bad), "--target", "rv64gc", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "cloudcover compile: error:" in err and "DYNAMIC_UPDATE_SLICE" in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()  # never a half-written build folder


def test_missing_model(tmp_path, capsys):
    assert cli_main(["compile", "--model", str(tmp_path / "nope.tflite"), "--out", str(tmp_path / "o")]) == 1
    assert "model file not found" in capsys.readouterr().err
