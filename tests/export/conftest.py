"""Reuse the tiny-dataset and trained-run fixtures of tests/train (loaded by path: the folders are not packages)."""

import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("cloudcover_tests_train_conftest",
                                               Path(__file__).resolve().parents[1] / "train" / "conftest.py")
_train = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_train)

tiny_dataset = _train.tiny_dataset
trained_run = _train.trained_run
make_dataset = _train.make_dataset


@pytest.fixture(scope="session")
def exported(trained_run, tmp_path_factory):
    """The trained run exported through the CLI, as a user would."""
    from cloudcover.riscv.cli import main

    out = tmp_path_factory.mktemp("art") / "artifacts"
    assert main(["export", "--run", str(trained_run.run_dir), "--out", str(out), "--calib-samples", "64"]) == 0
    return out
