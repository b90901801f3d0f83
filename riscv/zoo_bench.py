"""The whole model zoo on the device: every registered architecture, int8, on rv64gc and rv64gcv under QEMU.

    python -m cloudcover.riscv.zoo_bench --work /tmp/zoo [--reports reports] [--models all] [--size 96] [-n 4]

For each architecture of train/models.py (the classifiers and the UNet segmenters) at --size px (default 96:
every architecture accepts it, it is a multiple of the UNets' total stride 32, and the largest arena stays a
few hundred KiB) and its registered default width (--alpha; the models that take none have one width):

1. train briefly on seeded synthetic data (classifiers: 3-band images whose class is their brightness;
   segmenters: 4-band images whose bright smooth blobs are the cloud mask), --epochs epochs of --train
   images, then recalibrate batch norm: one training-mode forward pass over the calibration images with
   momentum 0 sets every moving mean and variance to the statistics of what reaches it. A few steps leave
   the moving statistics near their initial values, and such a network in inference mode gives constant or
   saturated outputs (measured: MobileNetV2 and both UNets gave the same int8 output for every test image),
   which would make 0 LSB vacuous; "distinct" in the table counts the different outputs among the images;
2. convert to full int8 as `cloudcover export` does (tflite_export.convert_int8);
3. per target: `cloudcover compile` (compute int8), cross-build cloudcover-infer, run -n test images in one
   plugin-QEMU process and none in another: instructions/inference = (count(N) - count(0)) / N;
4. compare every output value with TFLite's reference kernels (BUILTIN_REF, the bit-exact oracle).

Resumable: WORK/<model>/art/ (the int8 model) and WORK/<model>/<target>.json (one row) are written
atomically and skipped when present (failed rows are retried). Writes REPORTS/zoo_bench.json and .md and
prints the table. A measurement script, not a test: the heavy architectures (VGG-16, ResNet-50,
Inception-v3) take minutes each on two cores.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
import traceback
from pathlib import Path

import numpy as np

TARGETS = ("rv64gc", "rv64gcv")
# run last, so that an interrupted run has the light rows (minutes each on two cores for these)
HEAVY = ("unet_resnet34", "resnet34", "resnet50", "inception_v3", "vgg16")
N_CALIB = 32
CLASSES = 3


def log(msg: str) -> None:
    print(f"zoo_bench: {msg}", flush=True)


# ---------------------------------------------------------------- synthetic data (seeded)

def classification_data(n: int, size: int, seed: int, bands: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Raw pixels 0..255: the class (0, 1, 2) is the brightness of a noisy, tinted image."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, CLASSES, n)
    base = np.array([50.0, 130.0, 210.0])[y][:, None, None, None]
    x = base + rng.normal(0, 10, (n, 1, 1, bands)) + rng.normal(0, 25, (n, size, size, bands))
    return np.clip(x, 0, 255).astype(np.float32), y.astype(np.int64)


def segmentation_data(n: int, size: int, seed: int, bands: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Raw pixels 0..255 with bright smooth blobs (cloud, mask 1) over darker textured ground (mask 0)."""
    rng = np.random.default_rng(seed)
    g = 6
    coarse = rng.normal(0, 1, (n, g, g))
    # bilinear upsampling of the coarse field: smooth blobs of a few tens of pixels
    t = np.linspace(0, g - 1, size)
    i0 = np.clip(np.floor(t).astype(int), 0, g - 2)
    f = t - i0
    rows = coarse[:, i0, :] * (1 - f)[None, :, None] + coarse[:, i0 + 1, :] * f[None, :, None]
    field = rows[:, :, i0] * (1 - f)[None, None, :] + rows[:, :, i0 + 1] * f[None, None, :]
    level = rng.uniform(-0.8, 0.8, (n, 1, 1))  # cloud share varies from image to image
    mask = (field > level).astype(np.uint8)
    ground = rng.uniform(30, 90, (n, 1, 1, bands)) + rng.normal(0, 12, (n, size, size, bands))
    x = ground + mask[..., None] * rng.uniform(100, 150, (n, 1, 1, 1)) + rng.normal(0, 8, (n, size, size, bands))
    return np.clip(x, 0, 255).astype(np.float32), mask


# ---------------------------------------------------------------- one model

def model_spec(name: str, size: int, alpha: float | None) -> dict:
    from cloudcover.train.models import model_config

    cfg = model_config(name)
    a = (alpha if alpha is not None else cfg.default_alpha) if cfg.uses_alpha else None
    return {"model": name, "task": cfg.task, "size": size, "alpha": a, "bands": 4 if cfg.task == "segmentation" else 3}


