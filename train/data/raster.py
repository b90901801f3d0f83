"""Open and read rasters so that every rasterio failure becomes one CloudcoverError naming the file."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from cloudcover.train.errors import CloudcoverError


def open_raster(path: Path):
    """rasterio.open, quiet about missing georeferencing (38-Cloud's files have none)."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(path)
    except RasterioIOError as exc:
        raise CloudcoverError(f"{path}: not a readable GeoTIFF ({str(exc).splitlines()[0]})") from None


def read_raster(src, path: Path, indexes=None) -> np.ndarray:
    """src.read, turning a truncated or corrupt file (found only when pixels are decoded) into one line."""
    from rasterio.errors import RasterioError

    try:
        return src.read(indexes)
    except RasterioError as exc:
        raise CloudcoverError(f"{path}: truncated or corrupt GeoTIFF ({str(exc).splitlines()[0]})") from None
