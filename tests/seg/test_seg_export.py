"""`cloudcover export` of a segmenter: the task reaches quant.json and the test masks are the prepared ones."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image


@pytest.mark.slow
def test_export_of_a_segmenter_records_its_task_and_masks(seg_run, seg_dataset, tmp_path):
    import csv

    from cloudcover.export.export import export_run

    out = tmp_path / "art"
    export_run(seg_run.run_dir, out, calib_samples=8, log=lambda *_: None)
    quant = json.loads((out / "quant.json").read_text())
    assert quant["task"] == "segmentation"
    with np.load(out / "testset.npz") as z:
        y, ids, q = z["y"], list(z["ids"]), z["tflite_int8"]
    assert y.dtype == np.uint8 and set(np.unique(y)) <= {0, 1, 255}
    assert q.dtype == np.int8 and q.shape[:3] == y.shape[:3] and q.shape[-1] == 1
    # the masks are the prepared 64 px mask PNGs of the test split, in manifest order, brought to the run's 32 px
    # by nearest neighbour at pixel centres: output pixel i samples input pixel 2i + 1
    rows = [r for r in csv.DictReader(open(seg_dataset / "manifest.csv")) if r["split"] == "test"]
    assert [r["patch_id"] for r in rows] == ids
    for r, m in zip(rows, y):
        want = np.asarray(Image.open(seg_dataset / r["target"]))
        assert want.shape == (64, 64)
        np.testing.assert_array_equal(m.reshape(32, 32), want[1::2, 1::2])
