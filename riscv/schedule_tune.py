"""Search the conv/matmul tiles by measured instruction count and record the winners (`cloudcover compile --tune`).

For a model and target: every candidate tile (schedules.candidate_tiles over the model's kernel shapes, and the
naive 1x1) is tried on all kernels at once - a schedule file whose "*" entry is that tile - compiled, built and
profiled under the plugin QEMU (riscv/profile.py: instructions per kernel call, deterministic). Each kernel
shape then gets the tile whose calls cost the fewest instructions, and the repository's schedule file
(export/schedules.json) is updated for the target's class (other shapes' entries are kept), so a plain
compile builds the same schedules without searching.

    python -m cloudcover.riscv.schedule_tune --model M.tflite --target rv64gc [--db export/schedules.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from cloudcover.train.errors import CloudcoverError


def tune(model_path: str | Path, target: str, db_path: str | Path | None = None, work: Path | None = None,
         log=print) -> dict[str, dict]:
    """Search and record; returns {shape key: {tile: instructions}} (the measurements)."""
    from cloudcover.export import int8_lowering, lowering, relax_import, schedule_db, schedules
    from cloudcover.export.compile import compile_model
    from cloudcover.export.targets import get_target

    from . import qemu, toolchain
    from .profile import profile_model

    if not get_target(target).riscv:
        raise CloudcoverError(f"--tune measures instruction counts under the RISC-V emulator; target {target} is not "
                              "riscv64 (use rv64gc or rv64gcv)")
    emu = qemu.find_emulator()
    if not emu.counts:
        raise CloudcoverError("--tune measures instruction counts: it needs the plugin QEMU (run `make qemu`)")
    vector = "+v" in get_target(target).llvm.get("mattr", [])
    cls = schedule_db.target_class(vector)
    mod, _ = int8_lowering.lower_int8(relax_import.import_model(Path(model_path)))
    shapes = schedules.kernel_shapes(lowering.lower(mod, schedule=False, pads_alone=True))
    if not shapes:
        log("no conv/matmul kernel to tune")
        return {}
    tiles = sorted({t for s in shapes.values() for t in schedules.candidate_tiles(s, vector)} | {schedules.NAIVE},
                   key=lambda t: (t.pw * t.pc, t.pc))
    tiles.append(None)  # a run with the defaults: a shape no candidate fits keeps its default unless naive wins
    cost: dict[str, dict[str, int]] = {}
    default_cost: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="cc-tune-", dir=work) as tmp:
        tmp = Path(tmp)
        for i, tile in enumerate(tiles):
            label = "default" if tile is None else tile.key()
            db = tmp / f"cand-{label}.json"
            schedule_db.save({cls: {} if tile is None else {"*": tile.key()}}, db)
            out = tmp / label
            info = compile_model(model_path, target, out / "model", log=lambda m: None, compute="int8",
                                 schedules=str(db))
            binary = toolchain.build_infer(out / "model", out / "cmake", target)
            x = np.random.default_rng(0).integers(-128, 128, (1, info["input"]["bytes"])).astype(np.int8)
            prof = profile_model(out / "model", binary, x, out / "profile", emu, log=lambda m: None)
            for c in prof.calls:
                s = shapes.get(c.kernel)
                if s is None:
                    continue
                if tile is None:  # the defaults run
                    default_cost[s.key()] = default_cost.get(s.key(), 0) + c.instructions
                elif tile == schedules.NAIVE or tile in schedules.candidate_tiles(s, vector):
                    d = cost.setdefault(s.key(), {})
                    d[tile.key()] = d.get(tile.key(), 0) + c.instructions
            log(f"tune {target}: tile {label} ({i + 1}/{len(tiles)}): {prof.instructions_per_inference:,} "
                f"instructions/inference")
    by_key = {sh.key(): sh for sh in shapes.values()}
    for key, n in default_cost.items():  # the default tile, where no candidate measured it already
        cost.setdefault(key, {}).setdefault(schedules.default_tile(by_key[key], vector).key(), n)
    entries = schedule_db.load(db_path)
    for key, d in cost.items():
        entries[cls][key] = min(d, key=d.get)
    path = schedule_db.save(entries, db_path)
    log(f"recorded {len(cost)} {cls} kernel shapes in {path}")
    return cost


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cloudcover.riscv.schedule_tune", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--target", default="rv64gc")
    ap.add_argument("--db", help="schedule file to update (default: the repository's export/schedules.json)")
    ap.add_argument("--json", help="write the measurements here")
    args = ap.parse_args(argv)
    try:
        cost = tune(args.model, args.target, args.db, log=lambda m: print(m, file=sys.stderr))
    except CloudcoverError as exc:
        print(f"tune: error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        Path(args.json).write_text(json.dumps(cost, indent=1) + "\n")
    for key, d in sorted(cost.items()):
        best = min(d, key=d.get)
        print(f"{key:28} best {best:6} " + " ".join(f"{t}:{n:,}" for t, n in sorted(d.items(), key=lambda kv: kv[1])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
