"""Realism benchmark: train the demo models on synthetic scenes only, then read the real samples with them.

    python -m cloudcover.train.data.realism [--shared ../shared/data] [--work /tmp/cloudcover_realism]
        [--out reports/realism] [--seeds 0] [--epochs 40] [--n 1440] [--skip cls,seg,13band]
        [--augment hflip,vflip,contrast=0.4,...] [--seg-seeds 0,1] [--label-rim 0] [--classifier edge_cnn]

classifier   `data synth --format cloudsen12 --n 1440 --size 256` -> `data prepare --size 96` -> `train --model
             edge_cover --alpha 1.5 --epochs 40 --patience 40 --label-smoothing 0.1` (the demo's chain; `--classifier
             edge_cnn`: the pooled classifier the demo had before the coverage head), per seed;
             its synthetic test accuracy, then `cloudcover predict` on every real CloudSEN12 S2L1C.tif (the
             GeoTIFF path a user takes: fixed reflectance rendering, box resize to 96 px) against the true class
             from manual_hq (thick + thin).
segmenters   the demo's edge UNet (unet_resnet18 alpha 0.25, 30 epochs, lr 3e-3) on 240 synthetic 38-Cloud-like
             patches (4 bands) for the real 38-Cloud patch, and the same UNet on 240 synthetic CloudSEN12-like
             patches reduced to red, green, blue (`prepare --bands rgb`, the form of the real CloudSEN12
             samples) for those; `cloudcover predict` writes each mask at the input's own size and IoU and
             coverage are scored there against manual_hq / gt.
13band       the classifier on all 13 synthetic bands (box-resized raw DN, the segmentation preparation read
             as a classification set); its synthetic test accuracy only: the shared real samples are RGB.
stats        brightness (mean, spread, 5/50/95th percentile of red) and texture per label (clear, cloud, thick,
             thin, shadow) at the model's 96 px, real samples against the synthetic classifier data; the
             brightness above the local clear ground by distance from the cloud label's edge (where a dataset
             puts its label edge: at the first faint lift, or at a visible step); and per
             classifier seed the synthetic test confusion with its errors per cloud morphology and their
             distance to the nearest class edge (are the errors undecidable labels at the edges?).

--augment       the training augmentation of every model here (`cloudcover train --augment`; default the demo's
             flips); photometric randomization (train/augment.py) is what a synthetic-only model may need.
             Runs with other augmentation get their own folders in --work. --skip cls trains no classifier
             (to iterate on the segmenters alone).
--label-rim     synthesize with a faint labelled rim of this many pixels (of 509) around visible cloud, as real
             manual labels have (default: the demo's scenes, `SynthConfig.label_rim` = 12, what the edge
             profile of the real samples shows; 0: the label edge at visible cloud); each value gets its own
             data and run folders (`_rim12`). After a generator change, start with an empty --work.

Writes OUT/realism.json (every figure and setting), OUT/realism.md (tables) and OUT/realism.png (real
patches beside synthetic patches of each coverage class). Intermediate data and runs stay in --work, so
a rerun reuses what is there (delete the folder to start over).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
DEFAULT_SHARED = Path(os.environ.get("CLOUDCOVER_SHARED_DATA", REPO.parent / "shared" / "data"))
CLASSIFIER = dict(model="edge_cover", alpha=1.5, patience=40, label_smoothing=0.1)
SEGMENTER = dict(model="unet_resnet18", alpha=0.25, lr=3e-3)
GOAL_IOU, GOAL_COV_ERR = 0.6, 10.0


@dataclass(frozen=True)
class RealPatch:
    name: str
    source: str  # cloudsen12 | 38cloud
    image: Path  # the file a user would give to `cloudcover predict`
    truth: np.ndarray  # (H, W) bool cloud (thick + thin)
    valid: np.ndarray
    coverage_pct: float


def real_patches(shared: Path) -> list[RealPatch]:
    """Every real labelled patch under `shared` (CloudSEN12 manual_hq, 38-Cloud gt) with its cloud truth."""
    from cloudcover.train.data import coverage
    from cloudcover.train.data.sources import Cloud38, CloudSEN12

    out = []
    for src in (CloudSEN12(), Cloud38()):
        root = shared / src.name
        if not root.is_dir():
            continue
        for ref in src.find(root):
            s = src.read(ref)
            truth = np.isin(s.mask, (coverage.THICK, coverage.THIN)) & s.valid
            name = ref.images[0].parent.name if src.name == "cloudsen12" else "38cloud_" + ref.patch_id.split("_L")[0]
            out.append(RealPatch(name, src.name, ref.images[0], truth, s.valid, coverage.coverage_pct(s.mask, s.valid)))
    return out


def _augment_tag(aug) -> str:
    """Run-folder suffix naming the augmentation when it is not the demo's plain flips ('' when it is)."""
    from cloudcover.train.training import Augment

    if aug == Augment():
        return ""
    parts = [k if isinstance(v, bool) else f"{k}{v:g}" for k, v in asdict(aug).items() if v]
    return "_aug-" + ("-".join(parts) or "none")


