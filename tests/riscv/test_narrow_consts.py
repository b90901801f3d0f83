"""Requantization vectors stored as int32 (export/narrow_consts.py): every int64 constant that fits is narrowed,
its values unchanged, the kernel's parameter retyped; the results stay bit-exact (the golden tests of
test_int8_ops.py and test_int8_lowering.py compile through the same path and compare with TFLite)."""

from __future__ import annotations

import numpy as np


def test_int64_vectors_that_fit_become_int32(artifacts):
    from cloudcover.export import int8_lowering, lowering, narrow_consts, relax_import

    mod, _ = int8_lowering.lower_int8(relax_import.import_model(artifacts / "model_int8.tflite"))
    lowered = lowering.lower(mod)
    graph = lowering.extract_graph(lowered)
    kernels = lowering.kernel_module(lowered)
    before = {i: t.data.copy() for i, t in enumerate(graph.tensors) if t.kind == "const" and t.dtype == "int64"}
    assert before, "the int8 lowering keeps its requantization vectors in int64"
    graph, kernels = narrow_consts.narrow_constants(graph, kernels)
    i32 = np.iinfo(np.int32)
    narrowed = 0
    for i, old in before.items():
        t = graph.tensors[i]
        assert np.array_equal(t.data.astype(np.int64), old)  # same values
        fits = old.min() >= i32.min and old.max() <= i32.max
        if t.dtype == "int32":
            narrowed += 1
            assert fits
    assert narrowed >= len(before) // 2
    funcs = {gv.name_hint: f for gv, f in kernels.functions.items()}
    for st in graph.steps:  # every kernel parameter has the dtype of the tensor passed to it
        params = funcs[st.kernel].params
        assert len(params) == len(st.args)
        for p, ti in zip(params, st.args):
            assert str(p.ty.dtype) == graph.tensors[ti].dtype


def test_a_value_beyond_int32_keeps_the_vector_int64():
    from cloudcover.export.narrow_consts import _fits

    assert _fits(np.array([-(2**31), 2**31 - 1], np.int64))
    assert not _fits(np.array([0, 2**31], np.int64))
    assert not _fits(np.array([1, 2], np.int32))  # only int64 vectors are narrowed
