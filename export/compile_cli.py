"""`cloudcover compile`: verb registration (the work is in compile.py)."""

from __future__ import annotations


from cloudcover.train.clihelp import HelpFormatter

from .targets import TARGETS


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "compile",
        help="compile a .tflite/.onnx model (fp32, full-int8, ONNX QDQ) with TVM into a runtime-free C build folder",
        description="Import a model (fp32 or int8 .tflite, int8 with int8 or float input/output; fp32 .onnx, or "
        "int8 .onnx quantized by onnxruntime in QDQ or QLinear-operator form, e.g. exported from PyTorch or Keras) "
        "with TVM Relax, lower and fuse it, build the kernels with LLVM for "
        "the target, and generate the C driver (weights as const arrays, intermediates in one static arena "
        "placed by a liveness memory plan, entry point cc_model_run). Writes OUT/model.c, OUT/kernels.o and "
        "OUT/model.json. Input and outputs keep the model's dtypes (float32, int8, uint8; several outputs "
        "allowed; a dynamic batch is fixed to 1). Then `cloudcover build` links cloudcover-infer.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--model", required=True, help="a .tflite or .onnx file, e.g. ART_DIR/model_int8.tflite, "
                   "ART_DIR/model_int8.onnx, ART_DIR/model_fp32.onnx (class names and task: the model's embedded "
                   "metadata, else quant.json / preprocess.json beside it)")
    p.add_argument("--target", default="rv64gc", choices=sorted(TARGETS),
                   help="rv64gc: scalar RISC-V; rv64gcv: with the vector extension (VLEN 128); host: this "
                   "machine (for the sanitizer tests)")
    p.add_argument("--compute", default="auto", choices=["auto", "int8", "float"],
                   help="auto: int8 for a quantized model, float for a float one; int8: integer kernels (TFLite: "
                   "bit-exact with its reference kernels; ONNX QDQ: ONNX's rounding, half to even); float: TVM's "
                   "float32 kernels (for a quantized model: dequantize -> float32 op -> quantize)")
    p.add_argument("--out", required=True, help="output folder, e.g. build/model/rv64gc (replaced atomically)")
    p.add_argument("--schedules", default="tuned",
                   help="int8 kernel schedules: tuned (the recorded choices of export/schedules.json, defaults for "
                   "shapes it lacks), naive (one output element at a time; the benchmark's baseline), or a .json "
                   "schedule file")
    p.add_argument("--tune", action="store_true",
                   help="first re-search the conv/matmul tiles of this model for this target by instruction count "
                   "under the plugin QEMU and record the winners in export/schedules.json (minutes)")
    p.set_defaults(func=run)


def run(args) -> int:
    from .compile import compile_model

    def log(msg: str) -> None:
        print(f"cloudcover compile: {msg}", flush=True)

    if args.tune:
        from cloudcover.riscv.schedule_tune import tune

        tune(args.model, args.target, log=log)
    compile_model(args.model, args.target, args.out, log=log, compute=args.compute, schedules=args.schedules)
    return 0
