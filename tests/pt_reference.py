# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""PyTorch references for the converter tests (optional-torch group): the official checkpoint key
tables written from the official code, well-conditioned random state dicts, an independent float64
forward pass of the PT V2 model, and torchvision's own encoders.

Importing it skips the importing test module when PyTorch is absent (it is installed in CI:
requirements-dev.txt).
"""
import math
import re
import sys

import pytest

torch = pytest.importorskip("torch")

F = torch.nn.functional

HEIGHT, WIDTH = 64, 96
KITTI_FOCAL_NORMALISER = 715.0873
BN_LEAVES = ("weight", "bias", "running_mean", "running_var")


# --------------------------------------------------------------------------------------------
# Official key names and shapes, written from the official code (design §9.1)
# --------------------------------------------------------------------------------------------
class _Shapes(dict):
    """Ordered PT key → shape table with helpers for conv and BN modules."""

    def conv(self, name, c_out, c_in, k):
        self[f"{name}.weight"] = (c_out, c_in, k, k)

    def bn(self, name, c):
        for leaf in BN_LEAVES:
            self[f"{name}.{leaf}"] = (c,)
        self[f"{name}.num_batches_tracked"] = ()


def densenet_shapes(cfg, prefix="encoder.base_model."):
    """torchvision DenseNet ``features`` keys; returns (shapes, skip channels f0..f4)."""
    s, k = _Shapes(), cfg.growth_rate
    c = cfg.num_init_features
    s.conv(prefix + "conv0", c, 3, 7)
    s.bn(prefix + "norm0", c)
    skips = [c, c]
    for b, layers in enumerate(cfg.block_config, start=1):
        for i in range(1, layers + 1):
            p = f"{prefix}denseblock{b}.denselayer{i}."
            s.bn(p + "norm1", c)
            s.conv(p + "conv1", cfg.bn_size * k, c, 1)
            s.bn(p + "norm2", cfg.bn_size * k)
            s.conv(p + "conv2", k, cfg.bn_size * k, 3)
            c += k
        if b != len(cfg.block_config):
            s.bn(f"{prefix}transition{b}.norm", c)
            s.conv(f"{prefix}transition{b}.conv", c // 2, c, 1)
            c //= 2
            skips.append(c)
    s.bn(prefix + "norm5", c)
    return s, tuple(skips[:4]) + (c,)


def reduction_shapes(s, name, c_in, c_out, final):
    """PT reduction_1x1: 1x1 chain halving while c_out >= 8, then the head (design §1.6)."""
    while c_out >= 4:
        if c_out < 8:
            if final:
                s.conv(f"{name}.reduc.final.0", 1, c_in, 1)
            else:
                s.conv(f"{name}.reduc.plane_params", 3, c_in, 1)
            break
        s.conv(f"{name}.reduc.inter_{c_in}_{c_out}.0", c_out, c_in, 1)
        c_in, c_out = c_out, c_out // 2


def decoder_shapes(skips, nf, prefix="decoder."):
    """PT V2 decoder keys from the general formulas of design §1.3."""
    f0, f1, f2, f3, f4 = skips
    s, p = _Shapes(), prefix
    s.conv(p + "upconv5.conv", nf, f4, 3)
    s.bn(p + "bn5", nf)
    s.conv(p + "conv5.0", nf, nf + f3, 3)
    s.conv(p + "upconv4.conv", nf // 2, nf, 3)
    s.bn(p + "bn4", nf // 2)
    s.conv(p + "conv4.0", nf // 2, nf // 2 + f2, 3)
    s.bn(p + "bn4_2", nf // 2)
    daspp_in = {3: nf // 2, 6: nf // 2 + nf // 4 + f2, 12: nf + f2, 18: nf + nf // 4 + f2,
                24: nf + nf // 2 + f2}
    for rate, c_in in daspp_in.items():
        a = f"{p}daspp_{rate}.atrous_conv."
        if rate != 3:
            s.bn(a + "first_bn", c_in)
        s.conv(a + "aconv_sequence.1", nf // 2, c_in, 1)
        s.bn(a + "aconv_sequence.2", nf // 2)
        s.conv(a + "aconv_sequence.4", nf // 4, nf // 2, 3)
    s.conv(p + "daspp_conv.0", nf // 4, nf + nf // 2 + nf // 4, 3)
    reduction_shapes(s, p + "reduc8x8", nf // 4, nf // 4, False)
    s.conv(p + "upconv3.conv", nf // 4, nf // 4, 3)
    s.bn(p + "bn3", nf // 4)
    s.conv(p + "conv3.0", nf // 4, nf // 4 + f1 + 1, 3)
    reduction_shapes(s, p + "reduc4x4", nf // 4, nf // 8, False)
    s.conv(p + "upconv2.conv", nf // 8, nf // 4, 3)
    s.bn(p + "bn2", nf // 8)
    s.conv(p + "conv2.0", nf // 8, nf // 8 + f0 + 1, 3)
    reduction_shapes(s, p + "reduc2x2", nf // 8, nf // 16, False)
    s.conv(p + "upconv1.conv", nf // 16, nf // 8, 3)
    reduction_shapes(s, p + "reduc1x1", nf // 16, nf // 32, True)
    s.conv(p + "conv1.0", nf // 16, nf // 16 + 4, 3)
    s.conv(p + "get_depth.0", 1, nf // 16, 3)
    return s


def official_shapes(cfg, nf):
    encoder, skips = densenet_shapes(cfg)
    return {**encoder, **decoder_shapes(skips, nf)}


def learnable_count(shapes, prefix):
    """Parameters (no running stats, no counters) of the keys starting with ``prefix``."""
    return sum(math.prod(shape) for key, shape in shapes.items()
               if key.startswith(prefix) and key.rsplit(".", 1)[1] in ("weight", "bias"))


def random_state_dict(shapes, seed=0):
    """Well-conditioned random float32 tensors (fan-in scaled convs, sane BN statistics)."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in shapes.items():
        leaf = key.rsplit(".", 1)[1]
        if leaf == "num_batches_tracked":
            state[key] = torch.tensor(1234, dtype=torch.long)
        elif len(shape) == 4:
            fan_in = shape[1] * shape[2] * shape[3]
            state[key] = torch.randn(shape, generator=g) * math.sqrt(1.5 / fan_in)
        elif leaf == "weight":
            state[key] = 0.5 + torch.rand(shape, generator=g)
        elif leaf == "running_var":
            state[key] = 0.5 + 1.5 * torch.rand(shape, generator=g)
        else:  # bias, running_mean
            state[key] = 0.2 * torch.randn(shape, generator=g)
    return state


