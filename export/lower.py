"""Lower a PyTorch segment to a tiny framework-neutral graph (the export IR).

The IR mirrors the block vocabulary of tinyexit.models.blocks with BatchNorm
folded into the preceding convolution and weights already in TensorFlow's NHWC
/ HWIO layout, so every back end (TensorFlow for TFLite, the C generator) sees
the same arithmetic.  A module type without a rule here is refused: guessing
the forward pass of an unknown block would export a different network.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tinyexit.errors import UserError

ACTIVATIONS = (None, "relu", "sigmoid")


@dataclass
class Conv:
    w: np.ndarray            # HWIO float32 (depthwise: H, W, C, 1)
    b: np.ndarray            # C_out float32
    stride: int
    pad: int                 # symmetric zero padding, PyTorch style
    act: str | None = None
    depthwise: bool = False
    name: str = ""


@dataclass
class Dense:
    w: np.ndarray            # (in, out) float32
    b: np.ndarray
    act: str | None = None
    name: str = ""


@dataclass
class Residual:
    main: list
    shortcut: list           # empty = identity
    act: str | None = None
    name: str = ""


@dataclass
class Mean:                  # global average pool over H and W -> (N, C)
    name: str = ""


@dataclass
class Act:                   # a stand-alone activation (one that could not be fused)
    act: str
    name: str = ""


@dataclass
class SegmentIR:
    body: list               # produces the features
    head: list               # features -> logits
    last: bool
    name: str = ""
    extra: dict = field(default_factory=dict)


def lower_segment(segment, name: str) -> SegmentIR:
    """A segment in the sense of the segment contract: `body`, `head`, `last` attributes."""
    for attr in ("body", "head", "last"):
        if not hasattr(segment, attr):
            raise UserError(f"segment {name} ({type(segment).__name__}): has no '{attr}'; only segments built from "
                            "tinyexit.models.blocks can be exported")
    return SegmentIR(lower_module(segment.body, f"{name}.body"), lower_module(segment.head, f"{name}.head"),
                     bool(segment.last), name)


def lower_module(m, name: str) -> list:
    from torch import nn

    from tinyexit.models import blocks

    rules = {blocks.ConvBN: _conv_bn, blocks.BasicBlock: _basic_block, blocks.ExitHead: _exit_head,
             nn.Conv2d: _plain_conv, nn.Linear: _linear, **_family_rules()}
    for cls, rule in rules.items():
        if type(m) is cls:
            return rule(m, name)
    if isinstance(m, (nn.Sequential, nn.ModuleList)):
        return _sequence([(f"{name}.{i}", c) for i, c in enumerate(m)])
    if isinstance(m, nn.Identity):
        return []
    if type(m) is nn.AdaptiveAvgPool2d and m.output_size in (1, (1, 1)):
        return [Mean(name)]
    if type(m) is nn.Flatten:  # only after a global pool (checked in _sequence): (N, C) is already flat
        return []
    for cls, act in ((nn.ReLU, "relu"), (nn.Sigmoid, "sigmoid")):
        if type(m) is cls:
            return [Act(act, name)]
    raise UserError(f"{name}: module type {type(m).__name__} has no export rule; build the network from "
                    "tinyexit.models.blocks or add a rule in tinyexit/export/lower.py")


def _family_rules() -> dict:
    """Blocks a model family defines beside the shared vocabulary (imported only if that family exists)."""
    import importlib.util

    rules = {}
    if importlib.util.find_spec("tinyexit.models.denoiser") is not None:
        from tinyexit.models.denoiser import PixelHead

        # x0-logits head: 1x1 ConvBN-ReLU then a 1x1 conv with bias, applied in that order.
        rules[PixelHead] = lambda m, name: _sequence([(f"{name}.pre", m.pre), (f"{name}.out", m.out)])
    return rules


def _sequence(children) -> list:
    """Lower children in order, folding BatchNorm into a conv and fusing activations."""
    from torch import nn

    ops: list = []
    for name, child in children:
        if isinstance(child, nn.BatchNorm2d):
            if not ops or not isinstance(ops[-1], Conv) or ops[-1].act is not None:
                raise UserError(f"{name}: BatchNorm not directly after a convolution cannot be folded; "
                                "use tinyexit.models.blocks.ConvBN")
            _fold_bn_into(ops[-1], child)
            continue
        if type(child) is nn.Flatten and (not ops or not isinstance(ops[-1], Mean)):
            raise UserError(f"{name}: Flatten is exportable only right after AdaptiveAvgPool2d(1); pool first")
        lowered = lower_module(child, name)
        for op in lowered:
            if isinstance(op, Act) and ops and getattr(ops[-1], "act", "x") is None:
                ops[-1].act = op.act
            else:
                ops.append(op)
    return ops


def _bn_affine(bn) -> tuple[np.ndarray, np.ndarray]:
    scale = bn.weight.detach().double() / (bn.running_var.detach().double() + bn.eps).sqrt()
    shift = bn.bias.detach().double() - bn.running_mean.detach().double() * scale
    return scale.numpy(), shift.numpy()


def _conv_params(conv) -> tuple[np.ndarray, np.ndarray, bool]:
    """Weights as float64 OIHW-derived HWIO, bias, depthwise flag; refuses what TFLite Micro cannot run."""
    if conv.kernel_size[0] != conv.kernel_size[1] or conv.stride[0] != conv.stride[1] or conv.dilation != (1, 1):
        raise UserError(f"conv {conv}: only square kernels, equal strides and no dilation are exportable")
    if conv.padding_mode != "zeros" or isinstance(conv.padding, str) or conv.padding[0] != conv.padding[1]:
        raise UserError(f"conv {conv}: only symmetric zero padding is exportable")
    w = conv.weight.detach().double().numpy()
    depthwise = conv.groups > 1
    if depthwise and not (conv.groups == conv.in_channels == conv.out_channels):
        raise UserError(f"conv {conv}: grouped convolutions other than depthwise are not exportable")
    hwio = np.transpose(w, (2, 3, 0, 1)) if depthwise else np.transpose(w, (2, 3, 1, 0))
    b = conv.bias.detach().double().numpy() if conv.bias is not None else np.zeros(conv.out_channels)
    return hwio, b, depthwise


def _plain_conv(conv, name: str) -> list:
    w, b, dw = _conv_params(conv)
    return [Conv(w.astype(np.float32), b.astype(np.float32), conv.stride[0], conv.padding[0], None, dw, name)]


def _fold_bn_into(op: Conv, bn) -> None:
    scale, shift = _bn_affine(bn)
    w = op.w.astype(np.float64) * scale[None, None, :, None] if op.depthwise else op.w.astype(np.float64) * scale
    op.w = w.astype(np.float32)
    op.b = (op.b.astype(np.float64) * scale + shift).astype(np.float32)


def _conv_bn(m, name: str) -> list:
    w, b, dw = _conv_params(m.conv)
    scale, shift = _bn_affine(m.bn)
    # Fold in float64 and round once, so TF and ONNX see the same float32 weights.
    w = w * (scale[None, None, :, None] if dw else scale)
    op = Conv(w.astype(np.float32), (b * scale + shift).astype(np.float32), m.conv.stride[0], m.conv.padding[0],
              "relu" if m.relu else None, dw, name)
    return [op]


def _basic_block(m, name: str) -> list:
    shortcut = [] if m.shortcut is None else _conv_bn(m.shortcut, f"{name}.shortcut")
    return [Residual(_conv_bn(m.conv1, f"{name}.conv1") + _conv_bn(m.conv2, f"{name}.conv2"), shortcut, "relu", name)]


def _exit_head(m, name: str) -> list:
    pre = [] if m.pre is None else _conv_bn(m.pre, f"{name}.pre")
    return pre + [Mean(f"{name}.pool")] + _linear(m.fc, f"{name}.fc")


def _linear(m, name: str) -> list:
    w = m.weight.detach().double().numpy().T.astype(np.float32)
    b = (m.bias.detach().double().numpy() if m.bias is not None else np.zeros(m.out_features)).astype(np.float32)
    return [Dense(np.ascontiguousarray(w), b, None, name)]


def full_network(segments: list[SegmentIR]) -> SegmentIR:
    """The whole backbone and only the last head: what runs when no exit is taken."""
    body = [op for seg in segments for op in seg.body]
    return SegmentIR(body, segments[-1].head, True, "full")
