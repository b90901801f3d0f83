"""Peer runtimes: another int8 runtime's riscv64 runner measured beside cloudcover, the same way.

A peer is a static riscv64 ELF with the TFLite Micro runner's command line (../shared/peers/README.md):
`RUNNER model.tflite inputs.bin N outputs.bin`, N int8 inputs back to back in, N outputs out, and a
`arena used: A bytes; in I bytes type T; out O bytes type T` line on stderr once the tensors are allocated.
It runs the same int8 .tflite on the same quantized inputs under the same emulator and `-cpu` as the cloudcover
target it is compared with, counted the same way: (count with N inputs - count with 0 inputs) / N.

Which target a peer is compared with: `NAME=RUNNER@TARGET` when given; otherwise the ISA the runner was built
for, read from its ELF `.riscv.attributes` (Tag_RISCV_arch: the V extension means rv64gcv, else rv64gc); a
runner without that section falls back to its file name's suffix (-rv64gc / -rv64gcv).
"""

from __future__ import annotations

import re
import shutil
import signal
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cloudcover.export.targets import get_target
from cloudcover.train.errors import CloudcoverError

from . import qemu

PEER_TARGETS = ("rv64gc", "rv64gcv")
# The runner's exit codes (../shared/peers/README.md and runner.cc).
EXIT_REASONS = {
    1: "usage error",
    2: "unreadable file",
    3: "model schema mismatch",
    4: "AllocateTensors failed (an operator the runner lacks, or its arena is too small)",
    5: "inputs file too small",
    6: "Invoke failed",
    7: "cannot write the outputs file",
}
TFLITE_INT8 = 9  # TfLiteType kTfLiteInt8
_BANNER = re.compile(r"arena used: (\d+) bytes; in (\d+) bytes type (\d+); out (\d+) bytes type (\d+)")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
N_WIDTH = 9  # N is written zero-padded so the 0-input and N-input runs have argument strings of equal length


@dataclass(frozen=True)
class Peer:
    name: str
    runner: Path
    target: str  # the cloudcover target it is compared with (same -cpu)
    target_from: str  # how the target was chosen: "@TARGET", "ELF arch <string>" or "file name"


@dataclass
class PeerRun:
    """What one peer did on one model: the outputs when it ran, else why not (exit code and its meaning)."""
    ok: bool
    exit_code: int | None
    note: str | None
    outputs: np.ndarray | None  # (N, output bytes) int8
    instructions_per_inference: float | None
    startup_instructions: int | None
    arena_bytes: int | None
    emulated_ms_per_inference: float | None


# ---------------------------------------------------------------- the math (pure)

def per_inference(count_n: int, count_0: int, n: int) -> float:
    """Instructions per inference from the whole-process counts with N inputs and with none."""
    if n <= 0:
        raise ValueError(f"need at least one input, got n={n}")
    return (count_n - count_0) / n


def per_inference_from_logs(log_n: Path, log_0: Path, n: int) -> float:
    """per_inference() from two libinsn.so log files (`total insns: C`)."""
    counts = []
    for log in (log_n, log_0):
        c = qemu.parse_insn_count(Path(log).read_text())
        if c is None:
            raise CloudcoverError(f"no 'total insns:' line in {log}")
        counts.append(c)
    return per_inference(counts[0], counts[1], n)


def ratio(cloudcover: float | None, peer: float | None) -> float | None:
    """cloudcover / peer instructions (below 1: cloudcover runs fewer); None when either was not measured."""
    if cloudcover is None or peer is None or peer <= 0:
        return None
    return cloudcover / peer


def exit_reason(code: int, stderr: str) -> str:
    """A one-line reason for a failed runner: the README's meaning of its exit code plus its last stderr lines."""
    if code < 0:
        try:
            what = f"killed by {signal.Signals(-code).name}"
        except ValueError:
            what = f"killed by signal {-code}"
    else:
        what = EXIT_REASONS.get(code, "unknown failure")
    tail = " | ".join([line.strip() for line in stderr.splitlines() if line.strip()][-3:])
    return f"exit {code}: {what}" + (f" ({tail})" if tail else "")


