"""The preprocessing contract shared by every stage: decode, resize, and nothing else.

Normalization (train-split mean/std) lives inside the Keras model as its first layer, so what a model
takes is raw pixel values as float32 HxWxC. `preprocess.json` records the input size, bands, the
statistics (for the record and for other runtimes), class names and coverage bins; `load_image` is the
one function that turns a file into model input, used by training, export, evaluation and prediction
alike, so preprocessing stored at training is the one applied everywhere after.
"""

from __future__ import annotations

import csv
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from cloudcover.train.atomic import write_text
from cloudcover.train.errors import CloudcoverError

PREPROCESS_FILE = "preprocess.json"
MANIFEST_COLUMNS = ("patch_id", "roi", "image", "mask", "coverage_pct", "shadow_pct", "label", "split")


@dataclass
class Preprocess:
    input_size: int
    bands: int
    mean: list[float]  # per band, of raw pixel values over the train split (applied inside the model)
    std: list[float]
    class_names: list[str]
    bins: list[float]  # coverage-percent edges of the classes, from dataset.json
    model: str
    alpha: float = 0.35
    resize: str = "bilinear"  # PIL resampling used by load_image
    data_dir: str = ""  # the dataset the model was trained on (export's default calibration/test data)
    layout: str = "NHWC"
    value_range: list[float] = field(default_factory=lambda: [0.0, 255.0])
    task: str = "classification"  # see task.py; absent in runs older than tasks, which were all classifiers
    threshold: float = 0.5  # segmentation: a pixel is cloud when sigmoid(logit) >= threshold
    band_names: list[str] = field(default_factory=list)  # from dataset.json (e.g. red, green, blue, nir)

    def save(self, run_dir: str | Path) -> Path:
        path = Path(run_dir) / PREPROCESS_FILE
        write_text(path, json.dumps(asdict(self), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, run_dir: str | Path) -> "Preprocess":
        path = Path(run_dir) / PREPROCESS_FILE
        if not path.is_file():
            raise CloudcoverError(f"{path} not found: not a training run folder (train one with 'cloudcover train')")
        try:
            raw = json.loads(path.read_text())
            known = {f for f in cls.__dataclass_fields__}
            return cls(**{k: v for k, v in raw.items() if k in known})
        except (json.JSONDecodeError, TypeError) as exc:
            raise CloudcoverError(f"{path} is not a valid preprocess.json: {exc}") from exc


# ----------------------------------------------------------------------------------------------------
# Images


def _read_pixels(path: Path) -> np.ndarray:
    """Decode a PNG/JPEG (PIL) or a GeoTIFF (rasterio) to HxWxC, native dtype."""
    suffix = path.suffix.lower()
    if suffix in (".tif", ".tiff"):
        import rasterio

        with rasterio.open(path) as src:
            return np.moveaxis(src.read(), 0, -1)
    from PIL import Image

    with Image.open(path) as im:
        if im.mode not in ("RGB", "RGBA", "L", "I;16", "I"):
            im = im.convert("RGB")
        arr = np.asarray(im)
    return arr[..., None] if arr.ndim == 2 else arr


def _resize(arr: np.ndarray, size: int, method: str) -> np.ndarray:
    """Resize each band as float32 with PIL (mode "F"), so 8-bit, 16-bit and many-band images resize alike."""
    if arr.shape[0] == size and arr.shape[1] == size:
        return arr.astype(np.float32)
    from PIL import Image

    resample = {"bilinear": Image.BILINEAR, "nearest": Image.NEAREST, "bicubic": Image.BICUBIC}[method]
    bands = [np.asarray(Image.fromarray(arr[..., c].astype(np.float32), mode="F").resize((size, size), resample))
             for c in range(arr.shape[-1])]
    return np.stack(bands, axis=-1).astype(np.float32)


def _read_pixels_or_fail(path: Path) -> np.ndarray:
    """_read_pixels with a missing or undecodable file turned into one clear line naming it."""
    try:
        return _read_pixels(path)
    except FileNotFoundError:
        raise CloudcoverError(f"image not found: {path}") from None
    except Exception as exc:
        raise CloudcoverError(f"cannot decode image {path}: {exc}") from exc


def load_image(path: str | Path, pre: Preprocess) -> np.ndarray:
    """Decode and resize one image to what the model takes: float32 [input_size, input_size, bands], raw values."""
    path = Path(path)
    arr = _read_pixels_or_fail(path)
    if arr.shape[-1] == 4 and pre.bands == 3:  # RGBA PNG: drop alpha
        arr = arr[..., :3]
    if arr.shape[-1] == 1 and pre.bands == 3:
        arr = np.repeat(arr, 3, axis=-1)
    if arr.shape[-1] != pre.bands:
        raise CloudcoverError(f"image {path} has {arr.shape[-1]} bands, the model takes {pre.bands}")
    return _resize(arr, pre.input_size, pre.resize)


def load_images(paths: list[Path], pre: Preprocess, workers: int = 2) -> np.ndarray:
    """Decode many images in a small thread pool (PIL releases the GIL while decoding)."""
    out = np.empty((len(paths), pre.input_size, pre.input_size, pre.bands), np.float32)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for i, arr in enumerate(pool.map(lambda p: load_image(p, pre), paths)):
            out[i] = arr
    return out


# ----------------------------------------------------------------------------------------------------
# Dataset folders (written by `cloudcover data prepare`)


@dataclass
class DatasetInfo:
    root: Path
    classes: list[str]
    bins: list[float]
    rows: list[dict[str, str]]  # manifest rows
    meta: dict

    @property
    def task(self) -> str:
        """The task dataset.json records (missing: classification, as every dataset before tasks)."""
        return self.meta.get("task") or "classification"

    def split_rows(self, split: str) -> list[dict[str, str]]:
        return [r for r in self.rows if r["split"] == split]


def read_dataset(data_dir: str | Path) -> DatasetInfo:
    """Read and check DATASET_DIR/manifest.csv and dataset.json."""
    root = Path(data_dir)
    if not root.is_dir():
        raise CloudcoverError(f"dataset folder {root} does not exist (--data)")
    manifest = root / "manifest.csv"
    if not manifest.is_file():
        raise CloudcoverError(f"{manifest} not found: not a prepared dataset (run 'cloudcover data prepare')")
    meta_path = root / "dataset.json"
    if not meta_path.is_file():
        raise CloudcoverError(f"{meta_path} not found: not a prepared dataset (run 'cloudcover data prepare')")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise CloudcoverError(f"{meta_path} is not valid JSON: {exc}") from exc
    classes = list(meta.get("classes") or [])
    if len(classes) < 2:
        raise CloudcoverError(f"{meta_path} lists {len(classes)} classes; need at least 2")
    from cloudcover.train.task import task_of

    task = task_of(meta, meta_path)
    required = ("patch_id", "image", "label", "split") + (("target",) if task.name == "segmentation" else ())
    with open(manifest, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise CloudcoverError(f"{manifest} lacks column(s) {', '.join(missing)}")
        rows = list(reader)
    unknown = sorted({r["label"] for r in rows} - set(classes))
    if unknown:
        raise CloudcoverError(f"{manifest} has labels not in dataset.json classes: {', '.join(unknown)}")
    return DatasetInfo(root, classes, [float(b) for b in meta.get("bins", [])], rows, meta)


def detect_bands(info: DatasetInfo) -> int:
    """Band count of the dataset's first image (an RGBA PNG counts as 3; a 4-band GeoTIFF as 4)."""
    if not info.rows:
        raise CloudcoverError(f"{info.root / 'manifest.csv'} lists no images")
    first = info.root / info.rows[0]["image"]
    arr = _read_pixels_or_fail(first)
    rgba = arr.shape[-1] == 4 and first.suffix.lower() not in (".tif", ".tiff")  # a GeoTIFF's 4th band is data
    return 3 if rgba else arr.shape[-1]


def load_split(data_dir: str | Path, split: str, pre: Preprocess) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """All images of one split as model input: (x float32 [N,H,W,C], y int64 [N], patch_ids).

    Labels are indices into `pre.class_names` (the model's order), not the dataset's.
    """
    info = read_dataset(data_dir)
    rows = info.split_rows(split)
    index = {name: i for i, name in enumerate(pre.class_names)}
    unknown = sorted({r["label"] for r in rows} - set(index))
    if unknown:
        raise CloudcoverError(f"{info.root}: {split} split has classes the model does not know: {', '.join(unknown)}")
    x = load_images([info.root / r["image"] for r in rows], pre)
    y = np.array([index[r["label"]] for r in rows], dtype=np.int64)
    return x, y, [r["patch_id"] for r in rows]


def band_stats(x: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-band mean and std over every pixel of a [N,H,W,C] array (float64 accumulation)."""
    flat = x.reshape(-1, x.shape[-1]).astype(np.float64)
    return flat.mean(axis=0).tolist(), flat.std(axis=0).tolist()