def _done(path: Path) -> bool:
    return path.is_file()


def _rim_tag(label_rim: float) -> str:
    """Folder suffix naming the labelled rim ('_rim0': label edge at visible cloud)."""
    return f"_rim{label_rim:g}"


def build_data(work: Path, n: int, seg_n: int, progress: bool, label_rim: float) -> dict[str, Path]:
    """Synthesize and prepare every dataset the benchmark trains on (skipped when already there)."""
    from cloudcover.train.data.prepare import PrepareConfig, prepare
    from cloudcover.train.data.synth import SynthConfig, synthesize

    t = _rim_tag(label_rim)
    d = {"raw": work / f"raw_cs12_{n}{t}", "cls": work / f"cls_{n}{t}", "raw_seg38": work / f"raw_38_{seg_n}{t}",
         "seg38": work / f"seg38_{seg_n}{t}", "raw_segcs": work / f"raw_cs12_{seg_n}_96{t}",
         "segcs": work / f"segcs_rgb_{seg_n}{t}", "seg13": work / f"seg13_{seg_n}{t}",
         "cls13": work / f"cls13_{seg_n}{t}"}
    timing = {}
    if not _done(d["raw"] / "synth.json"):
        r = synthesize(SynthConfig(out=d["raw"], format="cloudsen12", n=n, size=256, seed=0, progress=progress,
                                   label_rim=label_rim))
        timing["cloudsen12_256_patches_per_s"] = n / r.seconds
    if not _done(d["cls"] / "dataset.json"):
        prepare(PrepareConfig(source="cloudsen12", input=d["raw"], out=d["cls"], size=96, seed=0, progress=progress))
    if not _done(d["raw_seg38"] / "synth.json"):
        r = synthesize(SynthConfig(out=d["raw_seg38"], format="38cloud", n=seg_n, size=96, seed=0, progress=progress,
                                   label_rim=label_rim))
        timing["38cloud_96_patches_per_s"] = seg_n / r.seconds
    if not _done(d["seg38"] / "dataset.json"):
        prepare(PrepareConfig(source="38cloud", input=d["raw_seg38"], out=d["seg38"], task="segmentation", seed=0,
                              progress=progress))
    if not _done(d["raw_segcs"] / "synth.json"):
        synthesize(SynthConfig(out=d["raw_segcs"], format="cloudsen12", n=seg_n, size=96, seed=0, progress=progress,
                               label_rim=label_rim))
    if not _done(d["segcs"] / "dataset.json"):
        prepare(PrepareConfig(source="cloudsen12", input=d["raw_segcs"], out=d["segcs"], task="segmentation",
                              bands="rgb", seed=0, progress=progress))
    if not _done(d["seg13"] / "dataset.json"):
        prepare(PrepareConfig(source="cloudsen12", input=d["raw_segcs"], out=d["seg13"], task="segmentation",
                              seed=0, progress=progress))
    if not _done(d["cls13"] / "dataset.json"):
        _as_classification(d["seg13"], d["cls13"])
    if timing:
        (work / "synth_speed.json").write_text(json.dumps(timing, indent=1) + "\n")
    return d