def parse_banner(stderr: str) -> dict | None:
    """The runner's allocation line -> arena_bytes, in_bytes, in_type, out_bytes, out_type (None if absent)."""
    m = _BANNER.search(stderr)
    if not m:
        return None
    keys = ("arena_bytes", "in_bytes", "in_type", "out_bytes", "out_type")
    return dict(zip(keys, map(int, m.groups())))


# ---------------------------------------------------------------- which target a runner belongs to

def _elf_section(data: bytes, name: str) -> bytes | None:
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return None
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    secs = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    strtab = secs[shstrndx][4]
    for s in secs:
        if data[strtab + s[0]:data.index(b"\0", strtab + s[0])].decode(errors="replace") == name:
            return data[s[4]:s[4] + s[5]]
    return None


def _uleb(buf: bytes, i: int) -> tuple[int, int]:
    v = shift = 0
    while True:
        b = buf[i]
        i += 1
        v |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return v, i


def riscv_arch(path: Path) -> str | None:
    """Tag_RISCV_arch of a RISC-V ELF (e.g. "rv64i2p1_m2p0_..._v1p0_..."), or None when it has no attributes."""
    sec = _elf_section(Path(path).read_bytes(), ".riscv.attributes")
    if not sec or sec[:1] != b"A":
        return None
    i = 1
    while i + 4 <= len(sec):  # vendor subsections: length, "riscv\0", then tagged sub-subsections
        length, = struct.unpack_from("<I", sec, i)
        end = i + length
        vendor_end = sec.index(b"\0", i + 4)
        if sec[i + 4:vendor_end] == b"riscv":
            j = vendor_end + 1
            while j < end:
                kind = sec[j]
                sublen, = struct.unpack_from("<I", sec, j + 1)
                k, sub_end = j + 5, j + sublen
                while kind == 1 and k < sub_end:  # file-level attributes
                    tag, k = _uleb(sec, k)
                    if tag % 2:  # odd tags hold strings (Tag_RISCV_arch = 5)
                        s_end = sec.index(b"\0", k)
                        if tag == 5:
                            return sec[k:s_end].decode()
                        k = s_end + 1
                    else:
                        _, k = _uleb(sec, k)
                j = sub_end
        i = max(end, i + 1)
    return None


def target_of_arch(arch: str) -> str:
    """rv64gcv when the arch string names the V extension, else rv64gc (the only two targets cloudcover has)."""
    exts = arch.lower().split("_")
    if not exts[0].startswith("rv64"):
        raise CloudcoverError(f"not a riscv64 binary (arch {arch!r})")
    base = re.sub(r"\d+p\d+", " ", exts[0][4:]).split()  # "i2p1" -> ["i"]; "imafdc" -> ["imafdc"]
    single = {c for part in base for c in part} | {e[0] for e in exts[1:] if re.fullmatch(r"[a-z]\d+p\d+", e)}
    return "rv64gcv" if "v" in single else "rv64gc"


def parse_peer(spec: str) -> Peer:
    """`NAME=RUNNER` or `NAME=RUNNER@TARGET` -> Peer; a clear error for a malformed spec or a missing runner."""
    name, eq, rest = spec.partition("=")
    if not eq or not name or not rest:
        raise CloudcoverError(f"--peer {spec!r}: expected NAME=RUNNER or NAME=RUNNER@TARGET")
    if not _NAME.fullmatch(name):
        raise CloudcoverError(f"--peer {spec!r}: NAME may hold letters, digits and . _ + - only")
    runner_s, at, tgt = rest.rpartition("@")
    if not at or tgt not in PEER_TARGETS:
        if at and "/" not in tgt:
            raise CloudcoverError(f"--peer {spec!r}: unknown target {tgt!r}; use {' or '.join(PEER_TARGETS)}")
        runner_s, tgt = rest, None
    runner = Path(runner_s)
    if not runner.is_file():
        raise CloudcoverError(f"--peer {name}: runner {runner} not found")
    arch = riscv_arch(runner)
    if tgt is not None:
        if arch is not None and target_of_arch(arch) == "rv64gcv" and tgt == "rv64gc":
            raise CloudcoverError(f"--peer {name}: {runner} is built for the V extension (ELF arch {arch}); "
                                  "it cannot run under the scalar rv64gc -cpu")
        return Peer(name, runner, tgt, "@TARGET")
    if arch is not None:
        t = target_of_arch(arch)
        return Peer(name, runner, t, f"ELF arch ({'V extension' if t == 'rv64gcv' else 'no V extension'})")
    for t in sorted(PEER_TARGETS, key=len, reverse=True):
        if runner.name.endswith(f"-{t}") or name.endswith(f"-{t}"):
            return Peer(name, runner, t, "file name")
    raise CloudcoverError(f"--peer {name}: cannot tell which target {runner} is built for (no ELF "
                          "Tag_RISCV_arch, no -rv64gc/-rv64gcv suffix); write NAME=RUNNER@TARGET")


