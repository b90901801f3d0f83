"""Tiny real files for the data-layer tests: seeded synthetic scenes and hand-made GeoTIFFs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from cloudcover.train.data.synth import SynthConfig, synthesize


def write_tif(path: Path, data: np.ndarray, nodata=None, crs="EPSG:32643") -> Path:
    """A real GeoTIFF (bands-first data) with a UTM CRS and 10 m transform."""
    data = data if data.ndim == 3 else data[None]
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0],
                       dtype=data.dtype.name, crs=crs, transform=Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 4000000.0),
                       nodata=nodata, compress="deflate") as dst:
        dst.write(data)
    return path


def make_cloudsen12_patch(folder: Path, mask: np.ndarray, bands: int = 13, labels_dir: bool = True) -> Path:
    """One CloudSEN12-layout patch whose image is uniform ground; returns the image path."""
    h, w = mask.shape
    img = np.full((bands, h, w), 1200, np.uint16)
    write_tif(folder / "S2L1C.tif", img)
    write_tif((folder / "labels" if labels_dir else folder) / "manual_hq.tif", mask.astype(np.uint8))
    return folder / "S2L1C.tif"


@pytest.fixture(scope="session")
def tiny_synth(tmp_path_factory) -> Path:
    """16 small CloudSEN12-like scenes in 4 ROIs (seeded)."""
    out = tmp_path_factory.mktemp("synth") / "raw"
    synthesize(SynthConfig(out=out, n=16, seed=1, size=64, patches_per_roi=4, workers=1, progress=False))
    return out


@pytest.fixture
def tifs():
    """The GeoTIFF helpers above, as a fixture (tests cannot import conftest under importlib mode)."""
    class Tifs:
        write = staticmethod(write_tif)
        patch = staticmethod(make_cloudsen12_patch)
    return Tifs
