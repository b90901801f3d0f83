"""Small segmentation datasets made by the real data stage: synthetic 38-Cloud-like scenes -> prepare --task segmentation."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloudcover.train.data.prepare import PrepareConfig, prepare
from cloudcover.train.data.synth import SynthConfig, synthesize


@pytest.fixture(scope="session")
def seg_raw(tmp_path_factory) -> Path:
    """24 synthetic 38-Cloud-like 64 x 64 patches (4 bands + gt) in 6 scenes of 2 x 2 patches (seeded)."""
    out = tmp_path_factory.mktemp("segsynth") / "raw"
    synthesize(SynthConfig(out=out, format="38cloud", n=24, seed=3, size=64, patches_per_roi=4, workers=1,
                           progress=False))
    return out


@pytest.fixture(scope="session")
def seg_dataset(seg_raw, tmp_path_factory) -> Path:
    """seg_raw prepared for segmentation at native size: 4-band GeoTIFFs and 0/1/255 mask PNGs."""
    out = tmp_path_factory.mktemp("segprep") / "dataset"
    prepare(PrepareConfig(source="38cloud", input=seg_raw, out=out, task="segmentation", seed=0,
                          split=(0.5, 0.25, 0.25), workers=1, progress=False))
    return out


@pytest.fixture(scope="session")
def seg_run(seg_dataset, tmp_path_factory):
    """An edge-sized UNet trained for two epochs on seg_dataset (shared by the slow tests that need a run)."""
    from cloudcover.train.training import Augment, TrainConfig, train

    out = tmp_path_factory.mktemp("segrun") / "run"
    cfg = TrainConfig(data=seg_dataset, out=out, model="unet_resnet18", alpha=0.25, input_size=32, epochs=2,
                      batch_size=4, lr=3e-3, seed=0, augment=Augment(hflip=True, vflip=True))
    return train(cfg, verbose=0)
