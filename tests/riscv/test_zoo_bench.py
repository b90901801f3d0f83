"""The zoo benchmark script's own parts: its synthetic data are not degenerate, and a resumed run skips the rows
already measured (the measurement itself runs as `python -m cloudcover.riscv.zoo_bench`, minutes, not a test)."""

from __future__ import annotations

import json

import numpy as np

from cloudcover.riscv import zoo_bench


def test_synthetic_data_are_seeded_and_not_degenerate():
    x, y = zoo_bench.segmentation_data(16, 32, seed=1)
    assert x.shape == (16, 32, 32, 4) and y.shape == (16, 32, 32) and set(np.unique(y)) == {0, 1}
    cover = y.mean(axis=(1, 2))
    assert cover.min() < 0.3 and cover.max() > 0.7  # the cloud share varies between images
    assert x[y == 1].mean() > x[y == 0].mean() + 50  # cloud is brighter than ground
    x2, y2 = zoo_bench.segmentation_data(16, 32, seed=1)
    assert np.array_equal(x, x2) and np.array_equal(y, y2)
    xc, yc = zoo_bench.classification_data(30, 16, seed=1)
    assert set(yc) == {0, 1, 2} and xc.shape == (30, 16, 16, 3)
    assert xc[yc == 0].mean() < xc[yc == 1].mean() < xc[yc == 2].mean()


def test_model_spec_takes_the_registered_width():
    assert zoo_bench.model_spec("mobilenet", 96, None) == {"model": "mobilenet", "task": "classification", "size": 96,
                                                           "alpha": 0.35, "bands": 3}
    assert zoo_bench.model_spec("unet_resnet18", 96, 0.5)["alpha"] == 0.5
    assert zoo_bench.model_spec("vgg16", 96, 0.5)["alpha"] is None  # one width only
    assert zoo_bench.model_spec("unet_resnet18", 96, None)["bands"] == 4


def test_a_resumed_run_skips_measured_rows_and_writes_the_table(tmp_path, capsys):
    row = {"model": "edge_cnn", "task": "classification", "size": 96, "alpha": 0.35, "bands": 3, "target": "rv64gc",
           "macs": 1_000_000, "instructions_per_inference": 2_000_000, "instructions_per_mac": 2.0,
           "weights_bytes": 10, "arena_bytes": 20, "workspace_bytes": 0, "int8_compute": True, "float_ops": [],
           "max_abs_diff_lsb": 0, "zero_lsb": True, "n_images": 4, "distinct_outputs": 4, "ok": True}
    (tmp_path / "work" / "edge_cnn-96px-a0.35").mkdir(parents=True)
    (tmp_path / "work" / "edge_cnn-96px-a0.35" / "rv64gc.json").write_text(json.dumps(row))
    rc = zoo_bench.main(["--work", str(tmp_path / "work"), "--reports", str(tmp_path / "rep"), "--models", "edge_cnn",
                         "--targets", "rv64gc"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "done earlier" in out and "training" not in out
    rep = json.loads((tmp_path / "rep" / "zoo_bench.json").read_text())
    assert rep["rows"] == [row]
    md = (tmp_path / "rep" / "zoo_bench.md").read_text()
    assert "| edge_cnn | classification | 96 px x 3 | 0.35 | rv64gc | 1.0 M | 2,000,000 | 2.00 |" in md
    assert "1 of 1 model x target rows" in md