def recalibrate_batch_norm(model, x: np.ndarray) -> None:
    """Every BatchNormalization's moving statistics := the batch statistics of `x` as it reaches the layer."""
    import keras

    from cloudcover.train.models import _all_layers

    bns = [layer for layer in _all_layers(model) if isinstance(layer, keras.layers.BatchNormalization)]
    kept = [layer.momentum for layer in bns]
    for layer in bns:
        layer.momentum = 0.0
    model(x, training=True)  # one batch: each layer normalizes with, and stores, the statistics it sees
    for layer, m in zip(bns, kept):
        layer.momentum = m


def build_artifact(spec: dict, art: Path, n_train: int, n_test: int, epochs: int, seed: int) -> dict:
    """Train `spec` briefly on synthetic data and convert it to int8 into `art` (written atomically)."""
    import keras

    from cloudcover.export.tflite_export import convert_int8, io_quant
    from cloudcover.train.atomic import atomic_dir
    from cloudcover.train.models import count_macs, create_model

    seg = spec["task"] == "segmentation"
    size, bands = spec["size"], spec["bands"]
    data = segmentation_data if seg else classification_data
    x, y = data(n_train + n_test, size, seed, bands)
    keras.utils.set_random_seed(seed)
    model = create_model(spec["model"], num_classes=CLASSES, input_size=size, bands=bands,
                         alpha=spec["alpha"] if spec["alpha"] is not None else 1.0,
                         mean=[float(x[..., b].mean()) for b in range(bands)],
                         std=[float(x[..., b].std()) for b in range(bands)])
    if seg:
        loss = keras.losses.BinaryCrossentropy(from_logits=True)
        y_fit = y[..., None].astype(np.float32)
    else:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        y_fit = y
    model.compile(optimizer=keras.optimizers.Adam(3e-3), jit_compile=False, loss=loss)
    t0 = time.perf_counter()
    hist = model.fit(x[:n_train], y_fit[:n_train], batch_size=8, epochs=epochs, verbose=0)
    train_s = time.perf_counter() - t0
    recalibrate_batch_norm(model, x[:N_CALIB])
    meta = {**spec, "keras_macs": int(count_macs(model)), "params": int(model.count_params()),
            "train_images": n_train, "epochs": epochs, "train_steps": epochs * -(-n_train // 8),
            "final_loss": round(float(hist.history["loss"][-1]), 4), "train_s": round(train_s, 1), "seed": seed,
            "bn_recalibrated": True}
    with atomic_dir(art, "meta.json", "a zoo benchmark model folder") as tmp:
        t0 = time.perf_counter()
        convert_int8(model, x[:N_CALIB], tmp / "model_int8.tflite")
        meta["convert_s"] = round(time.perf_counter() - t0, 1)
        qi, qo = io_quant(tmp / "model_int8.tflite")
        np.savez(tmp / "testset.npz", x=x[n_train:], y=y[n_train:])
        (tmp / "quant.json").write_text(json.dumps({"task": spec["task"], "input": qi.to_json(),
                                                    "output": qo.to_json()}, indent=1) + "\n")
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    return meta


def int8_inputs(art: Path) -> np.ndarray:
    q = json.loads((art / "quant.json").read_text())["input"]
    with np.load(art / "testset.npz") as z:
        x = z["x"]
    return np.clip(np.round(x / q["scale"]) + q["zero_point"], -128, 127).astype(np.int8)


def bench_target(art: Path, target: str, work: Path, emu) -> dict:
    """Compile, cross-build and run the int8 model of `art` for `target`; one row of the table."""
    from cloudcover.export.compile import compile_model

    from . import harness, peers, qemu, toolchain

    meta = json.loads((art / "meta.json").read_text())
    t0 = time.perf_counter()
    info = compile_model(art / "model_int8.tflite", target, work / "model", log=lambda m: None, compute="int8")
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    binary = toolchain.build_infer(work / "model", work / "cmake", target)
    build_s = time.perf_counter() - t0
    xq = int8_inputs(art)
    start = qemu.run_infer(emu, binary, target, b"", work / "run0")
    full = qemu.run_infer(emu, binary, target, xq.tobytes(), work / "runN")
    dev = np.frombuffer(full.output, np.int8).reshape(len(xq), -1)
    ref, _ = harness.tflite_run(art / "model_int8.tflite", xq, reference=True)
    diff = np.abs(dev.astype(np.int32) - ref.astype(np.int32))
    insns = None
    if full.instructions is not None and start.instructions is not None:
        insns = peers.per_inference(full.instructions, start.instructions, len(xq))
    return {
        "model": meta["model"], "task": meta["task"], "size": meta["size"], "alpha": meta["alpha"],
        "bands": meta["bands"], "target": target, "macs": info["macs"],
        "instructions_per_inference": None if insns is None else round(insns),
        "instructions_per_mac": harness.per_mac(insns, info["macs"]),
        "weights_bytes": info["weights_bytes"], "arena_bytes": info["arena_bytes"],
        "workspace_bytes": info["workspace_bytes"], "int8_compute": bool(info["int8_compute"]),
        "float_ops": info["float_ops"], "max_abs_diff_lsb": int(diff.max()),
        "zero_lsb": bool(diff.max() == 0), "n_images": len(xq),
        "distinct_outputs": len({r.tobytes() for r in ref}),  # > 1: the comparison is not vacuous
        "text_bytes": toolchain.elf_section_sizes(binary).get(".text", 0),
        "compile_s": round(compile_s, 1), "build_s": round(build_s, 1),
        "emulated_s": round(full.wall_s + start.wall_s, 1),
        "emulator": f"qemu-riscv64 {emu.version}" + (" + libinsn.so" if emu.counts else " (no plugin)"),
        "ok": True,
    }


# ---------------------------------------------------------------- the table

def fmt(v, kind: str = "") -> str:
    if v is None:
        return "n/m"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if kind == "mb":
        return f"{v / 1e6:,.1f} M"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.2f}"
    return str(v)


