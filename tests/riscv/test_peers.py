"""Peer runtimes beside cloudcover: the counting math by hand, the runner -> target rule, the TFLite Micro runners
of ../shared/peers on the tiny model (real runners, real plugin QEMU), and a peer that cannot run a model."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from cloudcover.riscv import harness, peers, qemu, report
from cloudcover.riscv.cli import main as cli_main
from cloudcover.train.errors import CloudcoverError

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_PEERS = Path(os.environ.get("CLOUDCOVER_SHARED_PEERS", REPO_ROOT.parent / "shared" / "peers"))
RUNNERS = {"tflm-ref-rv64gc": "rv64gc", "tflm-muriscvnn-rv64gc": "rv64gc", "tflm-muriscvnn-rv64gcv": "rv64gcv"}


@pytest.fixture(scope="session")
def shared_peers() -> Path:
    missing = [n for n in RUNNERS if not (SHARED_PEERS / n).is_file()]
    if missing:
        pytest.skip(f"TFLite Micro runners not found in {SHARED_PEERS} ({', '.join(missing)}): a clone without "
                    "../shared/peers has none; set CLOUDCOVER_SHARED_PEERS to point at them")
    return SHARED_PEERS


# ---------------------------------------------------------------- the math, checked by hand

def test_ratio_from_a_fixed_pair_of_count_files(tmp_path):
    # peer: 4 inferences; 5,000,000 with inputs, 1,000,000 start-up -> 1,000,000 per inference
    (tmp_path / "peer-n.log").write_text("total insns: 5000000\n")
    (tmp_path / "peer-0.log").write_text("total insns: 1000000\n")
    # cloudcover: 4 inferences; 2,600,000 - 600,000 -> 500,000 per inference
    (tmp_path / "cc-n.log").write_text("some other plugin line\ntotal insns: 2600000\n")
    (tmp_path / "cc-0.log").write_text("total insns: 600000\n")
    peer = peers.per_inference_from_logs(tmp_path / "peer-n.log", tmp_path / "peer-0.log", 4)
    cc = peers.per_inference_from_logs(tmp_path / "cc-n.log", tmp_path / "cc-0.log", 4)
    assert peer == 1_000_000 and cc == 500_000
    assert peers.ratio(cc, peer) == 0.5
    assert harness.per_mac(peer, 250_000) == 4.0 and harness.per_mac(cc, 250_000) == 2.0
    assert peers.ratio(None, peer) is None and peers.ratio(cc, None) is None
    (tmp_path / "empty.log").write_text("")
    with pytest.raises(CloudcoverError, match="total insns"):
        peers.per_inference_from_logs(tmp_path / "empty.log", tmp_path / "peer-0.log", 4)
    with pytest.raises(ValueError):
        peers.per_inference(10, 5, 0)


def test_runner_banner_and_exit_codes():
    err = "arena used: 12345 bytes; in 3072 bytes type 9; out 3 bytes type 9\n"
    assert peers.parse_banner(err) == {"arena_bytes": 12345, "in_bytes": 3072, "in_type": 9, "out_bytes": 3,
                                       "out_type": 9}
    assert peers.parse_banner("AllocateTensors failed\n") is None
    why = peers.exit_reason(4, "Didn't find op for builtin opcode 'GELU'\n \nAllocateTensors failed\n")
    assert why.startswith("exit 4: AllocateTensors failed (an operator the runner lacks")
    assert "GELU" in why
    assert "SIGILL" in peers.exit_reason(-4, "")
    assert peers.exit_reason(42, "").startswith("exit 42: unknown failure")


# ---------------------------------------------------------------- which target a runner is compared with

def test_target_from_arch_string():
    assert peers.target_of_arch("rv64i2p1_m2p0_a2p1_f2p2_d2p2_c2p0_zicsr2p0_zifencei2p0") == "rv64gc"
    assert peers.target_of_arch("rv64i2p1_m2p0_a2p1_f2p2_d2p2_c2p0_v1p0_zve32x1p0") == "rv64gcv"
    assert peers.target_of_arch("rv64imafdcv") == "rv64gcv"
    # zve*/zvl* alone are not the V extension
    assert peers.target_of_arch("rv64i2p1_m2p0_zve32x1p0_zvl128b1p0") == "rv64gc"
    with pytest.raises(CloudcoverError, match="not a riscv64"):
        peers.target_of_arch("rv32imac")


def test_parse_peer_from_elf_attributes(shared_peers):
    for name, target in RUNNERS.items():
        p = peers.parse_peer(f"{name}={shared_peers / name}")
        assert (p.name, p.target) == (name, target)
        assert p.target_from.startswith("ELF arch")
        assert peers.riscv_arch(p.runner).startswith("rv64i")
    # the name does not decide: a scalar runner under another name is still rv64gc
    assert peers.parse_peer(f"mine-rv64gcv={shared_peers / 'tflm-ref-rv64gc'}").target == "rv64gc"
    # explicit @TARGET wins, but a V runner cannot be put under the scalar -cpu
    assert peers.parse_peer(f"x={shared_peers / 'tflm-ref-rv64gc'}@rv64gcv").target == "rv64gcv"
    with pytest.raises(CloudcoverError, match="built for the V extension"):
        peers.parse_peer(f"x={shared_peers / 'tflm-muriscvnn-rv64gcv'}@rv64gc")


def test_parse_peer_errors_and_name_fallback(tmp_path):
    no_attrs = tmp_path / "runner-rv64gcv"  # not an ELF: only the name can say
    no_attrs.write_bytes(b"#!/bin/sh\n")
    p = peers.parse_peer(f"x={no_attrs}")
    assert (p.target, p.target_from) == ("rv64gcv", "file name")
    (tmp_path / "runner").write_bytes(b"#!/bin/sh\n")
    with pytest.raises(CloudcoverError, match="NAME=RUNNER@TARGET"):
        peers.parse_peer(f"x={tmp_path / 'runner'}")
    assert peers.parse_peer(f"x={tmp_path / 'runner'}@rv64gc").target == "rv64gc"
    for bad, msg in [("x", "expected NAME=RUNNER"), ("=r", "expected NAME=RUNNER"), ("a b=r", "NAME may hold"),
                     (f"x={tmp_path / 'nope'}", "not found"), (f"x={no_attrs}@rv32", "unknown target 'rv32'")]:
        with pytest.raises(CloudcoverError, match=msg):
            peers.parse_peer(bad)
    with pytest.raises(CloudcoverError, match="given twice"):
        peers.parse_peers([f"x={no_attrs}", f"x={no_attrs}"], ["rv64gc", "rv64gcv"])
    with pytest.raises(CloudcoverError, match="not in --targets rv64gc"):
        peers.parse_peers([f"x={no_attrs}"], ["rv64gc"])


def test_bench_cli_refuses_a_bad_peer_before_running(tmp_path, capsys):
    rc = cli_main(["bench", "--artifacts", str(tmp_path), "--peer", f"x={tmp_path / 'absent'}"])
    assert rc == 1
    assert "--peer x: runner" in capsys.readouterr().err


# ---------------------------------------------------------------- the real runners under the plugin QEMU

@pytest.fixture(scope="module")
def peer_bench(riscv_built, artifacts, shared_peers, tmp_path_factory):
    out = tmp_path_factory.mktemp("reports")
    argv = ["bench", "--artifacts", str(artifacts), "--build", str(riscv_built), "--targets", "rv64gc,rv64gcv",
            "--out", str(out)]
    for name in RUNNERS:
        argv += ["--peer", f"{name}={shared_peers / name}"]
    assert cli_main(argv) == 0
    return json.loads((out / "bench.json").read_text()), (out / "bench.md").read_text()


@pytest.mark.slow
@pytest.mark.device
def test_peer_columns_on_the_tiny_model(peer_bench):
    entries, md = peer_bench
    counts = qemu.find_emulator().counts
    seen = {}
    for e in entries:
        for p in e["peers"]:
            seen[p["name"]] = p["target"]
            assert p["target"] == e["target"]
            assert p["ok"], p
            assert p["exit_code"] == 0 and p["note"] is None
            # TFLite Micro's arena holds at least the model's input and output tensors
            assert p["arena_bytes"] >= 32 * 32 * 3 + 3
            # TFLite Micro's kernels are not TFLite's: even its reference kernels come out 1 LSB off BUILTIN_REF on
            # some fixture models (0 on others), so a peer is held to 1 LSB, cloudcover (test_parity) to 0
            assert p["max_abs_diff_lsb"] <= 1, p
            assert p["top1_agreement_tflite"] >= 0.97, p
            if counts:
                assert p["instructions_per_inference"] > e["macs"] * 0.5
                assert p["startup_instructions"] > 0
                assert p["cloudcover_over_peer"] == pytest.approx(
                    e["instructions_per_inference"] / p["instructions_per_inference"], abs=1e-4)
                assert p["instructions_per_mac"] == pytest.approx(p["instructions_per_inference"] / e["macs"],
                                                                  rel=1e-2)
            else:
                assert p["instructions_per_inference"] is None and p["cloudcover_over_peer"] is None
    assert seen == RUNNERS
    if counts:  # muRISCV-NN's optimized kernels beat TFLite Micro's reference kernels on the same -cpu
        gc = {p["name"]: p for p in entries[0]["peers"]}
        assert gc["tflm-muriscvnn-rv64gc"]["instructions_per_inference"] < \
            gc["tflm-ref-rv64gc"]["instructions_per_inference"]
    assert "Beside TFLite Micro" in md
    for name in RUNNERS:
        assert f"| {name} |" in md
    assert "**Peers**" in md


@pytest.mark.slow
@pytest.mark.device
def test_peer_counts_are_deterministic(artifacts, shared_peers, tmp_path):
    emu = qemu.find_emulator()
    if not emu.counts:
        pytest.skip("plugin QEMU not built (make qemu)")
    peer = peers.parse_peer(f"ref={shared_peers / 'tflm-ref-rv64gc'}")
    art = harness.Artifacts.load(artifacts)
    xq = art.int8_inputs()[:3]
    a = peers.measure(emu, peer, artifacts / "model_int8.tflite", xq, tmp_path / "a")
    b = peers.measure(emu, peer, artifacts / "model_int8.tflite", xq, tmp_path / "b")
    assert a.ok and b.ok
    assert a.instructions_per_inference == b.instructions_per_inference
    assert a.startup_instructions == b.startup_instructions
    assert np.array_equal(a.outputs, b.outputs)


# ---------------------------------------------------------------- a peer that cannot run the model

def depth_to_space_model(art: Path) -> harness.Artifacts:
    """A real full-int8 .tflite (conv 1x1 -> DEPTH_TO_SPACE) in ART_DIR layout: TFLite runs it, while the TFLite
    Micro runners do not register DEPTH_TO_SPACE (../shared/peers/README.md's op list), so they exit 4."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    w = tf.constant(rng.normal(0, 0.5, (1, 1, 4, 8)).astype(np.float32))

    @tf.autograph.experimental.do_not_convert
    def f(x):
        return tf.nn.depth_to_space(tf.nn.conv2d(x, w, 1, "SAME"), 2)

    fn = tf.function(f, input_signature=[tf.TensorSpec([1, 4, 4, 4], tf.float32)])
    conv = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], fn)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([rng.normal(0, 1, (1, 4, 4, 4)).astype(np.float32)] for _ in range(16))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = conv.inference_output_type = tf.int8
    art.mkdir(parents=True, exist_ok=True)
    (art / "model_int8.tflite").write_bytes(conv.convert())

    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(art / "model_int8.tflite"))
    assert "DEPTH_TO_SPACE" in [op["op_name"] for op in it._get_ops_details()]
    scale, zp = it.get_input_details()[0]["quantization"]
    quant = {"input": {"scale": float(scale), "zero_point": int(zp)}}
    x = rng.normal(0, 1, (3, 4, 4, 4)).astype(np.float32)
    return harness.Artifacts(art, x, np.zeros(3, np.int64), quant)