def patterned_state_dict(shapes):
    """Every tensor = 10000·(index+1) + arange: its values name the source key and the layout."""
    return {key: torch.tensor(1234) if not shape else
            (10000.0 * (i + 1) + torch.arange(math.prod(shape), dtype=torch.float32)).reshape(shape)
            for i, (key, shape) in enumerate(shapes.items())}


# --------------------------------------------------------------------------------------------
# Independent PT V2 forward pass (torch.nn.functional, float64)
# --------------------------------------------------------------------------------------------
def _bn(sd, x, name, eps):
    return F.batch_norm(x, sd[f"{name}.running_mean"], sd[f"{name}.running_var"],
                        sd[f"{name}.weight"], sd[f"{name}.bias"], training=False, eps=eps)


def reference_encoder(sd, x, cfg, p="encoder.base_model."):
    """torchvision DenseNet features with the BTS taps: [relu0, pool0, transition1, transition2, ReLU(norm5)]."""
    x = F.relu(_bn(sd, F.conv2d(x, sd[p + "conv0.weight"], stride=2, padding=3), p + "norm0", 1e-5))
    skips = [x]
    x = F.max_pool2d(x, 3, stride=2, padding=1)
    skips.append(x)
    for b, layers in enumerate(cfg.block_config, start=1):
        for i in range(1, layers + 1):
            q = f"{p}denseblock{b}.denselayer{i}."
            y = F.conv2d(F.relu(_bn(sd, x, q + "norm1", 1e-5)), sd[q + "conv1.weight"])
            y = F.conv2d(F.relu(_bn(sd, y, q + "norm2", 1e-5)), sd[q + "conv2.weight"], padding=1)
            x = torch.cat([x, y], 1)
        if b != len(cfg.block_config):
            q = f"{p}transition{b}."
            x = F.avg_pool2d(F.conv2d(F.relu(_bn(sd, x, q + "norm", 1e-5)), sd[q + "conv.weight"]), 2)
            skips.append(x)
    return skips[:4] + [F.relu(_bn(sd, x, p + "norm5", 1e-5))]


