"""Model zoo: a registry of models by name, each built as raw pixels -> normalization -> backbone -> task head.

Classifiers (GAP -> dropout -> Dense logits; edge_cover: a per-cell cloud count read into classes, cover_head.py)
and segmenters (UNets on ResNet encoders, a 1-channel logit per pixel) share the registry; a family's
ModelConfig says which task it serves (see task.py).

Like timm's registry: `@register_model` adds a builder with its default config, `create_model(name, **kw)`
builds one and refuses unknown names by listing the known ones. Every model takes raw pixel values
(0..255 for 8-bit RGB) and normalizes them with the train-split statistics inside its first layer, so
every later stage (export, evaluate, predict, the RISC-V device) only decodes and resizes, and the int8
input quantization of the raw range is nearly lossless. Models output logits; softmax is applied at
evaluation. No ImageNet weights: backbones start from scratch, or from a local weights file.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cloudcover.train.errors import CloudcoverError

if TYPE_CHECKING:  # keras is imported lazily so the CLI stays fast
    import keras


@dataclass(frozen=True)
class ModelConfig:
    """What a family needs and prefers: the CLI and the tuner read defaults from here."""

    name: str
    builder: Callable[..., "keras.Model"]
    default_size: int  # input side length in pixels
    min_size: int  # smallest input side the architecture accepts
    description: str
    uses_alpha: bool = False  # whether the width multiplier applies
    task: str = "classification"  # the task whose head goes on top (task.py)
    size_multiple: int = 1  # the input side must be a multiple of this (a UNet's total stride)
    default_alpha: float = 0.35  # --alpha when not given
    head: str = "task"  # "task": the task's head; "coverage": count cloud per cell (cover_head.py)


_REGISTRY: dict[str, ModelConfig] = {}


def register_model(name: str, *, default_size: int, min_size: int, description: str, uses_alpha: bool = False,
                   task: str = "classification", size_multiple: int = 1, default_alpha: float = 0.35,
                   head: str = "task"):
    """Decorator: add a backbone builder `(size, bands, alpha) -> keras.Model` (image -> feature map) under `name`."""

    def deco(fn: Callable[..., "keras.Model"]) -> Callable[..., "keras.Model"]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        _REGISTRY[name] = ModelConfig(name, fn, default_size, min_size, description, uses_alpha, task,
                                      size_multiple, default_alpha, head)
        return fn

    return deco


def list_models(task: str | None = None) -> list[str]:
    """Registered names, all or those of one task."""
    return sorted(n for n, c in _REGISTRY.items() if task is None or c.task == task)


def model_config(name: str) -> ModelConfig:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise CloudcoverError(f"unknown model {name!r}; known models: {', '.join(list_models())}") from None


def create_model(
    name: str,
    *,
    num_classes: int,
    input_size: int | None = None,
    bands: int = 3,
    alpha: float = 0.35,
    dropout: float = 0.2,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    weights: str | Path | None = None,
    bins: Sequence[float] | None = None,
) -> "keras.Model":
    """Build `name` for `bands`-channel `input_size`² raw-pixel input and its task's head: `num_classes` logits
    (classifiers) or one logit per pixel (segmenters; num_classes is ignored).

    `mean`/`std` (per band) become a Normalization layer; omitted, the model normalizes nothing.
    `weights` is a local backbone weights file (Keras `.weights.h5` / `.h5`) loaded into the backbone (a
    segmenter's encoder: the `<family>_encoder` sub-model, which a resnet18/resnet34 classifier shares).
    `bins` (coverage-percent class edges) place a coverage head's decision edges (default: equal bins).
    """
    import keras

    from cloudcover.train.task import get_task

    cfg = model_config(name)
    task = get_task(cfg.task)
    size = int(input_size or cfg.default_size)
    if size < cfg.min_size:
        raise CloudcoverError(f"model {name!r} needs an input size of at least {cfg.min_size} px, got {size} "
                              f"(--input-size)")
    if size % cfg.size_multiple:
        raise CloudcoverError(f"model {name!r} needs an input size that is a multiple of {cfg.size_multiple} px, "
                              f"got {size} (--input-size)")
    if bands < 1 or (task.name == "classification" and num_classes < 2):
        raise CloudcoverError(f"model {name!r}: need bands >= 1 and at least 2 classes, got {bands} and {num_classes}")
    if weights is not None and not Path(weights).is_file():
        raise CloudcoverError(f"weights file not found: {weights} (--weights)")

    inputs = keras.Input((size, size, bands), name="pixels")
    x = inputs
    if mean is not None and std is not None:
        if len(mean) != bands or len(std) != bands:
            raise CloudcoverError(f"normalization has {len(mean)} means for {bands} bands")
        var = [max(float(s), 1e-6) ** 2 for s in std]
        x = keras.layers.Normalization(mean=[float(m) for m in mean], variance=var, name="normalize")(x)
    backbone = cfg.builder(size=size, bands=bands, alpha=alpha)
    if weights is not None:
        target = next((layer for layer in backbone.layers if isinstance(layer, keras.Model)
                       and layer.name.endswith("_encoder")), backbone)
        try:
            target.load_weights(str(weights))
        except Exception as exc:  # Keras raises ValueError/KeyError/OSError depending on the mismatch
            raise CloudcoverError(f"cannot load backbone weights {weights} into {name!r}: "
                                  f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc
    for layer in _all_layers(backbone):
        # Keras applications use momentum 0.999 (tuned for ImageNet's 10^5+ steps); training from scratch on a
        # few hundred steps leaves the moving statistics near their initial values and validation accuracy at
        # chance. 0.9 tracks the batch statistics within ~20 steps.
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9
    x = backbone(x)
    if cfg.head == "coverage":
        from cloudcover.train import cover_head

        outputs = cover_head.head(x, num_classes, bins)
    else:
        outputs = task.head(x, num_classes, dropout)
    return keras.Model(inputs, outputs, name=f"cloudcover_{name}")


# ----------------------------------------------------------------------------------------------------
# Backbones: each returns a keras.Model from an image (already normalized) to a feature map.


@register_model("mobilenet", default_size=96, min_size=32, uses_alpha=True,
                description="MobileNetV2 with width multiplier alpha (the default edge model)")
def _mobilenet(size: int, bands: int, alpha: float) -> "keras.Model":
    import keras

    return keras.applications.MobileNetV2(input_shape=(size, size, bands), alpha=alpha, include_top=False,
                                          weights=None)


@register_model("mobilenet_v3_small", default_size=96, min_size=32, uses_alpha=True,
                description="MobileNetV3-Small (alpha scales its width)")
def _mobilenet_v3_small(size: int, bands: int, alpha: float) -> "keras.Model":
    import keras

    return keras.applications.MobileNetV3Small(input_shape=(size, size, bands), alpha=alpha, include_top=False,
                                               weights=None, include_preprocessing=False)


@register_model("resnet50", default_size=224, min_size=32, description="ResNet-50 (original system; heavy)")
def _resnet50(size: int, bands: int, alpha: float) -> "keras.Model":
    import keras

    return keras.applications.ResNet50(input_shape=(size, size, bands), include_top=False, weights=None)


@register_model("vgg16", default_size=224, min_size=32, description="VGG-16 (original system; heavy)")
def _vgg16(size: int, bands: int, alpha: float) -> "keras.Model":
    import keras

    return keras.applications.VGG16(input_shape=(size, size, bands), include_top=False, weights=None)


@register_model("inception_v3", default_size=299, min_size=75, description="Inception-v3 (original system; >= 75 px)")
def _inception_v3(size: int, bands: int, alpha: float) -> "keras.Model":
    import keras

    return keras.applications.InceptionV3(input_shape=(size, size, bands), include_top=False, weights=None)


# edge_cnn: stem conv + depthwise-separable blocks (channels, stride). About 15 M MACs at 96x96 with
# alpha 1 -- a third of the 50 M budget -- and every op is one that int8 TFLite and TVM lower directly.
_EDGE_BLOCKS = ((32, 1), (64, 2), (64, 1), (128, 2), (128, 1), (256, 2), (256, 1))


@register_model("edge_cnn", default_size=96, min_size=16, uses_alpha=True,
                description="compact depthwise-separable CNN for RISC-V (~15 M MACs at 96 px, alpha 1)")
def _edge_cnn(size: int, bands: int, alpha: float) -> "keras.Model":
    return _edge_blocks(size, bands, alpha, _EDGE_BLOCKS, "edge_cnn")


# edge_cover: edge_cnn's blocks down to stride 8 (12 x 12 cells at 96 px), then the coverage head
# (cover_head.py): the class is read off a per-cell cloud count, which transfers to real patches.
@register_model("edge_cover", default_size=96, min_size=16, uses_alpha=True, head="coverage", size_multiple=8,
                description="edge_cnn to stride 8 + coverage head: counts cloud per cell, class from the count "
                            "(trains on the dataset's masks)")
def _edge_cover(size: int, bands: int, alpha: float) -> "keras.Model":
    return _edge_blocks(size, bands, alpha, _EDGE_BLOCKS[:5], "edge_cover")


def _edge_blocks(size: int, bands: int, alpha: float, blocks, name: str) -> "keras.Model":
    import keras
    from keras import layers

    def width(c: int) -> int:
        return max(8, int(round(c * alpha / 8)) * 8)

    # alpha < 0.5 would starve this small net; treat the mobilenet default (0.35) as "full width".
    alpha = 1.0 if alpha < 0.5 else alpha
    inputs = keras.Input((size, size, bands))
    x = layers.Conv2D(width(16), 3, strides=2, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.ReLU(6.0, name="stem_relu")(x)
    for i, (channels, stride) in enumerate(blocks):
        x = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False, name=f"b{i}_dw")(x)
        x = layers.BatchNormalization(name=f"b{i}_dw_bn")(x)
        x = layers.ReLU(6.0, name=f"b{i}_dw_relu")(x)
        x = layers.Conv2D(width(channels), 1, use_bias=False, name=f"b{i}_pw")(x)
        x = layers.BatchNormalization(name=f"b{i}_pw_bn")(x)
        x = layers.ReLU(6.0, name=f"b{i}_pw_relu")(x)
    return keras.Model(inputs, x, name=name)


# ----------------------------------------------------------------------------------------------------
# ResNet-18/34 built from scratch (keras.applications has neither): the encoder of the UNets, and a
# classifier backbone of its own, with the same layer names so either one's weights load into the other.

_RESNET_BLOCKS = {"resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3)}
_RESNET_WIDTHS = (64, 128, 256, 512)
# Decoder widths from the deepest skip (stride 16) to the stem (stride 2), then the full-resolution conv.
_UNET_DECODER = (256, 128, 64, 32, 16)


def _width(c: int, alpha: float) -> int:
    return max(8, int(round(c * alpha / 8)) * 8)


def _resnet_encoder(size: int, bands: int, alpha: float, family: str) -> "keras.Model":
    """Image -> [stride 2, 4, 8, 16, 32] feature maps: the 7x7 stem and the four stages of basic blocks."""
    import keras
    from keras import layers

    def conv_bn(x, filters, kernel, stride, name, relu=True):
        x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False, name=f"{name}_conv")(x)
        x = layers.BatchNormalization(name=f"{name}_bn")(x)
        return layers.ReLU(name=f"{name}_relu")(x) if relu else x

    inputs = keras.Input((size, size, bands))
    stem = conv_bn(inputs, _width(64, alpha), 7, 2, "stem")
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(stem)
    features = [stem]
    for s, (n_blocks, channels) in enumerate(zip(_RESNET_BLOCKS[family], _RESNET_WIDTHS)):
        filters = _width(channels, alpha)
        for b in range(n_blocks):
            stride = 2 if s > 0 and b == 0 else 1
            name = f"stage{s + 1}_block{b + 1}"
            shortcut = x
            if stride != 1 or x.shape[-1] != filters:
                shortcut = conv_bn(x, filters, 1, stride, f"{name}_proj", relu=False)
            y = conv_bn(x, filters, 3, stride, f"{name}_a")
            y = conv_bn(y, filters, 3, 1, f"{name}_b", relu=False)
            x = layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([shortcut, y]))
        features.append(x)
    return keras.Model(inputs, features, name=f"{family}_encoder")


def _resnet_classifier_backbone(size: int, bands: int, alpha: float, family: str) -> "keras.Model":
    """The encoder's last feature map only (same layers and names, so its weights file fits the UNet's encoder)."""
    import keras

    enc = _resnet_encoder(size, bands, alpha, family)
    return keras.Model(enc.inputs, enc.outputs[-1], name=f"{family}_encoder")


def _upsample(x, name: str):
    """2x nearest-neighbour upsampling (see _unet for why Resizing and not UpSampling2D)."""
    import keras

    return keras.layers.Resizing(2 * x.shape[1], 2 * x.shape[2], interpolation="nearest", name=name)(x)


def _unet(size: int, bands: int, alpha: float, family: str) -> "keras.Model":
    """UNet body: ResNet encoder, then per skip: 2x upsampling, concatenation, two 3x3 conv-BN-ReLU.

    Upsampling is a nearest-neighbour resize (keras Resizing, i.e. tf.image.resize) followed by a 3x3 conv,
    not Conv2DTranspose: in full int8 it becomes TFLite RESIZE_NEAREST_NEIGHBOR, which copies int8 values
    with the input's scale and zero point (exact, no requantization, a trivial kernel for the RISC-V
    lowering), and the learnable part stays in CONV_2D, which the int8 toolchain already lowers bit-exactly;
    TRANSPOSE_CONV would need its own int8 lowering and is prone to checkerboard artefacts. Not
    UpSampling2D: Keras 3 implements its nearest mode with repeat, which converts to TILE v3, an op the
    ai-edge-litert 2.3 interpreter cannot run. Returns full-resolution features; the task's head (a 1x1 conv
    to one logit) goes on top.
    """
    import keras
    from keras import layers

    encoder = _resnet_encoder(size, bands, alpha, family)
    inputs = keras.Input((size, size, bands))
    feats = encoder(inputs)
    x = feats[-1]
    for i, (skip, channels) in enumerate(zip(reversed(feats[:-1]), _UNET_DECODER)):
        x = _upsample(x, f"dec{i + 1}_up")
        x = layers.Concatenate(name=f"dec{i + 1}_concat")([x, skip])
        for j in "ab":
            x = layers.Conv2D(_width(channels, alpha), 3, padding="same", use_bias=False, name=f"dec{i + 1}_{j}_conv")(x)
            x = layers.BatchNormalization(name=f"dec{i + 1}_{j}_bn")(x)
            x = layers.ReLU(name=f"dec{i + 1}_{j}_relu")(x)
    x = _upsample(x, "dec5_up")
    x = layers.Conv2D(_width(_UNET_DECODER[-1], alpha), 3, padding="same", use_bias=False, name="dec5_conv")(x)
    x = layers.BatchNormalization(name="dec5_bn")(x)
    x = layers.ReLU(name="dec5_relu")(x)
    return keras.Model(inputs, x, name=f"unet_{family}")


@register_model("resnet18", default_size=96, min_size=32, uses_alpha=True, default_alpha=1.0,
                description="ResNet-18 from scratch (alpha scales its width; shares weights with unet_resnet18's encoder)")
def _resnet18(size: int, bands: int, alpha: float) -> "keras.Model":
    return _resnet_classifier_backbone(size, bands, alpha, "resnet18")


@register_model("resnet34", default_size=96, min_size=32, uses_alpha=True, default_alpha=1.0,
                description="ResNet-34 from scratch (alpha scales its width; shares weights with unet_resnet34's encoder)")
def _resnet34(size: int, bands: int, alpha: float) -> "keras.Model":
    return _resnet_classifier_backbone(size, bands, alpha, "resnet34")


@register_model("resnet8", default_size=32, min_size=32, description=(
    "MLPerf Tiny's ResNet-8 (CIFAR-10 reference, about 12.5 M MACs at 32 px; the benchmark network)"))
def _resnet8(size: int, bands: int, alpha: float) -> "keras.Model":
    """MLPerf Tiny image classification's `resnet_v1_eembc` (mlcommons/tiny, training/image_classification/
    keras_model.py): a 3x3 stem of 16 filters, three stacks of two 3x3 convolutions (16, 32, 64 filters; the
    second and third stride 2 with a 1x1 strided projection shortcut), residual add, ReLU. The reference's
    average pooling over the whole 8x8 map, flatten and Dense are the classification head (GAP -> Dense)."""
    import keras
    from keras import layers

    def conv(x, filters, kernel, stride, name):
        return layers.Conv2D(filters, kernel, strides=stride, padding="same", kernel_initializer="he_normal",
                             name=name)(x)

    inputs = keras.Input((size, size, bands))
    x = layers.ReLU(name="stem_relu")(layers.BatchNormalization(name="stem_bn")(conv(inputs, 16, 3, 1, "stem_conv")))
    for s, (filters, stride) in enumerate(((16, 1), (32, 2), (64, 2))):
        y = conv(x, filters, 3, stride, f"stack{s + 1}_a_conv")
        y = layers.ReLU(name=f"stack{s + 1}_a_relu")(layers.BatchNormalization(name=f"stack{s + 1}_a_bn")(y))
        y = layers.BatchNormalization(name=f"stack{s + 1}_b_bn")(conv(y, filters, 3, 1, f"stack{s + 1}_b_conv"))
        if stride != 1:
            x = conv(x, filters, 1, stride, f"stack{s + 1}_proj")
        x = layers.ReLU(name=f"stack{s + 1}_out")(layers.Add(name=f"stack{s + 1}_add")([x, y]))
    return keras.Model(inputs, x, name="resnet8")


@register_model("unet_resnet18", default_size=96, min_size=32, uses_alpha=True, task="segmentation",
                size_multiple=32, default_alpha=1.0,
                description="UNet on a ResNet-18 encoder (segmenter; alpha 0.25 for the edge-sized variant)")
def _unet_resnet18(size: int, bands: int, alpha: float) -> "keras.Model":
    return _unet(size, bands, alpha, "resnet18")


@register_model("unet_resnet34", default_size=96, min_size=32, uses_alpha=True, task="segmentation",
                size_multiple=32, default_alpha=1.0, description="UNet on a ResNet-34 encoder (segmenter)")
def _unet_resnet34(size: int, bands: int, alpha: float) -> "keras.Model":
    return _unet(size, bands, alpha, "resnet34")


def _all_layers(model: "keras.Model") -> list:
    import keras

    out = []
    for layer in model.layers:
        out.extend(_all_layers(layer) if isinstance(layer, keras.Model) else [layer])
    return out


def count_macs(model: "keras.Model") -> int:
    """Multiply-accumulates of one forward pass over Conv2D, DepthwiseConv2D and Dense layers (nested too)."""
    import keras

    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += count_macs(layer)
            continue
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            _, h, w, c = layer.output.shape
            kh, kw = layer.kernel_size
            total += h * w * c * kh * kw
        elif isinstance(layer, keras.layers.Conv2D):
            _, h, w, c = layer.output.shape
            kh, kw = layer.kernel_size
            total += h * w * c * kh * kw * layer.input.shape[-1] // layer.groups
        elif isinstance(layer, keras.layers.Dense):
            total += int(layer.input.shape[-1]) * layer.units
    return int(total)
