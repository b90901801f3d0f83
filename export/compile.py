"""`cloudcover compile`: a quantized .tflite/.onnx model -> a runtime-free C build folder for one target.

    OUT/model.c      generated tables (codegen.py) + cc_model_run
    OUT/kernels.o    the TIR kernels, built by TVM with LLVM for the target
    OUT/model.json   what the harness and the report need: shapes, quantization, class names, MACs,
                     bytes (weights, arena, workspace), kernel list, memory plan, compute, int8_compute

Stages: relax_import -> [int8_lowering] -> lowering (pass pipeline, flat call list) -> memplan -> codegen;
TVM builds the kernels. `compute="int8"` rewrites the importer's dequantize -> float op -> quantize patterns
into integer kernels bit-exact with TFLite's reference kernels; `"float"` keeps TVM's float route.
The folder is written atomically: a failed compile leaves the previous one (or nothing) behind.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from cloudcover.train.atomic import atomic_dir, check_replaceable
from cloudcover.train.errors import CloudcoverError

from . import codegen, int8_lowering, lowering, memplan, relax_import
from .targets import get_target

COMPUTES = ("int8", "float")
# int8: bit-exact with TFLite's reference kernels (tests/riscv/test_int8_lowering.py), its requantization
# fused into the conv/matmul loop (lowering.schedule_kernels). The float route stays available for comparison.
DEFAULT_COMPUTE = "int8"


def model_name(model_path: Path) -> str:
    """What a report row is called: the architecture, width and input size from the preprocess.json that
    `cloudcover export` puts beside the model (e.g. edge_cnn-a1.5-96px-int8), else the file's stem."""
    pre_path = model_path.parent / "preprocess.json"
    try:
        pre = json.loads(pre_path.read_text())
        alpha = f"-a{pre['alpha']:g}" if pre.get("alpha") is not None and pre["model"] in ("mobilenet", "edge_cnn") else ""
        return f"{pre['model']}{alpha}-{pre['input_size']}px-{model_path.stem.rsplit('_', 1)[-1]}"
    except (OSError, ValueError, KeyError, TypeError):
        return model_path.stem


def read_quant(model_path: Path) -> dict:
    """Input/output quantization and class names: quant.json beside the model, else the TFLite flatbuffer."""
    qfile = model_path.parent / "quant.json"
    if qfile.is_file():
        q = json.loads(qfile.read_text())
        return {"input": q.get("input"), "output": q.get("output"), "class_names": q.get("class_names")}
    info: dict = {"input": None, "output": None, "class_names": None}
    if model_path.suffix == ".tflite":
        import tflite

        m = tflite.Model.GetRootAsModel(model_path.read_bytes(), 0)
        sg = m.Subgraphs(0)
        for key, idx in (("input", sg.Inputs(0)), ("output", sg.Outputs(0))):
            t = sg.Tensors(idx)
            q = t.Quantization()
            if q is not None and q.ScaleLength():
                info[key] = {"scale": float(q.Scale(0)), "zero_point": int(q.ZeroPoint(0))}
    pre = model_path.parent / "preprocess.json"
    if pre.is_file():
        info["class_names"] = json.loads(pre.read_text()).get("class_names")
    return info


def check_integer(float_ops: list[str], kernel_floats: dict[str, set[str]], model_path: Path) -> None:
    """An int8 build computes wholly in integers or fails naming what is left: never a silent float kernel."""
    if float_ops:
        hint = (" (the int8 lowering reads TFLite's patterns: compile model_int8.tflite)"
                if model_path.suffix == ".onnx" else "")
        raise CloudcoverError(
            f"{model_path.name}: no integer lowering for {', '.join(float_ops)} (left on TVM's float route){hint}; "
            "compile with --compute float to build it on the float route")
    if kernel_floats:
        names = ", ".join(f"{k} ({'/'.join(sorted(v))})" for k, v in sorted(kernel_floats.items()))
        raise CloudcoverError(f"{model_path.name}: int8 build would keep floating point in kernels {names[:300]}; "
                              "compile with --compute float to build it on the float route")


