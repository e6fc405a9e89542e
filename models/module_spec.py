"""A user's PyTorch modules as plain JSON, and back: how own segments live in a weights-only checkpoint.

The vocabulary is exactly what the exporter can lower (tinyexit.export.lower): nn.Sequential,
nn.Conv2d (square kernel, equal strides, symmetric zero padding, no dilation, groups 1 or
depthwise), nn.BatchNorm2d (directly after a conv), nn.ReLU, nn.Sigmoid, nn.Identity, nn.Linear,
nn.AdaptiveAvgPool2d(1) followed by nn.Flatten(), and tinyexit.models.blocks (ConvBN, BasicBlock,
DepthwiseSeparable, ExitHead).  A module outside it is refused with its path in the model: its
forward pass could not be exported faithfully.
"""
from __future__ import annotations

from tinyexit.errors import UserError


def _vocabulary():
    from torch import nn

    from tinyexit.models import blocks

    conv = lambda m: {"c_in": m.in_channels, "c_out": m.out_channels, "k": m.kernel_size[0],  # noqa: E731
                      "stride": m.stride[0], "padding": m.padding[0], "groups": m.groups, "bias": m.bias is not None}
    # type -> (to args, from args); exact types only: a subclass may override forward.
    return {
        blocks.ConvBN: (lambda m: {"c_in": m.conv.in_channels, "c_out": m.conv.out_channels, "k": m.conv.kernel_size[0],
                                   "stride": m.conv.stride[0], "relu": bool(m.relu), "groups": m.conv.groups},
                        lambda a: blocks.ConvBN(**a)),
        blocks.BasicBlock: (lambda m: {"c_in": m.conv1.conv.in_channels, "c_out": m.conv2.conv.out_channels,
                                       "stride": m.conv1.conv.stride[0]}, lambda a: blocks.BasicBlock(**a)),
        blocks.DepthwiseSeparable: (lambda m: {"c_in": m[0].conv.in_channels, "c_out": m[1].conv.out_channels,
                                               "stride": m[0].conv.stride[0]}, lambda a: blocks.DepthwiseSeparable(**a)),
        blocks.ExitHead: (lambda m: {"c_in": m.fc.in_features if m.pre is None else m.pre.conv.in_channels,
                                     "num_classes": m.fc.out_features, "hidden": 0 if m.pre is None else m.fc.in_features},
                          lambda a: blocks.ExitHead(**a)),
        nn.Conv2d: (conv, lambda a: nn.Conv2d(a["c_in"], a["c_out"], a["k"], a["stride"], a["padding"],
                                              groups=a["groups"], bias=a["bias"])),
        nn.BatchNorm2d: (lambda m: {"c": m.num_features, "eps": m.eps}, lambda a: nn.BatchNorm2d(a["c"], a["eps"])),
        nn.Linear: (lambda m: {"c_in": m.in_features, "c_out": m.out_features, "bias": m.bias is not None},
                    lambda a: nn.Linear(a["c_in"], a["c_out"], a["bias"])),
        nn.ReLU: (lambda m: {}, lambda a: nn.ReLU()),
        nn.Sigmoid: (lambda m: {}, lambda a: nn.Sigmoid()),
        nn.Identity: (lambda m: {}, lambda a: nn.Identity()),
        nn.Flatten: (lambda m: {}, lambda a: nn.Flatten()),
        nn.AdaptiveAvgPool2d: (lambda m: {}, lambda a: nn.AdaptiveAvgPool2d(1)),
    }


def _check_conv(m, path: str) -> None:
    if m.kernel_size[0] != m.kernel_size[1] or m.stride[0] != m.stride[1] or tuple(m.dilation) != (1, 1):
        raise UserError(f"{path}: Conv2d kernel {tuple(m.kernel_size)} stride {tuple(m.stride)} dilation "
                        f"{tuple(m.dilation)}: only square kernels, equal strides and no dilation are exportable")
    if m.padding_mode != "zeros" or isinstance(m.padding, str) or m.padding[0] != m.padding[1]:
        raise UserError(f"{path}: Conv2d padding {m.padding!r}: only symmetric integer zero padding is exportable")
    if m.groups > 1 and not (m.groups == m.in_channels == m.out_channels):
        raise UserError(f"{path}: Conv2d groups={m.groups}: only groups=1 or depthwise (groups = in = out) export")


def to_spec(m, path: str = "model") -> dict:
    """{"type", "args", "children"} for a module built from the exportable vocabulary."""
    from torch import nn

    vocab = _vocabulary()
    kind = type(m)
    if kind is nn.Conv2d:
        _check_conv(m, path)
    if kind is nn.Flatten and (m.start_dim, m.end_dim) != (1, -1):
        raise UserError(f"{path}: only nn.Flatten() (start_dim=1) after nn.AdaptiveAvgPool2d(1) is exportable")
    if kind is nn.AdaptiveAvgPool2d and m.output_size not in (1, (1, 1)):
        raise UserError(f"{path}: AdaptiveAvgPool2d({m.output_size}) : only output size 1 (global pool) is exportable")
    if kind in vocab:
        return {"type": kind.__name__, "args": vocab[kind][0](m)}
    if kind is nn.Sequential:
        return {"type": "Sequential", "children": [to_spec(c, f"{path}.{i}") for i, c in enumerate(m)]}
    names = sorted({"Sequential"} | {t.__name__ for t in vocab})
    raise UserError(f"{path}: module type {kind.__name__} is not exportable; build stages and heads from "
                    f"{', '.join(names)} (docs/training.md: your own segments)")


def from_spec(spec: dict):
    from torch import nn

    by_name = {t.__name__: build for t, (_, build) in _vocabulary().items()}
    if spec.get("type") == "Sequential":
        return nn.Sequential(*[from_spec(c) for c in spec["children"]])
    if spec.get("type") not in by_name:
        raise UserError(f"module spec type {spec.get('type')!r} unknown; re-run the segment API that wrote it")
    return by_name[spec["type"]](spec.get("args", {}))
