"""`cloudcover evaluate` equals scikit-learn on the same predictions; `predict` on real GeoTIFFs and bad files."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from sklearn.metrics import classification_report, confusion_matrix, roc_auc_score

from .conftest import cli


@pytest.mark.slow
def test_evaluate_equals_scikit_learn(tiny_run, tiny_dataset, tmp_path):
    from PIL import Image

    from cloudcover.train.metrics import softmax
    from cloudcover.train.preprocess import load_split
    from cloudcover.train.training import load_run

    out = tmp_path / "eval"
    r = cli("evaluate", "--run", str(tiny_run), "--data", str(tiny_dataset), "--out", str(out),
            "--discard-class", "clouds_50_75", "--quiet")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "false-discard rate" in r.stdout
    m = json.loads((out / "metrics.json").read_text())

    # Independent predictions from the stored run on the same split and preprocessing.
    model, pre = load_run(tiny_run)
    x, y, ids = load_split(tiny_dataset, "test", pre)
    proba = softmax(model.predict(x, verbose=0))
    pred = proba.argmax(1)
    with open(out / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["patch_id"] for r in rows] == ids
    assert np.allclose([[float(r[f"p_{c}"]) for c in pre.class_names] for r in rows], proba, atol=1e-4)

    ref = classification_report(y, pred, labels=range(4), target_names=pre.class_names, output_dict=True,
                                zero_division=0)
    assert m["accuracy"] == pytest.approx(ref["accuracy"])
    for c in pre.class_names:
        assert m["per_class"][c]["f1"] == pytest.approx(ref[c]["f1-score"])
        assert m["per_class"][c]["support"] == ref[c]["support"]
    assert m["macro_avg"]["f1"] == pytest.approx(ref["macro avg"]["f1-score"])
    assert m["weighted_avg"]["f1"] == pytest.approx(ref["weighted avg"]["f1-score"])
    assert m["confusion_matrix"] == confusion_matrix(y, pred, labels=range(4)).tolist()
    assert m["roc"]["macro"]["auc"] == pytest.approx(roc_auc_score(y, proba, multi_class="ovr"), abs=1e-6)
    truth_drop, drop = y >= 2, pred >= 2
    assert m["discard"]["discard_share"] == pytest.approx(drop.mean())
    usable = ~truth_drop
    assert m["discard"]["false_discard_rate"] == pytest.approx((drop & usable).sum() / usable.sum())
    assert m["preprocess"]["input_size"] == pre.input_size
    for png in ("confusion_matrix.png", "roc.png", "misclassified.png"):
        with Image.open(out / png) as im:
            assert im.size[0] > 200 and np.asarray(im.convert("L")).std() > 1.0


@pytest.mark.slow
def test_predict_real_geotiffs_and_a_corrupt_file(tiny_run, shared_data, tmp_path):
    bad = tmp_path / "batch"
    bad.mkdir()
    (bad / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (bad / "notes.txt").write_text("ignored by the folder walk")
    s2 = sorted((shared_data / "cloudsen12").rglob("S2L1C.tif"))
    l8_red = next((shared_data / "38cloud").rglob("red_patch_*.TIF"))
    out = tmp_path / "results.csv"
    r = cli("predict", "--run", str(tiny_run), *map(str, s2), str(l8_red), str(bad), "--out", str(out))
    assert r.returncode == 1
    assert f"skipped {bad / 'corrupt.png'}" in r.stderr
    assert r.stderr.strip().splitlines()[-1] == (f"cloudcover predict: error: 1 of {len(s2) + 2} input(s) could "
                                                 f"not be read (listed above); the other {len(s2) + 1} were written")
    with open(out) as f:
        rows = list(csv.DictReader(f))
    assert [row["path"] for row in rows] == [*map(str, s2), str(l8_red)]
    classes = json.loads((tiny_run / "preprocess.json").read_text())["class_names"]
    for row in rows:
        p = np.array([float(row[f"p_{c}"]) for c in classes])
        assert p.sum() == pytest.approx(1.0, abs=1e-3)
        assert row["class"] == classes[int(p.argmax())]
        centres = np.array([12.5, 37.5, 62.5, 87.5])
        assert float(row["expected_coverage_pct"]) == pytest.approx(float(p @ centres), abs=1e-2)


@pytest.mark.slow
def test_predict_folder_to_stdout(tiny_run, tiny_dataset):
    r = cli("predict", "--run", str(tiny_run), str(tiny_dataset / "images"), "--quiet")
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.strip().splitlines()
    assert lines[0].startswith("path,class,confidence,expected_coverage_pct,p_clouds_0_25")
    assert len(lines) == 1 + len(list((tiny_dataset / "images").glob("*.png")))