def reference_reduction(sd, x, name, c_in, c_out, final, max_depth):
    while c_out >= 4:
        if c_out < 8:
            if final:
                return torch.sigmoid(F.conv2d(x, sd[f"{name}.reduc.final.0.weight"]))
            raw = F.conv2d(x, sd[f"{name}.reduc.plane_params.weight"])
            theta = torch.sigmoid(raw[:, 0]) * math.pi / 3
            phi = torch.sigmoid(raw[:, 1]) * 2 * math.pi
            dist = torch.sigmoid(raw[:, 2]) * max_depth
            return torch.stack([torch.sin(theta) * torch.cos(phi), torch.sin(theta) * torch.sin(phi),
                                torch.cos(theta), dist], 1)
        x = F.elu(F.conv2d(x, sd[f"{name}.reduc.inter_{c_in}_{c_out}.0.weight"]))
        c_in, c_out = c_out, c_out // 2
    raise AssertionError("empty reduction chain")


def reference_lpg(plane, r):
    """(B,4,h,w) plane (n1,n2,n3,d) → (B,1,rh,rw) depth = d / (n1·u + n2·v + n3)."""
    normal = F.normalize(plane[:, :3], dim=1)
    rep = lambda t: t.repeat_interleave(r, 1).repeat_interleave(r, 2)  # noqa: E731
    n1, n2, n3, dist = rep(normal[:, 0]), rep(normal[:, 1]), rep(normal[:, 2]), rep(plane[:, 3])
    offsets = lambda n: ((torch.arange(n, dtype=plane.dtype) % r) - (r - 1) / 2) / r  # noqa: E731
    u = offsets(n1.shape[2])[None, None, :]  # column offset
    v = offsets(n1.shape[1])[None, :, None]  # row offset
    return (dist / (n1 * u + n2 * v + n3))[:, None]


