"""Bring your own model: ONNX (fp32, QDQ int8) and TFLite (fp32) through `cloudcover compile` -> the C runtime ->
parity with the model's own runtime (onnxruntime CPU, ai-edge-litert BUILTIN_REF), on the host (fast) and under
qemu on rv64gc and rv64gcv (slow). The models are assembled here (byo_models.py): their operators are those of
the usual public classifiers; the references are the runtimes themselves, run on the same inputs."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from cloudcover.riscv import byo
from cloudcover.riscv.cli import main as cli_main

from . import byo_models as bm
from .conftest import needs_device

FP32_RTOL = 1e-4  # the goal: fp32 builds within 1e-4 relative of their runtime, on the logits


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("byo")
    bm.zoo_onnx(d / "zoo.onnx")
    bm.cnn_onnx(d / "cnn.onnx")
    bm.qdq_onnx(d / "cnn.onnx", d / "cnn_int8.onnx", bm.images(64, seed=3))
    bm.inception_onnx(d / "inception.onnx")
    bm.qdq_onnx(d / "inception.onnx", d / "inception_int8.onnx", bm.images(64, seed=3))
    bm.qdq_onnx(d / "inception.onnx", d / "inception_uint8.onnx", bm.images(64, seed=3), activations="uint8")
    bm.qdq_onnx(d / "inception.onnx", d / "inception_qop_int8.onnx", bm.images(64, seed=3), operators=True)
    return d


def _compile(model: Path, target: str, out: Path, compute: str = "auto") -> dict:
    args = ["compile", "--model", str(model), "--target", target, "--out", str(out), "--compute", compute]
    assert cli_main(args) == 0
    return json.loads((out / "model.json").read_text())


def _device(info: dict, model_dir: Path, target: str, x: np.ndarray, work: Path) -> list[np.ndarray]:
    """Real-valued outputs of cloudcover-infer built for `target` (host binary, or qemu for riscv)."""
    from cloudcover.riscv import qemu, toolchain

    exe = toolchain.build_infer(model_dir, work / "cmake", target)
    data = byo.encode_inputs(info, x)
    if target == "host":
        (work / "in.bin").write_bytes(data)
        subprocess.run([str(exe), str(work / "in.bin"), str(work / "out.bin")], check=True)
        raw = (work / "out.bin").read_bytes()
    else:
        raw = qemu.run_infer(qemu.find_emulator(), exe, target, data, work / "qemu", count=False).output
    return byo.as_float(info, byo.decode_outputs(info, raw, len(x)))


def _parity(model: Path, target: str, tmp: Path, x: np.ndarray, compute: str = "auto"):
    info = _compile(model, target, tmp / "model", compute)
    dev = _device(info, tmp / "model", target, x, tmp)
    ref = byo.reference_outputs(model, x)
    return info, byo.compare(dev, ref, info["outputs"])


def test_fp32_onnx_zoo_two_outputs_host(models, tmp_path):
    """BatchNorm, MaxPool, Concat (Inception/SqueezeNet/DenseNet), channel shuffle, AveragePool, residual Add,
    Mul, Clip, Dropout, Identity, LRN, GlobalAveragePool, Shape-derived flatten, Gemm, Softmax; a dynamic batch
    and two outputs."""
    info, rows = _parity(models / "zoo.onnx", "host", tmp_path, bm.images(12, seed=1))
    assert info["compute"] == "float" and info["input"]["dtype"] == "float32" and info["input"]["shape"][0] == 1
    assert [o["dtype"] for o in info["outputs"]] == ["float32", "float32"] and len(rows) == 2
    assert info["outputs"][1]["offset"] % 64 == 0 and info["output_bytes"] == info["outputs"][1]["offset"] + 20
    for r in rows:
        assert r.max_rel <= FP32_RTOL and r.top1_agreement == 1.0, r


@pytest.mark.parametrize("name, ops", [("cnn_int8", {"qdq_conv2d", "qdq_matmul", "qdq_add", "qdq_mean", "qdq_move"}),
                                       ("inception_int8", {"qdq_concat", "qdq_avg_pool2d", "qdq_conv2d"}),
                                       ("inception_uint8", {"qdq_concat", "qdq_avg_pool2d", "qdq_conv2d"}),
                                       ("inception_qop_int8", {"qdq_concat", "qdq_avg_pool2d", "qdq_conv2d"})])
def test_qdq_onnx_integer_host(models, tmp_path, name, ops):
    """An onnxruntime-quantized model (QDQ with int8 or uint8 activations; the operator format, QLinearConv,
    QGemm ...) computes in integers (no float in any kernel) and agrees with onnxruntime; the device reads and
    writes the activations' own dtype."""
    info, rows = _parity(models / f"{name}.onnx", "host", tmp_path, bm.images(40, seed=5))
    assert info["compute"] == "int8" and info["int8_compute"] is True and info["float_ops"] == []
    assert ops <= set(info["int8_ops"])
    act = name.rsplit("_", 1)[1]
    assert info["input"]["dtype"] == info["output"]["dtype"] == act and info["input"]["quantize_on_host"] is True
    (r,) = rows
    assert r.max_lsb <= 1 and r.top1_agreement >= 0.99, r  # see int8ops/qdq_common.py for the 1 LSB


