# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""The BTS model: DenseNet encoder + local-planar-guidance decoder (official PyTorch V2 semantics).

Canonical reference: the official PyTorch "V2" model ("PT" in docs/design.md). Every detail that decides
numerical parity with its checkpoints follows it: symmetric stem padding, BN epsilons, no conv
biases, θ = σ·π/3, the ``reduc1x1`` branch, concat orders, top-left-pick downsampling of the LPG
maps, and the KITTI focal scaling of the final depth (design §1, §9).

Data flow for an input of H×W (shapes NHWC, nf = ``bts_size`` = 512 for DenseNet-161)::

    image (B,H,W,3) ─ encoder ─ skip2 (H/2,96) skip4 (H/4,96) skip8 (H/8,192) skip16 (H/16,384)
                                dense32 (H/32,2208, after ReLU)
    upconv5+bn5 ⊕ skip16 → conv5 (H/16,nf) → upconv4+bn4 ⊕ skip8 = concat4 → conv4+bn4_2 = iconv4
    dense ASPP (rates 3..24) → daspp_conv (H/8,nf/4) → reduc8x8 → lpg8x8 ─────────────┐
    upconv3+bn3 ⊕ skip4 ⊕ lpg8 ds → conv3 (H/4,nf/4) → reduc4x4 → lpg4x4 ─────────────┤
    upconv2+bn2 ⊕ skip2 ⊕ lpg4 ds → conv2 (H/2,nf/8) → reduc2x2 → lpg2x2 ─────────────┤
    upconv1 (H,nf/16) → reduc1x1 (H,1) ⊕ [lpg2, lpg4, lpg8] → conv1 → get_depth → σ·max_depth
    (KITTI: × focal / 715.0873)

The layers compute with ``keras.ops``, so the model also runs under Keras's JAX backend (speed
runs on GPU machines without TensorFlow); training and evaluation use TensorFlow.

Layer names follow the PT module names (``.`` is legal in Keras names), so a Keras weight path such
as ``encoder.denseblock1.denselayer1.conv1/kernel`` or ``daspp_6/conv1x1/kernel`` maps to a PT
state-dict key; the map (``PT_NAME_TABLE``, ``pytorch_key_for``) lives in the converter,
``tools/convert_pytorch_checkpoint.py``.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Callable, Dict, Optional, Sequence, Tuple

import keras
from keras import ops

from utils.configs import BtsConfig, ConfigError
from utils.datasets import KITTI_FOCAL_NORMALISER
from utils.encoders import (DENSENET_CONFIGS, ENCODER_NAMES, ENCODER_PREFIX, RESNET_CONFIGS, DenseNetConfig,
                            ResNetConfig, encoder_facts)

SERIALIZATION_PACKAGE = "bts"

# Decoder BN (design §1.4): PT eps 1.1e-5 (mid-DASPP 1e-5), PT momentum 0.01 == Keras 0.99.
DECODER_BN_EPSILON = 1.1e-5
DASPP_MID_BN_EPSILON = 1e-5
DECODER_BN_MOMENTUM = 0.99
# torchvision DenseNet BN: eps 1e-5, PT momentum 0.1 == Keras 0.9.
ENCODER_BN_EPSILON = 1e-5
ENCODER_BN_MOMENTUM = 0.9


