"""Every bad input gives one clear line naming the file and the problem, exit 1, and no partial output."""

from pathlib import Path

import numpy as np
import pytest

from cloudcover.riscv.cli import main


def _prepare(capsys, inp: Path, out: Path, *extra: str) -> str:
    rc = main(["data", "prepare", "--source", "cloudsen12", "--input", str(inp), "--out", str(out),
               "--workers", "1", "--quiet", *extra])
    err = capsys.readouterr().err.strip()
    assert rc == 1
    assert err.startswith("cloudcover data: error: ") and "\n" not in err
    assert not out.exists()  # no manifest.csv, no class folders
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")]  # no temp folder left
    return err


@pytest.fixture
def good(tmp_path, tifs):
    """Two valid patches, so each failure below comes from the one bad patch added beside them."""
    for name in ("a", "b"):
        tifs.patch(tmp_path / "in" / "ROI_1" / name, np.ones((16, 16)))
    return tmp_path / "in"


def test_truncated_tiff(good, tmp_path, capsys, tifs):
    img = tifs.patch(good / "ROI_2" / "c", np.zeros((64, 64)))
    data = img.read_bytes()
    img.write_bytes(data[: len(data) // 2])
    err = _prepare(capsys, good, tmp_path / "out")
    assert str(img) in err and ("truncated" in err or "not a readable" in err)


def test_not_a_tiff(good, tmp_path, capsys, tifs):
    img = tifs.patch(good / "ROI_2" / "c", np.zeros((16, 16)))
    img.write_text("<html>404 not found</html>")
    err = _prepare(capsys, good, tmp_path / "out")
    assert str(img) in err and "not a readable GeoTIFF" in err


def test_mask_shape_differs(good, tmp_path, capsys, tifs):
    folder = good / "ROI_2" / "c"
    tifs.patch(folder, np.zeros((16, 16)))
    tifs.write(folder / "labels" / "manual_hq.tif", np.zeros((8, 8), np.uint8))
    err = _prepare(capsys, good, tmp_path / "out")
    assert str(folder / "labels" / "manual_hq.tif") in err and "8x8" in err and "16x16" in err


def test_missing_mask(good, tmp_path, capsys, tifs):
    img = tifs.patch(good / "ROI_2" / "c", np.zeros((16, 16)))
    (img.parent / "labels" / "manual_hq.tif").unlink()
    err = _prepare(capsys, good, tmp_path / "out")
    assert str(img) in err and "no manual_hq mask" in err


def test_unexpected_band_count(good, tmp_path, capsys, tifs):
    img = tifs.patch(good / "ROI_2" / "c", np.zeros((16, 16)), bands=5)
    err = _prepare(capsys, good, tmp_path / "out")
    assert str(img) in err and "5 bands" in err and "13 or 3" in err


def test_mask_with_foreign_codes(good, tmp_path, capsys, tifs):
    tifs.patch(good / "ROI_2" / "c", np.full((16, 16), 7))
    err = _prepare(capsys, good, tmp_path / "out")
    assert "manual_hq.tif" in err and "[7.0]" in err


def test_empty_input_folder(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    err = _prepare(capsys, tmp_path / "empty", tmp_path / "out")
    assert "no CloudSEN12 patches found" in err and str(tmp_path / "empty") in err


def test_missing_input_folder(tmp_path, capsys):
    err = _prepare(capsys, tmp_path / "nope", tmp_path / "out")
    assert "--input" in err and "no such folder" in err


def test_bins_not_increasing(good, tmp_path, capsys):
    err = _prepare(capsys, good, tmp_path / "out", "--bins", "0,50,25,100")
    assert "--bins" in err and "strictly increasing" in err


def test_bad_split_flag(good, tmp_path, capsys):
    assert "--split" in _prepare(capsys, good, tmp_path / "out", "--split", "0.9,0.2,0.1")


def test_a_foreign_out_folder_is_not_replaced(good, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep")
    rc = main(["data", "prepare", "--source", "cloudsen12", "--input", str(good), "--out", str(out), "--quiet",
               "--workers", "1"])
    assert rc == 1 and "not a prepared dataset" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "keep"


def test_failure_keeps_an_earlier_dataset(good, tmp_path, capsys, tifs):
    out = tmp_path / "out"
    assert main(["data", "prepare", "--source", "cloudsen12", "--input", str(good), "--out", str(out), "--quiet",
                 "--workers", "1"]) == 0
    before = (out / "manifest.csv").read_text()
    tifs.patch(good / "ROI_2" / "c", np.zeros((16, 16)), bands=5)
    assert main(["data", "prepare", "--source", "cloudsen12", "--input", str(good), "--out", str(out), "--quiet",
                 "--workers", "1"]) == 1
    assert (out / "manifest.csv").read_text() == before


@pytest.mark.slow
def test_worker_errors_cross_the_process_pool(good, tmp_path, capsys, tifs):
    img = tifs.patch(good / "ROI_2" / "c", np.zeros((16, 16)))
    img.write_text("garbage")
    rc = main(["data", "prepare", "--source", "cloudsen12", "--input", str(good), "--out", str(tmp_path / "out"),
               "--workers", "2", "--quiet"])
    assert rc == 1 and str(img) in capsys.readouterr().err and not (tmp_path / "out").exists()
