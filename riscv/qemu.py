"""Run a riscv64 program under QEMU user mode, optionally counting guest instructions with the TCG plugin.

Two emulators: the plugin-capable qemu-riscv64 10.0.2 that riscv/build_qemu.sh builds once per machine
(instruction counts, and it runs every RVV instruction LLVM emits), and the system qemu-riscv64 (Debian 7.2;
no plugins, and it aborts on vfncvt, so it is only a fallback for scalar code).

Counts are deterministic but move with the environment and the argument strings, so every run uses
`env -i`, the same absolute program path and the same relative file names (in its own working folder).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from cloudcover.export.targets import get_target
from cloudcover.train.errors import CloudcoverError

QEMU_VERSION = "10.0.2"


def plugin_qemu_dir() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cloudcover" / f"qemu-{QEMU_VERSION}"
    return Path(os.environ.get("CLOUDCOVER_QEMU_DIR", default))


@dataclass(frozen=True)
class Emulator:
    qemu: Path
    plugin: Path | None  # libinsn.so, or None (cannot count instructions)
    version: str

    @property
    def counts(self) -> bool:
        return self.plugin is not None


def find_emulator(prefer_plugin: bool = True) -> Emulator:
    """The plugin QEMU when built, else the system qemu-riscv64; CloudcoverError naming `make setup` if neither."""
    d = plugin_qemu_dir()
    if prefer_plugin and (d / "STAMP").is_file() and (d / "bin" / "qemu-riscv64").is_file():
        return Emulator(d / "bin" / "qemu-riscv64", d / "lib" / "libinsn.so", QEMU_VERSION)
    system = shutil.which("qemu-riscv64")
    if system is None:
        raise CloudcoverError("qemu-riscv64 not found (neither the plugin build in "
                              f"{d} nor the system one); run `make setup`")
    out = subprocess.run([system, "--version"], capture_output=True, text=True).stdout
    m = re.search(r"version (\S+)", out)
    return Emulator(Path(system), None, m.group(1) if m else "unknown")


@dataclass
class RunResult:
    output: bytes
    instructions: int | None  # whole process, None when not counted
    wall_s: float
    stderr: str


@dataclass
class GuestRun:
    """One guest process: its exit status (negative = killed by that signal) and, when counted, its instructions."""
    returncode: int
    instructions: int | None  # whole process; None when not counted or when the run failed
    wall_s: float
    stderr: str


def parse_insn_count(text: str) -> int | None:
    """The `total insns: N` line libinsn.so writes (to the -D log file); None when absent."""
    m = re.search(r"total insns: (\d+)", text)
    return int(m.group(1)) if m else None


def run_guest(emu: Emulator, qemu_cpu: str, binary: Path, args: list[str], workdir: Path,
              count: bool = True) -> GuestRun:
    """Run `binary ARGS` in `workdir` under QEMU with `env -i`; never raises on a failing guest.

    The count of a failed run is dropped (a crashed program still prints one). ARGS should be fixed relative
    file names: the count moves with the environment and the argument strings.
    """
    cmd = ["env", "-i", str(emu.qemu), "-cpu", qemu_cpu]
    log = workdir / "insns.log"
    log.unlink(missing_ok=True)
    counting = count and emu.counts
    if counting:
        cmd += ["-plugin", f"{emu.plugin},inline=on", "-d", "plugin", "-D", "insns.log"]
    cmd += [str(Path(binary).resolve()), *args]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, errors="replace")
    wall = time.perf_counter() - t0
    insns = None
    if counting and p.returncode == 0:
        insns = parse_insn_count(log.read_text() if log.is_file() else "")
        if insns is None:
            raise CloudcoverError(f"no instruction count in {log} (plugin {emu.plugin} did not report)")
    return GuestRun(p.returncode, insns, wall, p.stderr)


def check_runnable(emu: Emulator, target: str) -> None:
    if target.endswith("v") and not emu.counts and emu.version.startswith("7."):
        raise CloudcoverError(f"{target} needs the QEMU {QEMU_VERSION} build (QEMU {emu.version} aborts on RVV "
                              "vfncvt); run `make qemu`")


def run_infer(emu: Emulator, binary: Path, target: str, inputs: bytes, workdir: Path, count: bool = True) -> RunResult:
    """Run `binary in.bin out.bin` in `workdir` under QEMU; raise if it fails."""
    check_runnable(emu, target)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "in.bin").write_bytes(inputs)
    (workdir / "out.bin").unlink(missing_ok=True)
    g = run_guest(emu, get_target(target).qemu_cpu, binary, ["in.bin", "out.bin"], workdir, count)
    if g.returncode != 0:
        raise CloudcoverError(f"{binary.name} under {emu.qemu} exited {g.returncode}: "
                              f"{' | '.join(g.stderr.strip().splitlines()[-3:])}")
    return RunResult((workdir / "out.bin").read_bytes(), g.instructions, g.wall_s, g.stderr)