def test_tuples_and_optional_outputs_host(tmp_path):
    """Split (a tuple-valued kernel), unused optional outputs (Dropout mask, MaxPool indices), two outputs."""
    x = np.random.default_rng(4).normal(size=(5, 4, 8, 8)).astype(np.float32)
    info, rows = _parity(bm.split_onnx(tmp_path / "split.onnx"), "host", tmp_path, x)
    assert [o["shape"] for o in info["outputs"]] == [[1, 4, 8, 8], [1, 2, 4, 4]]
    assert all(r.max_rel <= FP32_RTOL for r in rows), rows


def test_qdq_onnx_unet_nearest_resize_host(tmp_path):
    """A UNet-structured QDQ model (nearest Resize x2 as two integer repeats, skip Concat): integer compute, its
    mask logits at most 1 LSB from onnxruntime on this small net."""
    bm.unet_onnx(tmp_path / "unet.onnx")
    model = bm.qdq_onnx(tmp_path / "unet.onnx", tmp_path / "unet_int8.onnx", bm.images(48, seed=3))
    info, (r,) = _parity(model, "host", tmp_path, bm.images(8, seed=5))
    assert info["int8_compute"] is True and "qdq_move" in info["int8_ops"] and info["output"]["shape"] == [1, 1, 16, 16]
    assert r.max_lsb <= 1 and r.mask_agreement >= 0.99 and r.top1_agreement is None, r


def test_fp32_tflite_host(tmp_path):
    model = bm.keras_fp32_tflite(tmp_path / "model_fp32.tflite")
    x = bm.images(10, seed=2, nchw=False)
    info, (r,) = _parity(model, "host", tmp_path, x)
    assert info["compute"] == "float" and info["output"]["dtype"] == "float32"
    assert r.max_rel <= FP32_RTOL and r.top1_agreement == 1.0, r


def test_int8_tflite_with_float_io_host(tmp_path):
    """A TFLite int8 model with float input and output: integer compute on the device (int8 in and out, the edge
    QUANTIZE/DEQUANTIZE on the host with TFLite's rounding), 0 LSB against ai-edge-litert's reference kernels."""
    model = bm.keras_int8_float_io_tflite(tmp_path / "float_io_int8.tflite")
    info, (r,) = _parity(model, "host", tmp_path, bm.images(16, seed=2, nchw=False))
    assert info["compute"] == "int8" and info["int8_compute"] is True
    assert info["input"]["dtype"] == "int8" and info["input"]["rounding"] == "half_away_from_zero"
    assert r.max_lsb == 0, r


