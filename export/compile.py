"""`cloudcover compile`: a .tflite/.onnx model (fp32, int8, ONNX QDQ) -> a runtime-free C build folder for one target.

    OUT/model.c      generated tables (codegen.py) + cc_model_run
    OUT/kernels.o    the TIR kernels, built by TVM with LLVM for the target
    OUT/model.json   what the harness and the report need: shapes, quantization, class names, MACs,
                     bytes (weights, arena, workspace), kernel list, memory plan, compute, int8_compute

Stages: relax_import -> [int8_lowering] -> lowering (pass pipeline, flat call list) -> memplan -> codegen;
TVM builds the kernels. `compute="int8"` rewrites the importer's dequantize -> float op -> quantize patterns
into integer kernels (TFLite: bit-exact with its reference kernels; ONNX QDQ: ONNX's arithmetic, rounding
half to even, see int8ops/qdq_*.py); `"float"` keeps TVM's float route; `"auto"` (default) is int8 for a
quantized model and float for a float one. Input and outputs keep the model's dtypes (float32, int8,
uint8); an ONNX QDQ model compiled for int8 reads and writes the int8 tensors inside its edge
Quantize/DequantizeLinear (their scale and zero point are in model.json).
The folder is written atomically: a failed compile leaves the previous one (or nothing) behind.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from cloudcover.train.atomic import atomic_dir, check_replaceable
from cloudcover.train.errors import CloudcoverError

from . import (codegen, int8_lowering, kernel_stats, lowering, memplan, narrow_consts, relax_import, sched_rvv,
               sched_rvv_dw)
from .targets import get_target

COMPUTES = ("auto", "int8", "float")
# int8: bit-exact with TFLite's reference kernels (tests/riscv/test_int8_lowering.py), its requantization
# fused into the conv/matmul loop (lowering.schedule_kernels). The float route stays available for comparison.
DEFAULT_COMPUTE = "auto"
IO_DTYPES = ("int8", "uint8", "float32")  # what cloudcover-infer and the C API carry


def _uses_alpha(arch: str) -> bool:
    """Whether the architecture's registered builder takes a width multiplier (train/models.py)."""
    from cloudcover.train.models import model_config

    try:
        return model_config(arch).uses_alpha
    except Exception:  # an architecture this checkout does not register: name it without a width
        return False


def model_name(model_path: Path) -> str:
    """What a report row is called: the architecture, width and input size from the preprocess.json that
    `cloudcover export` puts beside the model (e.g. edge_cnn-a1.5-96px-int8), else the file's stem."""
    pre_path = model_path.parent / "preprocess.json"
    try:
        pre = json.loads(pre_path.read_text())
        alpha = f"-a{pre['alpha']:g}" if pre.get("alpha") is not None and _uses_alpha(pre["model"]) else ""
        return f"{pre['model']}{alpha}-{pre['input_size']}px-{model_path.stem.rsplit('_', 1)[-1]}"
    except (OSError, ValueError, KeyError, TypeError):
        return model_path.stem


def read_quant(model_path: Path) -> dict:
    """Input/output quantization, class names and task: the model file's own metadata (model_meta), else
    quant.json beside the model, else the TFLite flatbuffer and preprocess.json."""
    from .model_meta import read_embedded

    emb = read_embedded(model_path)
    if emb:
        return {"input": emb.get("input"), "output": emb.get("output"), "class_names": emb.get("class_names"),
                "task": emb.get("task"), "from": "model metadata"}
    qfile = model_path.parent / "quant.json"
    if qfile.is_file() and model_path.suffix == ".tflite":  # quant.json describes the int8 TFLite file
        q = json.loads(qfile.read_text())
        return {"input": q.get("input"), "output": q.get("output"), "class_names": q.get("class_names"),
                "task": q.get("task"), "from": str(qfile)}
    info: dict = {"input": None, "output": None, "class_names": None, "task": None, "from": None}
    if qfile.is_file():
        q = json.loads(qfile.read_text())
        info.update(class_names=q.get("class_names"), task=q.get("task"), **{"from": str(qfile)})
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
    if pre.is_file() and not info["class_names"]:
        p = json.loads(pre.read_text())
        info["class_names"], info["task"] = p.get("class_names"), info["task"] or p.get("task")
    return info