def reference_bts_forward(sd, image_nchw, focal, cfg, nf, max_depth, kitti, skips=None):
    """PT V2 BTS forward (design §1.1-§1.9) → dict of final depth and the intermediate maps.

    ``skips``: the five encoder features of another encoder (the decoder applies ReLU to the
    last, as upstream); default: :func:`reference_encoder` on DenseNet ``cfg``.
    """
    p = "decoder."
    if skips is None:
        skip0, skip1, skip2, skip3, dense = reference_encoder(sd, image_nchw, cfg)
    else:
        skip0, skip1, skip2, skip3, dense = skips[:4] + [F.relu(skips[4])]
    conv = lambda x, n, **kw: F.conv2d(x, sd[p + n + ".weight"], **kw)  # noqa: E731
    up = lambda x, n: F.elu(conv(F.interpolate(x, scale_factor=2, mode="nearest"), n, padding=1))  # noqa: E731

    def atrous(x, rate, first_bn):
        a = f"{p}daspp_{rate}.atrous_conv."
        if first_bn:
            x = _bn(sd, x, a + "first_bn", 1.1e-5)
        x = F.conv2d(F.relu(x), sd[a + "aconv_sequence.1.weight"])
        x = F.relu(_bn(sd, x, a + "aconv_sequence.2", 1e-5))
        return F.conv2d(x, sd[a + "aconv_sequence.4.weight"], padding=rate, dilation=rate)

    upconv5 = _bn(sd, up(dense, "upconv5.conv"), p + "bn5", 1.1e-5)
    iconv5 = F.elu(conv(torch.cat([upconv5, skip3], 1), "conv5.0", padding=1))
    upconv4 = _bn(sd, up(iconv5, "upconv4.conv"), p + "bn4", 1.1e-5)
    concat4 = torch.cat([upconv4, skip2], 1)
    iconv4 = _bn(sd, F.elu(conv(concat4, "conv4.0", padding=1)), p + "bn4_2", 1.1e-5)
    branches, pyramid = [atrous(iconv4, 3, False)], concat4  # daspp_3 reads iconv4, not concat4
    for rate in (6, 12, 18, 24):
        pyramid = torch.cat([pyramid, branches[-1]], 1)
        branches.append(atrous(pyramid, rate, True))
    daspp_feat = F.elu(conv(torch.cat([iconv4] + branches, 1), "daspp_conv.0", padding=1))

    depth8 = reference_lpg(reference_reduction(sd, daspp_feat, p + "reduc8x8", nf // 4, nf // 4,
                                               False, max_depth), 8) / max_depth
    upconv3 = _bn(sd, up(daspp_feat, "upconv3.conv"), p + "bn3", 1.1e-5)
    iconv3 = F.elu(conv(torch.cat([upconv3, skip1, F.interpolate(depth8, scale_factor=0.25,
                                                                 mode="nearest")], 1),
                        "conv3.0", padding=1))
    depth4 = reference_lpg(reference_reduction(sd, iconv3, p + "reduc4x4", nf // 4, nf // 8,
                                               False, max_depth), 4) / max_depth
    upconv2 = _bn(sd, up(iconv3, "upconv2.conv"), p + "bn2", 1.1e-5)
    iconv2 = F.elu(conv(torch.cat([upconv2, skip0, F.interpolate(depth4, scale_factor=0.5,
                                                                 mode="nearest")], 1),
                        "conv2.0", padding=1))
    depth2 = reference_lpg(reference_reduction(sd, iconv2, p + "reduc2x2", nf // 8, nf // 16,
                                               False, max_depth), 2) / max_depth
    upconv1 = up(iconv2, "upconv1.conv")
    reduc1 = reference_reduction(sd, upconv1, p + "reduc1x1", nf // 16, nf // 32, True, max_depth)
    iconv1 = F.elu(conv(torch.cat([upconv1, reduc1, depth2, depth4, depth8], 1), "conv1.0", padding=1))
    depth = max_depth * torch.sigmoid(conv(iconv1, "get_depth.0", padding=1))
    if kitti:
        depth = depth * focal.view(-1, 1, 1, 1) / KITTI_FOCAL_NORMALISER
    to_nhwc = lambda t: t.permute(0, 2, 3, 1).numpy()  # noqa: E731
    return {"depth": to_nhwc(depth), "depth_8x8_scaled": to_nhwc(depth8),
            "depth_4x4_scaled": to_nhwc(depth4), "depth_2x2_scaled": to_nhwc(depth2),
            "reduc1x1": to_nhwc(reduc1)}




# --------------------------------------------------------------------------------------------
# torchvision's own encoders (ResNet, ResNeXt, MobileNetV2) as upstream's bts.py uses them
# --------------------------------------------------------------------------------------------
def import_torchvision():
    """``torchvision``, also where its compiled ops do not load.

    PyPI's torchvision wheel links CUDA builds of torch; next to the CPU torch of this project
    its ``_C`` extension fails to load and ``import torchvision`` dies registering a fake kernel
    for the missing ``torchvision::nms`` op. The models are plain Python and need no such op,
    so the import is retried with those registrations skipped.
    """
    try:
        import torchvision
    except ImportError:
        pytest.skip("torchvision is not installed (requirements-dev.txt)")
    except RuntimeError as err:
        if "torchvision::" not in str(err):
            raise
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]
        real = torch.library.register_fake

        def tolerant(op, *args, **kwargs):
            if isinstance(op, str) and op.startswith("torchvision::"):
                return lambda function: function
            return real(op, *args, **kwargs)

        torch.library.register_fake = tolerant
        try:
            import torchvision
        finally:
            torch.library.register_fake = real
    return torchvision


# encoder → (torchvision constructor, takes .features, skip channels); upstream's bts.py.
TORCHVISION_ENCODERS = {
    "resnet50_bts": ("resnet50", False, (64, 256, 512, 1024, 2048)),
    "resnet101_bts": ("resnet101", False, (64, 256, 512, 1024, 2048)),
    "resnext50_bts": ("resnext50_32x4d", False, (64, 256, 512, 1024, 2048)),
    "resnext101_bts": ("resnext101_32x8d", False, (64, 256, 512, 1024, 2048)),
    "mobilenetv2_bts": ("mobilenet_v2", True, (16, 24, 32, 64, 1280)),
    "densenet161_bts": ("densenet161", True, (96, 96, 192, 384, 2208)),
    "densenet121_bts": ("densenet121", True, (64, 64, 128, 256, 1024)),
}
RESNET_TAP_NAMES = ("relu", "layer1", "layer2", "layer3", "layer4")
DENSENET_TAP_NAMES = ("relu0", "pool0", "transition1", "transition2", "norm5")
MOBILENETV2_TAP_COUNTS = (2, 4, 7, 11, 19)  # upstream counts the features modules from 1


