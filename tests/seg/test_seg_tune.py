"""`cloudcover tune` on a segmentation dataset: the objective is validation Dice, reported per epoch."""

import json
import subprocess
import sys

import pytest

SPACE = {"optimizers": ["adam"], "lr": [1e-3, 3e-3], "batch_size": [4], "input_sizes": [32, 48, 64],
         "widths": {"unet_resnet18": [0.25]}, "rotation": [0, 0], "zoom": [0, 0], "width_shift": [0, 0],
         "height_shift": [0, 0], "brightness": [0, 0]}


def test_unets_are_offered_only_sides_that_fit_their_stride():
    from cloudcover.train.search_space import SearchSpace

    class Trial:
        def suggest_categorical(self, name, choices):
            self.sizes = choices if name.endswith("input_size") else getattr(self, "sizes", None)
            return choices[0]

        def suggest_float(self, name, lo, hi, log=False):
            return lo

    space = SearchSpace.build(["unet_resnet18"], 64, dict(SPACE))
    trial = Trial()
    space.suggest(trial, 64)
    assert trial.sizes == [32, 64]  # 48 is not a multiple of 32


@pytest.mark.slow
def test_two_trials_maximize_val_dice(seg_dataset, tmp_path):
    space = tmp_path / "space.json"
    space.write_text(json.dumps(SPACE))
    out = tmp_path / "study"
    r = subprocess.run([sys.executable, "-m", "cloudcover.riscv.cli", "tune", "--data", str(seg_dataset), "--models",
                        "unet_resnet18", "--trials", "2", "--epochs-per-trial", "2", "--workers", "1", "--pruner",
                        "none", "--space", str(space), "--quiet", "--out", str(out)],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "best trial" in r.stdout and "Dice" in r.stdout
    best = json.loads((out / "best.json").read_text())
    assert best["objective"].startswith("validation Dice")
    run = out / "best_run"
    val = json.loads((run / "val_metrics.json").read_text())
    assert best["best_value"] == pytest.approx(val["dice"])  # the saved weights' val Dice
    assert json.loads((run / "preprocess.json").read_text())["task"] == "segmentation"
