"""Compile targets: a name -> the LLVM target TVM builds the kernels for, and how the C side is built.

`rv64gc` is scalar RISC-V; `rv64gcv` adds the vector extension (run with VLEN 128); `host` builds the same
kernels for this x86-64 machine so the C runtime and the generated driver can be tested with sanitizers.
"""

from __future__ import annotations

from dataclasses import dataclass

from cloudcover.train.errors import CloudcoverError


@dataclass(frozen=True)
class Target:
    name: str
    llvm: dict  # TVM 0.27 wants JSON-dict targets
    march: str | None  # -march for the C driver (None: host compiler defaults)
    riscv: bool
    qemu_cpu: str | None  # -cpu for qemu-riscv64


_RV_BASE = {"kind": "llvm", "mtriple": "riscv64-unknown-linux-gnu", "mcpu": "generic-rv64", "mabi": "lp64d"}

TARGETS: dict[str, Target] = {
    "rv64gc": Target("rv64gc", {**_RV_BASE, "mattr": ["+m", "+a", "+f", "+d", "+c"]}, "rv64gc", True, "rv64"),
    "rv64gcv": Target("rv64gcv", {**_RV_BASE, "mattr": ["+m", "+a", "+f", "+d", "+c", "+v"]}, "rv64gcv", True,
                      "rv64,v=true,vlen=128,vext_spec=v1.0"),
    "host": Target("host", {"kind": "llvm"}, None, False, None),
}


def get_target(name: str) -> Target:
    try:
        return TARGETS[name]
    except KeyError:
        raise CloudcoverError(f"unknown target {name!r}; known targets: {', '.join(TARGETS)}") from None
