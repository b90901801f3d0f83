"""A segmenter on the device: the bench's mask figures checked by hand on a fixed pair of masks, the report's
columns by task, and a tiny UNet (exported by `cloudcover export`) through qemu-riscv64 on both targets."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from cloudcover.riscv import report, seg_figures

from .conftest import needs_device

# the segmentation fixtures of tests/seg (synthetic 38-Cloud-like scenes -> prepare -> a tiny trained UNet)
_spec = importlib.util.spec_from_file_location("seg_fixtures", Path(__file__).parents[1] / "seg" / "conftest.py")
_seg = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_seg)
seg_raw, seg_dataset, seg_run = _seg.seg_raw, _seg.seg_dataset, _seg.seg_run

BINS = [0.0, 25.0, 50.0, 75.0, 100.0]
NAMES = ["clouds_0_25", "clouds_25_50", "clouds_50_75", "clouds_75_100"]


# ---------------------------------------------------------------- the figures, by hand

def test_mask_figures_on_a_fixed_pair_of_images():
    # output quantization scale 0.5, zero point -1: logit = (q + 1) / 2, cloud (sigmoid >= 0.5) iff q >= -1
    quant = {"scale": 0.5, "zero_point": -1}
    truth = np.array([[1, 1, 0, 0, 255, 0], [0, 0, 0, 0, 0, 0]], np.uint8)
    dev = np.array([[5, -2, 0, -5, 7, -1], [-3, -3, -3, -3, -3, 4]], np.int8)  # masks 101011 / 000001
    ref = np.array([[5, -2, 0, -5, 7, -1], [-3, -3, -3, -3, -3, 1]], np.int8)  # same masks, 3 LSB off once
    flt = np.array([[2.0, 0.3, -0.1, -3.0, 1.0, -0.2], [-1, -1, -1, -1, -1, 0.5]])  # masks 110010 / 000001
    f = seg_figures.compare(dev, ref, flt, truth, quant, 0.5, BINS, NAMES, ids=["a", "b"])
    # valid pixels: image a all but the 5th (5), image b all (6): 11
    # a, valid: device 1 0 1 0 1, float 1 1 0 0 0 -> agree at 2 of 5; b: 6 of 6
    assert f["valid_pixels"] == 11
    assert f["pixel_agreement_float"] == pytest.approx(8 / 11)
    assert f["pixel_agreement_tflite"] == 1.0  # 3 LSB apart, but on the same side of the threshold
    assert f["max_abs_diff_lsb"] == 3 and f["images_at_0_lsb"] == 1
    assert f["lsb_histogram"] == {"0": 11, "3": 1}
    # IoU with the float mask as truth: a TP 1, FP 2, FN 1; b TP 1 -> pooled 2 / (2 + 2 + 1)
    assert f["iou_device_float"] == pytest.approx(2 / 5)
    assert f["min_image_iou_device_float"] == pytest.approx(1 / 4)
    assert f["min_image_pixel_agreement_float"] == pytest.approx(2 / 5)
    # coverage over valid pixels: a device 3/5 = 60 % (clouds_50_75), float 2/5 = 40 % (clouds_25_50);
    # b device and float 1/6 = 16.7 % (clouds_0_25)
    assert f["coverage_class_agreement_float"] == 0.5
    a, b = f["per_image"]
    assert (a["coverage_class_device"], a["coverage_class_float"]) == ("clouds_50_75", "clouds_25_50")
    assert (b["coverage_class_device"], b["coverage_class_float"]) == ("clouds_0_25", "clouds_0_25")
    assert (a["id"], a["max_abs_diff_lsb"], b["max_abs_diff_lsb"]) == ("a", 0, 3)
    # against the truth: device TP 1, FP 2 + 1, FN 1 -> 1/5; float TP 2, FP 0 + 1 -> 2/3
    assert f["iou_truth_device"] == pytest.approx(1 / 5)
    assert f["iou_truth_float"] == pytest.approx(2 / 3)


def test_a_patch_without_valid_pixels_is_clear_and_agrees():
    f = seg_figures.compare(np.array([[5, 5]], np.int8), np.array([[5, 5]], np.int8), np.array([[-1.0, -1.0]]),
                            np.array([[255, 255]], np.uint8), {"scale": 1.0, "zero_point": 0}, 0.5, BINS, NAMES)
    assert f["valid_pixels"] == 0 and f["pixel_agreement_float"] == 1.0
    assert f["per_image"][0]["coverage_class_device"] == "clouds_0_25"  # 0 %, as `cloudcover evaluate` counts it
    assert f["coverage_class_agreement_float"] == 1.0


# ---------------------------------------------------------------- the report, by task

def _entry(model: str, task: str, **kw) -> dict:
    e = {"model": model, "target": "rv64gc", "macs": 1000, "instructions_per_inference": 5000,
         "instructions_per_mac": 5.0, "emulated_ms_per_inference": 1.0, "max_abs_diff_lsb": 0, "text_bytes": 10,
         "kernels_text_bytes": 5, "weights_bytes": 20, "arena_bytes": 30, "workspace_bytes": 4, "int8_compute": True,
         "n_images": 2, "host_tflite_int8_ms": 0.1, "host_onnxruntime_int8_ms": None, "host_onnxruntime_note": "x",
         "emulator": "qemu", "compute": "int8", "task": task, "peers": []}
    if task == "classification":
        e.update(top1_agreement_float=1.0, top1_agreement_tflite=1.0, accuracy_float=0.9, accuracy_device=0.9)
    else:
        e.update(pixel_agreement_float=0.99871, pixel_agreement_tflite=1.0, iou_device_float=0.98765,
                 coverage_class_agreement_float=1.0, iou_truth_float=0.5, iou_truth_device=0.5, threshold=0.5,
                 coverage_bins=BINS, coverage_classes=NAMES, min_image_pixel_agreement_float=0.97,
                 min_image_iou_device_float=0.9, images_at_0_lsb=2)
    e.update(kw)
    return e


def test_report_holds_both_tasks_and_merges_by_model(tmp_path):
    cls, seg = _entry("edge_cnn-96px-int8", "classification"), _entry("unet-96px-int8", "segmentation")
    report.write_reports([cls], tmp_path)
    md_cls = (tmp_path / "bench.md").read_text()
    assert "| top-1 = TFLite-ref |" in md_cls and "pixels = float" not in md_cls and "**Segmenters**" not in md_cls
    report.write_reports([seg], tmp_path, merge=True)
    entries = json.loads((tmp_path / "bench.json").read_text())
    assert [e["model"] for e in entries] == ["edge_cnn-96px-int8", "unet-96px-int8"]
    md = (tmp_path / "bench.md").read_text()
    # the classifier's section is what it was alone; the segmenter's has its own columns
    assert md_cls.split("## How each figure")[0] in md
    assert "## unet-96px-int8 (segmentation, 2 test images)" in md
    assert "| rv64gc | 1,000 | 5,000 | 5.000 | 1.000 | 100.00% | 99.87% | 0.9877 | 100.0% | 0 |" in md
    assert "**Segmenters**" in md and "coverage classes clouds_0_25" in md
    # benching a model again replaces its rows, others stay
    report.write_reports([_entry("unet-96px-int8", "segmentation", iou_device_float=0.5)], tmp_path, merge=True)
    entries = json.loads((tmp_path / "bench.json").read_text())
    assert [(e["model"], e.get("iou_device_float")) for e in entries] == [("edge_cnn-96px-int8", None),
                                                                         ("unet-96px-int8", 0.5)]
    with pytest.raises(AssertionError, match="iou_truth_device"):
        bad = _entry("u", "segmentation")
        del bad["iou_truth_device"]
        report.write_reports([bad], tmp_path / "bad")


# ---------------------------------------------------------------- a tiny UNet under qemu-riscv64

@pytest.fixture(scope="module")
def seg_bench(seg_run, tmp_path_factory):
    """`cloudcover export` of the tiny UNet (32 px, 6 test patches) -> compile -> cross-build -> bench, with the
    TFLite Micro peers when ../shared/peers is there."""
    from cloudcover.riscv.cli import main
    from cloudcover.riscv.toolchain import main as build_main

    from .test_peers import RUNNERS, SHARED_PEERS

    root = tmp_path_factory.mktemp("segdev")
    art, build, out = root / "art", root / "build", root / "reports"
    assert main(["export", "--run", str(seg_run.run_dir), "--out", str(art), "--calib-samples", "8"]) == 0
    for t in ("rv64gc", "rv64gcv"):
        assert main(["compile", "--model", str(art / "model_int8.tflite"), "--target", t,
                     "--out", str(build / "model" / t)]) == 0
    assert build_main(["--build", str(build), "--targets", "rv64gc,rv64gcv"]) == 0
    argv = ["bench", "--artifacts", str(art), "--build", str(build), "--targets", "rv64gc,rv64gcv", "--out", str(out)]
    peers = [n for n in RUNNERS if (SHARED_PEERS / n).is_file()]
    for n in peers:
        argv += ["--peer", f"{n}={SHARED_PEERS / n}"]
    assert main(argv) == 0
    return art, json.loads((out / "bench.json").read_text()), (out / "bench.md").read_text(), peers


@pytest.mark.slow
@pytest.mark.device
@needs_device
def test_tiny_unet_on_both_targets(seg_bench):
    art, entries, md, peers = seg_bench
    assert [e["target"] for e in entries] == ["rv64gc", "rv64gcv"]
    with np.load(art / "testset.npz") as z:
        truth, flt, q = z["y"], z["keras_logits"], z["tflite_int8"]  # export's own float and BUILTIN_REF runs
    quant = json.loads((art / "quant.json").read_text())["output"]
    parity = json.loads((art / "parity.json").read_text())
    n = len(truth)
    # by an independent route: masks as sets of valid pixel indexes, for threshold 0.5 (logit >= 0, i.e. q >= zp)
    valid = truth.reshape(n, -1) != 255
    dev_mask = q.reshape(n, -1) >= quant["zero_point"]  # the device is bit-exact with these (asserted below)
    flt_mask = flt.reshape(n, -1) >= 0
    inter = np.sum(dev_mask & flt_mask & valid)
    union = np.sum((dev_mask | flt_mask) & valid)
    cov = lambda m: [100.0 * np.sum(mi & vi) / max(np.sum(vi), 1) for mi, vi in zip(m, valid)]  # noqa: E731
    cls = lambda m: np.minimum(np.searchsorted(BINS, cov(m), side="right") - 1, 3)  # noqa: E731
    assert len({r.tobytes() for r in q}) > 1, "all outputs equal: the comparison would be empty"
    for e in entries:
        assert e["task"] == "segmentation" and e["n_images"] == n
        assert e["int8_compute"] is True
        assert e["max_abs_diff_lsb"] == 0 and e["images_at_0_lsb"] == n  # bit-exact with BUILTIN_REF
        assert e["pixel_agreement_tflite"] == 1.0
        # the export's parity (train/task.py's comparison of the same BUILTIN_REF outputs) says the same
        tfl = next(b for b in parity["backends"] if b["backend"] == "tflite int8")
        assert e["pixel_agreement_float"] == pytest.approx(tfl["agreement"], abs=1e-9)
        assert e["pixel_agreement_float"] == pytest.approx(np.sum((dev_mask == flt_mask) & valid) / np.sum(valid))
        assert e["iou_device_float"] == pytest.approx(inter / union if union else 1.0)
        assert e["coverage_class_agreement_float"] == pytest.approx(np.mean(cls(dev_mask) == cls(flt_mask)))
        assert e["coverage_bins"] == BINS and len(e["per_image"]) == n
        assert e["macs"] > 0 and e["weights_bytes"] > 0 and e["arena_bytes"] > 0
        for p in e["peers"]:
            assert p["ok"], p  # TFLite Micro registers every operator of the UNet (resize, concatenation, pool)
            assert p["max_abs_diff_lsb"] <= 1 and "per_image" not in p
            assert p["pixel_agreement_float"] > 0.9
    assert {p["name"] for e in entries for p in e["peers"]} == set(peers)
    assert "pixels = float" in md and "coverage class = float" in md and "**Segmenters**" in md
