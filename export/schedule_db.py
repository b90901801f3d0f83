"""The recorded schedule choices: which tile each conv/matmul kernel shape gets, per target class.

    export/schedules.json   {"version": 1, "scalar": {SHAPE_KEY: "PWxPC", ...}, "vector": {...}}

SHAPE_KEY is schedules.Shape.key() (output pixels, channels, reduction length, depthwise). "scalar" serves
rv64gc (and host builds), "vector" rv64gcv. A plain compile reads this file, so builds are reproducible without
searching; a shape it does not list gets schedules.default_tile; a missing file means defaults everywhere.
`cloudcover compile --tune` (riscv/schedule_tune.py) re-searches by instruction count and rewrites it.
A file that cannot be read as this format is a one-line error naming it, never a silent default.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from cloudcover.train.errors import CloudcoverError

DB_PATH = Path(__file__).with_name("schedules.json")
VERSION = 1
CLASSES = ("scalar", "vector")
_TILE = re.compile(r"^[1-9][0-9]*x[1-9][0-9]*(u[1-9][0-9]*)?(-[a-z][a-z0-9]*)?$")  # -variant: a schedule family


def target_class(vector: bool) -> str:
    return "vector" if vector else "scalar"


def load(path: str | Path | None = None) -> dict[str, dict[str, str]]:
    """{class: {shape key: tile}}; {} classes when the file is absent; CloudcoverError when it is corrupt."""
    path = Path(path) if path is not None else DB_PATH
    if not path.is_file():
        return {c: {} for c in CLASSES}
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CloudcoverError(f"schedule file {path} is not valid JSON ({str(exc).splitlines()[0][:120]}); "
                              "fix it, delete it (defaults) or re-create it with `cloudcover compile --tune`") from None
    if not isinstance(data, dict) or data.get("version") != VERSION:
        raise CloudcoverError(f"schedule file {path}: expected a JSON object with \"version\": {VERSION}")
    out = {}
    for c in CLASSES:
        entries = data.get(c, {})
        if not isinstance(entries, dict) or not all(isinstance(k, str) and isinstance(v, str) and _TILE.match(v)
                                                    for k, v in entries.items()):
            raise CloudcoverError(f"schedule file {path}: \"{c}\" must map shape keys to tiles like \"4x4\"")
        out[c] = dict(entries)
    return out


def load_choices(vector: bool, path: str | Path | None = None) -> dict:
    """{shape key: schedules.Tile} for one target class."""
    from .schedules import Tile

    return {k: Tile.parse(v) for k, v in load(path)[target_class(vector)].items()}


def save(entries: dict[str, dict[str, str]], path: str | Path | None = None) -> Path:
    """Write the file atomically (sorted keys: diffs show what a re-search changed)."""
    from cloudcover.train.atomic import write_text

    path = Path(path) if path is not None else DB_PATH
    body = {"version": VERSION, **{c: dict(sorted(entries.get(c, {}).items())) for c in CLASSES}}
    write_text(path, json.dumps(body, indent=1) + "\n")
    return path
