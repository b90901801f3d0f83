"""Empirical bias correction of post-training int8 quantization (Nagel et al. 2019, "Data-Free Quantization",
section 4.2; Finkelstein et al. 2019): shift each convolution's folded bias by minus the mean error its int8
output shows on calibration images.

Why: rounding errors are meant to average out, but some do not. A depthwise kernel has 9 weights per channel,
so the rounding of that channel's few int8 weights shifts its output by (Wq - W) * E[input] on every image, and
ReLU6 turns the rounding noise that upstream layers add to small pre-activations into a positive mean. On the
demo classifier (seed 1, test split; int8 activations fed into the float rest of the network, block by block)
these shifts moved the int8 logits 0.041 toward the lower cloud-cover class between the float model's top two,
about half of it (0.022) in the first depthwise block. The analytic, weights-only correction removes a quarter
of it (0.039 -> 0.030); the measured one removes all of it (-> +0.001), so this module measures. Subtracting
the shifts from the batch-norm offsets, which the converter folds into the int32 biases, leaves every weight as
trained.

How: convert once, run `n` calibration images through the int8 model (BUILTIN_REF kernels, all tensors kept)
and, for each convolution + batch norm + ReLU6 block of the backbone, run the float block on the int8 model's
own dequantized input: the difference to the block's int8 output is that block's error alone, not the error
it inherits. Its mean per channel, over the positions where ReLU6 passes the pre-activation through, is
subtracted from the batch norm's beta. All blocks are corrected from the one pass. Blocks whose int8 output
cannot be told by tensor name are left as they are.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

if TYPE_CHECKING:
    import keras


def _blocks(backbone: "keras.Model") -> list[tuple]:
    """(conv, batch norm, ReLU6) triples that follow one another in the backbone's layers."""
    import keras

    layers = backbone.layers
    return [(c, b, r) for c, b, r in zip(layers, layers[1:], layers[2:])
            if isinstance(c, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D))
            and isinstance(b, keras.layers.BatchNormalization) and isinstance(r, keras.layers.ReLU)
            and r.max_value == 6.0 and b.input is c.output and r.input is b.output]


def _tensor_of(details: list[dict], layer_name: str) -> dict | None:
    """The int8 4-D tensor the converter named after `layer_name`'s Relu6 (the fused block's output)."""
    for d in details:
        parts = d["name"].split(";")[0].split("/")
        if d["dtype"] == np.int8 and len(d["shape"]) == 4 and parts[-1] == "Relu6" and len(parts) >= 2 \
                and parts[-2] in (layer_name, f"{layer_name}_1"):
            return d
    return None


def bias_corrected(model: "keras.Model", calib: np.ndarray, convert: Callable, n: int = 96,
                   batch: int = 8) -> "keras.Model":
    """A copy of `model` whose conv + BN + ReLU6 blocks have beta lowered by their measured mean int8 error;
    `convert(model, calib, path)` writes the int8 .tflite that is measured (the export's own route)."""
    import keras
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    m = keras.models.clone_model(model)
    m.set_weights(model.get_weights())
    backbone = next((layer for layer in m.layers if isinstance(layer, keras.Model)), None)
    if backbone is None:
        return m
    blocks = _blocks(backbone)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.tflite"
        convert(m, calib, path)
        with warnings.catch_warnings():  # preserve_all_tensors "is for debugging": reading them is the point
            warnings.simplefilter("ignore", UserWarning)
            interp = Interpreter(model_path=str(path), experimental_op_resolver_type=OpResolverType.BUILTIN_REF,
                                 experimental_preserve_all_tensors=True)
    interp.allocate_tensors()
    details = interp.get_tensor_details()
    found = {r.name: _tensor_of(details, r.name) for _, _, r in blocks}
    # each block's input: the backbone's (computed in float: the layers before it) or another block's output
    sources = {id(r.output): r.name for _, _, r in blocks if found[r.name] is not None}
    todo = [(c, b, r) for c, b, r in blocks if found[r.name] is not None
            and (c.input is backbone.inputs[0] or id(c.input) in sources)]
    inp = interp.get_input_details()[0]
    scale, zero = inp["quantization"]
    before = m.layers[1:[layer.name for layer in m.layers].index(backbone.name)]
    sums = {r.name: np.zeros(b.gamma.shape[0]) for _, b, r in todo}
    counts = {r.name: np.zeros(b.gamma.shape[0]) for _, b, r in todo}
    x = calib[:n]
    for s0 in range(0, len(x), batch):
        xb = x[s0 : s0 + batch]
        h = xb
        for layer in before:
            h = layer(h)
        head = np.asarray(h)
        outs: dict[str, list[np.ndarray]] = {name: [] for name in sources.values()}
        for i in range(len(xb)):
            interp.set_tensor(inp["index"], np.clip(np.round(xb[i : i + 1] / scale) + zero, -128, 127).astype(np.int8))
            interp.invoke()
            for name in outs:
                d = found[name]
                s, z = d["quantization"]
                outs[name].append((interp.get_tensor(d["index"]).astype(np.float32) - z) * np.float32(s))
        got = {name: np.concatenate(v) for name, v in outs.items()}
        for c, b, r in todo:
            src = head if c.input is backbone.inputs[0] else got[sources[id(c.input)]]
            pre = np.asarray(b(c(src), training=False))
            active = (pre > 0) & (pre < 6)
            sums[r.name] += ((got[r.name] - np.clip(pre, 0, 6)) * active).sum(axis=(0, 1, 2))
            counts[r.name] += active.sum(axis=(0, 1, 2))
    for _, b, r in todo:
        gamma, beta, mean, var = b.get_weights()
        shift = sums[r.name] / np.maximum(counts[r.name], 1)
        b.set_weights([gamma, (beta - shift).astype(beta.dtype), mean, var])
    return m
