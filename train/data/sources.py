"""Readers for the two labelled cloud datasets: find patches at any depth, read RGB + mask + validity.

Each source is a class whose docstring states the format and whose class attributes hold the metadata
(bands, RGB bands, label codes, file patterns), as torchgeo does. Both hand back masks in CloudSEN12's
codes (0 clear, 1 thick, 2 thin, 3 shadow) so that `coverage` has one definition of cloud.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from cloudcover.train.data import coverage
from cloudcover.train.data.raster import open_raster, read_raster
from cloudcover.train.data.render import RenderRule, rule_for
from cloudcover.train.errors import CloudcoverError


@dataclass(frozen=True)
class PatchRef:
    """One patch found on disk: where its image file(s) and its mask are, and which ROI it belongs to."""

    patch_id: str  # unique within a run, path-safe
    roi: str  # region of interest (CloudSEN12) or Landsat scene (38-Cloud): the split group
    images: tuple[Path, ...]  # one multi-band file, or one file per band (38-Cloud)
    mask: Path


@dataclass
class Sample:
    """What prepare needs from a patch: the RGB planes (bands-first DN), its rule, codes and validity."""

    rgb: np.ndarray  # (3, H, W) red, green, blue in the file's DN
    rule: RenderRule
    mask: np.ndarray  # (H, W) uint8 CloudSEN12 codes (meaningful where valid)
    valid: np.ndarray  # (H, W) bool: labelled and not image nodata
    crs: object | None
    transform: object | None
    bands: np.ndarray | None = None  # (C, H, W) every band in the file's DN, when read with all_bands
    band_names: tuple[str, ...] = ()


def _nodata_mask(a: np.ndarray, nodata: float | None, zero_dn: bool) -> np.ndarray:
    """True where a pixel is nodata: the declared nodata value, NaN, and (zero_dn) 0 in an integer image.

    zero_dn is for images only: 0 DN is nodata in Sentinel-2 and Landsat products, but 0 is "clear" in a mask.
    """
    bad = np.zeros(a.shape, dtype=bool)
    if a.dtype.kind == "f":
        bad |= ~np.isfinite(a)
        if nodata is not None and np.isfinite(nodata):
            bad |= np.isclose(a, nodata, rtol=1e-6, atol=0) if abs(nodata) > 1e30 else (a == nodata)
    else:
        if nodata is not None and np.isfinite(nodata):
            bad |= a == nodata
        if zero_dn:
            bad |= a == 0
    return bad


def _skip_hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def _check_root(root: Path, source: str) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise CloudcoverError(f"--input {root}: no such folder")
    return root


class CloudSEN12:
    """CloudSEN12 (Aybar et al. 2022, Scientific Data): Sentinel-2 patches with manual cloud labels.

    Image: `S2L1C.tif`, 509 x 509 at 10 m, 13 bands uint16 (B1..B12 with B8A; reflectance x 10000), or
    the 3-band float32 RGB cut of the shared samples. Labels: `manual_hq.tif` (high quality) or
    `manual_sc.tif` (scribbles; unlabelled pixels are nodata), codes 0 clear, 1 thick cloud, 2 thin cloud,
    3 cloud shadow. Found at any depth, with the mask in `labels/` (v1 tar layout and the synthetic
    scenes: `<ROI>/<patch>/S2L1C.tif`, `<ROI>/<patch>/labels/manual_hq.tif`) or beside the image
    (`ROI_1746/high/<stratum>/manual_hq.tif`).
    """

    name: ClassVar[str] = "cloudsen12"
    image_name: ClassVar[str] = "S2L1C.tif"
    bands: ClassVar[tuple[str, ...]] = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10",
                                        "B11", "B12")
    rgb_bands: ClassVar[tuple[str, ...]] = ("B4", "B3", "B2")
    labels: ClassVar[tuple[str, ...]] = ("manual_hq", "manual_sc")
    default_label: ClassVar[str] = "manual_hq"
    codes: ClassVar[dict[int, str]] = coverage.CODES
    roi_pattern: ClassVar[re.Pattern] = re.compile(r"^ROI_\d+$", re.IGNORECASE)

    def find(self, root: Path, label: str | None = None) -> list[PatchRef]:
        """Every patch under root, sorted; a missing mask is an error here, before any work starts."""
        root = _check_root(root, self.name)
        label = label or self.default_label
        refs = []
        for image in sorted(root.rglob(self.image_name)):
            if _skip_hidden(image, root) or not image.is_file():
                continue
            candidates = [image.parent / "labels" / f"{label}.tif", image.parent / f"{label}.tif"]
            mask = next((c for c in candidates if c.is_file()), None)
            if mask is None:
                raise CloudcoverError(f"{image}: no {label} mask (looked for {candidates[0]} and {candidates[1]})")
            rel = image.parent.relative_to(root)
            parts = rel.parts or (root.name,)
            roi = next((p for p in reversed((root.name,) + rel.parts) if self.roi_pattern.match(p)), parts[0])
            refs.append(PatchRef("__".join(parts), roi, (image,), mask))
        if not refs:
            raise CloudcoverError(f"--input {root}: no CloudSEN12 patches found (looked for **/{self.image_name})")
        return refs

    def read(self, ref: PatchRef, all_bands: bool = False) -> Sample:
        """RGB, codes and validity; with all_bands also every band of the file (13, or 3 for the RGB cut)."""
        image = ref.images[0]
        bands = None
        with open_raster(image) as src:
            rule = rule_for(self.name, src.count, where=str(image))
            if all_bands:
                bands = read_raster(src, image)
                rgb = bands[[i - 1 for i in rule.rgb_indexes]]
            else:
                rgb = read_raster(src, image, list(rule.rgb_indexes))
            img_nodata, crs, transform = src.nodata, src.crs, src.transform
        with open_raster(ref.mask) as src:
            if src.count != 1:
                raise CloudcoverError(f"{ref.mask}: {src.count} bands; a mask must have 1")
            raw = read_raster(src, ref.mask, 1)
            mask_nodata = src.nodata
        if raw.shape != rgb.shape[1:]:
            raise CloudcoverError(f"{ref.mask}: mask is {raw.shape[0]}x{raw.shape[1]} but image {image} is "
                                  f"{rgb.shape[1]}x{rgb.shape[2]}")
        valid = ~_nodata_mask(raw, mask_nodata, zero_dn=False)
        valid &= ~np.all(_nodata_mask(rgb, img_nodata, zero_dn=True), axis=0)
        codes = np.where(valid, raw, 0)
        if codes.min() < 0 or codes.max() > coverage.SHADOW or (raw.dtype.kind == "f" and np.any(codes != np.round(codes))):
            bad = sorted({float(v) for v in np.unique(codes) if v not in (0, 1, 2, 3)})[:5]
            raise CloudcoverError(f"{ref.mask}: label values {bad} outside CloudSEN12's codes 0..3")
        names = self.bands if bands is not None and len(bands) == 13 else ("B4", "B3", "B2")
        return Sample(rgb, rule, codes.astype(np.uint8), valid, crs, transform, bands,
                      names if bands is not None else ())


class Cloud38:
    """38-Cloud (Mohajerani et al. 2019; Landsat 8; Apache-2.0): 384 x 384 patches of 38 scenes.

    One uint16 file per band in sibling folders, `train_{red,green,blue,nir}/{band}_patch_<n>_<r>_by_<c>_
    <scene>.TIF`, and the ground truth `train_gt/gt_patch_....TIF` (uint8, 0 clear, 255 cloud; there is
    no thin-cloud or shadow class). Pixels that are 0 in every band lie outside the scene: not valid.
    The ROI (split group) is the Landsat scene id.
    """

    name: ClassVar[str] = "38cloud"
    bands: ClassVar[tuple[str, ...]] = ("red", "green", "blue", "nir")
    rgb_bands: ClassVar[tuple[str, ...]] = ("red", "green", "blue")
    labels: ClassVar[tuple[str, ...]] = ("gt",)
    default_label: ClassVar[str] = "gt"
    gt_codes: ClassVar[dict[int, int]] = {0: coverage.CLEAR, 255: coverage.THICK}
    file_pattern: ClassVar[re.Pattern] = re.compile(r"^red_(patch_\d+_\d+_by_\d+_(.+))\.tif$", re.IGNORECASE)

    @staticmethod
    def _sibling(red: Path, band: str) -> Path:
        folder = red.parent.name
        prefix = folder[: -len("red")] if folder.lower().endswith("red") else folder + "_"
        return red.parent.parent / f"{prefix}{band}" / f"{band}_{red.name[4:]}"

    def find(self, root: Path, label: str | None = None) -> list[PatchRef]:
        root = _check_root(root, self.name)
        if label not in (None, "gt"):
            raise CloudcoverError(f"--label {label}: 38-Cloud has only the 'gt' label")
        refs = []
        for red in sorted(p for p in root.rglob("red_patch_*") if p.is_file()):
            m = self.file_pattern.match(red.name)
            if not m or _skip_hidden(red, root):
                continue
            images = tuple(self._sibling(red, b) if b != "red" else red for b in self.bands[:3])
            for img in images:
                if not img.is_file():
                    raise CloudcoverError(f"{red}: the matching band file {img} is missing")
            mask = self._sibling(red, "gt")
            if not mask.is_file():
                raise CloudcoverError(f"{red}: no gt mask (looked for {mask})")
            refs.append(PatchRef(m.group(1), m.group(2), images, mask))
        if not refs:
            raise CloudcoverError(f"--input {root}: no 38-Cloud patches found (looked for **/train_red/red_patch_*.TIF)")
        return refs

    def read(self, ref: PatchRef, all_bands: bool = False) -> Sample:
        """RGB, codes and validity; with all_bands also the four bands red, green, blue, nir."""
        planes, crs, transform = [], None, None
        images = ref.images
        if all_bands:
            nir = self._sibling(ref.images[0], "nir")
            if not nir.is_file():
                raise CloudcoverError(f"{ref.images[0]}: the matching nir band file {nir} is missing")
            images = (*ref.images[:3], nir)
        for img in images:
            with open_raster(img) as src:
                if src.count != 1:
                    raise CloudcoverError(f"{img}: {src.count} bands; 38-Cloud band files have 1")
                planes.append(read_raster(src, img, 1))
                crs, transform = crs or src.crs, transform or src.transform
            if planes[-1].shape != planes[0].shape:
                raise CloudcoverError(f"{img}: {planes[-1].shape[0]}x{planes[-1].shape[1]} but {ref.images[0]} "
                                      f"is {planes[0].shape[0]}x{planes[0].shape[1]}")
        stack = np.stack(planes)
        rgb = stack[:3]
        with open_raster(ref.mask) as src:
            gt = read_raster(src, ref.mask, 1)
        if gt.shape != rgb.shape[1:]:
            raise CloudcoverError(f"{ref.mask}: mask is {gt.shape[0]}x{gt.shape[1]} but image {ref.images[0]} is "
                                  f"{rgb.shape[1]}x{rgb.shape[2]}")
        bad = ~np.isin(gt, list(self.gt_codes))
        if bad.any():
            vals = sorted({int(v) for v in np.unique(gt[bad])})[:5]
            raise CloudcoverError(f"{ref.mask}: gt values {vals}; 38-Cloud gt must be 0 (clear) or 255 (cloud)")
        codes = np.where(gt == 255, coverage.THICK, coverage.CLEAR).astype(np.uint8)
        valid = ~np.all(rgb == 0, axis=0)
        return Sample(rgb, rule_for(self.name, 3), codes, valid, crs, transform,
                      stack if all_bands else None, self.bands if all_bands else ())


SOURCES: dict[str, type] = {CloudSEN12.name: CloudSEN12, Cloud38.name: Cloud38}


def get_source(name: str):
    """The reader for a --source name; unknown names list the known ones."""
    if name not in SOURCES:
        raise CloudcoverError(f"--source {name!r}: unknown; choose one of {', '.join(SOURCES)}")
    return SOURCES[name]()
