"""The block vocabulary every tinyexit network is built from.

The exporter mirrors exactly these blocks (BatchNorm folded into the conv), so a
new block here needs a twin in tinyexit.export.  Convolutions pad k//2 on every
side, as PyTorch does; stride-2 convolutions are padded explicitly on export.
"""
from __future__ import annotations

import torch
from torch import nn


class ConvBN(nn.Module):
    """conv k x k (no bias) -> BatchNorm -> optional ReLU; groups=c_in=c_out makes it depthwise."""

    def __init__(self, c_in: int, c_out: int, k: int = 3, stride: int = 1, relu: bool = True, groups: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2, bias=False, groups=groups)
        self.bn = nn.BatchNorm2d(c_out)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return torch.relu(x) if self.relu else x


class BasicBlock(nn.Module):
    """Residual block: two 3x3 ConvBN, shortcut = identity or 1x1 ConvBN projection, ReLU after the add."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = ConvBN(c_in, c_out, 3, stride, relu=True)
        self.conv2 = ConvBN(c_out, c_out, 3, 1, relu=False)
        self.shortcut = ConvBN(c_in, c_out, 1, stride, relu=False) if (stride != 1 or c_in != c_out) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = x if self.shortcut is None else self.shortcut(x)
        return torch.relu(self.conv2(self.conv1(x)) + skip)


class DepthwiseSeparable(nn.Sequential):
    """Depthwise 3x3 ConvBN-ReLU then pointwise 1x1 ConvBN-ReLU (MobileNetV1 / DS-CNN block).

    A Sequential of ConvBN, so the exporter lowers it with the rules it already has."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__(ConvBN(c_in, c_in, 3, stride, relu=True, groups=c_in), ConvBN(c_in, c_out, 1, 1, relu=True))


class ExitHead(nn.Module):
    """Optional 1x1 ConvBN-ReLU widening, then global average pool -> linear.

    Pooling before the linear layer (not flatten) keeps a head cheap enough for a
    microcontroller; the optional 1x1 adds a non-linearity before pooling.
    """

    def __init__(self, c_in: int, num_classes: int, hidden: int = 0):
        super().__init__()
        self.pre = ConvBN(c_in, hidden, 1, 1, relu=True) if hidden else None
        self.fc = nn.Linear(hidden or c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pre is not None:
            x = self.pre(x)
        return self.fc(x.mean(dim=(2, 3)))


class Segment(nn.Module):
    """Layers from the previous exit (or the input) up to and including one exit head.

    The segment contract of every model family: all but the last segment return
    (logits, features); the last returns its logits.
    """

    def __init__(self, body: nn.Sequential, head: nn.Module, last: bool):
        super().__init__()
        self.body = body
        self.head = head
        self.last = last

    def forward(self, x: torch.Tensor):
        feats = self.body(x)
        logits = self.head(feats)
        return logits if self.last else (logits, feats)


def exit_logits(segments, x):
    """Logits of every exit, chaining the features through the segments (the segment contract)."""
    outs = []
    for seg in segments:
        if seg.last:
            outs.append(seg(x))
        else:
            logits, x = seg(x)
            outs.append(logits)
    return outs