def _as_classification(seg: Path, out: Path) -> None:
    """A segmentation preparation (13-band GeoTIFFs, same labels and split) read as a classification set."""
    tmp = out.with_name(out.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    meta = json.loads((seg / "dataset.json").read_text())
    meta["task"] = "classification"
    with open(seg / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    cols = ["patch_id", "roi", "image", "mask", "coverage_pct", "shadow_pct", "label", "split"]
    with open(tmp / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({**r, "image": str((seg / r["image"]).resolve())})
    (tmp / "dataset.json").write_text(json.dumps(meta, indent=1) + "\n")
    tmp.rename(out)


def _train(data: Path, run: Path, seed: int, epochs: int, augment=None, input_size: int = 96, **flags) -> float:
    from cloudcover.train.training import Augment, TrainConfig, train

    if _done(run / "model.keras") and _done(run / "train.json"):
        return float("nan")
    t0 = time.perf_counter()
    train(TrainConfig(data=data, out=run, input_size=input_size, epochs=epochs, seed=seed,
                      augment=augment if augment is not None else Augment(), **flags), verbose=0, resume=False)
    return time.perf_counter() - t0


def _test_metrics(run: Path, work: Path) -> dict:
    from cloudcover.train.evaluate import evaluate

    return evaluate(run, None, work / f"eval_{run.name}", split="test", progress=False)


def _test_accuracy(run: Path, work: Path) -> float:
    return float(_test_metrics(run, work)["accuracy"])


def error_breakdown(raw: Path, predictions: Path, bins: list[float]) -> dict:
    """Where the synthetic test errors are: per cloud morphology, and how far each wrong patch's true coverage
    lies from the nearest inner class edge (errors piled up at the edges would mean undecidable labels)."""
    rows = json.loads((raw / "synth.json").read_text())["patches"]
    by_id = {r["image"].rsplit("/", 1)[0].replace("/", "__"): r for r in rows}
    with open(predictions, newline="") as f:
        preds = list(csv.DictReader(f))
    inner = bins[1:-1]
    morph: dict[str, list[int]] = {}
    dist = []
    for p in preds:
        r = by_id[p["patch_id"]]
        wrong = p["true"] != p["predicted"]
        m = morph.setdefault(r.get("morphology", "?"), [0, 0])
        m[0] += wrong
        m[1] += 1
        if wrong:
            dist.append(round(min(abs(r["coverage_pct"] - b) for b in inner), 2))
    return {"errors_by_morphology": {k: {"wrong": a, "of": n} for k, (a, n) in sorted(morph.items())},
            "wrong_distance_to_class_edge_pts": sorted(dist)}


def classify_real(run: Path, patches: list[RealPatch]) -> list[dict]:
    from cloudcover.train.data import coverage
    from cloudcover.train.predict import predict
    from cloudcover.train.preprocess import Preprocess

    pre = Preprocess.load(run)
    cs = [p for p in patches if p.source == "cloudsen12"]
    res = predict(run, [p.image for p in cs], progress=False)
    if res.failures:
        raise RuntimeError(f"predict failed on {res.failures}")
    by_path = {r["path"]: r for r in res.rows}
    rows = []
    for p in cs:
        r = by_path[str(p.image)]
        true = pre.class_names[coverage.bin_index(p.coverage_pct, pre.bins)]
        rows.append({"patch": p.name, "true_coverage_pct": round(p.coverage_pct, 2), "true_class": true,
                     "predicted_class": r["class"], "confidence": round(r["confidence"], 4),
                     "expected_coverage_pct": round(r["expected_coverage_pct"], 2), "correct": bool(r["class"] == true)})
    return rows


def score_mask(pred: np.ndarray, truth: np.ndarray, valid: np.ndarray) -> tuple[float | None, float]:
    """IoU of predicted and true cloud over valid pixels and predicted coverage %. IoU is None on a patch
    without true cloud: there any false pixel gives 0, so only the coverage error says how wrong it is."""
    pred = pred & valid
    truth = truth & valid
    iou = float((pred & truth).sum()) / float((pred | truth).sum()) if truth.any() else None
    return iou, 100.0 * float(pred.sum()) / float(valid.sum())


def segment_real(run: Path, patches: list[RealPatch], work: Path) -> list[dict]:
    from cloudcover.train.data import coverage
    from cloudcover.train.data.raster import open_raster, read_raster
    from cloudcover.train.predict import predict
    from cloudcover.train.preprocess import Preprocess

    pre = Preprocess.load(run)
    rows = []
    for p in patches:
        mask_dir = work / f"masks_{run.name}"
        res = predict(run, [p.image], mask_dir=mask_dir, progress=False)
        if res.failures:
            raise RuntimeError(f"predict failed on {res.failures}")
        with open_raster(Path(res.rows[0]["mask"])) as src:
            pred = read_raster(src, Path(res.rows[0]["mask"]), 1) == 1
        iou, cov = score_mask(pred, p.truth, p.valid)
        rows.append({"patch": p.name, "true_coverage_pct": round(p.coverage_pct, 2),
                     "predicted_coverage_pct": round(float(cov), 2), "coverage_error_pts": round(float(cov - p.coverage_pct), 2),
                     "iou": None if iou is None else round(iou, 4),
                     "true_class": pre.class_names[coverage.bin_index(p.coverage_pct, pre.bins)],
                     "predicted_class": pre.class_names[coverage.bin_index(float(cov), pre.bins)],
                     "goal_met": bool((iou is None or iou >= GOAL_IOU) and abs(cov - p.coverage_pct) <= GOAL_COV_ERR)})
    return rows


LABELS = {"clear": (0,), "cloud": (1, 2), "thick": (1,), "thin": (2,), "shadow": (3,)}  # manual_hq codes


def _box96(refl: np.ndarray, codes: np.ndarray, valid: np.ndarray, size: int = 96):
    """Reflectance box-averaged to the model's input size and labels taken at the same grid (majority-free
    nearest pick): the scale at which a classifier sees brightness and texture."""
    from PIL import Image

    small = np.stack([np.asarray(Image.fromarray(b.astype(np.float32), mode="F").resize((size, size), Image.BOX))
                      for b in refl])
    pick = np.linspace(0, codes.shape[0] - 1, size).round().astype(int)
    return small, codes[np.ix_(pick, pick)], valid[np.ix_(pick, pick)]


def label_stats(refl: np.ndarray, codes: np.ndarray, valid: np.ndarray) -> dict[str, list[float] | None]:
    """Per label: [mean red, green, blue, std red, p5 red, p50 red, p95 red, texture, share %] at 96 px.

    texture is the mean absolute difference of red between 4-neighbours inside the label (reflectance per
    96-px pixel): how busy the label's surface looks to the model."""
    small, c, v = _box96(refl, codes, valid)
    red = small[0]
    dx = np.abs(np.diff(red, axis=1))
    dy = np.abs(np.diff(red, axis=0))
    out: dict[str, list[float] | None] = {}
    for name, vals in LABELS.items():
        sel = np.isin(c, vals) & v
        if sel.sum() < 20:
            out[name] = None
            continue
        tx = np.concatenate([dx[sel[:, 1:] & sel[:, :-1]], dy[sel[1:] & sel[:-1]]])
        r = red[sel]
        out[name] = [float(small[i][sel].mean()) for i in range(3)] + [
            float(r.std()), *(float(x) for x in np.percentile(r, (5, 50, 95))),
            float(tx.mean()) if tx.size else float("nan"), 100.0 * float(sel.mean())]
    return out


STAT_FIELDS = ("red", "green", "blue", "red_std", "red_p5", "red_p50", "red_p95", "texture", "share_pct")
# Signed distance bins from the cloud label's edge, in pixels of a 509 px CloudSEN12 patch (< 0 outside).
EDGE_BINS = (-24, -12, -6, -3, 0, 3, 6, 12, 24, 48)


def edge_profile(refl: np.ndarray, codes: np.ndarray, valid: np.ndarray, px_509: float = 1.0,
                 window_509: int = 101, away_509: float = 30.0) -> list[float | None]:
    """How bright labelled cloud is near its edge: per signed-distance bin (EDGE_BINS, pixels of a 509 px
    patch; px_509 = 509 / the patch's width), the median over pixels of the mean of the first three bands
    minus the local clear ground. The ground is the mean of clear pixels more than `away_509` from any cloud
    inside a `window_509` box (where the box holds almost none: their mean over the patch). Shadow and
    invalid pixels are left out. None where a bin holds under 20 pixels.

    It says where a dataset puts the label edge: real manual labels start where the cloud barely lifts the
    ground; a generator whose edge is a visible step teaches models to under-count."""
    from scipy import ndimage

    y = refl[:3].mean(axis=0).astype(np.float64)
    cloud = np.isin(codes, LABELS["cloud"]) & valid
    clear = np.isin(codes, LABELS["clear"]) & valid
    if not cloud.any() or not clear.any():
        return [None] * (len(EDGE_BINS) - 1)
    far = clear & (ndimage.distance_transform_edt(~cloud) * px_509 > away_509)
    if far.sum() < 100:
        far = clear
    w = max(3, int(round(window_509 / px_509)) | 1)
    num = ndimage.uniform_filter(np.where(far, y, 0.0), w)
    den = ndimage.uniform_filter(far.astype(np.float64), w)
    ground = np.where(den > 0.02, num / np.maximum(den, 1e-12), float(y[far].mean()))
    lift = y - ground
    signed = np.where(cloud, ndimage.distance_transform_edt(cloud), -ndimage.distance_transform_edt(~cloud)) * px_509
    keep = valid & ~np.isin(codes, LABELS["shadow"])
    out: list[float | None] = []
    for a, b in zip(EDGE_BINS[:-1], EDGE_BINS[1:]):
        sel = keep & (signed > a) & (signed <= b)
        out.append(float(np.median(lift[sel])) if sel.sum() >= 20 else None)
    return out


def scene_stats(patches: list[RealPatch], raw: Path, limit: int = 96) -> dict:
    """Brightness and texture per label (clear, cloud, thick, thin, shadow): real samples vs synthetic ones.

    Each figure is the mean over the patches that hold at least 20 model-scale pixels of that label; the
    synthetic set is the first `limit` patches of the classifier's raw data (all coverage classes)."""
    from cloudcover.train.data.sources import CloudSEN12

    src = CloudSEN12()

    def summary(rows: list[dict]) -> dict:
        res = {}
        for name in LABELS:
            vals = [r[name] for r in rows if r[name] is not None]
            res[name] = ({f: round(float(np.mean([x[i] for x in vals])), 4) for i, f in enumerate(STAT_FIELDS)}
                         | {"patches": len(vals)}) if vals else None
        return res

    def edges(rows: list[list[float | None]]) -> list[float | None]:
        cols = [[r[i] for r in rows if r[i] is not None] for i in range(len(EDGE_BINS) - 1)]
        return [round(float(np.median(c)), 4) if c else None for c in cols]

    real, real_edge = [], []
    for p in patches:
        if p.source == "cloudsen12":
            s = src.read(src.find(p.image.parent)[0])
            refl = s.rgb.astype(np.float64) * 1e-4
            real.append(label_stats(refl, s.mask, s.valid))
            real_edge.append(edge_profile(refl, s.mask, s.valid, 509.0 / s.mask.shape[1]))
    synth, synth_edge = [], []
    for ref in src.find(raw)[:limit]:
        s = src.read(ref)
        refl = s.rgb.astype(np.float64) * 1e-4
        synth.append(label_stats(refl, s.mask, s.valid))
        synth_edge.append(edge_profile(refl, s.mask, s.valid, 509.0 / s.mask.shape[1]))
    return {"real_cloudsen12": summary(real), "synthetic_cloudsen12": summary(synth), "fields": list(STAT_FIELDS),
            "scale": "reflectance, box-averaged to 96 x 96 px",
            "edge_profile": {"bins_px_509": list(EDGE_BINS), "real_cloudsen12": edges(real_edge),
                             "synthetic_cloudsen12": edges(synth_edge),
                             "what": "median over patches of the median brightness (mean of R, G, B) above the local "
                                     "clear ground, per signed distance from the cloud label's edge (px of 509, < 0 "
                                     "outside); shadow left out"}}


def side_by_side(patches: list[RealPatch], cls_data: Path, seg38_raw: Path, out: Path, tile: int = 128) -> None:
    """Rows: coverage classes (+ 38-Cloud); left the real patches of that class, right synthetic ones."""
    from PIL import Image, ImageDraw

    from cloudcover.train.data import coverage
    from cloudcover.train.data.render import read_patch_rgb, resize_rgb
    from cloudcover.train.preprocess import read_dataset

    info = read_dataset(cls_data)
    bins = info.bins
    per_row, gap, label_w = 4, 6, 120
    rows = []
    for k, name in enumerate(info.classes):
        real = [resize_rgb(read_patch_rgb(p.image), tile) for p in patches
                if p.source == "cloudsen12" and coverage.bin_index(p.coverage_pct, bins) == k][:per_row]
        synth_rows = [r for r in info.rows if r["label"] == name and r["split"] == "test"][:per_row]
        syn = [resize_rgb(np.asarray(Image.open(cls_data / r["image"]).convert("RGB")), tile) for r in synth_rows]
        rows.append((name, real, syn))
    l8 = [p for p in patches if p.source == "38cloud"]
    if l8:
        reds = sorted(seg38_raw.rglob("red_patch_*"))[:per_row]
        rows.append(("38-Cloud", [resize_rgb(read_patch_rgb(p.image), tile) for p in l8][:per_row],
                     [resize_rgb(read_patch_rgb(r), tile) for r in reds]))
    width = label_w + 2 * per_row * (tile + gap) + 3 * gap
    height = 24 + len(rows) * (tile + gap)
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    draw.text((label_w, 4), "real (shared samples)", fill=(0, 0, 0))
    draw.text((label_w + per_row * (tile + gap) + 3 * gap, 4), "synthetic (data synth, never real)", fill=(0, 0, 0))
    for i, (name, real, syn) in enumerate(rows):
        y = 24 + i * (tile + gap)
        draw.text((4, y + tile // 2), name, fill=(0, 0, 0))
        for j, im in enumerate(real):
            canvas.paste(Image.fromarray(im), (label_w + j * (tile + gap), y))
        if not real:
            draw.text((label_w + 4, y + tile // 2), "no real patch in this class", fill=(120, 120, 120))
        for j, im in enumerate(syn):
            canvas.paste(Image.fromarray(im), (label_w + per_row * (tile + gap) + 3 * gap + j * (tile + gap), y))
    tmp = out.with_suffix(".part.png")
    canvas.save(tmp, format="PNG")
    os.replace(tmp, out)


def _per_morph(run: dict) -> str:
    return ", ".join(f"{k} {v['wrong']}/{v['of']}" for k, v in run.get("errors_by_morphology", {}).items())


def _markdown(report: dict) -> str:
    lines = ["# Realism: demo models trained on synthetic scenes only, read on real patches", ""]
    for c in report["classifier"]["runs"]:
        lines += [f"## classifier seed {c['seed']}: synthetic test accuracy {100 * c['test_accuracy']:.1f} %, "
                  f"{c['real_correct']}/{len(c['real'])} real patches in their true class", "",
                  f"synthetic test confusion (rows true, columns predicted): {c.get('test_confusion')}; wrong patches "
                  f"by morphology: {_per_morph(c)}; "
                  f"their distance to the nearest class edge (points): {c.get('wrong_distance_to_class_edge_pts')}", "",
                  "| patch | true coverage % | true class | predicted | expected coverage % | confidence |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {r['patch']} | {r['true_coverage_pct']:.2f} | {r['true_class']} | {r['predicted_class']} | "
                  f"{r['expected_coverage_pct']:.1f} | {r['confidence']:.2f} |" for r in c["real"]]
        lines.append("")
    for s in report.get("segmenters", []):
        lines += [f"## segmenter {s['name']} seed {s['seed']}: synthetic test Dice {s['test_dice']:.3f}", "",
                  "| patch | true coverage % | predicted coverage % | IoU | goal |", "|---|---|---|---|---|"]
        lines += [f"| {r['patch']} | {r['true_coverage_pct']:.2f} | {r['predicted_coverage_pct']:.2f} | "
                  f"{'-' if r['iou'] is None else format(r['iou'], '.3f')} | {'met' if r['goal_met'] else 'NOT met'} |"
                  for r in s["real"]]
        lines.append("")
    st = report.get("scene_stats")
    if st:
        lines += ["## brightness and texture per label (reflectance at 96 px; mean over patches)", "",
                  "| label | set | red | green | blue | red std | red p5 / p50 / p95 | texture | share % | patches |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for lab in LABELS:
            for key, name in (("real_cloudsen12", "real"), ("synthetic_cloudsen12", "synthetic")):
                v = st[key].get(lab)
                if v:
                    lines.append(f"| {lab} | {name} | {v['red']:.3f} | {v['green']:.3f} | {v['blue']:.3f} | "
                                 f"{v['red_std']:.3f} | {v['red_p5']:.3f} / {v['red_p50']:.3f} / {v['red_p95']:.3f} | "
                                 f"{v['texture']:.4f} | {v['share_pct']:.1f} | {v['patches']} |")
        lines.append("")
        ep = st.get("edge_profile")
        if ep:
            b = ep["bins_px_509"]
            lines += ["## brightness above the local clear ground by distance from the cloud label's edge", "",
                      ep["what"], "", "| set | " + " | ".join(f"{x} to {y}" for x, y in zip(b, b[1:])) + " |",
                      "|---|" + "---|" * (len(b) - 1)]
            for key, name in (("real_cloudsen12", "real"), ("synthetic_cloudsen12", "synthetic")):
                lines.append(f"| {name} | " + " | ".join("-" if v is None else f"{v:.3f}" for v in ep[key]) + " |")
            lines.append("")
    if report.get("classifier_13band"):
        c = report["classifier_13band"]
        lines += [f"## 13-band classifier: synthetic test accuracy {100 * c['test_accuracy']:.1f} %", "", c["note"], ""]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cloudcover.train.data.realism", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", type=Path, default=DEFAULT_SHARED, help="folder with cloudsen12/ and 38cloud/")
    ap.add_argument("--work", type=Path, default=Path("/tmp/cloudcover_realism"), help="data and runs (reused)")
    ap.add_argument("--out", type=Path, default=REPO / "reports" / "realism", help="report folder")
    ap.add_argument("--classifier", default=CLASSIFIER["model"],
                    help="classifier architecture (default the demo's edge_cover; edge_cnn: the GAP classifier it "
                    "replaced)")
    ap.add_argument("--seeds", default="0", help="classifier training seeds, comma-separated (default 0)")
    ap.add_argument("--epochs", type=int, default=40, help="classifier epochs (the demo's 40)")
    ap.add_argument("--seg-epochs", type=int, default=30, help="segmenter epochs (the demo's 30)")
    ap.add_argument("--n", type=int, default=1440, help="synthetic classifier patches (the demo's 1440)")
    ap.add_argument("--seg-n", type=int, default=240, help="synthetic segmenter patches (the demo's 240)")
    ap.add_argument("--seg-seeds", default="0", help="segmenter training seeds, comma-separated (default 0)")
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: cls, seg, 13band")
    ap.add_argument("--augment", default="hflip,vflip",
                    help="training augmentation of every model, as `cloudcover train --augment` takes it")
    ap.add_argument("--label-rim", type=float, default=None,
                    help="synthesize with a faint labelled rim of PX pixels (of 509) around visible cloud (default: "
                    "the demo's, SynthConfig.label_rim = 12; 0: label edge at visible cloud)")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from cloudcover.train.cli import parse_augment
    from cloudcover.train.errors import CloudcoverError

    patches = real_patches(args.shared)
    if not patches:
        raise CloudcoverError(f"--shared {args.shared}: no real CloudSEN12 or 38-Cloud patches found")
    skip = {s for s in args.skip.split(",") if s}
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    if args.label_rim is None:
        from cloudcover.train.data.synth import SynthConfig

        args.label_rim = SynthConfig(out=Path(".")).label_rim
    if args.label_rim < 0:
        raise CloudcoverError(f"--label-rim {args.label_rim}: must be >= 0")
    d = build_data(work, args.n, args.seg_n, progress=not args.quiet, label_rim=args.label_rim)
    seeds = [int(s) for s in args.seeds.split(",")] if "cls" not in skip else []
    aug = parse_augment(args.augment)
    tag = _augment_tag(aug) + _rim_tag(args.label_rim)
    runs = []
    classifier = {**CLASSIFIER, "model": args.classifier}
    for seed in seeds:
        run = work / f"run_cls_{args.classifier}_n{args.n}_s{seed}_e{args.epochs}{tag}"
        wall = _train(d["cls"], run, seed, args.epochs, aug, **classifier)
        real = classify_real(run, patches)
        m = _test_metrics(run, work)
        runs.append({"seed": seed, "test_accuracy": float(m["accuracy"]), "train_seconds": wall,
                     "test_confusion": m["confusion_matrix"],
                     **error_breakdown(d["raw"], work / f"eval_{run.name}" / "predictions.csv",
                                       list(m["preprocess"]["bins"])),
                     "real": real, "real_correct": sum(r["correct"] for r in real)})
        print(f"classifier seed {seed}: synthetic test accuracy {100 * runs[-1]['test_accuracy']:.1f} %, real "
              f"{runs[-1]['real_correct']}/{len(real)}: " + ", ".join(
                  f"{r['patch']} {r['true_class']}->{r['predicted_class']}" for r in real), flush=True)
    report: dict = {"benchmark": "realism", "shared": str(args.shared), "augment": asdict(aug),
                    "label_rim": args.label_rim, "classifier": {
        "settings": {**classifier, "epochs": args.epochs, "n": args.n, "raw_size": 256, "input_size": 96},
        "runs": runs, "all_real_correct_on_every_seed": bool(runs) and all(r["real_correct"] == len(r["real"]) for r in runs)}}
    if "seg" not in skip:
        from cloudcover.train.evaluate import evaluate

        segs = []
        for seed, (name, data, source) in ((sd, part) for sd in (int(x) for x in args.seg_seeds.split(","))
                                           for part in (("38cloud_4band", d["seg38"], "38cloud"),
                                                        ("cloudsen12_rgb", d["segcs"], "cloudsen12"))):
            run = work / f"run_seg_{name}_n{args.seg_n}_s{seed}_e{args.seg_epochs}{tag}"
            _train(data, run, seed, args.seg_epochs, aug, **SEGMENTER)
            m = evaluate(run, None, work / f"eval_{run.name}", split="test", progress=False)
            rows = segment_real(run, [p for p in patches if p.source == source], work)
            segs.append({"name": name, "seed": seed, "settings": {**SEGMENTER, "epochs": args.seg_epochs, "n": args.seg_n},
                         "test_dice": float(m["dice"]), "real": rows})
            print(f"segmenter {name} seed {seed}: synthetic test Dice {m['dice']:.3f}; " + ", ".join(
                f"{r['patch']} IoU {r['iou']} cov {r['predicted_coverage_pct']:.1f} vs {r['true_coverage_pct']:.1f}"
                for r in rows), flush=True)
        report["segmenters"] = segs
    if "13band" not in skip:
        run = work / f"run_cls13_{args.classifier}_n{args.seg_n}_s0_e{args.seg_epochs}{tag}"
        _train(d["cls13"], run, 0, args.seg_epochs, aug, **classifier)
        acc = _test_accuracy(run, work)
        report["classifier_13band"] = {
            "settings": {**classifier, "epochs": args.seg_epochs, "n": args.seg_n, "input_size": 96, "bands": 13},
            "test_accuracy": acc,
            "note": ("Checked on synthetic data only: the shared CloudSEN12 samples keep red, green, blue. A real check "
                     "needs CloudSEN12 L1C patches with all 13 bands (S2L1C.tif, uint16, B1..B12 with B8A) and manual_hq "
                     "labels, ideally ones with snow, bright soil and cirrus where RGB fails; give them to `cloudcover "
                     "predict` (a 13-band run reads 13-band GeoTIFFs in raw DN) and compare with manual_hq.")}
        print(f"13-band classifier: synthetic test accuracy {100 * acc:.1f} %", flush=True)
    report["scene_stats"] = scene_stats(patches, d["raw"])
    speed = work / "synth_speed.json"
    report["synth_speed"] = json.loads(speed.read_text()) if speed.is_file() else None
    args.out.mkdir(parents=True, exist_ok=True)
    side_by_side(patches, d["cls"], d["raw_seg38"], args.out / "realism.png")
    for name, text in (("realism.json", json.dumps(report, indent=1) + "\n"), ("realism.md", _markdown(report))):
        tmp = args.out / f".{name}.part"
        tmp.write_text(text)
        os.replace(tmp, args.out / name)
    print(f"wrote {args.out / 'realism.json'}, realism.md, realism.png")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as exc:  # a clear one-line error for expected failures
        from cloudcover.train.errors import CloudcoverError

        if isinstance(exc, CloudcoverError):
            print(f"realism: {exc}", file=sys.stderr)
            sys.exit(2)
        raise
