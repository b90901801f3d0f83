"""Models of the usual public kinds, assembled here (onnx.helper) or exported from Keras, for the bring-your-own-
model tests: their operators are those of ResNet, VGG, Inception, SqueezeNet, DenseNet and ShuffleNet
classifiers as PyTorch and tf2onnx export them (tiny sizes, seeded weights)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

SIZE = 16


def _init(name: str, arr: np.ndarray):
    from onnx import numpy_helper

    return numpy_helper.from_array(np.asarray(arr), name)


def zoo_onnx(path: Path, seed: int = 0, dynamic_batch: bool = True) -> Path:
    """fp32 NCHW classifier with two outputs (logits, probabilities) and a dynamic batch:
    conv + BatchNormalization + Relu (VGG/ResNet stem), MaxPool, an Inception/SqueezeNet "fire" block
    (1x1 and 3x3 branches, Concat), a DenseNet concat of the block input, a ShuffleNet channel shuffle
    (Reshape-Transpose-Reshape), AveragePool, a ResNet residual Add, Mul by a constant, Clip (ReLU6),
    Dropout and Identity (inference no-ops), LRN, GlobalAveragePool, PyTorch's flatten through Shape ->
    Gather -> Unsqueeze -> Concat -> Reshape, Gemm, Softmax."""
    from onnx import TensorProto, helper

    rng = np.random.default_rng(seed)
    f32 = np.float32

    def w(*shape, scale=0.3):
        return (rng.normal(0, 1, shape) * scale).astype(f32)

    inits = [
        _init("w0", w(8, 3, 3, 3)), _init("b0", w(8)),
        _init("bn_s", (1 + 0.1 * rng.normal(size=8)).astype(f32)), _init("bn_b", w(8, scale=0.1)),
        _init("bn_m", w(8, scale=0.1)), _init("bn_v", (1 + 0.1 * rng.random(8)).astype(f32)),
        _init("w1", w(4, 8, 1, 1)), _init("w3", w(4, 8, 3, 3)),
        _init("shape_shuffle", np.array([1, 2, 8, 4, 4], np.int64)),
        _init("shape_back", np.array([1, 16, 4, 4], np.int64)),
        _init("wres", w(16, 16, 1, 1, scale=0.2)), _init("two", np.array(0.5, f32)),
        _init("gw", w(5, 16)), _init("gb", w(5)), _init("zero", np.array([0], np.int64)),
        _init("minus1", np.array([-1], np.int64)), _init("lo", np.array(0.0, f32)), _init("hi", np.array(6.0, f32)),
    ]
    n = helper.make_node
    nodes = [
        n("Conv", ["x", "w0", "b0"], ["c0"], pads=[1, 1, 1, 1]),
        n("BatchNormalization", ["c0", "bn_s", "bn_b", "bn_m", "bn_v"], ["bn0"], epsilon=1e-5),
        n("Relu", ["bn0"], ["r0"]),
        n("MaxPool", ["r0"], ["p0"], kernel_shape=[2, 2], strides=[2, 2]),  # 8x8
        n("Conv", ["p0", "w1"], ["e1"]),
        n("Conv", ["p0", "w3"], ["e3"], pads=[1, 1, 1, 1]),
        n("Concat", ["e1", "e3"], ["fire"], axis=1),  # 8 channels
        n("Relu", ["fire"], ["fire_r"]),
        n("Concat", ["p0", "fire_r"], ["dense"], axis=1),  # 16 channels (DenseNet)
        n("AveragePool", ["dense"], ["ap"], kernel_shape=[2, 2], strides=[2, 2]),  # 4x4
        n("Reshape", ["ap", "shape_shuffle"], ["sh1"]),
        n("Transpose", ["sh1"], ["sh2"], perm=[0, 2, 1, 3, 4]),
        n("Reshape", ["sh2", "shape_back"], ["shuf"]),
        n("Conv", ["shuf", "wres"], ["res"]),
        n("Add", ["res", "shuf"], ["sum"]),
        n("Mul", ["sum", "two"], ["half"]),
        n("Clip", ["half", "lo", "hi"], ["relu6"]),
        n("Dropout", ["relu6"], ["drop"]),
        n("Identity", ["drop"], ["ident"]),
        n("LRN", ["ident"], ["lrn"], size=3),
        n("GlobalAveragePool", ["lrn"], ["gap"]),
        n("Shape", ["gap"], ["gshape"]),
        n("Gather", ["gshape", "zero"], ["batch"], axis=0),
        n("Concat", ["batch", "minus1"], ["flat_shape"], axis=0),
        n("Reshape", ["gap", "flat_shape"], ["flat"]),
        n("Gemm", ["flat", "gw", "gb"], ["logits"], transB=1),
        n("Softmax", ["logits"], ["probs"], axis=1),
    ]
    batch = "N" if dynamic_batch else 1
    graph = helper.make_graph(
        nodes, "zoo", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 5]),
         helper.make_tensor_value_info("probs", TensorProto.FLOAT, [batch, 5])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    import onnx

    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def split_onnx(path: Path, seed: int = 0) -> Path:
    """Tuple-valued and optional outputs: Split (a tuple in Relax), Dropout with its mask output declared,
    MaxPool with its indices output declared (both unused), two graph outputs of different shapes."""
    from onnx import TensorProto, helper

    rng = np.random.default_rng(seed)
    n = helper.make_node
    nodes = [n("Split", ["x", "split"], ["a", "b"], axis=1), n("Dropout", ["a"], ["ad", "mask"]),
             n("MaxPool", ["b"], ["bp", "idx"], kernel_shape=[2, 2], strides=[2, 2]),
             n("Concat", ["ad", "b"], ["c"], axis=1), n("Conv", ["c", "w"], ["y"])]
    inits = [_init("w", rng.normal(0, .5, (4, 4, 1, 1)).astype(np.float32)), _init("split", np.array([2, 2], np.int64))]
    graph = helper.make_graph(nodes, "split", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 8, 8]),
                               helper.make_tensor_value_info("bp", TensorProto.FLOAT, ["N", 2, 4, 4])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    import onnx

    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def qdq_onnx(fp32: Path, path: Path, calib: np.ndarray, activations: str = "int8", operators: bool = False) -> Path:
    """onnxruntime static quantization (per-channel int8 weights): QDQ with int8 activations as `cloudcover
    export` quantizes, or uint8 activations (QUInt8, what many onnxruntime users pick); `operators`: the
    operator format instead (QLinearConv, QGemm, QLinearAdd ...)."""
    from cloudcover.export.onnx_export import quantize_int8

    if activations == "int8" and not operators:
        quantize_int8(fp32, calib, path)
        return path
    import tempfile

    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from cloudcover.export.onnx_export import _Calibration

    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        quantize_static(str(pre), str(path), _Calibration(calib, "x"),
                        quant_format=QuantFormat.QOperator if operators else QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8 if activations == "uint8" else QuantType.QInt8,
                        weight_type=QuantType.QInt8)
    return path


def cnn_onnx(path: Path, seed: int = 0) -> Path:
    """A plain NCHW CNN (Conv, Relu, MaxPool, residual Add, GlobalAveragePool, Flatten, Gemm): what the QDQ
    integer lowerings cover."""
    from onnx import TensorProto, helper

    rng = np.random.default_rng(seed)
    f32 = np.float32
    inits = [_init("w0", (rng.normal(0, 0.4, (8, 3, 3, 3))).astype(f32)), _init("b0", rng.normal(0, .1, 8).astype(f32)),
             _init("w1", (rng.normal(0, 0.3, (8, 8, 3, 3))).astype(f32)), _init("b1", rng.normal(0, .1, 8).astype(f32)),
             _init("gw", rng.normal(0, 0.5, (4, 8)).astype(f32)), _init("gb", rng.normal(0, .1, 4).astype(f32))]
    n = helper.make_node
    nodes = [n("Conv", ["x", "w0", "b0"], ["c0"], pads=[1, 1, 1, 1], strides=[2, 2]),
             n("Relu", ["c0"], ["r0"]),
             n("Conv", ["r0", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             n("Relu", ["c1"], ["r1"]),
             n("Add", ["r0", "r1"], ["s"]),
             n("MaxPool", ["s"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             n("GlobalAveragePool", ["p"], ["g"]),
             n("Flatten", ["g"], ["f"]),
             n("Gemm", ["f", "gw", "gb"], ["logits"], transB=1)]
    graph = helper.make_graph(nodes, "cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 4])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    import onnx

    onnx.save(model, str(path))
    return path


def inception_onnx(path: Path, seed: int = 0) -> Path:
    """Inception / DenseNet structure for the QDQ int8 route: branches joined by Concat (also with the block
    input), AveragePool, MaxPool, Relu, GlobalAveragePool, Gemm."""
    from onnx import TensorProto, helper

    rng = np.random.default_rng(seed)

    def w(*shape):
        return (rng.normal(0, 0.4, shape)).astype(np.float32)

    inits = [_init("w0", w(8, 3, 3, 3)), _init("b0", w(8)), _init("w1", w(4, 8, 1, 1)), _init("b1", w(4)),
             _init("w3", w(4, 8, 3, 3)), _init("b3", w(4)), _init("gw", w(4, 16)), _init("gb", w(4))]
    n = helper.make_node
    nodes = [n("Conv", ["x", "w0", "b0"], ["c0"], pads=[1, 1, 1, 1]), n("Relu", ["c0"], ["r0"]),
             n("MaxPool", ["r0"], ["p0"], kernel_shape=[2, 2], strides=[2, 2]),
             n("Conv", ["p0", "w1", "b1"], ["e1"]), n("Relu", ["e1"], ["e1r"]),
             n("Conv", ["p0", "w3", "b3"], ["e3"], pads=[1, 1, 1, 1]), n("Relu", ["e3"], ["e3r"]),
             n("Concat", ["e1r", "e3r"], ["fire"], axis=1),
             n("Concat", ["p0", "fire"], ["dense"], axis=1),
             n("AveragePool", ["dense"], ["ap"], kernel_shape=[2, 2], strides=[2, 2]),
             n("GlobalAveragePool", ["ap"], ["g"]), n("Flatten", ["g"], ["f"]),
             n("Gemm", ["f", "gw", "gb"], ["logits"], transB=1)]
    graph = helper.make_graph(nodes, "inception", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 4])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    import onnx

    onnx.save(model, str(path))
    return path


def unet_onnx(path: Path, seed: int = 0) -> Path:
    """UNet structure (one level) for the QDQ int8 route: strided conv down, nearest Resize x2 up (as Keras's
    UpSampling2D exports), Concat with the skip connection, a 1-channel mask logit output."""
    from onnx import TensorProto, helper

    rng = np.random.default_rng(seed)

    def w(*shape):
        return (rng.normal(0, 0.4, shape)).astype(np.float32)

    inits = [_init("w0", w(8, 3, 3, 3)), _init("b0", w(8)), _init("wd", w(8, 8, 3, 3)), _init("bd", w(8)),
             _init("wo", w(1, 16, 3, 3)), _init("bo", w(1)), _init("roi", np.zeros(0, np.float32)),
             _init("scales", np.array([1, 1, 2, 2], np.float32))]
    n = helper.make_node
    nodes = [n("Conv", ["x", "w0", "b0"], ["c0"], pads=[1, 1, 1, 1]), n("Relu", ["c0"], ["r0"]),
             n("Conv", ["r0", "wd", "bd"], ["cd"], pads=[1, 1, 1, 1], strides=[2, 2]), n("Relu", ["cd"], ["rd"]),
             n("Resize", ["rd", "roi", "scales"], ["up"], mode="nearest", nearest_mode="floor",
               coordinate_transformation_mode="asymmetric"),
             n("Concat", ["r0", "up"], ["cat"], axis=1),
             n("Conv", ["cat", "wo", "bo"], ["mask"], pads=[1, 1, 1, 1])]
    graph = helper.make_graph(nodes, "unet", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])],
                              [helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["N", 1, SIZE, SIZE])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    import onnx

    onnx.save(model, str(path))
    return path


def images(n: int, seed: int = 1, nchw: bool = True) -> np.ndarray:
    """Seeded float32 images in [0, 1] with some structure (a bright square on noise)."""
    rng = np.random.default_rng(seed)
    x = rng.random((n, SIZE, SIZE, 3)).astype(np.float32) * 0.5
    for i in range(n):
        r, c = rng.integers(0, SIZE - 6, 2)
        x[i, r: r + 6, c: c + 6, i % 3] += 0.5
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2)) if nchw else x


def keras_fp32_tflite(path: Path, seed: int = 0) -> Path:
    """A float32 TFLite file (no quantization) converted from a small Keras CNN (NHWC)."""
    import keras
    import tensorflow as tf
    from keras import layers

    keras.utils.set_random_seed(seed)
    inp = keras.Input((SIZE, SIZE, 3))
    x = layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    y = layers.DepthwiseConv2D(3, padding="same")(x)
    x = layers.Add()([x, y])
    x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(8, 1, activation="relu6")(x)
    x = layers.GlobalAveragePooling2D()(x)
    out = layers.Dense(4)(x)
    model = keras.Model(inp, out)
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    Path(path).write_bytes(conv.convert())
    return path


def keras_int8_float_io_tflite(path: Path, seed: int = 0) -> Path:
    """An int8 TFLite file with the converter's default float input and output (QUANTIZE and DEQUANTIZE at the
    edges, int8 operators inside)."""
    import keras
    import tensorflow as tf
    from keras import layers

    keras.utils.set_random_seed(seed)
    inp = keras.Input((SIZE, SIZE, 3))
    x = layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    x = layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inp, layers.Dense(4)(x))
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    calib = images(32, seed=3, nchw=False)
    conv.representative_dataset = lambda: ([calib[i: i + 1]] for i in range(len(calib)))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    Path(path).write_bytes(conv.convert())
    return path
