"""Cross-build cloudcover-infer for a compiled model folder (CMake + Debian's riscv64 GCC), and read ELF sizes."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

from cloudcover.train.errors import CloudcoverError

REPO_ROOT = Path(__file__).resolve().parents[1]
RUNTIME_DIR = REPO_ROOT / "runtime"
TOOLCHAIN_FILE = REPO_ROOT / "cmake" / "riscv64-linux-gnu.cmake"
CROSS_CC = "riscv64-linux-gnu-gcc"


def require_tool(name: str, what: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise CloudcoverError(f"{what} '{name}' not found on PATH; run `make setup` (it installs the Debian packages)")
    return path


def build_infer(model_dir: str | Path, build_dir: str | Path, target: str, sanitize: bool = False) -> Path:
    """Configure and build runtime/ for `target` (rv64gc, rv64gcv or host); returns the cloudcover-infer path."""
    model_dir, build_dir = Path(model_dir).resolve(), Path(build_dir).resolve()
    if not (model_dir / "model.c").is_file():
        raise CloudcoverError(f"{model_dir}/model.c not found; run `cloudcover compile --target {target} --out {model_dir}`")
    require_tool("cmake", "CMake")
    args = ["cmake", "-S", str(RUNTIME_DIR), "-B", str(build_dir), f"-DCC_MODEL_DIR={model_dir}"]
    if shutil.which("ninja"):
        args += ["-G", "Ninja"]
    if target == "host":
        args.append(f"-DCC_SANITIZE={'ON' if sanitize else 'OFF'}")
    else:
        require_tool(CROSS_CC, "RISC-V cross compiler")
        args += [f"-DCMAKE_TOOLCHAIN_FILE={TOOLCHAIN_FILE}", f"-DCC_MARCH={target}"]
    _run(args, "cmake configure")
    _run(["cmake", "--build", str(build_dir)], "cmake build")
    return build_dir / "cloudcover-infer"


def _run(args: list[str], what: str) -> None:
    p = subprocess.run(args, capture_output=True, text=True)
    if p.returncode != 0:
        tail = " | ".join((p.stdout + p.stderr).strip().splitlines()[-5:])
        raise CloudcoverError(f"{what} failed ({' '.join(args[:3])} ...): {tail}")


def elf_section_sizes(path: str | Path) -> dict[str, int]:
    """Section name -> size of a 64-bit little-endian ELF file (enough for .text of our static binaries)."""
    data = Path(path).read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise CloudcoverError(f"{path} is not a 64-bit little-endian ELF file")
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    strtab_off = sections[shstrndx][4]
    out = {}
    for s in sections:
        name_end = data.index(b"\0", strtab_off + s[0])
        out[data[strtab_off + s[0]:name_end].decode()] = s[5]
    return out


def binary_name(target: str) -> str:
    """build/riscv64/cloudcover-infer is the scalar demo binary; other targets get a suffix."""
    return "cloudcover-infer" if target == "rv64gc" else f"cloudcover-infer-{target}"


def install_infer(build_root: str | Path, target: str) -> Path:
    """Build BUILD/model/<target> into BUILD/riscv64/<binary_name(target)> (CMake tree in BUILD/cmake/<target>)."""
    build_root = Path(build_root)
    built = build_infer(build_root / "model" / target, build_root / "cmake" / target, target)
    dest = build_root / "riscv64" / binary_name(target)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.part")
    shutil.copy2(built, tmp)
    tmp.replace(dest)
    return dest


def main(argv: list[str] | None = None) -> int:
    """`python -m cloudcover.riscv.toolchain --build build --targets rv64gc,rv64gcv` (what `make riscv-build` runs)."""
    import argparse
    import sys

    ap = argparse.ArgumentParser(prog="python -m cloudcover.riscv.toolchain",
                                 description="Cross-build cloudcover-infer for each compiled model in BUILD/model/<target>.")
    ap.add_argument("--build", default="build", help="build root holding model/<target> from `cloudcover compile`")
    ap.add_argument("--targets", default="rv64gc", help="comma-separated: rv64gc, rv64gcv")
    args = ap.parse_args(argv)
    try:
        for t in [t.strip() for t in args.targets.split(",") if t.strip()]:
            path = install_infer(args.build, t)
            print(f"riscv-build: {path} ({t}, .text {elf_section_sizes(path).get('.text', 0):,} B)")
    except CloudcoverError as exc:
        print(f"riscv-build: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