def test_uint8_input_int8_output_host(tmp_path):
    """The model's own dtypes reach the runtime: uint8 pixels in, an int8 QuantizeLinear output out."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(0, 0.5, (4, 3, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(np.array(1 / 255, np.float32), "k"),
             numpy_helper.from_array(np.array(0.02, np.float32), "s"),
             numpy_helper.from_array(np.array(-10, np.int8), "z")]
    n = helper.make_node
    g = helper.make_graph([n("Cast", ["x"], ["xf"], to=TensorProto.FLOAT), n("Mul", ["xf", "k"], ["xs"]),
                           n("Conv", ["xs", "w"], ["c"], pads=[1, 1, 1, 1]), n("GlobalAveragePool", ["c"], ["g"]),
                           n("Flatten", ["g"], ["f"]), n("QuantizeLinear", ["f", "s", "z"], ["y"])], "u8",
                          [helper.make_tensor_value_info("x", TensorProto.UINT8, [1, 3, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.INT8, [1, 4])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(tmp_path / "u8.onnx"))
    x = rng.integers(0, 256, (6, 3, 8, 8)).astype(np.uint8)
    info = _compile(tmp_path / "u8.onnx", "host", tmp_path / "model", "float")
    assert info["input"]["dtype"] == "uint8" and info["output"]["dtype"] == "int8"
    exe, data = _raw_host(info, tmp_path / "model", x, tmp_path)
    raw = byo.decode_outputs(info, data, len(x))[0]
    (ref,) = byo.reference_outputs(tmp_path / "u8.onnx", x)
    assert raw.dtype == np.int8 and np.abs(raw.astype(int) - ref.astype(int)).max() <= 1
    table = json.loads(subprocess.run([str(exe), "--info"], capture_output=True, text=True, check=True).stdout)
    assert table["input_dtype"] == "uint8" and table["output_dtypes"] == "int8" and table["num_outputs"] == 1
    assert table["input_bytes"] == 3 * 8 * 8 and table["output_bytes"] == 4


def _raw_host(info, model_dir, x, work) -> tuple[Path, bytes]:
    from cloudcover.riscv import toolchain

    exe = toolchain.build_infer(model_dir, work / "cmake", "host")
    (work / "in.bin").write_bytes(byo.encode_inputs(info, x))
    subprocess.run([str(exe), str(work / "in.bin"), str(work / "out.bin")], check=True)
    return exe, (work / "out.bin").read_bytes()


def _one_node(path: Path, op: str, in_type=None, out_type=None, **attrs) -> Path:
    import onnx
    from onnx import TensorProto, helper

    in_type = in_type or TensorProto.FLOAT
    out_type = out_type or TensorProto.FLOAT
    g = helper.make_graph([helper.make_node(op, ["x"], ["y"], **attrs)], "bad",
                          [helper.make_tensor_value_info("x", in_type, [1, 8, 2])],
                          [helper.make_tensor_value_info("y", out_type, [1, 8, 2])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


@pytest.mark.parametrize("case", ["operator", "dtype", "int8_operator", "not_onnx"])
def test_bad_models_one_line_nothing_written(models, tmp_path, capsys, case):
    from onnx import TensorProto

    if case == "operator":
        model, want = _one_node(tmp_path / "dft.onnx", "DFT"), "DFT"
    elif case == "dtype":
        model, want = _one_node(tmp_path / "half.onnx", "Relu", TensorProto.FLOAT16, TensorProto.FLOAT16), "float16"
    elif case == "int8_operator":  # QDQ around an operator without an integer lowering, compiled for int8
        bm.qdq_onnx(models / "zoo.onnx", tmp_path / "zoo_int8.onnx", bm.images(16, seed=3))
        model, want = tmp_path / "zoo_int8.onnx", "softmax"
    else:
        model, want = tmp_path / "junk.onnx", "not an ONNX model"
        model.write_bytes(b"\x01\x02 not a protobuf")
    out = tmp_path / "out"
    assert cli_main(["compile", "--model", str(model), "--target", "host", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "cloudcover compile: error:" in err and want in err, err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.slow
@needs_device
@pytest.mark.parametrize("target", ["rv64gc", "rv64gcv"])
def test_byo_models_under_qemu(models, tmp_path, target):
    """The same three formats and dtypes as the host tests, cross-built and run under qemu-riscv64."""
    _, rows = _parity(models / "zoo.onnx", target, tmp_path / "zoo", bm.images(4, seed=1))
    assert all(r.max_rel <= FP32_RTOL for r in rows), rows
    info, (r,) = _parity(models / "cnn_int8.onnx", target, tmp_path / "qdq", bm.images(20, seed=5))
    assert info["int8_compute"] is True and r.max_lsb <= 1 and r.top1_agreement >= 0.99, r
    model = bm.keras_fp32_tflite(tmp_path / "model_fp32.tflite")
    _, (r,) = _parity(model, target, tmp_path / "tfl", bm.images(4, seed=2, nchw=False))
    assert r.max_rel <= FP32_RTOL, r


@pytest.mark.slow
@needs_device
@pytest.mark.parametrize("target", ["rv64gc", "rv64gcv"])
def test_exported_onnx_models_under_qemu(artifacts, tmp_path, target):
    """`cloudcover export`'s model_int8.onnx compiles with integer compute and agrees top-1 with onnxruntime
    on >= 99 % of the test images (at most 1 LSB apart); model_fp32.onnx within 1e-4 relative."""
    x = np.load(artifacts / "testset.npz")["x"]
    info, (r,) = _parity(artifacts / "model_int8.onnx", target, tmp_path / "int8", x)
    assert info["int8_compute"] is True and info["float_ops"] == []
    assert r.top1_agreement >= 0.99 and r.max_lsb <= 1, r
    _, (r,) = _parity(artifacts / "model_fp32.onnx", target, tmp_path / "fp32", x[:8])
    assert r.max_rel <= FP32_RTOL, r


@needs_device
def test_build_verb(models, tmp_path, capsys):
    """`cloudcover build` cross-builds any compiled folder for the target it was compiled for, and refuses another."""
    from cloudcover.riscv.toolchain import elf_section_sizes

    _compile(models / "cnn_int8.onnx", "rv64gcv", tmp_path / "model")
    assert cli_main(["build", "--model-dir", str(tmp_path / "model"), "--out", str(tmp_path / "bin")]) == 0
    exe = tmp_path / "bin" / "cloudcover-infer-rv64gcv"
    assert exe.read_bytes()[18:20] == (243).to_bytes(2, "little")  # e_machine EM_RISCV
    assert elf_section_sizes(exe)[".text"] > 0 and "cloudcover-infer-rv64gcv" in capsys.readouterr().out
    assert cli_main(["build", "--model-dir", str(tmp_path / "model"), "--target", "rv64gc",
                     "--out", str(tmp_path / "bin2")]) == 1
    assert "compiled for rv64gcv, not rv64gc" in capsys.readouterr().err and not (tmp_path / "bin2").exists()


@pytest.mark.slow
def test_export_embeds_metadata_compile_reads_it(artifacts, tmp_path):
    """`cloudcover export` writes task, class names and quantization into the model files; a model file copied
    alone (no quant.json or preprocess.json beside it) compiles with them, from the file itself."""
    import shutil

    from cloudcover.export import model_meta, tflite_export

    quant = json.loads((artifacts / "quant.json").read_text())
    meta = model_meta.read_embedded(artifacts / "model_int8.tflite")
    assert meta["class_names"] == quant["class_names"] and meta["task"] == quant["task"]
    qin, qout = tflite_export.io_quant(artifacts / "model_int8.tflite")  # the flatbuffer's own tensors
    assert meta["input"]["scale"] == qin.scale and meta["output"]["zero_point"] == qout.zero_point
    for name in ("model_fp32.onnx", "model_int8.onnx"):
        assert model_meta.read_embedded(artifacts / name)["class_names"] == quant["class_names"]
    for name in ("model_int8.tflite", "model_int8.onnx"):
        lone = tmp_path / name.replace(".", "_") / name
        lone.parent.mkdir()
        shutil.copy(artifacts / name, lone)
        info = _compile(lone, "host", lone.parent / "out")
        assert info["class_names"] == quant["class_names"] and info["task"] == quant["task"]
        assert info["metadata_from"] == "model metadata"


@pytest.mark.slow
@needs_device
def test_byo_bench_int8_next_to_float(models, tmp_path):
    """byo_bench (what `cloudcover bench --model` runs): the QDQ build and its float counterpart on the same
    inputs under the instruction-counting QEMU; parity with onnxruntime, the float/int8 ratios measured."""
    from cloudcover.riscv import byo_bench, qemu

    np.savez(tmp_path / "in.npz", x=bm.images(6, seed=7), y=np.arange(6) % 4)
    rep = byo_bench.bench(models / "cnn_int8.onnx", tmp_path / "in.npz", ["rv64gcv"], tmp_path / "rep",
                          float_model=models / "cnn.onnx", log=lambda m: None)
    int8, fp32 = rep["rows"]
    assert int8["compute"] == "int8" and int8["int8_compute"] and fp32["compute"] == "float"
    assert int8["vs_own_runtime"][0]["max_lsb"] <= 1 and fp32["vs_own_runtime"][0]["max_rel"] <= FP32_RTOL
    assert int8["weights_bytes"] < fp32["weights_bytes"]  # int8 weights against float32 weights
    if qemu.find_emulator().counts:
        assert int8["instructions_per_inference"] > 0 and int8["float_over_int8_instructions_per_inference"] > 0
    assert json.loads((tmp_path / "rep" / "byo_bench.json").read_text())["n_inputs"] == 6
    assert "| cnn_int8.onnx | rv64gcv | int8 |" in (tmp_path / "rep" / "byo_bench.md").read_text()