def _cell(text: str) -> str:
    return text.replace("|", "/").replace("\n", " ")


def render_markdown(rows: list[dict], cmd: str) -> str:
    lines = ["# cloudcover model zoo on riscv64", "",
             "| model | task | input | alpha | target | MACs | instr/inference | instr/MAC | weights B | arena B | "
             "int8 compute | max diff (LSB) | 0 LSB | images (distinct outputs) |", "|" + "---|" * 14]
    for r in rows:
        if not r.get("ok"):
            what = r.get("error", "") if r.get("error", "").startswith("not measured") else f"failed: {r.get('error', '')}"
            lines.append(f"| {r['model']} | | | | {r['target']} | {_cell(what)[:160]} |" + " |" * 8)
            continue
        lines.append(f"| {r['model']} | {r['task']} | {r['size']} px x {r['bands']} | {'—' if r['alpha'] is None else fmt(r['alpha'])} | "
                     f"{r['target']} | {fmt(r['macs'], 'mb')} | {fmt(r['instructions_per_inference'])} | "
                     f"{fmt(r['instructions_per_mac'])} | {fmt(r['weights_bytes'])} | {fmt(r['arena_bytes'])} | "
                     f"{fmt(r['int8_compute'])} | {r['max_abs_diff_lsb']} | {fmt(r['zero_lsb'])} | {r['n_images']} "
                     f"({r.get('distinct_outputs', 'n/m')}) |")
    ok = [r for r in rows if r.get("ok")]
    lines += ["", f"{sum(r['zero_lsb'] and r['int8_compute'] for r in ok)} of {len(rows)} model x target rows compile "
              "with integer kernels only and match TFLite's reference kernels (BUILTIN_REF) bit for bit on every test "
              f"image; {sum(r.get('distinct_outputs', 0) > 1 for r in ok)} of them with outputs that differ between "
              "images (1 = every image gave the same int8 output: a vacuous comparison).", "",
              "How: each architecture is trained briefly on seeded synthetic data (classifiers: 3-band images whose "
              "class is their brightness; segmenters: 4-band images with bright blobs as the cloud mask), converted to "
              "full int8 as `cloudcover export` does, compiled with `cloudcover compile --compute int8` and run by "
              "cloudcover-infer under QEMU (rv64gc: `-cpu rv64`; rv64gcv: RVV 1.0, VLEN 128). instr/inference = "
              "(guest instructions with N images - with none) / N, counted by QEMU's libinsn plugin; MACs are conv "
              "and matmul multiply-accumulates of the imported graph; weights B = constant tensors in the binary; "
              "arena B = intermediates under the liveness plan (the kernels' workspace comes on top). max diff = "
              "largest |device - BUILTIN_REF| over every output value of every test image.", "",
              f"Command: `{cmd}`", ""]
    return "\n".join(lines)


