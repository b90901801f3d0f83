"""`cloudcover data ...`: every sub-command is reachable, documented, and chains synth -> prepare."""

import json

import pytest

from cloudcover.riscv.cli import main


@pytest.mark.parametrize("verb,words", [("synth", ["--format", "--seed", "default: 480"]),
                                        ("download", ["--urls", "Range", "sha256"]),
                                        ("prepare", ["--count-shadow", "--image-format", "default: 0,25,50,75,100"])])
def test_help(capsys, verb, words):
    with pytest.raises(SystemExit) as exc:
        main(["data", verb, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for w in words:
        assert w in out


def test_synth_then_prepare(tmp_path, capsys):
    raw, ds = tmp_path / "raw", tmp_path / "ds"
    assert main(["data", "synth", "--out", str(raw), "--n", "8", "--size", "48", "--patches-per-roi", "2",
                 "--seed", "3", "--workers", "1", "--quiet"]) == 0
    assert "8 cloudsen12 patches in 4 ROIs" in capsys.readouterr().out
    assert main(["data", "prepare", "--source", "cloudsen12", "--input", str(raw), "--out", str(ds), "--size", "24",
                 "--workers", "1", "--quiet"]) == 0
    assert "prepare: 8 patches" in capsys.readouterr().out
    meta = json.loads((ds / "dataset.json").read_text())
    assert sum(sum(c.values()) for c in meta["counts"].values()) == 8 and meta["size"] == 24


def test_synth_bad_flags(tmp_path, capsys):
    assert main(["data", "synth", "--out", str(tmp_path / "x"), "--n", "0", "--quiet"]) == 1
    assert "--n 0" in capsys.readouterr().err
    assert main(["data", "synth", "--out", str(tmp_path / "x"), "--bins", "0,100,50", "--quiet"]) == 1
    assert "--bins" in capsys.readouterr().err


def test_synth_label_rim_reaches_the_generator(tmp_path, capsys):
    """The default is the measured 12 px rim; --label-rim 0 changes the scenes (same seed, same coverage); a
    negative rim writes nothing."""
    import hashlib

    def masks(out):
        return [hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.rglob("manual_hq.tif"))]

    args = ["data", "synth", "--n", "4", "--size", "48", "--seed", "1", "--workers", "1", "--quiet"]
    assert main(args + ["--out", str(tmp_path / "default")]) == 0
    assert main(args + ["--out", str(tmp_path / "rim"), "--label-rim", "12"]) == 0
    assert main(args + ["--out", str(tmp_path / "plain"), "--label-rim", "0"]) == 0
    assert len(masks(tmp_path / "rim")) == 4 and masks(tmp_path / "default") == masks(tmp_path / "rim")
    assert masks(tmp_path / "plain") != masks(tmp_path / "rim")
    assert json.loads((tmp_path / "default" / "synth.json").read_text())["label_rim"] == 12
    capsys.readouterr()
    assert main(args + ["--out", str(tmp_path / "bad"), "--label-rim", "-1"]) == 1
    assert "label_rim" in capsys.readouterr().err and not (tmp_path / "bad").exists()