@pytest.mark.slow
@pytest.mark.device
def test_peer_without_the_op_is_a_row_not_an_error(shared_peers, tmp_path):
    emu = qemu.find_emulator()
    art = depth_to_space_model(tmp_path / "art")
    # BUILTIN_REF lacks int8 DEPTH_TO_SPACE (version 2); TFLite's default kernels run it (only the row's shape
    # would need these outputs, were the peer to run)
    ref, _ = harness.tflite_run(art.dir / "model_int8.tflite", art.int8_inputs(), reference=False)
    refs = harness.References(ref.astype(np.float32), ref, None, None, "")
    peer = peers.parse_peer(f"tflm-ref-rv64gc={shared_peers / 'tflm-ref-rv64gc'}")
    logs = []
    row = harness.bench_peer(art, refs, peer, 1000.0, 64, emu, tmp_path / "work", log=logs.append)
    assert row["ok"] is False and row["exit_code"] == 4
    assert "AllocateTensors failed" in row["note"] and "DEPTH_TO_SPACE" in row["note"]
    assert row["instructions_per_inference"] is None and row["cloudcover_over_peer"] is None
    assert any("did not run" in m for m in logs)
    # and the report renders it as a row of the side-by-side table
    entry = {"target": "rv64gc", "instructions_per_inference": 1000, "instructions_per_mac": 15.6,
             "max_abs_diff_lsb": 0, "top1_agreement_tflite": 1.0, "top1_agreement_float": 1.0, "arena_bytes": 100,
             "workspace_bytes": 0, "peers": [row]}
    lines = report.render_peers([entry])
    peer_line = next(line for line in lines if line.startswith("| tflm-ref-rv64gc |"))
    assert "did not run: exit 4: AllocateTensors failed" in peer_line and "n/m" in peer_line