def source_version() -> str | None:
    """`git describe --always --dirty` of the checkout the rows were compiled with (schedules move the figures)."""
    import subprocess

    try:
        p = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=Path(__file__).resolve().parents[1],
                           capture_output=True, text=True, timeout=10)
    except OSError:
        return None
    return p.stdout.strip() or None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cloudcover.riscv.zoo_bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", required=True, help="scratch folder for models, builds and per-row results (resumable)")
    ap.add_argument("--reports", default="reports", help="folder for zoo_bench.json and zoo_bench.md")
    ap.add_argument("--models", default="all", help="comma-separated architectures, or all (train/models.py)")
    ap.add_argument("--targets", default=",".join(TARGETS))
    ap.add_argument("--size", type=int, default=96, help="input side in px for every model (default 96)")
    ap.add_argument("--alpha", type=float, default=None,
                    help="width multiplier of the models that take one (default: each one's registered default)")
    ap.add_argument("-n", type=int, default=3, help="test images per target run (default 3)")
    ap.add_argument("--train", type=int, default=64, help="synthetic training images (default 64)")
    ap.add_argument("--epochs", type=int, default=1, help="training epochs, batch 8 (default 1: 8 steps)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--report-only", action="store_true",
                    help="measure nothing: write the table from the rows already in WORK (missing ones marked)")
    args = ap.parse_args(argv)

    from cloudcover.train.atomic import write_text
    from cloudcover.train.errors import CloudcoverError
    from cloudcover.train.models import list_models

    from . import qemu

    names = sorted(list_models(), key=lambda m: (m in HEAVY, HEAVY.index(m) if m in HEAVY else 0, m)) \
        if args.models == "all" else [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in names if m not in list_models()]
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    if unknown or any(t not in TARGETS for t in targets):
        print(f"zoo_bench: error: unknown model(s) {unknown} or target(s) {targets}", file=sys.stderr)
        return 2
    emu = qemu.find_emulator()
    if not emu.counts:
        log(f"plugin QEMU not found in {qemu.plugin_qemu_dir()}: instructions not measured (make qemu)")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    rows, total, t_all = [], len(names) * len(targets), time.perf_counter()
    done = 0
    for name in names:
        spec = model_spec(name, args.size, args.alpha)
        tag = f"{name}-{args.size}px" + (f"-a{spec['alpha']:g}" if spec["alpha"] is not None else "")
        art = work / tag / "art"
        for target in targets:
            done += 1
            res = work / tag / f"{target}.json"
            head = f"[{done}/{total} {time.perf_counter() - t_all:6.0f} s] {tag} {target}"
            if res.is_file() and json.loads(res.read_text()).get("ok"):
                rows.append(json.loads(res.read_text()))
                log(f"{head}: done earlier ({res})")
                continue
            if args.report_only:
                rows.append({"model": name, "target": target, "ok": False, "error": "not measured yet (run without "
                             "--report-only to resume)"})
                continue
            try:
                if not (art / "meta.json").is_file():
                    log(f"{head}: training {args.epochs} epochs on {args.train} synthetic images, int8 conversion ...")
                    meta = build_artifact(spec, art, args.train, args.n, args.epochs, args.seed)
                    log(f"{head}: trained ({meta['train_s']} s, loss {meta['final_loss']}), converted "
                        f"({meta['convert_s']} s)")
                log(f"{head}: compile, cross-build, {args.n} images under QEMU ...")
                tdir = work / tag / target
                shutil.rmtree(tdir, ignore_errors=True)
                row = bench_target(art, target, tdir, emu)
                row["alpha"] = spec["alpha"]
                row["source"] = source_version()
                shutil.rmtree(tdir / "cmake", ignore_errors=True)  # the build tree is large; the row says it all
            except (CloudcoverError, Exception) as exc:  # noqa: BLE001 - one failing model must not stop the zoo
                row = {"model": name, "target": target, "ok": False,
                       "error": " ".join(f"{type(exc).__name__}: {exc}".split())[:500]}
                (work / tag).mkdir(parents=True, exist_ok=True)
                (work / tag / f"{target}.traceback.txt").write_text(traceback.format_exc())
            write_text(res, json.dumps(row, indent=1) + "\n")
            rows.append(row)
            if row["ok"]:
                log(f"{head}: {fmt(row['instructions_per_mac'])} instr/MAC, max diff {row['max_abs_diff_lsb']} LSB, "
                    f"int8 compute {fmt(row['int8_compute'])}, compile {row['compile_s']} s, QEMU {row['emulated_s']} s")
            else:
                log(f"{head}: FAILED: {row['error']}")
    cmd = "python -m cloudcover.riscv.zoo_bench " + " ".join(argv if argv is not None else sys.argv[1:])
    out = Path(args.reports)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "zoo_bench.json", json.dumps({"command": cmd, "source": source_version(), "size": args.size,
                                                  "epochs": args.epochs, "train_images": args.train, "rows": rows},
                                                 indent=1) + "\n")
    md = render_markdown(rows, cmd)
    write_text(out / "zoo_bench.md", md)
    print(md)
    log(f"wrote {out / 'zoo_bench.json'} and {out / 'zoo_bench.md'} ({time.perf_counter() - t_all:.0f} s)")
    return 0 if all(r.get("ok") for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
