"""Bad inputs to tune / evaluate / predict give one clear line and exit status 1 (no TensorFlow needed)."""

import json

import pytest

from cloudcover.train.errors import CloudcoverError
from cloudcover.train.search_space import SearchSpace
from cloudcover.train.study_storage import open_storage, redact
from cloudcover.train.tune import make_pruner

from .conftest import cli


def test_unknown_model_name_lists_known_ones(tiny_dataset, tmp_path):
    r = cli("tune", "--data", str(tiny_dataset), "--models", "edge_cnn,resnet5O", "--trials", "1",
            "--out", str(tmp_path / "s"), timeout=120)
    assert r.returncode == 1
    assert "cloudcover tune: error: unknown model 'resnet5O'; known models:" in r.stderr
    assert "edge_cnn" in r.stderr.splitlines()[-1]


def test_empty_search_space(tiny_dataset, tmp_path):
    r = cli("tune", "--data", str(tiny_dataset), "--models", ",", "--trials", "1", "--out", str(tmp_path / "s"))
    assert r.returncode == 1
    assert "empty search space: no architecture to try (--models)" in r.stderr
    space = tmp_path / "space.json"
    space.write_text(json.dumps({"optimizers": []}))
    r = cli("tune", "--data", str(tiny_dataset), "--models", "edge_cnn", "--trials", "1", "--space", str(space),
            "--out", str(tmp_path / "s"))
    assert r.returncode == 1
    assert "empty search space: 'optimizers' lists no choice" in r.stderr


@pytest.mark.parametrize("overrides, match", [
    ({"lr": [0.1, 0.001]}, "'lr' has low 0.1 > high 0.001"),
    ({"lr": [0.0, 0.1]}, "log-uniform and needs low > 0"),
    ({"optimizers": ["adamw"]}, "unknown optimizer"),
    ({"learning_rate": [1e-3, 1e-2]}, "unknown search-space key"),
    ({"widths": {"edge_cnn": []}}, "no width for 'edge_cnn'"),
])
def test_search_space_validation(overrides, match):
    with pytest.raises(CloudcoverError, match=match):
        SearchSpace.build(["edge_cnn"], 32, overrides)


def test_input_sizes_fit_the_patches():
    space = SearchSpace.build(["edge_cnn", "inception_v3"], 64)
    assert space.input_sizes == [32, 48, 64]
    assert set(space.widths) == {"edge_cnn"}  # inception has no width multiplier


def test_unreachable_storage_url(tiny_dataset, tmp_path):
    r = cli("tune", "--data", str(tiny_dataset), "--models", "edge_cnn", "--trials", "1",
            "--storage", "postgresql://cc:secret@127.0.0.1:9/nowhere", "--out", str(tmp_path / "s"), timeout=120)
    assert r.returncode == 1
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("cloudcover tune: error: cannot reach storage postgresql://cc:***@127.0.0.1:9/nowhere")
    assert "secret" not in r.stderr


def test_storage_url_errors_in_process(tmp_path):
    with pytest.raises(CloudcoverError, match="cannot reach storage"):
        open_storage("nosuchdialect://x/y", tmp_path)
    assert redact("postgresql://u:pw@h:5/db") == "postgresql://u:***@h:5/db"


def test_bad_pruner_and_missing_dataset(tmp_path):
    with pytest.raises(CloudcoverError, match="unknown pruner"):
        make_pruner("patient", 3)
    r = cli("tune", "--data", str(tmp_path / "nope"), "--models", "edge_cnn", "--trials", "1",
            "--out", str(tmp_path / "s"))
    assert r.returncode == 1 and "does not exist (--data)" in r.stderr


def test_evaluate_and_predict_on_a_folder_that_is_no_run(tmp_path, tiny_dataset):
    r = cli("evaluate", "--run", str(tmp_path), "--data", str(tiny_dataset), "--out", str(tmp_path / "e"))
    assert r.returncode == 1 and "preprocess.json not found" in r.stderr
    r = cli("predict", "--run", str(tmp_path), str(tiny_dataset / "images"))
    assert r.returncode == 1 and "preprocess.json not found" in r.stderr
