"""Per-kernel profile of a compiled model on a target: instructions per kernel call, its MACs, instructions/MAC
and share of the whole inference, from the plugin QEMU's deterministic instruction count.

    python -m cloudcover.riscv.profile --model-dir build/model/rv64gc [--binary build/riscv64/cloudcover-infer]
                                       [--input in.bin] [--out reports/profile-rv64gc.json]

How (exact, no symbols needed): cloudcover-infer's `--steps=K` runs only the first K kernel calls of each
inference. With P(K) = instructions per inference running K steps, counted as (count with N inputs - count
with 0 inputs) / N under the same arguments, step k costs P(k + 1) - P(k). The steps telescope: they add up
to P(S) - P(0), and P(S) is checked against the plain run's count (no `--steps`). P(0) - the driver's read,
the call with no kernels, the write - is reported as "runtime". Every count is of the same input(s), so a
kernel whose instruction count depends on data is counted on that data.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from cloudcover.export.targets import get_target
from cloudcover.train.atomic import write_text
from cloudcover.train.errors import CloudcoverError

from . import qemu, toolchain

STEP_DIGITS = 5  # --steps=K written zero-padded: every run has argument strings of the same length
TOLERANCE = 0.01  # the steps' sum must match the plain whole-inference count within 1 %


@dataclass
class KernelCall:
    step: int
    kernel: str
    instructions: int
    macs: int | None  # None: the build predates kernel_macs in model.json
    instructions_per_mac: float | None
    share: float  # of the whole inference (runtime included)


@dataclass
class Profile:
    model: str
    target: str
    n_inputs: int
    instructions_per_inference: int  # plain run, no --steps
    steps_sum: int  # sum of the kernel calls
    runtime_instructions: int  # P(0): the driver around the kernels
    sum_error: float  # |steps_sum + runtime - plain| / plain
    macs: int | None
    calls: list[KernelCall]

    def top(self, n: int = 5) -> list[dict]:
        """The n costliest kernels (calls of one kernel name summed), most expensive first."""
        by: dict[str, dict] = {}
        for c in self.calls:
            d = by.setdefault(c.kernel, {"kernel": c.kernel, "calls": 0, "instructions": 0, "macs": 0, "share": 0.0})
            d["calls"] += 1
            d["instructions"] += c.instructions
            d["macs"] = None if c.macs is None or d["macs"] is None else d["macs"] + c.macs
            d["share"] += c.share
        rows = sorted(by.values(), key=lambda d: -d["instructions"])[:n]
        for d in rows:
            d["instructions_per_mac"] = round(d["instructions"] / d["macs"], 3) if d["macs"] else None
            d["share"] = round(d["share"], 4)
        return rows

    def to_json(self) -> dict:
        return {**asdict(self), "top_kernels": self.top()}


def _per_inference(emu, cpu: str, binary: Path, work: Path, inputs: bytes, n: int, extra: list[str]) -> int:
    """(count with the N inputs - count with none) / N, both runs with the same extra arguments."""
    counts = []
    for data in (inputs, b""):
        work.mkdir(parents=True, exist_ok=True)
        (work / "in.bin").write_bytes(data)
        g = qemu.run_guest(emu, cpu, binary, ["in.bin", "out.bin", *extra], work)
        if g.returncode != 0 or g.instructions is None:
            raise CloudcoverError(f"{binary.name} {' '.join(extra)} under {emu.qemu} exited {g.returncode}: "
                                  f"{' | '.join(g.stderr.strip().splitlines()[-3:])}")
        counts.append(g.instructions)
    diff = counts[0] - counts[1]
    if diff % n:
        raise CloudcoverError(f"instruction count difference {diff} is not a multiple of {n} inputs")
    return diff // n


def profile_model(model_dir: Path, binary: Path, inputs: np.ndarray, work: Path, emu=None,
                  log=print) -> Profile:
    """Profile `binary` (cloudcover-infer built from `model_dir`) on int8 `inputs` (N, ...)."""
    model_dir, work = Path(model_dir), Path(work)
    info = json.loads((model_dir / "model.json").read_text())
    emu = emu or qemu.find_emulator()
    if not emu.counts:
        raise CloudcoverError("the per-kernel profile needs the plugin QEMU (instruction counts); run `make qemu`")
    target = info["target"]
    qemu.check_runnable(emu, target)
    cpu = get_target(target).qemu_cpu
    data = np.ascontiguousarray(inputs, dtype=np.int8)
    n = len(data)
    if n < 1 or data[0].size != info["input"]["bytes"]:
        raise CloudcoverError(f"profile inputs must be N >= 1 tensors of {info['input']['bytes']} bytes")
    raw = data.tobytes()
    steps = info["steps"]
    plain = _per_inference(emu, cpu, binary, work / "plain", raw, n, [])
    prefix = []
    for k in range(len(steps) + 1):
        prefix.append(_per_inference(emu, cpu, binary, work / "steps", raw, n, [f"--steps={k:0{STEP_DIGITS}d}"]))
        if k and (k % 10 == 0 or k == len(steps)):
            log(f"profile {info['model']} {target}: {k}/{len(steps)} steps")
    macs_of = info.get("kernel_macs")
    calls = []
    for k, name in enumerate(steps):
        ins = prefix[k + 1] - prefix[k]
        macs = None if macs_of is None else int(macs_of.get(name, 0))
        calls.append(KernelCall(k, name, ins, macs, round(ins / macs, 3) if macs else None,
                                round(ins / plain, 5) if plain else 0.0))
    steps_sum = prefix[-1] - prefix[0]
    err = abs(prefix[-1] - plain) / plain if plain else 0.0
    prof = Profile(info["model"], target, n, plain, steps_sum, prefix[0], round(err, 6), info.get("macs"), calls)
    if err > TOLERANCE:
        raise CloudcoverError(f"per-kernel counts add up to {prefix[-1]:,} instructions but the whole inference "
                              f"counts {plain:,} ({err:.2%} apart, more than {TOLERANCE:.0%})")
    return prof


def format_top(prof: Profile | dict, n: int = 5) -> str:
    """Markdown of the costliest kernels (what bench.md shows under "Top kernels"), from a Profile or its
    to_json() dict (as stored in bench.json)."""
    d = prof.to_json() if isinstance(prof, Profile) else prof
    rows = prof.top(n) if isinstance(prof, Profile) else d["top_kernels"][:n]
    lines = [f"Top kernels, {d['model']} on {d['target']} ({d['instructions_per_inference']:,} instructions/inference; "
             f"the kernel calls add up to it within {d['sum_error']:.2%}):", "",
             "| kernel | calls | instructions | share | MACs | instr/MAC |", "|---|---|---|---|---|---|"]
    for r in rows:
        name = r["kernel"] if len(r["kernel"]) <= 60 else r["kernel"][:57] + "..."
        lines.append(f"| `{name}` | {r['calls']} | {r['instructions']:,} | {r['share']:.1%} | "
                     f"{'' if r['macs'] is None else format(r['macs'], ',')} | "
                     f"{'' if r['instructions_per_mac'] is None else r['instructions_per_mac']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import tempfile

    ap = argparse.ArgumentParser(prog="python -m cloudcover.riscv.profile", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", required=True, help="a `cloudcover compile` output folder (model.json)")
    ap.add_argument("--binary", help="cloudcover-infer built from it (default: built here in a temp folder)")
    ap.add_argument("--input", help="int8 input tensors back to back (default: one seeded random input)")
    ap.add_argument("--out", help="JSON file to write (default: print only)")
    ap.add_argument("--top", type=int, default=8)
    args = ap.parse_args(argv)
    try:
        model_dir = Path(args.model_dir)
        info = json.loads((model_dir / "model.json").read_text())
        nbytes = info["input"]["bytes"]
        if args.input:
            raw = Path(args.input).read_bytes()
            if not raw or len(raw) % nbytes:
                raise CloudcoverError(f"{args.input}: {len(raw)} bytes is not a whole number of {nbytes}-byte inputs")
            x = np.frombuffer(raw, np.int8).reshape(-1, nbytes)
        else:
            x = np.random.default_rng(0).integers(-128, 128, (1, nbytes)).astype(np.int8)
        with tempfile.TemporaryDirectory(prefix="cc-profile-") as tmp:
            binary = Path(args.binary) if args.binary else toolchain.build_infer(model_dir, Path(tmp) / "cmake",
                                                                                 info["target"])
            prof = profile_model(model_dir, binary, x, Path(tmp) / "run", log=lambda m: print(m, file=sys.stderr))
    except (CloudcoverError, OSError, KeyError, ValueError) as exc:
        print(f"profile: error: {exc}", file=sys.stderr)
        return 1
    print(format_top(prof, args.top))
    print(f"\nsteps add up to {prof.steps_sum + prof.runtime_instructions:,} of {prof.instructions_per_inference:,} "
          f"({prof.sum_error:.4%} apart); runtime around the kernels {prof.runtime_instructions:,}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        write_text(args.out, json.dumps(prof.to_json(), indent=1) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