def torchvision_base_model(encoder):
    """A fresh torchvision network (random init, float32) as upstream's ``encoder.base_model``."""
    constructor, features, _ = TORCHVISION_ENCODERS[encoder]
    model = getattr(import_torchvision().models, constructor)(weights=None)
    return model.features if features else model


def torchvision_taps(base_model, encoder, x):
    """The five features upstream's ``encoder.forward`` collects, in its way: walk the modules,
    skip ``fc``/``avgpool``, keep outputs by name (ResNets) or by 1-based position (MobileNetV2)."""
    taps = []
    for position, (name, module) in enumerate(base_model._modules.items(), start=1):
        if "fc" in name or "avgpool" in name:
            continue
        x = module(x)
        if encoder == "mobilenetv2_bts":
            if position in MOBILENETV2_TAP_COUNTS:
                taps.append(x)
        elif any(tap in name for tap in (DENSENET_TAP_NAMES if encoder.startswith("densenet")
                                         else RESNET_TAP_NAMES)):
            taps.append(x)
    assert len(taps) == 5
    return taps


def official_key_shapes(encoder, nf=512):
    """PT key → shape of an official BTS checkpoint for ``encoder``: ``encoder.base_model.*`` with
    torchvision's keys (the ResNets' unused ``fc`` included) + the PT V2 decoder."""
    shapes = _Shapes()
    for key, value in torchvision_base_model(encoder).state_dict().items():
        shapes["encoder.base_model." + key] = tuple(value.shape)
    shapes.update(decoder_shapes(TORCHVISION_ENCODERS[encoder][2], nf))
    return shapes


def official_random_state(encoder, nf=512, seed=0):
    """A random official-format BTS state dict for ``encoder`` (:func:`official_key_shapes`).

    The last BN of each residual branch (``bn3``) gets γ in [0.1, 0.3]: with γ near 1 the
    residual stream of the 101-layer networks grows to ~1e3 by layer3 and the decoder turns
    float32 rounding into centimetres of depth, which says nothing about the conversion
    (trained and torchvision-initialised networks keep it near 1).
    """
    state = random_state_dict(official_key_shapes(encoder, nf), seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    for key in state:
        if re.fullmatch(r"encoder\.base_model\.layer\d\.\d+\.bn3\.weight", key):
            state[key] = 0.1 + 0.2 * torch.rand(state[key].shape, generator=g)
    return state


def official_initial_state(encoder, nf=512, seed=0):
    """An official-format state dict as upstream's model starts training from scratch:
    torchvision's own initialisation (BN γ 1, β 0, statistics 0 / 1) and a Xavier-uniform decoder."""
    torch.manual_seed(seed)
    state = {"encoder.base_model." + k: v for k, v in torchvision_base_model(encoder).state_dict().items()}
    for key, shape in decoder_shapes(TORCHVISION_ENCODERS[encoder][2], nf).items():
        leaf = key.rsplit(".", 1)[1]
        if leaf == "num_batches_tracked":
            state[key] = torch.tensor(0)
        elif len(shape) == 4:
            state[key] = torch.nn.init.xavier_uniform_(torch.empty(shape))
        else:
            state[key] = torch.ones(shape) if leaf in ("weight", "running_var") else torch.zeros(shape)
    return state


def reference_official_forward(state, encoder, image_nchw, focal, nf, max_depth, kitti):
    """float64 forward of upstream's BtsModel: torchvision's encoder (eval mode) + the PT V2 decoder."""
    base = torchvision_base_model(encoder).double().eval()
    prefix = "encoder.base_model."
    base.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
    sd = {k: v.double() if v.is_floating_point() else v for k, v in state.items()}
    with torch.no_grad():
        skips = torchvision_taps(base, encoder, image_nchw)
        out = reference_bts_forward(sd, image_nchw, focal, None, nf, max_depth, kitti, skips=skips)
    out["taps"] = [t.permute(0, 2, 3, 1).numpy() for t in skips]
    return out
