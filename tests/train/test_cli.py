"""`cloudcover train` flags and its one-line errors."""

import pytest

from cloudcover.riscv.cli import main
from cloudcover.train.cli import parse_augment
from cloudcover.train.errors import CloudcoverError
from cloudcover.train.training import Augment


def test_parse_augment():
    assert parse_augment("none") == Augment(hflip=False, vflip=False)
    assert parse_augment("hflip,rotation=15,shift=0.1,brightness=0.2") == Augment(
        hflip=True, vflip=False, rotation=15, width_shift=0.1, height_shift=0.1, brightness=0.2)
    with pytest.raises(CloudcoverError, match="unknown augmentation 'sharpen'"):
        parse_augment("sharpen=1")
    with pytest.raises(CloudcoverError, match="zoom needs a number"):
        parse_augment("zoom=big")


def test_train_help_shows_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert "(default: mobilenet)" in out and "edge_cnn" in out


def test_missing_dataset_is_one_line_and_exit_1(tmp_path, capsys):
    rc = main(["train", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 1
    assert err.startswith("cloudcover train: error: dataset folder") and "\n" not in err
