"""Export on a trained model: the files load, agree with the float model, and carry what the device stage needs."""

import json

import numpy as np
import pytest

from cloudcover.export import onnx_export, tflite_export
from cloudcover.export.export import ARTIFACTS, export_run
from cloudcover.train.errors import CloudcoverError
from cloudcover.train.preprocess import Preprocess, load_split
from cloudcover.train.training import load_run

pytestmark = pytest.mark.slow


def test_every_artifact_is_written(exported):
    assert sorted(p.name for p in exported.iterdir()) == sorted(ARTIFACTS)
    assert not list(exported.parent.glob(".*part*"))  # no temp folder left beside it


def test_int8_tflite_is_full_integer_and_quant_json_matches(exported):
    interp = tflite_export.interpreter(exported / "model_int8.tflite")
    assert interp.get_input_details()[0]["dtype"] == np.int8
    assert interp.get_output_details()[0]["dtype"] == np.int8
    quant = json.loads((exported / "quant.json").read_text())
    qin, qout = tflite_export.io_quant(exported / "model_int8.tflite")
    assert quant["input"] == qin.to_json() and quant["output"] == qout.to_json()
    # raw pixels in: 8-bit values map nearly one to one onto int8
    assert quant["input"]["dtype"] == "int8" and abs(quant["input"]["scale"] - 1.0) < 0.05
    assert quant["input"]["zero_point"] == -128
    assert quant["class_names"] == Preprocess.load(exported).class_names


def test_exported_models_agree_with_the_float_model(exported):
    report = json.loads((exported / "parity.json").read_text())
    rows = {r["backend"]: r for r in report["backends"]}
    assert rows["onnx fp32"]["max_abs_logit_diff"] < 1e-3
    for name in ("tflite int8", "onnx int8"):
        assert rows[name]["agreement"] >= 0.9, rows[name]
    assert report["n_test_images"] == 32
    assert "| tflite int8 |" in (exported / "parity.md").read_text()


def test_testset_is_what_the_stored_preprocessing_gives(exported, tiny_dataset):
    """Preprocessing stored at training is the one applied at export, and the files reproduce the parity run."""
    data = np.load(exported / "testset.npz")
    model, pre = load_run(exported)
    x, y, ids = load_split(tiny_dataset, "test", pre)
    np.testing.assert_array_equal(data["x"], x)
    np.testing.assert_array_equal(data["y"], y)
    assert data["y"].dtype == np.int64 and list(data["ids"]) == ids
    np.testing.assert_allclose(model.predict(x, verbose=0), data["keras_logits"], atol=1e-4)
    raw, _ = tflite_export.run_int8(exported / "model_int8.tflite", x[:4], resolver="reference")
    np.testing.assert_array_equal(raw, data["tflite_int8"][:4])
    np.testing.assert_allclose(onnx_export.run(exported / "model_fp32.onnx", x[:4]), data["keras_logits"][:4],
                               atol=1e-3)


def test_empty_calibration_set_and_missing_preprocess_are_clear(trained_run, tmp_path):
    with pytest.raises(CloudcoverError, match="calibration set is empty"):
        export_run(trained_run.run_dir, tmp_path / "art", calib_samples=0)
    with pytest.raises(CloudcoverError, match="preprocess.json not found"):
        export_run(tmp_path, tmp_path / "art")
    assert not (tmp_path / "art").exists()


def test_interrupted_export_leaves_nothing(trained_run, tmp_path):
    def interrupt(msg):
        if "ONNX" in msg:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        export_run(trained_run.run_dir, tmp_path / "art", calib_samples=8, log=interrupt)
    assert list(tmp_path.iterdir()) == []