def check_integer(float_ops: list[str], kernel_floats: dict[str, set[str]], model_path: Path) -> None:
    """An int8 build computes wholly in integers or fails naming what is left: never a silent float kernel."""
    if float_ops:
        raise CloudcoverError(
            f"{model_path.name}: no integer lowering for {', '.join(float_ops)} (left on TVM's float route); "
            "compile with --compute float to build it on the float route")
    if kernel_floats:
        names = ", ".join(f"{k} ({'/'.join(sorted(v))})" for k, v in sorted(kernel_floats.items()))
        raise CloudcoverError(f"{model_path.name}: int8 build would keep floating point in kernels {names[:300]}; "
                              "compile with --compute float to build it on the float route")


def compile_model(model_path: str | Path, target_name: str, out_dir: str | Path, log=print,
                  compute: str = DEFAULT_COMPUTE, schedules: str = lowering.DEFAULT_SCHEDULES) -> dict:
    check_replaceable(out_dir, "model.json", "a compiled model folder")
    import tvm
    from tvm import tirx

    model_path, out_dir = Path(model_path), Path(out_dir)
    if compute not in COMPUTES:
        raise CloudcoverError(f"unknown compute {compute!r} (expected one of {', '.join(COMPUTES)})")
    target = get_target(target_name)
    t0 = time.time()
    mod, edges = relax_import.import_model_edges(model_path, int8_edges=compute != "float")
    if compute == "auto":
        compute = "int8" if int8_lowering.is_quantized(mod) else "float"
        log(f"compute {compute} ({'a quantized' if compute == 'int8' else 'a float'} model)")
    elif compute == "int8" and not int8_lowering.is_quantized(mod):
        raise CloudcoverError(f"{model_path.name} is a float model (no quantized tensor); compile it with "
                              "--compute float (or quantize it first: cloudcover export writes int8 forms)")
    macs = lowering.count_macs(mod)
    rewritten: dict[str, int] = {}
    if compute == "int8":
        source = "onnx" if model_path.suffix.lower() == ".onnx" else "tflite"
        mod, rewritten = int8_lowering.lower_int8(mod, source=source)
        log("int8 lowering: " + (", ".join(f"{n} {k}" for k, n in sorted(rewritten.items())) or "no pattern matched"))
    float_ops = int8_lowering.float_ops(mod)
    if compute == "int8":
        check_integer(float_ops, {}, model_path)
    elif int8_lowering.is_quantized(mod):
        log("float route: TVM's dequantize -> float32 op -> quantize kernels (not bit-exact with TFLite's "
            "reference kernels)")
    # the loop-fusing schedule is for the integer route (its requantization chain); the float route keeps
    # TVM's default loop nests, the reference it is compared with
    # (`schedules`: lowering.SCHEDULES; "naive" is the first fused-loop schedule, kept for the kernel benchmark)
    lowered = lowering.lower(mod, schedule=schedules if compute == "int8" else False,
                             vector="+v" in target.llvm.get("mattr", []))
    graph = lowering.extract_graph(lowered)
    kernels = lowering.kernel_module(lowered)
    if compute == "int8":  # requantization vectors stored as int32 (narrow_consts.py)
        graph, kernels = narrow_consts.narrow_constants(graph, kernels)
    kernel_floats = int8_lowering.kernel_float_dtypes(kernels)
    if compute == "int8":
        check_integer([], kernel_floats, model_path)
    log(f"imported and lowered {model_path.name}: {len(graph.steps)} kernel calls, {macs:,} MACs "
        f"({time.time() - t0:.1f} s)")

    for key, t in [("input", graph.tensors[graph.input])] + [("output", graph.tensors[i]) for i in graph.outputs]:
        if t.dtype not in IO_DTYPES:
            raise CloudcoverError(f"{model_path}: model {key} {t.name} is {t.dtype}; cloudcover-infer carries "
                                  f"{', '.join(IO_DTYPES)} inputs and outputs")

    inter = graph.of_kind("intermediate")
    buffers = [memplan.Buffer(t.name, t.nbytes, t.first_use, t.last_use) for t in inter]
    plan = memplan.plan_memory(buffers, alignment=codegen.CC_ALIGN_BYTES)
    memplan.check_plan(buffers, plan)

    try:
        c_src = tirx.build(kernels, target=tvm.target.Target({"kind": "c"})).inspect_source()
        workspace = codegen.workspace_bound(c_src)
        lib = sched_rvv.build_kernels(sched_rvv_dw.rewrite_kernels(kernels, target.llvm), target.llvm)  # the RVV
        # family's kernels built apart; rv64gcv dw tiles' MACs as intrinsics (sched_rvv_dw: for LLVM, not C)
    except Exception as exc:
        raise CloudcoverError(f"TVM could not build the kernels for {target.name}: {' '.join(str(exc).split())[:400]}") from exc
    log(f"built {len(kernels.functions)} kernels for {target.name} ({time.time() - t0:.1f} s)")

    tin = graph.tensors[graph.input]
    quant = read_quant(model_path)
    outputs = _outputs(graph, edges, quant)
    name = model_name(model_path)
    title = f"{name} for {target.name}"
    info = {
        "model": name,
        "source": str(model_path),
        "target": target.name,
        "llvm_target": target.llvm,
        "tvm_version": tvm.__version__,
        "input": {"shape": list(tin.shape), "dtype": tin.dtype, "bytes": tin.nbytes,
                  **_quant_of(tin.dtype, edges.input, quant["input"])},
        "output": outputs[0],  # the first output (most models have one); all of them in "outputs"
        "outputs": outputs,
        "output_bytes": codegen.output_layout(graph)[1],  # one inference's output buffer (outputs at offsets)
        "class_names": quant["class_names"],
        "task": quant.get("task"),
        "metadata_from": quant.get("from"),
        "macs": macs,
        "weights_bytes": sum(t.nbytes for t in graph.of_kind("const")),
        "weights_dtypes": sorted({t.dtype for t in graph.of_kind("const")}),
        "arena_bytes": plan.arena_bytes,
        "intermediate_bytes_sum": sum(b.size for b in buffers),
        "live_peak_bytes": memplan.live_peak(buffers),  # no arena can be smaller
        "workspace_bytes": workspace,
        "compute": compute,
        "int8_compute": not kernel_floats,  # int8_lowering.int8_compute: no float value in any kernel
        "float_ops": float_ops,
        "int8_ops": rewritten,
        "lowering": (("int8 (ONNX QDQ arithmetic, round half to even)" if model_path.suffix.lower() == ".onnx"
                      else "int8 (TFLite reference-kernel integer arithmetic)")
                     if compute == "int8" else "tvm-float (dequantize -> float op -> quantize)"),
        "kernels": sorted(gv.name_hint for gv in kernels.functions),
        "steps": [s.kernel for s in graph.steps],
        "schedules": schedules if compute == "int8" else None,
        "kernel_macs": kernel_stats.kernel_macs(kernels),  # per call, for the per-kernel profile
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


def _quant_of(dtype: str, edge: dict | None, meta: dict | None) -> dict:
    """Scale and zero point of an int8/uint8 model input or output: the QDQ edge the import moved to the host,
    else the model's metadata; a float tensor has none."""
    if dtype == "float32":
        return {}
    if edge is not None:
        return {"scale": edge["scale"], "zero_point": edge["zero_point"], "quantize_on_host": True,
                **({"host_ops": edge["host_ops"]} if edge.get("host_ops") else {}),
                **({"rounding": edge["rounding"]} if edge.get("rounding") else {})}
    return {k: v for k, v in (meta or {}).items() if k in ("scale", "zero_point")}


def _outputs(graph, edges, quant: dict) -> list[dict]:
    offsets, _ = codegen.output_layout(graph)
    out = []
    for k, i in enumerate(graph.outputs):
        t = graph.tensors[i]
        edge = edges.outputs[k] if k < len(edges.outputs) else None
        out.append({"name": t.name, "shape": list(t.shape), "dtype": t.dtype, "bytes": t.nbytes, "offset": offsets[i],
                    **_quant_of(t.dtype, edge, quant["output"] if k == 0 else None)})
    return out