# --------------------------------------------------------------------------------------------
# Batch normalisation on TF's fused kernel
# --------------------------------------------------------------------------------------------
@keras.saving.register_keras_serializable(package=SERIALIZATION_PACKAGE)
class BatchNorm(keras.layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` computed by TF's fused kernel for NHWC inputs.

    Same variables, weight names and train/inference semantics as the Keras layer (batch
    statistics when ``training`` and the layer is trainable). Keras 3's own BN runs as ~10
    unfused ops with dtype casts on CPU, which measured 40 % of a bf16 training step here.
    The moving variance is updated with the unbiased batch variance, as PyTorch does. Under
    other Keras backends (``benchmarks/gpu_check_jax.py`` on JAX) it is Keras's own BN, whose
    moving variance is biased: train with TensorFlow.

    ``use_moving_statistics`` (``--bn_no_track_stats``, PT ``bn_init_as_tf``; set per layer by
    ``bts_trainer.use_moving_statistics``): normalise with the moving statistics and leave them
    unchanged even when called with ``training=True``; γ/β keep their own ``trainable``. Not
    part of the layer's config: a training mode, not a property of the saved model.
    """

    use_moving_statistics = False

    def uses_batch_statistics(self, training) -> bool:
        """Whether a call with ``training`` normalises with (and updates from) batch statistics."""
        return bool(training) and self.trainable and not self.use_moving_statistics

    def fused(self, inputs) -> bool:
        """Whether :meth:`call` computes with TF's fused kernel (NHWC under TensorFlow)."""
        return (len(inputs.shape) == 4 and self.axis in (-1, 3)
                and keras.backend.backend() == "tensorflow")

    def affine(self):
        """(γ, β) as float32 tensors (ones/zeros where the layer has none)."""
        import tensorflow as tf  # loaded already by the TensorFlow backend

        gamma = self.gamma if self.scale else tf.ones_like(self.moving_mean)
        beta = self.beta if self.center else tf.zeros_like(self.moving_mean)
        return tf.cast(gamma, tf.float32), tf.cast(beta, tf.float32)

    def normalize(self, inputs, batch_statistics: bool, gamma, beta):
        """(outputs, batch mean, unbiased batch variance) of TF's fused kernel on NHWC ``inputs``
        with (γ, β) = ``gamma``, ``beta`` (:meth:`affine`), no moving-statistics update (the
        means are ``None`` with the moving statistics). The one computation of :meth:`call`, also
        recomputed in :class:`Conv2D`'s backward pass (``recompute=bn_relu``)."""
        import tensorflow as tf  # loaded already by the TensorFlow backend

        if batch_statistics:
            outputs, batch_mean, batch_var, _, _, _ = tf.raw_ops.FusedBatchNormV3(
                x=inputs, scale=gamma, offset=beta,
                mean=tf.constant([], tf.float32), variance=tf.constant([], tf.float32),
                epsilon=self.epsilon, exponential_avg_factor=1.0, data_format="NHWC",
                is_training=True,
            )
            return outputs, batch_mean, batch_var
        outputs, _, _, _, _, _ = tf.raw_ops.FusedBatchNormV3(
            x=inputs, scale=gamma, offset=beta,
            mean=tf.cast(self.moving_mean, tf.float32),
            variance=tf.cast(self.moving_variance, tf.float32),
            epsilon=self.epsilon, data_format="NHWC", is_training=False,
        )
        return outputs, None, None

    def call(self, inputs, training=None, mask=None):
        if mask is not None or not self.fused(inputs):
            # Other backends (speed runs under JAX): Keras BN, whose moving variance is biased.
            training = training and not self.use_moving_statistics
            return super().call(inputs, training=training, mask=mask)
        batch_statistics = self.uses_batch_statistics(training)
        outputs, batch_mean, batch_var = self.normalize(inputs, batch_statistics, *self.affine())
        if batch_statistics:
            momentum = self.momentum
            self.moving_mean.assign(self.moving_mean * momentum + batch_mean * (1.0 - momentum))
            self.moving_variance.assign(
                self.moving_variance * momentum + batch_var * (1.0 - momentum)
            )
        return outputs


# --------------------------------------------------------------------------------------------
# How the graph computes (not what): ModelOps and the conv layers it selects
# --------------------------------------------------------------------------------------------
CONV1X1_CHOICES = ("conv", "matmul")
PADDING_CHOICES = ("separate", "fused")
UPCONV_CHOICES = ("upsample", "subpixel")
RECOMPUTE_CHOICES = ("none", "bn_relu")


@dataclasses.dataclass(frozen=True)
class ModelOps:
    """Op choices that leave a model's weights, layer names and outputs as they are (issue #18).

    ``conv1x1``: ``"conv"`` (a Conv2D op) or ``"matmul"``: every 1×1, stride-1, undilated,
    ungrouped conv computes one MatMul of the (B·H·W, Cin) input by the kernel's (Cin, Cout)
    view. ``padding``: ``"separate"`` (a ``ZeroPadding2D`` layer ``<conv>_pad`` before a 'valid'
    conv) or ``"fused"``: the conv pads itself with the same symmetric zeros (TensorFlow: one
    conv op with explicit paddings; other backends pad, then convolve) and an op-free
    :class:`FusedPadding` keeps the pad layer's name and place. The stride-2 stems and strided
    3×3 convs (depthwise too) are fused; the max-pool padding stays a layer. The default is the
    graph the project has always built. Not part of BtsConfig: the checkpoint converters,
    ``.keras``/``.weights.h5`` and ``ckpt-N`` files and PyTorch parity are the same for every
    choice (a model of one choice loads another's files). ``upconv``: ``"upsample"`` (nearest ×2,
    then the 3×3 conv at the doubled size) or ``"subpixel"``: the same conv computed on the small
    map, 2.25× fewer multiply-adds (:class:`UpConv`); equal up to float rounding, since its kernel
    taps are summed before they multiply. ``recompute``: ``"none"`` or ``"bn_relu"``: in a
    training step, each DenseNet BN→ReLU→conv (dense layers' both, transitions') keeps only the
    dense block's pieces whose concatenation is the BN's input, and recomputes concat→BN→ReLU in
    the backward pass, instead of keeping the ReLU outputs and the growing concatenations (the
    encoder's largest activations; no conv is recomputed). Same numbers; much less memory; on
    small maps more time (:class:`Conv2D`, ``RECOMPUTE_MIN_PIXELS``).
    """

    conv1x1: str = "conv"
    padding: str = "separate"
    upconv: str = "upsample"
    recompute: str = "none"

    def __post_init__(self):
        for field, value, choices in (("conv1x1", self.conv1x1, CONV1X1_CHOICES),
                                      ("padding", self.padding, PADDING_CHOICES),
                                      ("upconv", self.upconv, UPCONV_CHOICES),
                                      ("recompute", self.recompute, RECOMPUTE_CHOICES)):
            if value not in choices:
                raise ConfigError("model_ops", f"{field}={value!r} is unknown; valid: "
                                  f"{', '.join(f'{field}={c}' for c in choices)}")

    @property
    def matmul_1x1(self) -> bool:
        return self.conv1x1 == "matmul"

    @property
    def fused_padding(self) -> bool:
        return self.padding == "fused"

    @property
    def subpixel_upconv(self) -> bool:
        return self.upconv == "subpixel"

    @property
    def recompute_bn_relu(self) -> bool:
        return self.recompute == "bn_relu"


    def __str__(self) -> str:
        """The ``--model_ops`` text: ``standard`` or the non-default fields, ``KEY=VALUE,...``."""
        changed = [f"{f.name}={getattr(self, f.name)}" for f in dataclasses.fields(self)
                   if getattr(self, f.name) != f.default]
        return ",".join(changed) or STANDARD_MODEL_OPS

    @classmethod
    def parse(cls, text: str) -> "ModelOps":
        """``standard`` or ``KEY=VALUE[,KEY=VALUE]`` (commas or spaces) → ModelOps; ConfigError
        (field ``model_ops``, one line) for anything else."""
        words = [w for w in text.replace(",", " ").split() if w]
        if words == [STANDARD_MODEL_OPS]:
            return cls()
        fields = {f.name for f in dataclasses.fields(cls)}
        chosen: Dict[str, str] = {}
        for word in words:
            key, sep, choice = word.partition("=")
            if not sep or key not in fields:
                raise ConfigError("model_ops", f"{word!r}: expected KEY=VALUE with KEY one of "
                                  f"{', '.join(sorted(fields))}, or {STANDARD_MODEL_OPS!r}")
            chosen[key] = choice
        if not chosen:
            raise ConfigError("model_ops", f"{text!r} names no choice; expected {STANDARD_MODEL_OPS!r} "
                              "or KEY=VALUE, e.g. conv1x1=matmul,recompute=bn_relu")
        return cls(**chosen)


STANDARD_MODEL_OPS = "standard"
DEFAULT_MODEL_OPS = ModelOps()
# What ``--model_ops auto`` builds where no GPU/TPU computes: both levers paid on every CPU kind
# measured, fp32 and bf16, forward and training (docs/performance.md, bench_model --model_ops).
# Accelerators keep the standard graph (cuDNN/XLA convs; not measured here).
CPU_MODEL_OPS = ModelOps(conv1x1="matmul", upconv="subpixel")
# ... and for training batches of at least RECOMPUTE_MIN_PIXELS (batch × height × width), also
# recompute=bn_relu: at 2×416×544 it cut the step's peak RSS by 1.8 GB (fp32) within the timing
# noise; at 4×128×160 (./demo.sh) it cost 25 % of the step (per-op overhead on small maps).
CPU_TRAINING_MODEL_OPS = dataclasses.replace(CPU_MODEL_OPS, recompute="bn_relu")
RECOMPUTE_MIN_PIXELS = 1 << 18


def model_ops_of(model: keras.Model) -> ModelOps:
    """The op choices a built BTS model computes with, read from its layers."""
    layers = list(_all_layers(model))
    matmul = any(getattr(layer, "matmul_1x1", False) for layer in layers)
    fused = any(isinstance(layer, FusedPadding) for layer in layers)
    subpixel = any(isinstance(layer, UpConv) and layer.subpixel for layer in layers)
    recompute = any(getattr(layer, "recompute_input", False) for layer in layers)
    return ModelOps(conv1x1="matmul" if matmul else "conv", padding="fused" if fused else "separate",
                    upconv="subpixel" if subpixel else "upsample",
                    recompute="bn_relu" if recompute else "none")


def _all_layers(model: keras.Model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):  # a nested encoder model
            yield from _all_layers(layer)


@keras.saving.register_keras_serializable(package=SERIALIZATION_PACKAGE)
class FusedPadding(keras.layers.Layer):
    """Stands where a ``ZeroPadding2D(padding)`` stood whose zeros the next conv now adds itself
    (``explicit_padding``): the identity, no op. It keeps the layer's name and its place in the
    model's layer list, by which ``tf.train.Checkpoint`` numbers the layers (``ckpt-N`` keys are
    ``model/_operations/<index>/...``), so ckpt-N files load either way."""

    def __init__(self, padding: int, **kwargs):
        super().__init__(**kwargs)
        self.padding = int(padding)

    def call(self, x):
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "padding": self.padding}


def _pad_layer(x, pad: int, name: str, model_ops: ModelOps):
    """``ZeroPadding2D(pad)`` on ``x``, or with fused padding the op-free :class:`FusedPadding`."""
    layer = FusedPadding if model_ops.fused_padding else keras.layers.ZeroPadding2D
    return layer(pad, name=name)(x)


def _explicit_paddings(pad: int):
    return [[0, 0], [pad, pad], [pad, pad], [0, 0]]


def _padded_shape(input_shape, pad: int):
    """NHWC ``input_shape`` after ``pad`` zeros on each side of H and W (None stays None)."""
    grow = lambda n: None if n is None else n + 2 * pad  # noqa: E731
    return (input_shape[0], grow(input_shape[1]), grow(input_shape[2])) + tuple(input_shape[3:])


def _conv_op(inputs, kernel, strides, dilation_rate, pad: int):
    """Conv of NHWC ``inputs`` with ``pad`` symmetric zeros (then 'valid'): one op under TF."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf  # loaded already by the TensorFlow backend

        return tf.nn.conv2d(inputs, kernel, strides=list(strides),
                            padding=_explicit_paddings(pad), dilations=list(dilation_rate))
    return ops.conv(ops.pad(inputs, _explicit_paddings(pad)), kernel, strides=list(strides),
                    padding="valid", dilation_rate=dilation_rate)


@keras.saving.register_keras_serializable(package=SERIALIZATION_PACKAGE)
class Conv2D(keras.layers.Conv2D):
    """``keras.layers.Conv2D`` computed in one of ModelOps's ways; same variables and numbers.

    ``matmul_1x1``: a 1×1 conv with stride 1, dilation 1 and one group computes a MatMul of the
    (B·H·W, Cin) input by the kernel's (Cin, Cout) view (other shapes: the conv). Kernel
    (1, 1, Cin, Cout) as ever. ``explicit_padding`` p (needs ``padding='valid'``): the conv
    pads p zeros on each side of H and W itself, equal to ``ZeroPadding2D(p)`` before it.

    ``recompute_input`` (``ModelOps(recompute="bn_relu")``): the layer's input is ReLU(BN(x)) of
    a :class:`BatchNorm` attached with :meth:`attach_recompute_source`, and it is called as
    ``conv(relu_out, bn_input=pieces)`` with ``x = concat(pieces)`` (a DenseNet block's input
    and the new features of its layers so far; or ``bn_input=x``). Forward values are the plain
    conv's; in a training call its gradient keeps the pieces instead of ``relu_out``, recomputes
    concat→BN→ReLU from them (BN's batch- or moving-statistics form, whichever the forward pass
    used) and then takes the conv's, ReLU's and BN's gradients as autodiff would, so that
    neither the ReLU outputs nor the growing concatenations stay alive for the backward pass.
    Unattached (a model read back from a ``.keras`` file) or outside training it is the plain
    conv of ``relu_out``.

    Deliberately called ``Conv2D``: ``.keras``/``.weights.h5`` files address a model's layers by
    their snake-cased class name, so a model built with any ModelOps reads and writes the same
    weight files as the default one (whose plain convs are Keras's own Conv2D).
    """

    def __init__(self, *args, matmul_1x1: bool = False, explicit_padding: int = 0,
                 recompute_input: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.matmul_1x1, self.explicit_padding = bool(matmul_1x1), int(explicit_padding)
        self.recompute_input = bool(recompute_input)
        if self.explicit_padding and (self.padding != "valid" or self.data_format != "channels_last"):
            raise ValueError(f"{self.name}: explicit_padding needs padding='valid' and "
                             f"channels_last, got {self.padding!r}, {self.data_format!r}")
        if self.recompute_input and (self.use_bias or self.activation is not keras.activations.linear
                                     or tuple(self.strides) != (1, 1) or self.explicit_padding
                                     or tuple(self.dilation_rate) != (1, 1) or self.groups != 1
                                     or self.data_format != "channels_last"):
            raise ValueError(f"{self.name}: recompute_input needs a bias-free, linear, stride-1, "
                             "undilated, ungrouped channels_last conv")

    def attach_recompute_source(self, batch_norm: "BatchNorm") -> None:
        """The BN whose ReLU'd output this layer convolves (``recompute_input``). Kept outside
        Keras's and tf.train.Checkpoint's tracking, so weight files and ``ckpt-N`` keys are the
        plain model's."""
        object.__setattr__(self, "_recompute_source", (batch_norm,))

    def call(self, inputs, training=None, bn_input=None):
        source = getattr(self, "_recompute_source", (None,))[0]
        # BatchNorm.fused: the BN's own fused TF kernel, the one the backward pass recomputes
        if bn_input is None or source is None or not training or not source.fused(inputs):
            return super().call(inputs)
        pieces = list(bn_input) if isinstance(bn_input, (list, tuple)) else [bn_input]
        return self._recomputing_conv(inputs, pieces, source, source.uses_batch_statistics(training))

    def _recomputing_conv(self, relu_out, pieces, source: "BatchNorm", batch_statistics: bool):
        """conv(relu_out) whose gradient recomputes relu_out = ReLU(BN(concat(pieces)))."""
        import tensorflow as tf  # loaded already by the TensorFlow backend

        gamma, beta = source.affine()
        kernel = tf.cast(self.kernel, self.compute_dtype)
        widths = [int(piece.shape[-1]) for piece in pieces]

        @tf.custom_gradient
        def conv(relu_out, gamma, beta, kernel, *pieces):
            def grad(upstream):
                # Not before the backward pass reaches this layer: nothing else orders the
                # recomputation (it reads forward tensors only), and an executor that ran it
                # early would keep every recomputed ReLU output alive, as without recompute.
                with tf.control_dependencies([upstream]):
                    x = tf.concat(pieces, axis=-1) if len(pieces) > 1 else tf.identity(pieces[0])
                with tf.GradientTape() as tape:
                    tape.watch([x, gamma, beta])
                    recomputed = tf.nn.relu(source.normalize(x, batch_statistics, gamma, beta)[0])
                d_relu, d_kernel = self._conv_gradients(recomputed, kernel, upstream)
                d_x, d_gamma, d_beta = tape.gradient(recomputed, [x, gamma, beta],
                                                     output_gradients=d_relu)
                d_pieces = tf.split(d_x, widths, axis=-1) if len(pieces) > 1 else [d_x]
                return (None, d_gamma, d_beta, d_kernel, *d_pieces)

            return self.convolution_op(relu_out, kernel), grad

        return conv(relu_out, gamma, beta, kernel, *pieces)

    def _conv_gradients(self, inputs, kernel, upstream):
        """(d inputs, d kernel) of ``convolution_op(inputs, kernel)`` for ``upstream``, without
        its forward pass (the backward ops TF's own gradient of the op uses)."""
        import tensorflow as tf  # loaded already by the TensorFlow backend

        if self._is_matmul():
            cin, cout = kernel.shape[2], kernel.shape[3]
            flat_in, flat_up = tf.reshape(inputs, (-1, cin)), tf.reshape(upstream, (-1, cout))
            d_inputs = tf.matmul(flat_up, tf.reshape(kernel, (cin, cout)), transpose_b=True)
            d_kernel = tf.matmul(flat_in, flat_up, transpose_a=True)
            return tf.reshape(d_inputs, tf.shape(inputs)), tf.reshape(d_kernel, kernel.shape)
        padding = self.padding.upper()
        d_inputs = tf.raw_ops.Conv2DBackpropInput(
            input_sizes=tf.shape(inputs), filter=kernel, out_backprop=upstream,
            strides=[1, 1, 1, 1], padding=padding)
        d_kernel = tf.raw_ops.Conv2DBackpropFilter(
            input=inputs, filter_sizes=tf.shape(kernel), out_backprop=upstream,
            strides=[1, 1, 1, 1], padding=padding)
        return d_inputs, d_kernel

    def _is_matmul(self) -> bool:
        return (self.matmul_1x1 and tuple(self.kernel_size) == (1, 1)
                and tuple(self.strides) == (1, 1) and tuple(self.dilation_rate) == (1, 1)
                and self.groups == 1 and self.data_format == "channels_last"
                and not self.explicit_padding)

    def convolution_op(self, inputs, kernel):
        if self._is_matmul():
            shape = ops.shape(inputs)
            flat = ops.matmul(ops.reshape(inputs, (-1, kernel.shape[2])),
                              ops.reshape(kernel, (kernel.shape[2], kernel.shape[3])))
            return ops.reshape(flat, (*shape[:-1], kernel.shape[3]))
        if self.explicit_padding:
            return _conv_op(inputs, kernel, self.strides, self.dilation_rate, self.explicit_padding)
        return super().convolution_op(inputs, kernel)

    def compute_output_shape(self, input_shape):
        return super().compute_output_shape(_padded_shape(input_shape, self.explicit_padding))

    def get_config(self):
        config = super().get_config()
        if self.matmul_1x1:
            config["matmul_1x1"] = True
        if self.explicit_padding:
            config["explicit_padding"] = self.explicit_padding
        if self.recompute_input:
            config["recompute_input"] = True
        return config


@keras.saving.register_keras_serializable(package=SERIALIZATION_PACKAGE)
class DepthwiseConv2D(keras.layers.DepthwiseConv2D):
    """``keras.layers.DepthwiseConv2D`` with ``explicit_padding`` p (see :class:`Conv2D`; named
    as Keras's for the same reason): p symmetric zeros inside the op, ``padding='valid'``."""

    def __init__(self, *args, explicit_padding: int = 0, **kwargs):
        super().__init__(*args, **kwargs)
        self.explicit_padding = int(explicit_padding)
        if self.explicit_padding and (self.padding != "valid" or self.data_format != "channels_last"):
            raise ValueError(f"{self.name}: explicit_padding needs padding='valid' and "
                             f"channels_last, got {self.padding!r}, {self.data_format!r}")

    def call(self, inputs):
        pad = self.explicit_padding
        if not pad or keras.backend.backend() != "tensorflow":
            return super().call(ops.pad(inputs, _explicit_paddings(pad)) if pad else inputs)
        import tensorflow as tf  # loaded already by the TensorFlow backend

        outputs = tf.nn.depthwise_conv2d(
            inputs, self.kernel, strides=(1, *self.strides, 1), padding=_explicit_paddings(pad),
            dilations=list(self.dilation_rate))
        if self.use_bias:
            outputs = outputs + self.bias
        return self.activation(outputs) if self.activation is not None else outputs

    def compute_output_shape(self, input_shape):
        return super().compute_output_shape(_padded_shape(input_shape, self.explicit_padding))

    def get_config(self):
        config = super().get_config()
        if self.explicit_padding:
            config["explicit_padding"] = self.explicit_padding
        return config


def _conv(filters: int, kernel: int, name: str, *, activation=None, strides: int = 1,
          padding: str = "same", dilation: int = 1, initializer="glorot_uniform",
          model_ops: ModelOps = DEFAULT_MODEL_OPS, explicit_padding: int = 0,
          recompute_input: bool = False) -> keras.layers.Conv2D:
    """A bias-free conv (PT BTS has no conv biases); Xavier-uniform by default as PT's decoder.

    Keras's Conv2D under the default ModelOps; :class:`Conv2D` where ``model_ops`` makes a 1×1
    conv a MatMul, ``explicit_padding`` (the fused padding of a 'valid' conv) or
    ``recompute_input`` (its input is a recomputed BN→ReLU) is set.
    """
    kwargs = dict(strides=strides, padding=padding, dilation_rate=dilation, use_bias=False,
                  activation=activation, kernel_initializer=initializer, name=name)
    extra = {}
    if model_ops.matmul_1x1 and kernel == 1 and strides == 1 and dilation == 1:
        extra["matmul_1x1"] = True
    if explicit_padding:
        extra["explicit_padding"] = explicit_padding
    if recompute_input:
        extra["recompute_input"] = True
    return Conv2D(filters, kernel, **kwargs, **extra) if extra else \
        keras.layers.Conv2D(filters, kernel, **kwargs)


def _bn_relu_conv(x, bn: "BatchNorm", relu_name: str, conv: Callable[..., keras.layers.Conv2D],
                  model_ops: ModelOps, pieces: Optional[Sequence[keras.KerasTensor]] = None):
    """``conv(ReLU(bn(x)))``; with ``recompute=bn_relu`` the conv recomputes BN→ReLU from
    ``pieces`` (``x`` = their concatenation; default ``[x]``) in its backward pass
    (:class:`Conv2D` ``recompute_input``). ``conv(recompute_input=...)`` builds the conv layer."""
    y = keras.layers.ReLU(name=relu_name)(bn(x))
    if not model_ops.recompute_bn_relu:
        return conv(recompute_input=False)(y)
    layer = conv(recompute_input=True)
    layer.attach_recompute_source(bn)
    return layer(y, bn_input=list(pieces) if pieces else x)


def _decoder_bn(name: str, epsilon: float = DECODER_BN_EPSILON) -> BatchNorm:
    return BatchNorm(epsilon=epsilon, momentum=DECODER_BN_MOMENTUM, name=name)


# --------------------------------------------------------------------------------------------
# Encoders
# --------------------------------------------------------------------------------------------
FEATURE_NAMES = ("skip2", "skip4", "skip8", "skip16", "dense32")

def _kaiming_normal() -> keras.initializers.Initializer:
    """torchvision's DenseNet conv init: kaiming_normal_ (fan_in, gain √2, untruncated).

    A new object per layer, made at build time: an unseeded Keras initializer fixes its seed
    when constructed (from Python's ``random``, which ``keras.utils.set_random_seed`` seeds), so
    one shared object would give every same-shaped kernel the same values, and one made at
    import would ignore ``--seed``.
    """
    return keras.initializers.VarianceScaling(2.0, "fan_in", "untruncated_normal")




def _encoder_bn(name: str) -> BatchNorm:
    return BatchNorm(epsilon=ENCODER_BN_EPSILON, momentum=ENCODER_BN_MOMENTUM,
                     name=ENCODER_PREFIX + name)


def _dense_layer(x, config: DenseNetConfig, name: str, model_ops: ModelOps = DEFAULT_MODEL_OPS,
                 pieces: Optional[Sequence[keras.KerasTensor]] = None):
    """torchvision _DenseLayer: BN→ReLU→1×1 (bn_size·k) →BN→ReLU→3×3 (k), concatenated to x.
    ``pieces``: the block's input and its layers' new features, whose concatenation is ``x``
    (what ``recompute=bn_relu`` recomputes ``x`` from). Returns (concat(x, y), y)."""
    p = ENCODER_PREFIX + name
    y = _bn_relu_conv(x, _encoder_bn(f"{name}.norm1"), f"{p}.relu1", functools.partial(
        _conv, config.bn_size * config.growth_rate, 1, f"{p}.conv1", initializer=_kaiming_normal(),
        model_ops=model_ops), model_ops, pieces)
    y = _bn_relu_conv(y, _encoder_bn(f"{name}.norm2"), f"{p}.relu2", functools.partial(
        _conv, config.growth_rate, 3, f"{p}.conv2", initializer=_kaiming_normal()), model_ops)
    return keras.layers.Concatenate(name=f"{p}.concat")([x, y]), y


def _transition(x, name: str, model_ops: ModelOps = DEFAULT_MODEL_OPS,
                pieces: Optional[Sequence[keras.KerasTensor]] = None):
    """torchvision _Transition: BN→ReLU→1×1 conv (C/2)→2×2 average pool, stride 2."""
    p = ENCODER_PREFIX + name
    x = _bn_relu_conv(x, _encoder_bn(f"{name}.norm"), f"{p}.relu", functools.partial(
        _conv, x.shape[-1] // 2, 1, f"{p}.conv", initializer=_kaiming_normal(),
        model_ops=model_ops), model_ops, pieces)
    return keras.layers.AveragePooling2D(2, 2, name=f"{p}.pool")(x)


def densenet_encoder(image, config: DenseNetConfig, model_ops: ModelOps = DEFAULT_MODEL_OPS
                     ) -> Dict[str, keras.KerasTensor]:
    """torchvision DenseNet ``features`` as a functional graph.

    Args:
      image: (B, H, W, 3) normalised RGB, H and W multiples of 32.
      model_ops: how 1×1 convs and the stem padding compute (:class:`ModelOps`).
    Returns:
      dict with skip2 (B,H/2,W/2,c0) after relu0, skip4 (H/4) after pool0, skip8 (H/8) after
      transition1, skip16 (H/16) after transition2, dense32 (H/32) = ReLU(norm5).
    """
    p = ENCODER_PREFIX
    # Symmetric padding as PyTorch (Keras 'same' pads bottom/right only at stride 2; design §9.2):
    # a ZeroPadding2D layer, or inside the conv op with ModelOps(padding="fused").
    x = _pad_layer(image, 3, p + "conv0_pad", model_ops)
    x = _conv(config.num_init_features, 7, p + "conv0", strides=2, padding="valid",
              initializer=_kaiming_normal(), explicit_padding=3 if model_ops.fused_padding else 0)(x)
    x = _encoder_bn("norm0")(x)
    skip2 = x = keras.layers.ReLU(name=p + "relu0")(x)
    # Zero padding equals PyTorch's -inf pool padding only because x >= 0 after the ReLU.
    x = keras.layers.ZeroPadding2D(1, name=p + "pool0_pad")(x)
    skip4 = x = keras.layers.MaxPooling2D(3, 2, padding="valid", name=p + "pool0")(x)
    taps = []
    for block, num_layers in enumerate(config.block_config, start=1):
        pieces = [x]  # x = concat(pieces): the block's input and each layer's new features
        for layer in range(1, num_layers + 1):
            x, features = _dense_layer(x, config, f"denseblock{block}.denselayer{layer}",
                                       model_ops, pieces)
            pieces.append(features)
        if block != len(config.block_config):
            x = _transition(x, f"transition{block}", model_ops, pieces)
            taps.append(x)
    x = _encoder_bn("norm5")(x)
    dense32 = keras.layers.ReLU(name=p + "relu5")(x)  # the BTS decoder's ReLU on norm5
    return {"skip2": skip2, "skip4": skip4, "skip8": taps[0], "skip16": taps[1], "dense32": dense32}


# --------------------------------------------------------------------------------------------
# torchvision ResNet / ResNeXt and MobileNetV2 (the official zoo's other encoders)
# --------------------------------------------------------------------------------------------
def _kaiming_fan_out() -> keras.initializers.Initializer:
    """torchvision ResNet/MobileNetV2 conv init: kaiming_normal_(mode='fan_out'), gain √2.

    Keras and PyTorch agree on fan_out = out·kh·kw for plain and grouped kernels (a new object
    per layer, as :func:`_kaiming_normal`).
    """
    return keras.initializers.VarianceScaling(2.0, "fan_out", "untruncated_normal")


@keras.saving.register_keras_serializable(package=SERIALIZATION_PACKAGE)
class GroupedConv2D(Conv2D):
    """``Conv2D(groups=g)`` computed as g convolutions on channel slices, concatenated.

    Same kernel (kh, kw, Cin/g, Cout), config and numbers as Keras's grouped conv (group i maps
    input channels [i·Cin/g, (i+1)·Cin/g) to outputs [i·Cout/g, (i+1)·Cout/g), as PyTorch).
    TensorFlow's CPU kernels have no gradient for a grouped conv without oneDNN, and Keras's
    fallback took 12 s per backward pass of one ResNeXt 3×3 conv (2×56×72×256) on AVX2 where
    the slices take 0.09 s; the slices' forward pass is faster there too (0.03 s vs 0.07 s).
    ``matmul_1x1`` and ``explicit_padding`` as :class:`Conv2D` (whose subclass it is).
    """

    def convolution_op(self, inputs, kernel):
        if self.groups == 1:
            return super().convolution_op(inputs, kernel)
        pieces = zip(ops.split(inputs, self.groups, axis=-1), ops.split(kernel, self.groups, axis=-1))
        if self.explicit_padding:
            return ops.concatenate(
                [_conv_op(x, k, self.strides, self.dilation_rate, self.explicit_padding)
                 for x, k in pieces], axis=-1)
        return ops.concatenate(
            [ops.conv(x, k, strides=self.strides, padding=self.padding,
                      dilation_rate=self.dilation_rate, data_format=self.data_format)
             for x, k in pieces], axis=-1)


def _torch_conv(x, filters: int, kernel: int, name: str, *, strides: int = 1, groups: int = 1,
                model_ops: ModelOps = DEFAULT_MODEL_OPS):
    """PyTorch ``Conv2d(kernel, stride, padding=kernel // 2, groups, bias=False)`` on NHWC ``x``.

    Keras 'same' pads symmetrically only at stride 1; a strided conv gets an explicit symmetric
    ZeroPadding2D (``<name>_pad``) and 'valid', as PyTorch (design §9.2), or with
    ``ModelOps(padding="fused")`` the same zeros inside the conv op (and an op-free
    ``<name>_pad``). A 1×1 conv of stride 2 picks pixels (2i, 2j) in both.
    """
    p = ENCODER_PREFIX + name
    padding = "same" if kernel > 1 else "valid"
    extra = {}
    if strides > 1 and kernel > 1:
        padding = "valid"
        x = _pad_layer(x, kernel // 2, p + "_pad", model_ops)
        if model_ops.fused_padding:
            extra["explicit_padding"] = kernel // 2
    if model_ops.matmul_1x1 and kernel == 1 and strides == 1 and groups == 1:
        extra["matmul_1x1"] = True
    return GroupedConv2D(filters, kernel, strides=strides, padding=padding, groups=groups,
                         use_bias=False, kernel_initializer=_kaiming_fan_out(), name=p, **extra)(x)


def _bottleneck(x, planes: int, strides: int, config: ResNetConfig, name: str,
                model_ops: ModelOps = DEFAULT_MODEL_OPS):
    """torchvision Bottleneck (B,h,w,C) → (B,h/s,w/s,4·planes): 1×1 → 3×3/s (grouped) → 1×1 +
    shortcut (``downsample`` = 1×1/s conv + BN on a stage's first block), then ReLU."""
    p = ENCODER_PREFIX + name
    width = config.width(planes)
    y = _encoder_bn(f"{name}.bn1")(_torch_conv(x, width, 1, f"{name}.conv1", model_ops=model_ops))
    y = keras.layers.ReLU(name=f"{p}.relu1")(y)
    y = _torch_conv(y, width, 3, f"{name}.conv2", strides=strides, groups=config.groups,
                    model_ops=model_ops)
    y = keras.layers.ReLU(name=f"{p}.relu2")(_encoder_bn(f"{name}.bn2")(y))
    y = _encoder_bn(f"{name}.bn3")(_torch_conv(y, 4 * planes, 1, f"{name}.conv3", model_ops=model_ops))
    shortcut = x
    if strides != 1 or x.shape[-1] != 4 * planes:
        shortcut = _torch_conv(x, 4 * planes, 1, f"{name}.downsample.0", strides=strides,
                               model_ops=model_ops)
        shortcut = _encoder_bn(f"{name}.downsample.1")(shortcut)
    y = keras.layers.Add(name=f"{p}.add")([y, shortcut])
    return keras.layers.ReLU(name=f"{p}.relu")(y)


def resnet_encoder(image, config: ResNetConfig, model_ops: ModelOps = DEFAULT_MODEL_OPS
                   ) -> Dict[str, keras.KerasTensor]:
    """torchvision ResNet / ResNeXt (everything before ``avgpool``) with the official BTS taps.

    Layer names are torchvision's module paths (``encoder.layer3.5.conv2``). Args: image
    (B, H, W, 3) normalised RGB, H and W multiples of 32. Returns skip2 (H/2, 64) after the
    stem ``relu``, skip4 (H/4, 256) ``layer1``, skip8 (H/8, 512) ``layer2``, skip16 (H/16, 1024)
    ``layer3``, dense32 (H/32, 2048) ``layer4`` (already ≥ 0: the decoder's ReLU is a no-op).
    ``model_ops``: see :class:`ModelOps`.
    """
    p = ENCODER_PREFIX
    x = _torch_conv(image, 64, 7, "conv1", strides=2, model_ops=model_ops)
    skip2 = x = keras.layers.ReLU(name=p + "relu")(_encoder_bn("bn1")(x))
    # Zero padding equals PyTorch's -inf pool padding because x >= 0 after the ReLU.
    x = keras.layers.ZeroPadding2D(1, name=p + "maxpool_pad")(x)
    x = keras.layers.MaxPooling2D(3, 2, padding="valid", name=p + "maxpool")(x)
    stages = []
    for stage, (planes, blocks) in enumerate(zip((64, 128, 256, 512), config.layers), start=1):
        for block in range(blocks):
            strides = 2 if stage > 1 and block == 0 else 1
            x = _bottleneck(x, planes, strides, config, f"layer{stage}.{block}", model_ops)
        stages.append(x)
    return dict(zip(FEATURE_NAMES, [skip2] + stages))


# torchvision mobilenet_v2 (width 1.0): (expansion t, channels c, blocks n, first stride s).
MOBILENETV2_SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                       (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
MOBILENETV2_TAPS = (1, 3, 6, 10, 18)  # features indices of the official taps (its 2, 4, 7, 11, 19)


def _conv_bn_relu6(x, filters: int, kernel: int, name: str, *, strides: int = 1,
                   depthwise: bool = False, model_ops: ModelOps = DEFAULT_MODEL_OPS):
    """torchvision Conv2dNormActivation (``<name>.0`` conv, ``.1`` BN, ReLU6), PyTorch padding."""
    p = ENCODER_PREFIX + name
    if depthwise:  # groups = channels; Keras's DepthwiseConv2D kernel is (kh, kw, C, 1)
        padding, layer, extra = "same", keras.layers.DepthwiseConv2D, {}
        if strides > 1:
            padding = "valid"
            x = _pad_layer(x, kernel // 2, f"{p}.0_pad", model_ops)
            if model_ops.fused_padding:
                layer, extra = DepthwiseConv2D, {"explicit_padding": kernel // 2}
        # fan_in of a (kh, kw, C, 1) kernel = C·kh·kw = PyTorch's fan_out of its (C, 1, kh, kw)
        x = layer(
            kernel, strides=strides, padding=padding, use_bias=False, name=f"{p}.0",
            depthwise_initializer=keras.initializers.VarianceScaling(2.0, "fan_in",
                                                                     "untruncated_normal"),
            **extra)(x)
    else:
        x = _torch_conv(x, filters, kernel, f"{name}.0", strides=strides, model_ops=model_ops)
    x = _encoder_bn(f"{name}.1")(x)
    return keras.layers.ReLU(6.0, name=f"{p}.2")(x)


def _inverted_residual(x, channels: int, strides: int, expansion: int, name: str,
                       model_ops: ModelOps = DEFAULT_MODEL_OPS):
    """torchvision InvertedResidual: [1×1 expand] → 3×3 depthwise/s → 1×1 linear (+ x if same shape)."""
    inputs, index = x, 0
    hidden = int(round(x.shape[-1] * expansion))
    if expansion != 1:
        x = _conv_bn_relu6(x, hidden, 1, f"{name}.conv.0", model_ops=model_ops)
        index = 1
    x = _conv_bn_relu6(x, hidden, 3, f"{name}.conv.{index}", strides=strides, depthwise=True,
                       model_ops=model_ops)
    x = _torch_conv(x, channels, 1, f"{name}.conv.{index + 1}", model_ops=model_ops)
    x = _encoder_bn(f"{name}.conv.{index + 2}")(x)
    if strides == 1 and inputs.shape[-1] == channels:
        x = keras.layers.Add(name=f"{ENCODER_PREFIX}{name}.add")([inputs, x])
    return x


def mobilenetv2_encoder(image, model_ops: ModelOps = DEFAULT_MODEL_OPS
                        ) -> Dict[str, keras.KerasTensor]:
    """torchvision ``mobilenet_v2().features`` (names ``encoder.<index>...``) with the official taps.

    Returns skip2 (H/2, 16) features[1], skip4 (H/4, 24) [3], skip8 (H/8, 32) [6], skip16
    (H/16, 64) [10], dense32 (H/32, 1280) [18] (ReLU6 output: the decoder's ReLU is a no-op).
    ``model_ops``: see :class:`ModelOps`.
    """
    x = _conv_bn_relu6(image, 32, 3, "0", strides=2, model_ops=model_ops)
    outputs, index = [], 1
    for expansion, channels, blocks, strides in MOBILENETV2_SETTING:
        for block in range(blocks):
            x = _inverted_residual(x, channels, strides if block == 0 else 1, expansion, str(index),
                                   model_ops)
            outputs.append(x)
            index += 1
    outputs.append(_conv_bn_relu6(x, 1280, 1, str(index), model_ops=model_ops))
    return dict(zip(FEATURE_NAMES, [outputs[i - 1] for i in MOBILENETV2_TAPS]))


@dataclasses.dataclass(frozen=True)
class FreezeRule:
    """Which encoder layers training freezes (design §4.3, PT semantics adapted per family).

    Names are encoder-local layer names (without the ``encoder.`` prefix), matched by prefix.
    ``stem`` is always frozen; ``--fix_first_conv_block`` adds ``first_blocks[0]`` and
    ``--fix_first_conv_blocks`` adds ``first_blocks[0:2]`` (PT: ``denselayer1``/``2``,
    ``layer1.0``/``.1``). With ``bn_affine`` every encoder BN keeps batch statistics but has its
    γ/β frozen (PT), except BNs whose name ends with one of ``bn_affine_exempt``.
    """

    stem: Tuple[str, ...]
    first_blocks: Tuple[str, ...]  # two prefixes, or () where the official rule matches nothing
    bn_affine: bool = True
    bn_affine_exempt: Tuple[str, ...] = ()

    def frozen_prefixes(self, first_blocks: int = 0) -> Tuple[str, ...]:
        """Layer-name prefixes frozen with ``first_blocks`` (0, 1 or 2) first conv blocks frozen."""
        if first_blocks not in (0, 1, 2):
            raise ValueError(f"first_blocks must be 0, 1 or 2, got {first_blocks!r}")
        return tuple(self.stem) + tuple(self.first_blocks[:first_blocks])

    def frozen_layer(self, name: str, first_blocks: int = 0) -> bool:
        """Whether all weights of the encoder layer ``name`` are frozen."""
        return name.startswith(self.frozen_prefixes(first_blocks))

    def frozen_bn_affine(self, name: str, first_blocks: int = 0) -> bool:
        """Whether the γ/β of the encoder BN layer ``name`` are frozen."""
        exempt = bool(self.bn_affine_exempt) and name.endswith(self.bn_affine_exempt)
        return (self.bn_affine and not exempt) or self.frozen_layer(name, first_blocks)


# What upstream's substring rule (bts_main.py set_misc) matches in each official encoder:
# DenseNet ['conv0', 'norm'] (+ 'denseblock1.denselayer1', '...2'): the stem conv, every BN γ/β
# (all are named norm*), dense layer 1 (+2) of block 1.
DENSENET_FREEZE = FreezeRule(stem=("conv0",),
                             first_blocks=("denseblock1.denselayer1.", "denseblock1.denselayer2."))
# 'resne' encoders ['base_model.conv1', '.bn'] (+ 'base_model.layer1.0', '...1'): the stem conv
# (block convs are 'layerN.M.conv1', no match), the γ/β of the stem bn1 and of every block's
# bn1/bn2/bn3 but not of the shortcut BNs ('downsample.1' has no '.bn'), all of layer1.0 (+1).
TORCHVISION_RESNET_FREEZE = FreezeRule(stem=("conv1",), first_blocks=("layer1.0.", "layer1.1."),
                                       bn_affine_exempt=("downsample.1",))
# mobilenetv2_bts falls to the DenseNet rule, whose names never occur in torchvision's
# MobileNetV2 ('features.N.conv.M...'): upstream freezes nothing, with or without the flags.
TORCHVISION_MOBILENETV2_FREEZE = FreezeRule(stem=(), first_blocks=(), bn_affine=False)


@dataclasses.dataclass(frozen=True)
class EncoderSpec:
    """An encoder the model can use: a feature builder and the input preprocessing it expects.

    ``build(image)`` returns the five features; builders with ``imagenet=True`` also accept
    ``build(image, weights="imagenet")`` (keras.applications weights, downloaded on first use).
    Every builder accepts ``model_ops=`` (:class:`ModelOps`; the keras.applications graphs
    ignore it).
    """

    build: Callable[..., Dict[str, keras.KerasTensor]]
    preprocessing: str  # 'torch' (ImageNet mean/std on x/255), 'tf', 'caffe', or 'raw'
    default_bts_size: int = 512
    freeze: FreezeRule = DENSENET_FREEZE
    imagenet: bool = False  # keras.applications ImageNet weights available (--pretrained_model imagenet)

    def frozen_layer(self, name: str, first_blocks: int = 0) -> bool:
        return self.freeze.frozen_layer(name, first_blocks)


def _official_spec(name: str, build: Callable, freeze: FreezeRule) -> EncoderSpec:
    facts = encoder_facts(name)
    return EncoderSpec(build, facts.normalization, facts.default_bts_size, freeze)


_SPECS: Dict[str, EncoderSpec] = {
    **{name: _official_spec(name, lambda image, model_ops=DEFAULT_MODEL_OPS, c=cfg:
                            densenet_encoder(image, c, model_ops), DENSENET_FREEZE)
       for name, cfg in DENSENET_CONFIGS.items()},
    **{name: _official_spec(name, lambda image, model_ops=DEFAULT_MODEL_OPS, c=cfg:
                            resnet_encoder(image, c, model_ops), TORCHVISION_RESNET_FREEZE)
       for name, cfg in RESNET_CONFIGS.items()},
    "mobilenetv2_bts": _official_spec("mobilenetv2_bts", mobilenetv2_encoder,
                                      TORCHVISION_MOBILENETV2_FREEZE),
}


# --------------------------------------------------------------------------------------------
# keras.applications encoders (design §2; V1 ResNets, EfficientNetV2 and ConvNeXt added here)
# --------------------------------------------------------------------------------------------
# A backbone is built on the BTS image tensor itself (``input_tensor``), so its layers sit flat in
# the BTS graph next to the decoder, exactly like the DenseNet above. Its layers are then renamed
# ``encoder.<keras name>`` (freezing rules, weight-decay groups and saved configs see the prefix)
# and its variables are created under the name scope ``encoder.<arch>``, so every encoder variable
# path starts with ``encoder.``: ``encoder.resnet50/conv1_conv/kernel`` in a freshly built model,
# ``encoder.conv1_conv/kernel`` in one reloaded from ``.keras``. Input H and W: multiples of 32.
IMAGENET = "imagenet"  # --pretrained_model value that asks for keras.applications weights
PIXEL_SCALE = 255.0


@dataclasses.dataclass(frozen=True)
class KerasBackbone:
    """A keras.applications constructor and where BTS taps it.

    ``taps``: layer names giving skip2, skip4, skip8, skip16, dense32 (H/2 .. H/32). A name
    ``NAME:input`` taps the input of layer NAME, ``:output`` the backbone's output, and ``None``
    (ConvNeXt's skip2: its stem has stride 4) a learned 3×3/2 conv + BN + ReLU on the output of
    layer ``skip2_source`` (the backbone's own normalised image).
    ``pixel_input``: the backbone normalises 0..255 pixels inside the model (EfficientNetV2,
    ConvNeXt; their ``preprocess_input`` is the identity), so the encoder first rescales the [0, 1]
    image by 255 (layer ``encoder.to_pixels``) and the data pipeline uses mode ``raw``.
    """

    constructor: str
    taps: Tuple[Optional[str], str, str, str, str]
    pixel_input: bool = False
    skip2_source: str = ""
    skip2_channels: int = 64


def _rename_backbone_layers(backbone: keras.Model) -> None:
    for layer in backbone.layers:
        if not isinstance(layer, keras.layers.InputLayer) and \
                not layer.name.startswith(ENCODER_PREFIX):
            layer.name = ENCODER_PREFIX + layer.name


def _tap(backbone: keras.Model, tap: str) -> keras.KerasTensor:
    if tap == ":output":
        return backbone.output
    name, _, port = tap.partition(":")
    layer = backbone.get_layer(ENCODER_PREFIX + name)
    return layer.input if port == "input" else layer.output


def _learned_skip2(source: keras.KerasTensor, channels: int) -> keras.KerasTensor:
    """(B,H,W,3) normalised image → (B,H/2,W/2,channels): a stride-2 stem for stride-4 backbones."""
    x = _conv(channels, 3, ENCODER_PREFIX + "skip2_conv", strides=2, initializer=_kaiming_normal())(source)
    x = BatchNorm(epsilon=ENCODER_BN_EPSILON, momentum=ENCODER_BN_MOMENTUM,
                  name=ENCODER_PREFIX + "skip2_bn")(x)
    return keras.layers.ReLU(name=ENCODER_PREFIX + "skip2_relu")(x)


def keras_backbone_encoder(image, arch: str, backbone: KerasBackbone,
                           weights: Optional[str] = None) -> Dict[str, keras.KerasTensor]:
    """Features of a keras.applications backbone on ``image`` (B,H,W,3), preprocessed per its spec.

    ``weights``: None (random initialisation) or ``"imagenet"`` (downloaded by Keras on first use
    into ``$KERAS_HOME/models``). Returns skip2..skip16 and dense32 as the DenseNet encoder does.
    """
    x = image
    if backbone.pixel_input:
        x = keras.layers.Rescaling(PIXEL_SCALE, name=ENCODER_PREFIX + "to_pixels")(x)
    constructor = getattr(keras.applications, backbone.constructor)
    with keras.name_scope(ENCODER_PREFIX + arch):
        try:
            model = constructor(include_top=False, weights=weights, input_tensor=x)
        except Exception as err:  # noqa: BLE001 - Keras raises a bare Exception when a download fails
            if weights is None:
                raise
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ConfigError("pretrained_model", f"{weights}: could not load the {arch} weights "
                              f"({reason}); place the file in ~/.keras/models/ or train from "
                              "random initialisation") from None
    _rename_backbone_layers(model)
    features = {}
    for key, tap in zip(FEATURE_NAMES, backbone.taps):
        if tap is None:
            features[key] = _learned_skip2(_tap(model, backbone.skip2_source), backbone.skip2_channels)
        else:
            features[key] = _tap(model, tap)
    return features


_DENSENET_TAPS = ("conv1_relu", "pool1", "pool2_pool", "pool3_pool", "relu")
_CONVNEXT_TAPS = (None, "convnext_tiny_downsampling_block_0:input",
                  "convnext_tiny_downsampling_block_1:input",
                  "convnext_tiny_downsampling_block_2:input", ":output")

# Stem always frozen; first_blocks are the first two units of the first stage (PT semantics).
KERAS_DENSENET_FREEZE = FreezeRule(stem=("conv1_",), first_blocks=("conv2_block1_", "conv2_block2_"))
# PT ResNet: conv1 + every BN named bn*; the shortcut BN (downsample.1 = keras *_0_bn) stays trainable.
RESNET_FREEZE = FreezeRule(stem=("conv1_",), first_blocks=("conv2_block1_", "conv2_block2_"),
                           bn_affine_exempt=("_0_bn",))
MOBILENETV2_FREEZE = FreezeRule(stem=("Conv1",), first_blocks=("expanded_conv_", "block_1_"))
CONVNEXT_FREEZE = FreezeRule(stem=("convnext_tiny_stem",),
                             first_blocks=("convnext_tiny_stage_0_block_0_",
                                           "convnext_tiny_stage_0_block_1_"),
                             bn_affine=False)  # LayerNorm: independent of the batch size


def _efficientnetv2_freeze(first_stage_blocks: int) -> FreezeRule:
    second = "block1b_" if first_stage_blocks > 1 else "block2a_"
    return FreezeRule(stem=("stem_",), first_blocks=("block1a_", second))


# name → (backbone, freeze rule); normalisation and default nf: utils/encoders.py.
KERAS_ENCODERS: Dict[str, Tuple[KerasBackbone, FreezeRule]] = {
    "densenet121": (KerasBackbone("DenseNet121", _DENSENET_TAPS), KERAS_DENSENET_FREEZE),
    "densenet169": (KerasBackbone("DenseNet169", _DENSENET_TAPS), KERAS_DENSENET_FREEZE),
    "densenet201": (KerasBackbone("DenseNet201", _DENSENET_TAPS), KERAS_DENSENET_FREEZE),
    "resnet50": (KerasBackbone("ResNet50", ("conv1_relu", "conv2_block3_out", "conv3_block4_out",
                                            "conv4_block6_out", "conv5_block3_out")),
                 RESNET_FREEZE),
    "resnet101": (KerasBackbone("ResNet101", ("conv1_relu", "conv2_block3_out", "conv3_block4_out",
                                              "conv4_block23_out", "conv5_block3_out")),
                  RESNET_FREEZE),
    "mobilenetv2": (KerasBackbone("MobileNetV2", ("expanded_conv_project_BN", "block_2_add",
                                                  "block_5_add", "block_12_add", "out_relu")),
                    MOBILENETV2_FREEZE),
    "efficientnetv2b0": (KerasBackbone("EfficientNetV2B0", (
        "block1a_project_activation", "block2b_add", "block3b_add", "block5e_add", "top_activation"),
        pixel_input=True), _efficientnetv2_freeze(1)),
    "efficientnetv2b1": (KerasBackbone("EfficientNetV2B1", (
        "block1b_add", "block2c_add", "block3c_add", "block5f_add", "top_activation"),
        pixel_input=True), _efficientnetv2_freeze(2)),
    "efficientnetv2b2": (KerasBackbone("EfficientNetV2B2", (
        "block1b_add", "block2c_add", "block3c_add", "block5f_add", "top_activation"),
        pixel_input=True), _efficientnetv2_freeze(2)),
    "efficientnetv2b3": (KerasBackbone("EfficientNetV2B3", (
        "block1b_add", "block2c_add", "block3c_add", "block5g_add", "top_activation"),
        pixel_input=True), _efficientnetv2_freeze(2)),
    "efficientnetv2s": (KerasBackbone("EfficientNetV2S", (
        "block1b_add", "block2d_add", "block3d_add", "block5i_add", "top_activation"),
        pixel_input=True), _efficientnetv2_freeze(2)),
    "convnext_tiny": (KerasBackbone("ConvNeXtTiny", _CONVNEXT_TAPS, pixel_input=True,
                                    skip2_source="convnext_tiny_prestem_normalization"),
                      CONVNEXT_FREEZE),
}


def _keras_encoder_spec(arch: str) -> EncoderSpec:
    backbone, freeze = KERAS_ENCODERS[arch]
    facts = encoder_facts(arch)

    def build(image, weights: Optional[str] = None, model_ops: ModelOps = DEFAULT_MODEL_OPS):
        return keras_backbone_encoder(image, arch, backbone, weights)  # model_ops: not used

    return EncoderSpec(build, facts.normalization, default_bts_size=facts.default_bts_size,
                       freeze=freeze, imagenet=facts.imagenet)


_SPECS.update({arch: _keras_encoder_spec(arch) for arch in KERAS_ENCODERS})
assert sorted(_SPECS) == sorted(ENCODER_NAMES), "bts_model and utils/encoders.py list different encoders"
ENCODERS: Dict[str, EncoderSpec] = {name: _SPECS[name] for name in ENCODER_NAMES}


# --------------------------------------------------------------------------------------------
# Decoder pieces
# --------------------------------------------------------------------------------------------
@keras.saving.register_keras_serializable(package=SERIALIZATION_PACKAGE)
class UpConv(keras.layers.Layer):
    """PT ``upconv``: nearest ×2 (pixel repetition) → 3×3 conv (no bias) → ELU.

    (B, h, w, C) → (B, 2h, 2w, filters). Sub-layer ``conv`` ↔ PT ``upconvN.conv``.

    ``subpixel`` (:class:`ModelOps` ``upconv="subpixel"``): the same function without building
    the doubled map. Output pixel (2i+a, 2j+b) of the 3×3 conv sees only the 2×2 input pixels
    rows i−1+a..i+a, columns j−1+b..j+b, each repeated, so it is a 2×2 'valid' conv of the
    zero-padded input with the 3×3 kernel's taps summed per input pixel (rows of phase a=0:
    k0 | k1+k2; a=1: k0+k1 | k2; columns alike). Four such convs (16 taps per input pixel
    against 36) and an interleave; same kernel variable, so every weight file is unchanged.
    """

    def __init__(self, filters: int, subpixel: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.subpixel = bool(subpixel)
        self.upsample = keras.layers.UpSampling2D(2, interpolation="nearest", name="up")
        self.conv = _conv(filters, 3, "conv", activation="elu")

    def build(self, input_shape):
        shape = (input_shape[0], None, None, input_shape[-1])
        self.conv.build(shape)

    def call(self, x):
        if not self.subpixel:
            return self.conv(self.upsample(x))
        kernel = ops.cast(self.conv.kernel, self.compute_dtype)  # (3, 3, Cin, Cout)
        x = ops.cast(x, self.compute_dtype)
        # Taps by unstack/stack and the windows by pad, not by indexing: the gradients are then
        # Pack/Slice ops, not StridedSliceGrads (which cost ~1/4 of a bf16 training step).
        k0, k1, k2 = ops.unstack(kernel, axis=0)  # kernel rows, (3, Cin, Cout) each
        rows = (ops.stack([k0, k1 + k2]), ops.stack([k0 + k1, k2]))  # per row phase a
        phases = []
        for a in (0, 1):
            c0, c1, c2 = ops.unstack(rows[a], axis=1)  # kernel columns, (2, Cin, Cout) each
            for b in (0, 1):
                taps = ops.stack([c0, c1 + c2] if b == 0 else [c0 + c1, c2], axis=1)  # (2, 2, Cin, Cout)
                # The input window of phase (a, b): x zero-padded 1−a above, a below, 1−b left,
                # b right (a 'valid' conv, which oneDNN runs natively forward and backward).
                window = ops.pad(x, [[0, 0], [1 - a, a], [1 - b, b], [0, 0]])
                phases.append(ops.elu(ops.conv(window, taps, padding="valid")))
        # (B, h, w, 4, C) with phase index 2a+b → (B, h, 2, w, 2, C) → (B, 2h, 2w, C)
        shape = ops.shape(x)
        stacked = ops.reshape(ops.stack(phases, axis=3), (shape[0], shape[1], shape[2], 2, 2, self.filters))
        stacked = ops.transpose(stacked, (0, 1, 3, 2, 4, 5))
        return ops.reshape(stacked, (shape[0], 2 * shape[1], 2 * shape[2], self.filters))

    def compute_output_shape(self, input_shape):
        return self.conv.compute_output_shape(self.upsample.compute_output_shape(input_shape))

    def get_config(self):
        config = {**super().get_config(), "filters": self.filters}
        if self.subpixel:  # written only when set: default files stay as they were
            config["subpixel"] = True
        return config


@keras.saving.register_keras_serializable(package=SERIALIZATION_PACKAGE)
class AtrousConv(keras.layers.Layer):
    """One dense-ASPP branch (PT ``atrous_conv``), (B,h,w,Cin) → (B,h,w,filters).

    [first_bn (eps 1.1e-5)] → ReLU → 1×1 conv to 2·filters → BN (eps 1e-5) → ReLU →
    3×3 conv, dilation = rate, padding = rate, to filters (no activation).
    PT names: ``first_bn``, ``aconv_sequence.1`` (conv1x1), ``.2`` (bn), ``.4`` (conv3x3).
    ``matmul_1x1``: the 1×1 conv as a MatMul (:class:`ModelOps`).
    """

    def __init__(self, filters: int, rate: int, apply_bn_first: bool = True,
                 matmul_1x1: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.rate, self.apply_bn_first = filters, rate, apply_bn_first
        self.matmul_1x1 = bool(matmul_1x1)
        self.first_bn = _decoder_bn("first_bn") if apply_bn_first else None
        self.conv1x1 = _conv(2 * filters, 1, "conv1x1", model_ops=_ops_1x1(self.matmul_1x1))
        self.bn = _decoder_bn("bn", epsilon=DASPP_MID_BN_EPSILON)
        self.conv3x3 = _conv(filters, 3, "conv3x3", dilation=rate)

    def build(self, input_shape):
        shape = (input_shape[0], None, None, input_shape[-1])
        if self.first_bn is not None:
            self.first_bn.build(shape)
        self.conv1x1.build(shape)
        mid = (input_shape[0], None, None, 2 * self.filters)
        self.bn.build(mid)
        self.conv3x3.build(mid)

    def call(self, x, training=None):
        if self.first_bn is not None:
            x = self.first_bn(x, training=training)
        x = self.conv1x1(ops.relu(x))
        x = ops.relu(self.bn(x, training=training))
        return self.conv3x3(x)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.filters,)

    def get_config(self):
        config = {**super().get_config(), "filters": self.filters, "rate": self.rate,
                  "apply_bn_first": self.apply_bn_first}
        if self.matmul_1x1:  # absent in the default model's config, as before ModelOps
            config["matmul_1x1"] = True
        return config


def _ops_1x1(matmul_1x1: bool) -> ModelOps:
    return ModelOps(conv1x1="matmul") if matmul_1x1 else DEFAULT_MODEL_OPS


def reduction_chain(num_in: int, num_out: int) -> Tuple[Tuple[int, int], ...]:
    """Inner (in, out) 1×1 convs of PT ``reduction_1x1``: halve while num_out ≥ 8, head below 8."""
    chain = []
    while num_out >= 8:
        chain.append((num_in, num_out))
        num_in, num_out = num_out, num_out // 2
    if num_out < 4:
        raise ValueError("bts_size too small: the reduction heads need bts_size >= 128")
    return tuple(chain)


@keras.saving.register_keras_serializable(package=SERIALIZATION_PACKAGE)
class ReductionHead(keras.layers.Layer):
    """PT ``reduction_1x1``: a chain of 1×1 convs + ELU, then the plane-coefficient head.

    Non-final: (B,h,w,num_in) → (B,h,w,4) = (n1, n2, n3, d) with θ = σ(c0)·π/3, φ = σ(c1)·2π,
    d = σ(c2)·max_depth, n = (sinθ cosφ, sinθ sinφ, cosθ); output float32.
    Final (``reduc1x1``): (B,h,w,num_in) → (B,h,w,1) = σ(c0), not scaled by max_depth.
    Sub-layers ``inter_{in}_{out}`` ↔ PT ``reduc.inter_{in}_{out}.0``; head ``plane_params`` ↔
    ``reduc.plane_params``, ``final`` ↔ ``reduc.final.0``. ``matmul_1x1``: its 1×1 convs as
    MatMuls (:class:`ModelOps`).
    """

    def __init__(self, num_in: int, num_out: int, max_depth: float, is_final: bool = False,
                 matmul_1x1: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.num_in, self.num_out = num_in, num_out
        self.max_depth, self.is_final = float(max_depth), is_final
        self.matmul_1x1 = bool(matmul_1x1)
        model_ops = _ops_1x1(self.matmul_1x1)
        chain = reduction_chain(num_in, num_out)
        self.inter = [_conv(o, 1, f"inter_{i}_{o}", activation="elu", model_ops=model_ops)
                      for i, o in chain]
        # tf.train.Checkpoint does not see inside Keras-tracked lists: give each conv an
        # attribute of its own too, or ckpt-N files would silently miss these kernels. (Keras's
        # .keras/.weights.h5 files keep reading them through ``inter``, which sorts first.)
        for layer in self.inter:
            setattr(self, f"tracked_{layer.name}", layer)
        head_in = chain[-1][1] if chain else num_in
        self.head_in = head_in
        self.head = _conv(1 if is_final else 3, 1, "final" if is_final else "plane_params",
                          model_ops=model_ops)

    def build(self, input_shape):
        channels = input_shape[-1]
        for layer in self.inter:
            layer.build((input_shape[0], None, None, channels))
            channels = layer.filters
        self.head.build((input_shape[0], None, None, channels))

    def call(self, x):
        for layer in self.inter:
            x = layer(x)
        raw = ops.cast(self.head(x), "float32")
        if self.is_final:
            return ops.sigmoid(raw)
        theta = ops.sigmoid(raw[..., 0:1]) * (math.pi / 3.0)
        phi = ops.sigmoid(raw[..., 1:2]) * (2.0 * math.pi)
        dist = ops.sigmoid(raw[..., 2:3]) * self.max_depth
        n1 = ops.sin(theta) * ops.cos(phi)
        n2 = ops.sin(theta) * ops.sin(phi)
        n3 = ops.cos(theta)
        return ops.concatenate([n1, n2, n3, dist], axis=-1)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (1 if self.is_final else 4,)

    def compute_output_spec(self, x):
        shape = self.compute_output_shape(x.shape)
        return keras.KerasTensor(shape, dtype="float32")

    def get_config(self):
        config = {**super().get_config(), "num_in": self.num_in, "num_out": self.num_out,
                  "max_depth": self.max_depth, "is_final": self.is_final}
        if self.matmul_1x1:  # absent in the default model's config, as before ModelOps
            config["matmul_1x1"] = True
        return config


def lpg_offsets(upratio: int, dtype: str = "float32"):
    """In-patch offsets ((i mod r) − (r−1)/2) / r for i = 0..r−1, shape (r,)."""
    r = float(upratio)
    return (ops.arange(upratio, dtype=dtype) - (r - 1.0) / 2.0) / r


@keras.saving.register_keras_serializable(package=SERIALIZATION_PACKAGE)
class LocalPlanarGuidance(keras.layers.Layer):
    """Local planar guidance (design §1.7): plane coefficients at 1/r → depth at full resolution.

    Input (B, h, w, 4) = (n1, n2, n3, d); the normal is L2-normalised first (as PT; a no-op up to
    rounding). Output (B, r·h, r·w, 1) with, for output pixel (y, x) in patch (⌊y/r⌋, ⌊x/r⌋)::

        u = ((x mod r) − (r−1)/2)/r,  v = ((y mod r) − (r−1)/2)/r,  depth = d / (n1·u + n2·v + n3)

    Offsets come from the runtime shape, so one set of weights runs at any input size. Always
    float32 (also under a mixed-precision policy). The focal length does not enter (as PT).
    """

    def __init__(self, upratio: int, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.upratio = int(upratio)

    def call(self, plane):
        plane = ops.cast(plane, "float32")
        normal = plane[..., 0:3]  # L2-normalised as tf.math.l2_normalize: x·rsqrt(max(Σx², ε))
        normal = normal * ops.rsqrt(ops.maximum(ops.sum(ops.square(normal), -1, keepdims=True),
                                                1e-12))
        dist = plane[..., 3]
        r = self.upratio
        offsets = lpg_offsets(r)
        u = ops.reshape(offsets, (1, 1, 1, 1, r))  # column offset inside the patch
        v = ops.reshape(offsets, (1, 1, r, 1, 1))  # row offset inside the patch
        n1 = normal[..., 0][:, :, None, :, None]
        n2 = normal[..., 1][:, :, None, :, None]
        n3 = normal[..., 2][:, :, None, :, None]
        depth = dist[:, :, None, :, None] / (n1 * u + n2 * v + n3)  # (B, h, r, w, r)
        batch, height, width = ops.shape(plane)[:3]
        return ops.reshape(depth, (batch, height * r, width * r, 1))

    def compute_output_shape(self, input_shape):
        b, h, w, _ = input_shape
        scale = lambda n: None if n is None else n * self.upratio  # noqa: E731
        return (b, scale(h), scale(w), 1)

    def get_config(self):
        return {**super().get_config(), "upratio": self.upratio}


@keras.saving.register_keras_serializable(package=SERIALIZATION_PACKAGE)
class NearestDownsample(keras.layers.Layer):
    """PyTorch ``interpolate(scale_factor=1/s, mode='nearest')``: picks pixel (s·i, s·j).

    (B, H, W, C) → (B, H/s, W/s, C). Keras/TF nearest resize would pick s·i + s/2 (design §9.2).
    """

    def __init__(self, stride: int, **kwargs):
        super().__init__(**kwargs)
        self.stride = int(stride)

    def call(self, x):
        return x[:, :: self.stride, :: self.stride, :]

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        down = lambda n: None if n is None else -(-n // self.stride)  # noqa: E731
        return (b, down(h), down(w), c)

    def get_config(self):
        return {**super().get_config(), "stride": self.stride}


@keras.saving.register_keras_serializable(package=SERIALIZATION_PACKAGE)
class FinalDepth(keras.layers.Layer):
    """Final depth: σ(logits)·max_depth, then × focal/715.0873 per sample for KITTI (design §1.9).

    Inputs: logits (B,H,W,1) from ``get_depth``, focal (B,) in px. Output float32 (B,H,W,1).
    ``encoder`` and ``preprocessing`` (the input normalisation the encoder was trained with) only
    travel in the config, so a saved ``.keras`` file says how to feed it ('' in older files).
    """

    def __init__(self, max_depth: float, scale_by_focal: bool = False, encoder: str = "",
                 preprocessing: str = "", focal_normaliser: Optional[float] = None,
                 model_config: Optional[dict] = None, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.max_depth = float(max_depth)
        self.scale_by_focal = bool(scale_by_focal)
        self.focal_normaliser = float(focal_normaliser or KITTI_FOCAL_NORMALISER)
        self.encoder, self.preprocessing = str(encoder), str(preprocessing)
        self.model_config = dict(model_config or {})

    def call(self, logits, focal):
        depth = self.max_depth * ops.sigmoid(ops.cast(logits, "float32"))
        if self.scale_by_focal:
            focal = ops.reshape(ops.cast(focal, "float32"), (-1, 1, 1, 1))
            depth = depth * focal / self.focal_normaliser
        return depth

    def compute_output_shape(self, logits_shape, focal_shape=None):
        return tuple(logits_shape)

    def get_config(self):
        return {**super().get_config(), "max_depth": self.max_depth,
                "scale_by_focal": self.scale_by_focal, "encoder": self.encoder,
                "preprocessing": self.preprocessing, "focal_normaliser": self.focal_normaliser,
                "model_config": self.model_config}


def _float32_rescaling(scale: float, name: str) -> keras.layers.Rescaling:
    return keras.layers.Rescaling(scale, name=name, dtype="float32")


def bts_decoder(features: Dict[str, keras.KerasTensor], focal, nf: int, max_depth: float,
                scale_by_focal: bool, encoder: str = "", preprocessing: str = "", *,
                focal_normaliser: Optional[float] = None, model_config: Optional[dict] = None,
                model_ops: ModelOps = DEFAULT_MODEL_OPS) -> keras.KerasTensor:
    """PT V2 decoder (design §1.3 table) on encoder ``features``; returns final depth (B,H,W,1).

    ``encoder``/``preprocessing`` are recorded in the final layer's config (see FinalDepth).
    ``model_ops``: its 1×1 convs (DASPP, reduction heads) as MatMuls or not (:class:`ModelOps`).
    """
    matmul = model_ops.matmul_1x1
    up = dict(subpixel=True) if model_ops.subpixel_upconv else {}
    skip2, skip4, skip8, skip16 = (features[k] for k in ("skip2", "skip4", "skip8", "skip16"))
    concat = lambda name, xs: keras.layers.Concatenate(name=name)(xs)  # noqa: E731

    # H/32 → H/16: BN applies to the upconv output (conv → ELU → BN; design §9.2).
    upconv5 = _decoder_bn("bn5")(UpConv(nf, name="upconv5", **up)(features["dense32"]))
    iconv5 = _conv(nf, 3, "conv5", activation="elu")(concat("concat5", [upconv5, skip16]))

    # H/16 → H/8 and the dense atrous pyramid on concat4.
    upconv4 = _decoder_bn("bn4")(UpConv(nf // 2, name="upconv4", **up)(iconv5))
    concat4 = concat("concat4", [upconv4, skip8])
    iconv4 = _decoder_bn("bn4_2")(_conv(nf // 2, 3, "conv4", activation="elu")(concat4))
    daspp, pyramid = [], concat4
    for index, rate in enumerate((3, 6, 12, 18, 24)):
        source = iconv4 if index == 0 else pyramid
        branch = AtrousConv(nf // 4, rate, apply_bn_first=index > 0, matmul_1x1=matmul,
                            name=f"daspp_{rate}")(source)
        daspp.append(branch)
        if rate != 24:
            pyramid = concat(f"concat4_{index + 2}", [pyramid, branch])
    daspp_feat = _conv(nf // 4, 3, "daspp_conv", activation="elu")(
        concat("concat4_daspp", [iconv4] + daspp))

    # H/8 plane coefficients → LPG ×8 → full-resolution depth in units of max_depth.
    plane8 = ReductionHead(nf // 4, nf // 4, max_depth, matmul_1x1=matmul, name="reduc8x8")(daspp_feat)
    depth8 = _float32_rescaling(1.0 / max_depth, "depth_8x8_scaled")(
        LocalPlanarGuidance(8, name="lpg8x8")(plane8))
    depth8_ds = NearestDownsample(4, name="depth_8x8_scaled_ds")(depth8)

    upconv3 = _decoder_bn("bn3")(UpConv(nf // 4, name="upconv3", **up)(daspp_feat))
    iconv3 = _conv(nf // 4, 3, "conv3", activation="elu")(
        concat("concat3", [upconv3, skip4, depth8_ds]))
    plane4 = ReductionHead(nf // 4, nf // 8, max_depth, matmul_1x1=matmul, name="reduc4x4")(iconv3)
    depth4 = _float32_rescaling(1.0 / max_depth, "depth_4x4_scaled")(
        LocalPlanarGuidance(4, name="lpg4x4")(plane4))
    depth4_ds = NearestDownsample(2, name="depth_4x4_scaled_ds")(depth4)

    upconv2 = _decoder_bn("bn2")(UpConv(nf // 8, name="upconv2", **up)(iconv3))
    iconv2 = _conv(nf // 8, 3, "conv2", activation="elu")(
        concat("concat2", [upconv2, skip2, depth4_ds]))
    plane2 = ReductionHead(nf // 8, nf // 16, max_depth, matmul_1x1=matmul, name="reduc2x2")(iconv2)
    depth2 = _float32_rescaling(1.0 / max_depth, "depth_2x2_scaled")(
        LocalPlanarGuidance(2, name="lpg2x2")(plane2))

    upconv1 = UpConv(nf // 16, name="upconv1", **up)(iconv2)  # no BN after upconv1
    reduc1 = ReductionHead(nf // 16, nf // 32, max_depth, is_final=True, matmul_1x1=matmul,
                           name="reduc1x1")(upconv1)
    iconv1 = _conv(nf // 16, 3, "conv1", activation="elu")(
        concat("concat1", [upconv1, reduc1, depth2, depth4, depth8]))
    logits = _conv(1, 3, "get_depth")(iconv1)
    return FinalDepth(max_depth, scale_by_focal, encoder, preprocessing, focal_normaliser,
                      model_config, name="depth")(logits, focal)


# --------------------------------------------------------------------------------------------
# Builder
# --------------------------------------------------------------------------------------------
def encoder_spec(name: str) -> EncoderSpec:
    """The registered encoder ``name``; a one-line error listing the valid names otherwise."""
    try:
        return ENCODERS[name]
    except KeyError:
        raise ConfigError("encoder", f"{name!r} is unknown; valid encoders: {', '.join(ENCODERS)}") \
            from None


def build_bts_model(config: BtsConfig, model_ops: ModelOps = DEFAULT_MODEL_OPS) -> keras.Model:
    """Build BTS as a functional ``keras.Model`` with inputs ``image`` (B,H,W,3) and ``focal`` (B,).

    Output: final depth in metres, (B, H, W, 1) float32. The final layer's config records
    ``config`` (see FinalDepth), so a saved ``.keras`` file says how it was built and fed.
    ``model_ops`` (:class:`ModelOps`) only chooses how some layers compute: same weights, names
    and outputs (float32 rounding aside) for every choice.
    """
    spec = encoder_spec(config.encoder)
    image = keras.Input((config.input_height, config.input_width, 3), name="image")
    focal = keras.Input((), name="focal")
    if config.densenet is not None:
        features = densenet_encoder(image, config.densenet, model_ops)
    elif config.imagenet_weights:
        features = spec.build(image, weights=IMAGENET, model_ops=model_ops)
    else:
        features = spec.build(image, model_ops=model_ops)
    # The encoder name recorded in the model: a DenseNet override is named by the table entry it
    # equals ('' for other shapes; its preprocessing is the DenseNets' either way).
    recorded = config.encoder if config.densenet is None else next(
        (name for name, c in DENSENET_CONFIGS.items() if c == config.densenet), "")
    preprocessing = (spec.preprocessing if config.densenet is None
                     else ENCODERS["densenet_tiny"].preprocessing)
    depth = bts_decoder(features, focal, config.bts_size, config.max_depth, config.scale_by_focal,
                        recorded, preprocessing, focal_normaliser=config.focal_normaliser,
                        model_config=config.to_dict(), model_ops=model_ops)
    return keras.Model({"image": image, "focal": focal}, depth, name="bts")


def model_config_of(model: keras.Model) -> Optional[BtsConfig]:
    """The BtsConfig a model was built from (recorded in its final layer), None for older files."""
    try:
        values = model.get_layer("depth").model_config
    except (ValueError, AttributeError):
        return None
    return BtsConfig.from_dict(values, "model") if values else None


LPG_MAP_LAYERS = ("depth_8x8_scaled", "depth_4x4_scaled", "depth_2x2_scaled", "reduc1x1")


def build_lpg_maps_model(model: keras.Model) -> keras.Model:
    """A view of ``model`` (shared weights) returning the depth and the intermediate maps.

    Outputs dict: ``depth`` (B,H,W,1) metres, and ``depth_8x8_scaled``, ``depth_4x4_scaled``,
    ``depth_2x2_scaled`` (LPG maps in units of max_depth; unbounded) and ``reduc1x1`` (σ map).
    """
    outputs = {"depth": model.output}
    outputs.update({name: model.get_layer(name).output for name in LPG_MAP_LAYERS})
    return keras.Model(model.inputs, outputs, name="bts_with_lpg_maps")


def count_params(weights: Sequence) -> int:
    """Number of scalars in ``weights``."""
    return int(sum(math.prod(w.shape) for w in weights))


def encoder_weights(model: keras.Model) -> list:
    """All encoder variables (layers named with the ``encoder.`` prefix)."""
    return [w for layer in model.layers if layer.name.startswith(ENCODER_PREFIX)
            for w in layer.weights]


def is_encoder_variable(variable) -> bool:
    return variable.path.startswith(ENCODER_PREFIX)
