"""`cloudcover bench`: parity and cost of the riscv64 builds under QEMU -> reports/bench.json and bench.md."""

from __future__ import annotations

from cloudcover.train.clihelp import HelpFormatter


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "bench",
        help="run the riscv64 builds over the test split under qemu-riscv64: parity, instructions, sizes -> report",
        description="For each target, run BUILD/riscv64/cloudcover-infer[-TARGET] (built by `make riscv-build` from "
        "BUILD/model/TARGET) over ART_DIR/testset.npz in one qemu-riscv64 process; compare with the float Keras "
        "model and the int8 TFLite reference kernels (classifiers: top-1 class per image; segmenters, by quant.json's "
        "task: cloud mask per valid pixel, IoU and coverage class against the float model's mask, IoU against the "
        "test masks); count instructions per inference with QEMU's insn plugin "
        "(start-up subtracted); time TFLite and onnxruntime int8 on this host; with --peer, measure other runtimes "
        "(TFLite Micro) on the same model side by side; write OUT/bench.json and OUT/bench.md.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--artifacts", help="ART_DIR from `cloudcover export` (testset.npz, quant.json, "
                   "model.keras, model_int8.tflite, model_int8.onnx): the shortcut for cloudcover's own runs")
    p.add_argument("--build", default="build", help="build root: model/TARGET/ from `cloudcover compile`, riscv64/ "
                   "from `make riscv-build`")
    p.add_argument("--targets", default="rv64gc,rv64gcv", help="comma-separated targets to bench")
    p.add_argument("--out", default="reports", help="folder for bench.json and bench.md")
    p.add_argument("--merge", action="store_true",
                   help="keep the rows of other models already in OUT/bench.json (this model's rows are replaced), "
                   "so one report holds several models, e.g. the demo classifier and the demo segmenter")
    p.add_argument("--peer", action="append", metavar="NAME=RUNNER[@TARGET]",
                   help="also run a peer runtime's riscv64 runner (repeatable), e.g. TFLite Micro from ../shared/peers: "
                   "`RUNNER model.tflite inputs.bin N outputs.bin`, printing `arena used: ...` on stderr. It runs "
                   "ART_DIR/model_int8.tflite on the same quantized test images, under the same QEMU and -cpu as the "
                   "target it is compared with, counted the same way. That target is @TARGET when given, else the ISA "
                   "in the runner's ELF attributes (V extension -> rv64gcv, otherwise rv64gc), else the runner's file "
                   "name suffix (-rv64gc/-rv64gcv); it must be one of --targets. A peer that cannot run the model "
                   "(e.g. exit 4: an operator it lacks) is reported as a row, not an error")
    p.add_argument("--system-qemu", action="store_true", help="use the system qemu-riscv64 (no instruction counts)")
    p.add_argument("--no-profile", action="store_true", help="skip the per-kernel profile (instructions per kernel "
                   "call on one test image, one QEMU run per kernel call; bench.json 'profile', bench.md top kernels)")
    from .byo_bench import add_arguments

    add_arguments(p)  # --model FILE --inputs FILE.npz [--labels] [--float-model]: any model, not only an ART_DIR
    p.set_defaults(func=run)


def run(args) -> int:
    import tempfile
    from pathlib import Path

    from cloudcover.train.errors import CloudcoverError

    from . import harness, peers, qemu, report

    def log(msg: str) -> None:
        print(f"cloudcover bench: {msg}", flush=True)

    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    bad = [t for t in targets if t not in ("rv64gc", "rv64gcv")]
    if bad or not targets:
        raise CloudcoverError(f"--targets: unknown target(s) {', '.join(bad) or '(none)'}; use rv64gc, rv64gcv")
    if args.model:
        from .byo_bench import bench, markdown

        if not args.inputs:
            raise CloudcoverError("--model needs --inputs FILE.npz (x, optional y)")
        rep = bench(args.model, args.inputs, targets, args.out, args.float_model, args.labels, args.system_qemu, log=log)
        print(markdown(rep))
        return 0
    if not args.artifacts:
        raise CloudcoverError("give --artifacts ART_DIR (a `cloudcover export` folder) or --model FILE --inputs FILE.npz")
    peer_list = peers.parse_peers(args.peer, targets)
    emu = qemu.find_emulator(prefer_plugin=not args.system_qemu)
    if not emu.counts:
        log(f"plugin QEMU not found in {qemu.plugin_qemu_dir()}: parity only, instructions not measured (make qemu)")
    art = harness.Artifacts.load(args.artifacts)
    refs = harness.compute_references(art, log=log)
    entries = []
    with tempfile.TemporaryDirectory(prefix="cloudcover-bench-") as tmp:
        for t in targets:
            entries.append(harness.bench_target(art, refs, Path(args.build), t, emu, Path(tmp), log=log,
                                                peers=peer_list, profile=not args.no_profile))
    jpath, mpath = report.write_reports(entries, args.out, merge=args.merge)
    log(f"wrote {jpath} and {mpath}")
    print(mpath.read_text())
    return 0