def compile_model(model_path: str | Path, target_name: str, out_dir: str | Path, log=print,
                  compute: str = DEFAULT_COMPUTE) -> dict:
    check_replaceable(out_dir, "model.json", "a compiled model folder")
    import tvm
    from tvm import tirx

    model_path, out_dir = Path(model_path), Path(out_dir)
    if compute not in COMPUTES:
        raise CloudcoverError(f"unknown compute {compute!r} (expected one of {', '.join(COMPUTES)})")
    target = get_target(target_name)
    t0 = time.time()
    mod = relax_import.import_model(model_path)
    macs = lowering.count_macs(mod)
    rewritten: dict[str, int] = {}
    if compute == "int8":
        mod, rewritten = int8_lowering.lower_int8(mod)
        log("int8 lowering: " + (", ".join(f"{n} {k}" for k, n in sorted(rewritten.items())) or "no pattern matched"))
    float_ops = int8_lowering.float_ops(mod)
    if compute == "int8":
        check_integer(float_ops, {}, model_path)
    else:
        log("float route: TVM's dequantize -> float32 op -> quantize kernels (not bit-exact with TFLite's "
            "reference kernels)")
    # the loop-fusing schedule is for the integer route (its requantization chain); the float route keeps
    # TVM's default loop nests, the reference it is compared with
    lowered = lowering.lower(mod, schedule=compute == "int8", vector="+v" in target.llvm.get("mattr", []))
    graph = lowering.extract_graph(lowered)
    kernels = lowering.kernel_module(lowered)
    kernel_floats = int8_lowering.kernel_float_dtypes(kernels)
    if compute == "int8":
        check_integer([], kernel_floats, model_path)
    log(f"imported and lowered {model_path.name}: {len(graph.steps)} kernel calls, {macs:,} MACs "
        f"({time.time() - t0:.1f} s)")

    for key, t in (("input", graph.tensors[graph.input]), ("output", graph.tensors[graph.output])):
        if t.dtype != "int8":
            hint = (" (an ONNX QDQ model keeps float input/output: compile model_int8.tflite instead)"
                    if model_path.suffix == ".onnx" else "")
            raise CloudcoverError(f"{model_path}: model {key} is {t.dtype}; cloudcover-infer needs a "
                                  f"full-int8 model (int8 input and output){hint}")

    inter = graph.of_kind("intermediate")
    buffers = [memplan.Buffer(t.name, t.nbytes, t.first_use, t.last_use) for t in inter]
    plan = memplan.plan_memory(buffers, alignment=codegen.CC_ALIGN_BYTES)
    memplan.check_plan(buffers, plan)

    try:
        c_src = tirx.build(kernels, target=tvm.target.Target({"kind": "c"})).inspect_source()
        workspace = codegen.workspace_bound(c_src)
        lib = tirx.build(kernels, target=tvm.target.Target(target.llvm))
    except Exception as exc:
        raise CloudcoverError(f"TVM could not build the kernels for {target.name}: {' '.join(str(exc).split())[:400]}") from exc
    log(f"built {len(kernels.functions)} kernels for {target.name} ({time.time() - t0:.1f} s)")

    tin, tout = graph.tensors[graph.input], graph.tensors[graph.output]
    quant = read_quant(model_path)
    name = model_name(model_path)
    title = f"{name} for {target.name}"
    info = {
        "model": name,
        "source": str(model_path),
        "target": target.name,
        "llvm_target": target.llvm,
        "tvm_version": tvm.__version__,
        "input": {"shape": list(tin.shape), "dtype": tin.dtype, "bytes": tin.nbytes, **(quant["input"] or {})},
        "output": {"shape": list(tout.shape), "dtype": tout.dtype, "bytes": tout.nbytes, **(quant["output"] or {})},
        "class_names": quant["class_names"],
        "macs": macs,
        "weights_bytes": sum(t.nbytes for t in graph.of_kind("const")),
        "weights_dtypes": sorted({t.dtype for t in graph.of_kind("const")}),
        "arena_bytes": plan.arena_bytes,
        "intermediate_bytes_sum": sum(b.size for b in buffers),
        "workspace_bytes": workspace,
        "compute": compute,
        "int8_compute": not kernel_floats,  # int8_lowering.int8_compute: no float value in any kernel
        "float_ops": float_ops,
        "int8_ops": rewritten,
        "lowering": ("int8 (TFLite reference-kernel integer arithmetic)"
                     if compute == "int8" else "tvm-float (dequantize -> float op -> quantize)"),
        "kernels": sorted(gv.name_hint for gv in kernels.functions),
        "steps": [s.kernel for s in graph.steps],
        "memory_plan": [{"name": b.name, "size": b.size, "first_use": b.first_use, "last_use": b.last_use,
                         "offset": plan.offsets[b.name]} for b in buffers],
    }
    with atomic_dir(out_dir, "model.json", "a compiled model folder") as tmp:
        (tmp / "model.c").write_text(codegen.generate_model_c(graph, plan, workspace, title))
        lib.write_to_file(str(tmp / "kernels.o"))
        (tmp / "model.json").write_text(json.dumps(info, indent=1) + "\n")
    log(f"wrote {out_dir} (arena {plan.arena_bytes:,} B, workspace {workspace:,} B, weights "
        f"{info['weights_bytes']:,} B, {time.time() - t0:.1f} s)")
    return info