def parse_peers(specs: list[str] | None, targets: list[str]) -> list[Peer]:
    peers = [parse_peer(s) for s in specs or []]
    names = [p.name for p in peers]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise CloudcoverError(f"--peer: name(s) given twice: {', '.join(dup)}")
    for p in peers:
        if p.target not in targets:
            raise CloudcoverError(f"--peer {p.name}: compared with target {p.target} ({p.target_from}), which is not "
                                  f"in --targets {','.join(targets)}")
    return peers


# ---------------------------------------------------------------- running one

def _failed(code: int | None, note: str, arena: int | None = None) -> PeerRun:
    return PeerRun(False, code, note, None, None, None, arena, None)


def measure(emu: qemu.Emulator, peer: Peer, tflite: Path, inputs: np.ndarray, workdir: Path) -> PeerRun:
    """Run the peer on `tflite` with 0 and with all `inputs` (N, ...) int8 images; never raises for a peer failure.

    Both runs use the same relative names (model.tflite, in.bin, out.bin) and an N of fixed width, so the
    two counts differ only by the inferences.
    """
    qemu.check_runnable(emu, peer.target)
    cpu = get_target(peer.target).qemu_cpu
    n = len(inputs)
    per_image = int(np.prod(inputs.shape[1:]))
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(tflite, workdir / "model.tflite")

    def go(k: int, data: bytes) -> qemu.GuestRun:
        (workdir / "in.bin").write_bytes(data)
        (workdir / "out.bin").unlink(missing_ok=True)
        return qemu.run_guest(emu, cpu, peer.runner, ["model.tflite", "in.bin", f"{k:0{N_WIDTH}d}", "out.bin"],
                              workdir)

    start = go(0, b"")
    if start.returncode != 0:
        return _failed(start.returncode, exit_reason(start.returncode, start.stderr))
    banner = parse_banner(start.stderr)
    if banner is None:
        return _failed(0, f"{peer.runner.name} printed no 'arena used: ...' line; not a TFLite Micro runner?")
    arena = banner["arena_bytes"]
    if banner["in_type"] != TFLITE_INT8 or banner["in_bytes"] != per_image:
        return _failed(None, f"model input is {banner['in_bytes']} B of TfLiteType {banner['in_type']}; the bench "
                       f"feeds {per_image} B int8 images", arena)
    if banner["out_type"] != TFLITE_INT8:
        return _failed(None, f"model output is TfLiteType {banner['out_type']}, not int8", arena)
    full = go(n, np.ascontiguousarray(inputs, dtype=np.int8).tobytes())
    if full.returncode != 0:
        return _failed(full.returncode, exit_reason(full.returncode, full.stderr), arena)
    out = (workdir / "out.bin").read_bytes()
    if len(out) != n * banner["out_bytes"]:
        return _failed(0, f"wrote {len(out)} bytes for {n} inputs; expected {n * banner['out_bytes']}", arena)
    insns = None
    if full.instructions is not None and start.instructions is not None:
        insns = per_inference(full.instructions, start.instructions, n)
    return PeerRun(True, 0, None, np.frombuffer(out, dtype=np.int8).reshape(n, -1), insns, start.instructions,
                   arena, round((full.wall_s - start.wall_s) * 1000 / n, 3))
