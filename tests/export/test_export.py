"""Export on a trained model: the files load, agree with the float model, and carry what the device stage needs."""

import json

import numpy as np
import pytest

from cloudcover.export import tflite_export
from cloudcover.export.export import ARTIFACTS, export_run
from cloudcover.train.errors import CloudcoverError
from cloudcover.train.preprocess import Preprocess

pytestmark = pytest.mark.slow


def test_every_artifact_is_written(exported):
    assert sorted(p.name for p in exported.iterdir()) == sorted(ARTIFACTS)
    assert not list(exported.parent.glob(".*part*"))  # no temp folder left beside it


def test_int8_tflite_is_full_integer_and_quant_json_matches(exported):
    interp = tflite_export.interpreter(exported / "model_int8.tflite")
    assert interp.get_input_details()[0]["dtype"] == np.int8
    assert interp.get_output_details()[0]["dtype"] == np.int8
    quant = json.loads((exported / "quant.json").read_text())
    # oracle: the input/output tensors as the flatbuffer itself stores them, read with the `tflite` schema
    # package (export writes quant.json from the interpreter's view of the same file)
    for key, stored in flatbuffer_io(exported / "model_int8.tflite").items():
        assert quant[key]["shape"] == stored["shape"] and quant[key]["dtype"] == stored["dtype"] == "int8", key
        assert quant[key]["zero_point"] == stored["zero_point"], key
        assert quant[key]["scale"] == pytest.approx(stored["scale"], rel=1e-6), key
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
    """testset.npz holds the dataset's test images as the model takes them and the reference outputs of exactly
    those images. Oracles: the PNGs decoded here with PIL, labels read from manifest.csv in the class order of
    preprocess.json, the Keras model, TFLite's reference kernels and onnxruntime called directly."""
    import csv

    import keras
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    from PIL import Image

    data = np.load(exported / "testset.npz")
    pre = json.loads((exported / "preprocess.json").read_text())
    with open(tiny_dataset / "manifest.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == "test"]
    assert list(data["ids"]) == [r["patch_id"] for r in rows]
    assert data["y"].dtype == np.int64
    assert data["y"].tolist() == [pre["class_names"].index(r["label"]) for r in rows]
    # the fixture's images are already input_size: raw 8-bit values, no resampling, normalization is in the model
    x = np.stack([np.asarray(Image.open(tiny_dataset / r["image"]).convert("RGB"), np.float32) for r in rows])
    assert x.shape[1:] == (pre["input_size"], pre["input_size"], 3)
    np.testing.assert_array_equal(data["x"], x)

    model = keras.models.load_model(exported / "model.keras", compile=False)
    np.testing.assert_allclose(model.predict(x, verbose=0), data["keras_logits"], atol=1e-4)

    it = Interpreter(model_path=str(exported / "model_int8.tflite"),
                     experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    it.allocate_tensors()
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    s, z = i["quantization"]
    for k in range(4):
        it.set_tensor(i["index"], np.clip(np.round(x[k : k + 1] / s) + z, -128, 127).astype(np.int8))
        it.invoke()
        np.testing.assert_array_equal(it.get_tensor(o["index"]).reshape(-1), data["tflite_int8"][k])

    import onnxruntime as ort

    sess = ort.InferenceSession(str(exported / "model_fp32.onnx"), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x[:4]})[0]
    np.testing.assert_allclose(got, data["keras_logits"][:4], atol=1e-3)


def flatbuffer_io(path) -> dict[str, dict]:
    """Shape, dtype, scale and zero point of the model's input and output, from the .tflite flatbuffer."""
    import tflite

    m = tflite.Model.GetRootAsModel(path.read_bytes(), 0)
    sg = m.Subgraphs(0)
    types = {tflite.TensorType.INT8: "int8", tflite.TensorType.UINT8: "uint8", tflite.TensorType.FLOAT32: "float32"}
    out = {}
    for key, idx in (("input", sg.Inputs(0)), ("output", sg.Outputs(0))):
        t = sg.Tensors(idx)
        q = t.Quantization()
        out[key] = {"shape": [int(d) for d in t.ShapeAsNumpy()], "dtype": types.get(t.Type(), str(t.Type())),
                    "scale": float(q.Scale(0)), "zero_point": int(q.ZeroPoint(0))}
    return out


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


def _first_op(path) -> str:
    """The builtin operator name of the .tflite's first operator, read from the flatbuffer (`tflite` schema)."""
    import tflite

    m = tflite.Model.GetRootAsModel(path.read_bytes(), 0)
    code = m.OperatorCodes(m.Subgraphs(0).Operators(0).OpcodeIndex())
    names = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
    return names[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())]


def test_rewriting_calibration_keeps_the_fp32_file_and_the_artifact_set(trained_run, exported, tmp_path):
    """--calibration minmax+affine+bc (the demo's): the int8 files come from the rewritten model (its first op is
    the Normalization turned into a per-channel conv, where the plain export starts with the converter's SUB of
    the band means), the fp32 ONNX file is still the trained model, and no intermediate file is left behind."""
    from cloudcover.riscv.cli import main

    out = tmp_path / "artifacts"
    assert main(["export", "--run", str(trained_run.run_dir), "--out", str(out), "--calib-samples", "64",
                 "--calibration", "minmax+affine+bc"]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(ARTIFACTS)
    assert _first_op(exported / "model_int8.tflite") != "DEPTHWISE_CONV_2D"
    assert _first_op(out / "model_int8.tflite") == "DEPTHWISE_CONV_2D"
    report = json.loads((out / "parity.json").read_text())
    rows = {r["backend"]: r for r in report["backends"]}
    assert rows["onnx fp32"]["max_abs_logit_diff"] < 1e-3
    for name in ("tflite int8", "onnx int8"):
        assert rows[name]["agreement"] >= 0.9, rows[name]
