"""The whole chain on the host, through the user's commands, in about a minute (runs in `make test-fast`).

cloudcover data synth -> data prepare -> train (a few small epochs) -> export -> compile --target host -> the C runtime
built for this machine -> its int8 outputs against TFLite's reference kernels (BUILTIN_REF, the bit-exact
oracle) on the same .tflite and the same int8 inputs: 0 LSB. Every stage reads what the previous one wrote,
so a change to a hand-over format (dataset, run folder, ART_DIR, compiled model folder) fails here.
The riscv64 targets and QEMU are covered by the slow tests in tests/riscv.
"""

from __future__ import annotations

import json
import subprocess

import numpy as np

from cloudcover.riscv.cli import main

SIZE = 32


def cloudcover(*argv: str) -> None:
    assert main([str(a) for a in argv]) == 0, f"cloudcover {' '.join(map(str, argv))} failed"


def tflite_reference(model, xq: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(model_path=str(model), experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    it.allocate_tensors()
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    out = []
    for k in range(len(xq)):
        it.set_tensor(i["index"], xq[k : k + 1])
        it.invoke()
        out.append(it.get_tensor(o["index"]).reshape(-1).copy())
    return np.stack(out)


def test_synth_to_host_binary_is_bit_exact(tmp_path):
    from cloudcover.riscv.toolchain import build_infer

    raw, data, run, art, model = (tmp_path / n for n in ("raw", "dataset", "run", "art", "model"))
    cloudcover("data", "synth", "--out", raw, "--n", 40, "--size", SIZE, "--patches-per-roi", 4, "--seed", 0,
               "--workers", 1, "--quiet")
    cloudcover("data", "prepare", "--source", "cloudsen12", "--input", raw, "--out", data, "--size", SIZE,
               "--workers", 1, "--quiet")
    # Enough steps for batch norm's moving statistics (momentum 0.99) to leave their initial values: with a
    # handful of steps the inference-mode network is dead (every output the same), and 0 LSB would be vacuous.
    cloudcover("train", "--data", data, "--model", "edge_cnn", "--input-size", SIZE, "--epochs", 12,
               "--patience", 12, "--batch-size", 4, "--out", run, "--quiet")
    cloudcover("export", "--run", run, "--out", art, "--calib-samples", 16)
    cloudcover("compile", "--model", art / "model_int8.tflite", "--target", "host", "--out", model)

    info = json.loads((model / "model.json").read_text())
    assert info["int8_compute"] is True and info["class_names"] == json.loads((data / "dataset.json").read_text())["classes"]
    exe = build_infer(model, tmp_path / "cmake", "host")

    # the exported test split, quantized with the input quantization export recorded, plus random int8 images
    quant = json.loads((art / "quant.json").read_text())["input"]
    with np.load(art / "testset.npz") as z:
        x = z["x"]
    assert len(x) > 0 and x.shape[1:] == (SIZE, SIZE, 3)
    xq = np.clip(np.round(x / quant["scale"]) + quant["zero_point"], -128, 127).astype(np.int8)
    xq = np.concatenate([xq, np.random.default_rng(0).integers(-128, 128, (8, SIZE, SIZE, 3)).astype(np.int8)])
    (tmp_path / "in.bin").write_bytes(xq.tobytes())
    subprocess.run([str(exe), "in.bin", "out.bin"], cwd=tmp_path, check=True, capture_output=True, timeout=120)
    dev = np.frombuffer((tmp_path / "out.bin").read_bytes(), np.int8).reshape(len(xq), -1)

    ref = tflite_reference(art / "model_int8.tflite", xq)
    assert dev.shape == ref.shape == (len(xq), len(info["class_names"]))
    assert np.abs(dev.astype(np.int32) - ref.astype(np.int32)).max() == 0
    # a model whose int8 scores are the same for every input would make the 0 LSB above vacuous
    assert len({r.tobytes() for r in ref}) > 1, "the trained model gives the same int8 scores for every input"
