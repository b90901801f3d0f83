"""`cloudcover data synth | download | prepare`: a thin command line over the data-layer API."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cloudcover.train.clihelp import HelpFormatter
from cloudcover.train.data.coverage import DEFAULT_BINS, parse_bins




_BINS = ",".join(f"{b:g}" for b in DEFAULT_BINS)


def _workers_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="processes to use (default: every core available)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _workers(args) -> dict:
    return {"workers": args.workers} if args.workers else {}


def register(subparsers) -> None:
    data = subparsers.add_parser(
        "data", help="make, download, prepare and explore labelled cloud patches",
        description="The data stage: synthetic scenes (the offline default), downloading CloudSEN12 "
        "archives, and preparing any of them into a split, labelled image dataset for the classifiers.",
        epilog="Typical: cloudcover data synth --out demo/raw --n 480 --seed 0 && cloudcover data prepare "
        "--source cloudsen12 --input demo/raw --out demo/dataset --size 96",
    )
    sub = data.add_subparsers(dest="data_verb", metavar="SUBCOMMAND", required=True)

    p = sub.add_parser(
        "synth", formatter_class=HelpFormatter, help="write synthetic CloudSEN12-like or 38-Cloud-like patches",
        description="Write N synthetic patches in the dataset's own layout: textured ground (vegetation, "
        "soil, water, urban, snow), multi-scale clouds with opaque cores, thin edges and displaced shadows. "
        "Coverage is balanced over the classes of --bins and met by the mask to 0.01 %. Deterministic for a "
        "seed. Writes OUT/synth.json with each patch's target and measured coverage.")
    p.add_argument("--format", choices=("cloudsen12", "38cloud"), default="cloudsen12",
                   help="cloudsen12: <ROI>/<id>/S2L1C.tif (13-band uint16) + labels/manual_hq.tif; "
                   "38cloud: 38-Cloud_training/train_{red,green,blue,nir,gt}/*_patch_*.TIF")
    p.add_argument("--out", type=Path, required=True, help="output folder (replaced as a whole when it is an "
                   "earlier synth output)")
    p.add_argument("--n", type=int, default=480, help="number of patches")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same bytes)")
    p.add_argument("--size", type=int, default=None, help="patch side in pixels (default: native, 509 for "
                   "cloudsen12, 384 for 38cloud)")
    p.add_argument("--patches-per-roi", type=int, default=8, help="patches per ROI (the split groups)")
    p.add_argument("--bins", default=_BINS, help="coverage class edges the patches are balanced over")
    p.add_argument("--margin", type=float, default=4.0,
                   help="keep drawn coverage this many points away from inner class edges")
    p.add_argument("--label-rim", type=float, default=None, metavar="PX",
                   help="label a faint rim of PX pixels (at 509 px) around visible cloud, as CloudSEN12's manual "
                   "labels do (default 12, measured on real samples; README, *Synthetic scenes on real patches*); "
                   "0 = label edge where cloud becomes visible")
    _workers_arg(p)
    p.set_defaults(func=_synth)

    p = sub.add_parser(
        "download", formatter_class=HelpFormatter, help="download and safely extract archive URLs (CloudSEN12 tars)",
        description="Download the first N archives of a URL list into OUT/archives and extract them into OUT. "
        "Resumes partial files (HTTP Range), retries with exponential back-off, checks size and checksum "
        "when the list gives them, skips archives already extracted, refuses archives with absolute paths, "
        "'..' or links leaving OUT. List format: one 'URL [sha256=HEX|md5=HEX] [size=BYTES]' per line.")
    p.add_argument("--urls", type=Path, required=True, help="text file with one archive URL per line")
    p.add_argument("--n", type=int, default=None, help="download only the first N URLs (default: all)")
    p.add_argument("--out", type=Path, required=True, help="folder to extract into")
    p.add_argument("--retries", type=int, default=5, help="retries per archive after the first attempt")
    p.add_argument("--backoff", type=float, default=1.0, help="seconds before the first retry (doubles each time)")
    p.add_argument("--timeout", type=float, default=60.0, help="socket timeout in seconds")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_download)

    p = sub.add_parser(
        "prepare", formatter_class=HelpFormatter,
        help="label, split and render patches into a classifier or segmentation dataset",
        description="Find every patch under --input (at any depth), compute its cloud coverage from the mask "
        "(cloud pixels / valid pixels x 100; cloud = thick + thin, plus shadow with --count-shadow), bin it into "
        "half-open classes [lo,hi) (last closed), split grouped by ROI and stratified by class, and write "
        "OUT/<split>/<class>/<patch_id>.<ext> RGB renderings (fixed reflectance scaling), OUT/manifest.csv "
        "and OUT/dataset.json. With --task segmentation: OUT/<split>/images/<patch_id>.tif (every band, raw DN, "
        "area-averaged, georeferencing kept) and OUT/<split>/masks/<patch_id>.png (0 clear, 1 cloud, 255 nodata; "
        "nearest neighbour) plus OUT/masks_rle.csv (Kaggle run-length encoding), split the same way. "
        "All or nothing: a bad input leaves no OUT behind.")
    p.add_argument("--task", choices=("classification", "segmentation"), default="classification",
                   help="what the dataset is for: a coverage class per patch, or a cloud mask per pixel")
    p.add_argument("--source", choices=("cloudsen12", "38cloud"), required=True, help="dataset layout")
    p.add_argument("--input", type=Path, required=True, help="folder holding the raw patches")
    p.add_argument("--out", type=Path, required=True, help="dataset folder to write (replaced as a whole "
                   "when it is an earlier prepare output)")
    p.add_argument("--label", default=None, help="mask to use: manual_hq or manual_sc for cloudsen12 "
                   "(default manual_hq), gt for 38cloud")
    p.add_argument("--bins", default=_BINS, help="class edges in percent: strictly increasing, 0 to 100")
    p.add_argument("--count-shadow", action="store_true", help="count cloud shadow as cloud (as the "
                   "original CloudSEN12 scripts did)")
    p.add_argument("--split", default="0.7,0.15,0.15", help="train,val,test fractions (grouped by ROI)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split")
    p.add_argument("--size", type=int, default=None, help="resize renderings to SIZE x SIZE (area average); "
                   "default: native size")
    p.add_argument("--bands", choices=("all", "rgb"), default="all",
                   help="segmentation GeoTIFFs: every band of the source (13 or 3 for CloudSEN12, 4 for 38-Cloud), or "
                   "only red, green, blue in raw DN (e.g. to match the 3-band CloudSEN12 samples)")
    p.add_argument("--image-format", choices=("png", "jpg", "tif"), default=None,
                   help="image files: png/jpg are RGB renderings; tif keeps the georeferencing (for segmentation "
                   "it holds every band in raw DN). Default: png for classification, tif for segmentation")
    _workers_arg(p)
    p.set_defaults(func=_prepare)

    p = sub.add_parser(
        "eda", formatter_class=HelpFormatter, help="explore a prepared dataset: cloud fractions, bands, samples",
        description="Exploratory analysis of a prepared dataset (either task): the cloud-fraction histogram per "
        "split, the share of empty and of full masks, per-band statistics and sample overlays across the coverage "
        "range. Cloud fractions come from the masks of a segmentation dataset, from the manifest otherwise. "
        "Writes OUT/eda.json, cloud_fraction.png, band_stats.png and samples.png (all or nothing).")
    p.add_argument("dataset", type=Path, metavar="DATASET", help="prepared dataset folder")
    p.add_argument("--out", type=Path, required=True, help="folder to write")
    p.add_argument("--samples", type=int, default=8, help="patches shown in samples.png")
    p.add_argument("--band-images", type=int, default=64, help="train images sampled for the band statistics")
    p.set_defaults(func=_eda)


def _synth(args) -> int:
    from cloudcover.train.data.synth import SynthConfig, synthesize

    rim = {} if args.label_rim is None else {"label_rim": args.label_rim}  # None: SynthConfig's default
    cfg = SynthConfig(out=args.out, format=args.format, n=args.n, seed=args.seed, size=args.size,
                      patches_per_roi=args.patches_per_roi, bins=tuple(parse_bins(args.bins)),
                      margin_pct=args.margin, progress=not args.quiet, **rim, **_workers(args))
    r = synthesize(cfg)
    print(f"synth: {r.n} {args.format} patches in {r.rois} ROIs -> {r.out} ({r.seconds:.1f} s); "
          f"per class {json.dumps(r.counts)}; max |coverage - target| {r.max_error_pct:.4f} %")
    return 0


def _download(args) -> int:
    from cloudcover.train.data.download import DownloadConfig, download

    cfg = DownloadConfig(urls=args.urls, out=args.out, n=args.n, retries=args.retries, backoff_s=args.backoff,
                         timeout_s=args.timeout, progress=not args.quiet)
    r = download(cfg)
    print(f"download: {len(r.downloaded)} downloaded ({r.bytes / 1e6:.1f} MB), {len(r.extracted)} extracted, "
          f"{len(r.skipped)} already complete -> {r.out} ({r.seconds:.1f} s)")
    return 0


def _eda(args) -> int:
    from cloudcover.train.data.eda import eda

    r = eda(args.dataset, args.out, samples=args.samples, max_band_images=args.band_images)
    print(f"eda: {r['n']} {r['task']} patches -> {args.out}")
    for split, s in r["splits"].items():
        print(f"  {split:5s} {s['patches']:5d} patches, cloud {s['cloud_fraction_mean']:.1f} % mean, "
              f"{s['empty_share']:.1%} empty, {s['full_share']:.1%} full")
    print("  bands: " + ", ".join(f"{b['band']} {b['mean']:.0f}+-{b['std']:.0f}" for b in r["bands"]))
    return 0


def _prepare(args) -> int:
    from cloudcover.train.data.prepare import PrepareConfig, prepare
    from cloudcover.train.data.split import parse_split

    cfg = PrepareConfig(source=args.source, input=args.input, out=args.out, label=args.label,
                        bins=tuple(parse_bins(args.bins)), count_shadow=args.count_shadow,
                        split=parse_split(args.split), seed=args.seed, size=args.size,
                        image_format=args.image_format, task=args.task, bands=args.bands, progress=not args.quiet,
                        **_workers(args))
    r = prepare(cfg)
    per_split = {s: sum(c.values()) for s, c in r.counts.items()}
    print(f"prepare: {r.n} {'segmentation ' if args.task == 'segmentation' else ''}patches -> {r.out} ({r.seconds:.1f} s, {r.patches_per_s:.1f} patches/s); "
          f"per split {json.dumps(per_split)}" + (f"; skipped {len(r.skipped)} all-nodata" if r.skipped else ""))
    for s, c in r.counts.items():
        print(f"  {s:5s} " + "  ".join(f"{k}={v}" for k, v in c.items()))
    return 0
