"""`cloudcover compile`: verb registration (the work is in compile.py)."""

from __future__ import annotations


from cloudcover.train.clihelp import HelpFormatter

from .targets import TARGETS


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "compile",
        help="compile an int8 .tflite/.onnx model with TVM into a runtime-free C build folder for riscv64",
        description="Import a full-int8 model with TVM Relax, lower and fuse it, build the kernels with LLVM for "
        "the target, and generate the C driver (weights as const arrays, intermediates in one static arena "
        "placed by a liveness memory plan, entry point cc_model_run). Writes OUT/model.c, OUT/kernels.o and "
        "OUT/model.json. Then `make riscv-build` (or cmake on runtime/) links cloudcover-infer.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--model", required=True, help="ART_DIR/model_int8.tflite or ART_DIR/model_int8.onnx "
                   "(quant.json beside it supplies quantization and class names)")
    p.add_argument("--target", default="rv64gc", choices=sorted(TARGETS),
                   help="rv64gc: scalar RISC-V; rv64gcv: with the vector extension (VLEN 128); host: this "
                   "machine (for the sanitizer tests)")
    p.add_argument("--compute", default="int8", choices=["int8", "float"],
                   help="int8: integer kernels bit-exact with TFLite's reference kernels (int8 weights); float: "
                   "TVM's dequantize -> float32 op -> quantize route")
    p.add_argument("--out", required=True, help="output folder, e.g. build/model/rv64gc (replaced atomically)")
    p.set_defaults(func=run)


def run(args) -> int:
    from .compile import compile_model

    def log(msg: str) -> None:
        print(f"cloudcover compile: {msg}", flush=True)

    compile_model(args.model, args.target, args.out, log=log, compute=args.compute)
    return 0
