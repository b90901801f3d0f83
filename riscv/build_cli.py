"""`cloudcover build`: cross-build cloudcover-infer for any compiled model folder (CMake + Debian's riscv64 GCC).

Two forms:
    cloudcover build --model-dir build/model/rv64gcv --out build/riscv64
        one folder written by `cloudcover compile` -> OUT/cloudcover-infer-rv64gcv (the target is the one
        in model.json; a scalar rv64gc model gives OUT/cloudcover-infer)
    cloudcover build --build build --targets rv64gc,rv64gcv
        every BUILD/model/<target> -> BUILD/riscv64/<binary> (what `make riscv-build` runs)
The CMake tree of each build is OUT/.cmake/<target> (or BUILD/cmake/<target>); the binary is copied into place
under a temporary name and renamed, so a failed build leaves the previous binary (or none).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from cloudcover.train.clihelp import HelpFormatter
from cloudcover.train.errors import CloudcoverError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "build",
        help="cross-build cloudcover-infer (static riscv64 ELF) for a compiled model folder",
        description="Configure and build runtime/ with CMake for the target a model folder was compiled for "
        "(`cloudcover compile --out DIR`): model.c + kernels.o + the C runtime -> one static cloudcover-infer. "
        "Give --model-dir and --out for one folder, or --build and --targets for BUILD/model/<target> folders "
        "(the layout `make riscv-build` uses).",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--model-dir", help="a folder written by `cloudcover compile` (model.c, kernels.o, model.json)")
    p.add_argument("--target", help="rv64gc, rv64gcv or host; default: the target in MODEL_DIR/model.json "
                   "(a different one is refused: the kernels were built for that one)")
    p.add_argument("--out", help="folder for the binary (cloudcover-infer for rv64gc, cloudcover-infer-<target> "
                   "otherwise); default: MODEL_DIR")
    p.add_argument("--build", help="build root holding model/<target> (the `make riscv-build` form)")
    p.add_argument("--targets", default="rv64gc", help="with --build: comma-separated targets (rv64gc,rv64gcv)")
    p.add_argument("--sanitize", action="store_true", help="host target only: AddressSanitizer + UBSan")
    p.set_defaults(func=run)


def model_target(model_dir: Path) -> str:
    info = model_dir / "model.json"
    if not info.is_file():
        raise CloudcoverError(f"{info} not found; run `cloudcover compile --out {model_dir}` first")
    try:
        return str(json.loads(info.read_text())["target"])
    except (ValueError, KeyError) as exc:
        raise CloudcoverError(f"{info} is not a compiled model's model.json ({exc})") from exc


def build_one(model_dir: str | Path, out: str | Path, target: str | None = None, cmake_dir: str | Path | None = None,
              sanitize: bool = False) -> Path:
    """Build cloudcover-infer for `model_dir` into OUT/<binary name>; returns its path."""
    from .toolchain import binary_name, build_infer

    model_dir, out = Path(model_dir), Path(out)
    compiled_for = model_target(model_dir)
    target = target or compiled_for
    if target != compiled_for:
        raise CloudcoverError(f"{model_dir} was compiled for {compiled_for}, not {target}; compile it again with "
                              f"`cloudcover compile --target {target}`")
    built = build_infer(model_dir, Path(cmake_dir) if cmake_dir else out / ".cmake" / target, target, sanitize)
    out.mkdir(parents=True, exist_ok=True)
    dest = out / binary_name(target)
    tmp = dest.with_name(f".{dest.name}.part")
    shutil.copy2(built, tmp)
    tmp.replace(dest)
    return dest


def run(args) -> int:
    from .toolchain import elf_section_sizes

    if bool(args.model_dir) == bool(args.build):
        raise CloudcoverError("give either --model-dir (one compiled folder) or --build (BUILD/model/<target>)")
    jobs = []
    if args.model_dir:
        jobs.append((Path(args.model_dir), Path(args.out or args.model_dir), args.target, None))
    else:
        root = Path(args.build)
        for t in [t.strip() for t in args.targets.split(",") if t.strip()]:
            jobs.append((root / "model" / t, root / "riscv64", t, root / "cmake" / t))
    for model_dir, out, target, cmake_dir in jobs:
        path = build_one(model_dir, out, target, cmake_dir, args.sanitize)
        text = elf_section_sizes(path).get(".text", 0)
        print(f"cloudcover build: {path} ({target or model_target(model_dir)}, .text {text:,} B)", flush=True)
    return 0
