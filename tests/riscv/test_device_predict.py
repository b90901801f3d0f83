"""`cloudcover predict --device TARGET --model-dir DIR`: new GeoTIFF/PNG files through the compiled model.

The tiny op-zoo run of conftest.py is exported and compiled by the real verbs; the inputs are real PNG and
GeoTIFF files written here. Oracle: the int8 TFLite model run by ai-edge-litert with its reference kernels
(BUILTIN_REF, the bit-exact int8 oracle) on the same files, decoded independently of cloudcover (PIL and
rasterio), and the host `cloudcover predict` CSV for the float side. Host target (fast) and rv64gcv under
qemu (slow)."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest

from cloudcover.riscv import device_predict
from cloudcover.riscv.cli import main as cli_main

from .conftest import CLASS_NAMES, SIZE, needs_device


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """5 PNGs (dark to bright, the classes of the tiny model) and 3 three-band uint16 GeoTIFFs."""
    import rasterio
    from PIL import Image
    from rasterio.transform import from_origin

    d = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(11)
    for k, level in enumerate((40, 90, 130, 180, 225)):
        px = np.clip(level + rng.normal(0, 20, (SIZE, SIZE, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(px).save(d / f"p{k}.png")
    (d / "tif").mkdir()
    for k, refl in enumerate((800, 2500, 6000)):
        data = np.clip(refl + rng.normal(0, 300, (3, SIZE, SIZE)), 1, 10000).astype(np.uint16)
        with rasterio.open(d / "tif" / f"g{k}.tif", "w", driver="GTiff", width=SIZE, height=SIZE, count=3,
                           dtype="uint16", crs="EPSG:32633", transform=from_origin(500000, 4000000, 10, 10)) as dst:
            dst.write(data)
    return d


def _oracle(art: Path, files: list[Path]) -> tuple[list[str], np.ndarray]:
    """BUILTIN_REF classes and dequantized logits of model_int8.tflite on `files`, decoded by PIL/rasterio here.

    The GeoTIFFs are rendered with the data layer's fixed scaling (the documented preprocessing of host predict)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    from PIL import Image

    from cloudcover.train.data.render import read_patch_rgb, resize_rgb

    x = []
    for f in files:
        if f.suffix == ".png":
            x.append(np.asarray(Image.open(f).convert("RGB"), np.float32))
        else:
            x.append(resize_rgb(read_patch_rgb(f), SIZE).astype(np.float32))
    it = Interpreter(model_path=str(art / "model_int8.tflite"),
                     experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    it.allocate_tensors()
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    (si, zi), (so, zo) = i["quantization"], o["quantization"]
    logits = []
    for a in x:
        it.set_tensor(i["index"], np.clip(np.round(a / si) + zi, -128, 127).astype(np.int8)[None])
        it.invoke()
        logits.append((it.get_tensor(o["index"]).reshape(-1).astype(np.float32) - zo) * so)
    logits = np.stack(logits)
    return [CLASS_NAMES[k] for k in logits.argmax(1)], logits


def _read(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _check(art: Path, images: Path, rows: list[dict], tmp: Path) -> None:
    files = sorted(images.glob("*.png")) + sorted((images / "tif").glob("*.tif"))
    assert [r["path"] for r in rows] == [str(f) for f in files]
    classes, logits = _oracle(art, files)
    assert [r["class"] for r in rows] == classes
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    got = np.array([[float(r[f"p_{n}"]) for n in CLASS_NAMES] for r in rows])
    np.testing.assert_allclose(got, p, atol=1e-5)
    # the float side is host `cloudcover predict` on the same files
    assert cli_main(["predict", "--run", str(art), "--quiet", "--out", str(tmp / "host.csv"),
                     *map(str, files)]) == 0
    host = _read(tmp / "host.csv")
    assert [r["float_class"] for r in rows] == [h["class"] for h in host]
    assert [r["device_equals_float"] for r in rows] == [str(r["class"] == h["class"]) for r, h in zip(rows, host)]
    assert set(host[0]) | {"float_class", "device_equals_float"} == set(rows[0])
    assert len({r["class"] for r in rows}) >= 2  # the inputs are not all one class: the comparison can fail


def test_host_target_matches_builtin_ref(artifacts, compiled, images, tmp_path, monkeypatch, capsys):
    """Host build of the int8 model: no binary beside the model, so it is built into the cache; classes and
    probabilities are BUILTIN_REF's, the float column is host predict's."""
    model_dir = tmp_path / "model"
    shutil.copytree(compiled / "model" / "host", model_dir)
    monkeypatch.setattr(device_predict, "cache_dir", lambda: tmp_path / "cache")
    out = tmp_path / "dev.csv"
    assert cli_main(["predict", "--run", str(artifacts), "--device", "host", "--model-dir", str(model_dir),
                     "--quiet", "--out", str(out), str(images)]) == 0
    assert list((tmp_path / "cache").glob("*/cloudcover-infer-host"))
    assert "equal the float model's class" in capsys.readouterr().err
    _check(artifacts, images, _read(out), tmp_path)


def test_binary_beside_the_model_unless_stale(compiled, artifacts, images, tmp_path, monkeypatch):
    """`cloudcover build --model-dir M` puts the binary in M and predict runs it; once model.json is newer
    (compiled again), that binary is not trusted and one is built into the cache."""
    import os

    model_dir = tmp_path / "model"
    shutil.copytree(compiled / "model" / "host", model_dir)
    assert cli_main(["build", "--model-dir", str(model_dir)]) == 0
    monkeypatch.setattr(device_predict, "cache_dir", lambda: tmp_path / "cache")
    args = ["predict", "--run", str(artifacts), "--device", "host", "--model-dir", str(model_dir), "--quiet",
            "--out", str(tmp_path / "dev.csv"), str(images / "p0.png")]
    assert cli_main(args) == 0 and not (tmp_path / "cache").exists()
    t = (model_dir / "cloudcover-infer-host").stat().st_mtime + 10
    os.utime(model_dir / "model.json", (t, t))
    assert cli_main(args) == 0 and list((tmp_path / "cache").glob("*/cloudcover-infer-host"))


@pytest.mark.parametrize("case", ["target", "binary", "image", "no_model_json", "no_device"])
def test_errors_one_line_nothing_written(artifacts, compiled, images, tmp_path, capsys, case):
    model_dir = compiled / "model" / "host"
    out = tmp_path / "dev.csv"
    args = ["predict", "--run", str(artifacts), "--quiet", "--out", str(out)]
    paths = [str(images / "p0.png")]
    if case == "target":
        args += ["--device", "rv64gc", "--model-dir", str(model_dir)]
        want = "was compiled for host, not --device rv64gc"
    elif case == "binary":
        args += ["--device", "host", "--model-dir", str(model_dir), "--binary", str(tmp_path / "nope")]
        want = f"--binary {tmp_path / 'nope'} not found"
    elif case == "image":
        (tmp_path / "bad.png").write_bytes(b"not a png")
        args += ["--device", "host", "--model-dir", str(model_dir), "--binary", str(tmp_path / "x")]
        (tmp_path / "x").write_text("")  # never run: the inputs are read first
        paths.append(str(tmp_path / "bad.png"))
        want = f"{tmp_path / 'bad.png'}: cannot decode image"
    elif case == "no_model_json":
        args += ["--device", "host", "--model-dir", str(tmp_path)]
        want = "model.json not found"
    else:
        args += ["--model-dir", str(model_dir)]
        want = "and --binary need --device"
    assert cli_main(args + paths) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("cloudcover predict: error:") and want in err[0], err
    assert not out.exists()


@pytest.mark.slow
@needs_device
def test_rv64gcv_under_qemu(artifacts, riscv_built, images, tmp_path, monkeypatch):
    """The `make riscv-build` layout (BUILD/model/rv64gcv -> BUILD/riscv64/cloudcover-infer-rv64gcv) under qemu:
    that binary is the one run (nothing is built into the cache)."""
    monkeypatch.setattr(device_predict, "cache_dir", lambda: tmp_path / "cache")
    out = tmp_path / "dev.csv"
    assert (riscv_built / "riscv64" / "cloudcover-infer-rv64gcv").is_file()
    assert cli_main(["predict", "--run", str(artifacts), "--device", "rv64gcv", "--quiet",
                     "--model-dir", str(riscv_built / "model" / "rv64gcv"), "--out", str(out), str(images)]) == 0
    assert not (tmp_path / "cache").exists()
    _check(artifacts, images, _read(out), tmp_path)


def test_model_file_form_compiles_into_the_cache(artifacts, images, tmp_path, monkeypatch):
    """--model FILE instead of --model-dir: compiled and built into the cache on the first run, reused after."""
    monkeypatch.setattr(device_predict, "cache_dir", lambda: tmp_path / "cache")
    args = ["predict", "--run", str(artifacts), "--device", "host", "--model", str(artifacts / "model_int8.tflite"),
            "--quiet", str(images)]
    assert cli_main([*args, "--out", str(tmp_path / "a.csv")]) == 0
    (folder,) = (tmp_path / "cache" / "compiled").iterdir()
    stamp = (folder / "model.json").stat().st_mtime_ns
    assert cli_main([*args, "--out", str(tmp_path / "b.csv")]) == 0
    assert (folder / "model.json").stat().st_mtime_ns == stamp  # not compiled again
    assert (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text()
    _check(artifacts, images, _read(tmp_path / "a.csv"), tmp_path)


# ---------------------------------------------------------------- a segmenter

SEG_BINS = [0.0, 25.0, 50.0, 75.0, 100.0]
SEG_NAMES = ["clouds_0_25", "clouds_25_50", "clouds_50_75", "clouds_75_100"]


def _seg_images(d: Path) -> list[Path]:
    """4-band uint16 48 x 48 GeoTIFFs: dark ground with a bright square covering 10..90 %, one with a nodata band."""
    import rasterio
    from rasterio.transform import from_origin

    rng = np.random.default_rng(5)
    d.mkdir(parents=True)
    files = []
    for k, side in enumerate((15, 26, 36, 43, 30)):
        data = rng.normal(2000, 400, (4, 48, 48))
        data[:, 2:2 + side, 3:3 + side] += 7000
        if k == 4:
            data[:, :, 40:] = 0  # nodata strip: not valid, not counted
        path = d / f"s{k}.tif"
        with rasterio.open(path, "w", driver="GTiff", width=48, height=48, count=4, dtype="uint16", nodata=0,
                           crs="EPSG:32633", transform=from_origin(600000, 5000000, 30, 30)) as dst:
            dst.write(np.clip(data, 0, 65535).astype(np.uint16))
        files.append(path)
    return files


def _seg_run(root: Path) -> Path:
    """A run folder of a small segmenter (32 px, 4 bands) whose logit is the band mean above 5000 DN plus a
    small seeded conv path, and its int8 TFLite from export's converter."""
    import keras
    from keras import layers

    from cloudcover.export.tflite_export import convert_int8
    from cloudcover.train.preprocess import Preprocess

    keras.utils.set_random_seed(0)
    inp = keras.Input((32, 32, 4))
    x = layers.Rescaling(1 / 5000, offset=-1.0)(inp)
    mean = layers.Conv2D(1, 1, kernel_initializer=keras.initializers.Constant(0.25))(x)
    y = layers.Conv2D(4, 3, padding="same", activation="relu")(x)
    y = layers.Conv2D(1, 3, padding="same", kernel_initializer=keras.initializers.RandomNormal(stddev=0.1))(y)
    model = keras.Model(inp, layers.Add()([mean, y]))
    run = root / "run"
    run.mkdir(parents=True)
    model.save(run / "model.keras")
    Preprocess(input_size=32, bands=4, mean=[0.0] * 4, std=[1.0] * 4, class_names=SEG_NAMES, bins=SEG_BINS,
               model="tiny_seg", task="segmentation", value_range=[0.0, 65535.0]).save(run)
    calib = np.random.default_rng(1).uniform(0, 10000, (16, 32, 32, 4)).astype(np.float32)
    convert_int8(model, calib, root / "seg_int8.tflite")
    return run


def _seg_oracle(tflite: Path, files: list[Path]) -> list[tuple[int, int]]:
    """(cloud pixels, valid pixels) per file: rasterio + PIL resizes, BUILTIN_REF, logit >= 0 (threshold 0.5)."""
    import rasterio
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    from PIL import Image

    it = Interpreter(model_path=str(tflite), experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    it.allocate_tensors()
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    (si, zi), (so, zo) = i["quantization"], o["quantization"]
    out = []
    for f in files:
        with rasterio.open(f) as src:
            data = src.read().astype(np.float32)
        rs = lambda a, n: np.asarray(Image.fromarray(a, mode="F").resize((n, n), Image.BILINEAR))  # noqa: E731
        x = np.stack([rs(b, 32) for b in data], -1)
        it.set_tensor(i["index"], np.clip(np.round(x / si) + zi, -128, 127).astype(np.int8)[None])
        it.invoke()
        logit = (it.get_tensor(o["index"])[0, ..., 0].astype(np.float32) - zo) * so
        valid = np.any(data != 0, axis=0)
        out.append((int(((rs(logit, 48) >= 0) & valid).sum()), int(valid.sum())))
    return out


def test_segmenter_host_target(tmp_path, monkeypatch):
    """A segmentation run: masks and coverage from the device agree with BUILTIN_REF computed here, the float
    columns with host `cloudcover predict`, and a GeoTIFF mask per input keeps the input's georeferencing."""
    import rasterio

    monkeypatch.setattr(device_predict, "cache_dir", lambda: tmp_path / "cache")
    files = _seg_images(tmp_path / "img")
    run = _seg_run(tmp_path)
    assert cli_main(["compile", "--model", str(tmp_path / "seg_int8.tflite"), "--target", "host",
                     "--out", str(tmp_path / "model")]) == 0
    out = tmp_path / "dev.csv"
    assert cli_main(["predict", "--run", str(run), "--device", "host", "--model-dir", str(tmp_path / "model"),
                     "--quiet", "--out", str(out), str(tmp_path / "img")]) == 0
    rows = _read(out)
    want = _seg_oracle(tmp_path / "seg_int8.tflite", files)
    assert [(int(r["cloud_pixels"]), int(r["valid_pixels"])) for r in rows] == want
    assert want[4][1] == 48 * 40 and len({r["class"] for r in rows}) >= 3
    for r, (c, v) in zip(rows, want):
        assert float(r["coverage_pct"]) == pytest.approx(100 * c / v, abs=1e-5)
        assert r["class"] == SEG_NAMES[min(int(np.searchsorted(SEG_BINS, 100 * c / v, side="right")) - 1, 3)]
    with rasterio.open(rows[4]["mask"]) as m:
        assert m.crs.to_epsg() == 32633 and m.nodata == 255 and (m.read(1)[:, 40:] == 255).all()
    assert cli_main(["predict", "--run", str(run), "--quiet", "--out", str(tmp_path / "host.csv"),
                     str(tmp_path / "img")]) == 0
    host = _read(tmp_path / "host.csv")
    assert [r["float_coverage_pct"] for r in rows] == [h["coverage_pct"] for h in host]
    assert [r["float_class"] for r in rows] == [h["class"] for h in host]
    assert [r["device_equals_float"] for r in rows] == [str(r["class"] == h["class"]) for r, h in zip(rows, host)]
    assert all(0.9 <= float(r["pixel_agreement"]) <= 1 for r in rows)
