"""Early-exit ResNet classifiers, split into segments.

The segment contract: segment 0 takes the model input; segment k > 0 takes the
features segment k-1 returned.  Every segment but the last returns
(logits_k, features_k); the last returns its logits.  A plain network is the
same class with a single exit (one segment).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch
from torch import nn

from tinyexit.errors import UserError
from tinyexit.models.blocks import BasicBlock, ConvBN, DepthwiseSeparable, ExitHead, Segment, exit_logits

BLOCKS = {"basic": BasicBlock, "dwsep": DepthwiseSeparable}  # residual (ResNet) | depthwise separable


@dataclass(frozen=True)
class StageSpec:
    width: int
    blocks: int = 1
    stride: int = 1

    def __post_init__(self):
        if self.width < 1 or self.blocks < 1 or self.stride not in (1, 2):
            raise UserError(f"stage {self}: width and blocks must be >= 1 and stride 1 or 2")


@dataclass(frozen=True)
class ResNetConfig:
    """Architecture of an early-exit backbone (ResNet, DS-CNN, MobileNetV1 style): a stem conv, then
    stages of `block`s; `exits` lists the stages followed by a head.  Named presets and the TOML
    file that sets them live in tinyexit.models.backbones."""

    in_channels: int = 1
    num_classes: int = 10
    stem_width: int = 12
    stages: tuple[StageSpec, ...] = (StageSpec(12, 1, 1), StageSpec(32, 1, 2), StageSpec(64, 1, 2))
    exits: tuple[int, ...] = (0, 1, 2)
    head_hidden: tuple[int, ...] = (32, 0, 0)  # per exit; 0 = plain pool -> linear
    block: str = "basic"           # "basic" residual block | "dwsep" depthwise separable block
    stem_kernel: int = 3           # square, odd: the exporter pads PyTorch-style (k // 2 per side)
    stem_stride: int = 1

    def __post_init__(self):
        if self.block not in BLOCKS:
            raise UserError(f"block '{self.block}': choose one of {', '.join(BLOCKS)}")
        if self.stem_kernel < 1 or self.stem_kernel % 2 == 0 or self.stem_stride not in (1, 2):
            raise UserError(f"stem kernel {self.stem_kernel} / stride {self.stem_stride}: the kernel must be odd "
                            "and the stride 1 or 2")
        if self.in_channels < 1 or self.num_classes < 2 or self.stem_width < 1:
            raise UserError(f"in_channels {self.in_channels}, num_classes {self.num_classes}, stem_width "
                            f"{self.stem_width}: need >= 1 channel, >= 2 classes and a stem of width >= 1")
        stages = tuple(s if isinstance(s, StageSpec) else StageSpec(**s) for s in self.stages)
        object.__setattr__(self, "stages", stages)
        object.__setattr__(self, "exits", tuple(self.exits))
        object.__setattr__(self, "head_hidden", tuple(self.head_hidden))
        n = len(stages)
        if not self.exits or list(self.exits) != sorted(set(self.exits)) or self.exits[-1] != n - 1 \
                or self.exits[0] < 0:
            raise UserError(f"exits {self.exits}: must be increasing stage indices ending at the last stage {n - 1}")
        if len(self.head_hidden) != len(self.exits):
            raise UserError(f"head_hidden {self.head_hidden}: needs one entry per exit ({len(self.exits)})")
        if any(h < 0 for h in self.head_hidden):
            raise UserError(f"head_hidden {self.head_hidden}: widths must be >= 0 (0 = pool -> linear)")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ResNetConfig":
        return cls(**{**d, "stages": tuple(StageSpec(**s) for s in d["stages"])})

    def single_exit(self) -> "ResNetConfig":
        """The same backbone with only the final head: the plain baseline."""
        return replace(self, exits=(len(self.stages) - 1,), head_hidden=(self.head_hidden[-1],))

    def scaled(self, factor: float, depth: int | None = None) -> "ResNetConfig":
        """A narrower (and optionally shallower) single-exit network: the small baseline."""
        stages = self.stages[:depth] if depth else self.stages
        stages = tuple(StageSpec(max(2, round(s.width * factor)), s.blocks, s.stride) for s in stages)
        return replace(self, stem_width=max(2, round(self.stem_width * factor)), stages=stages,
                       exits=(len(stages) - 1,), head_hidden=(round(self.head_hidden[-1] * factor),))


class EarlyExitResNet(nn.Module):
    def __init__(self, cfg: ResNetConfig):
        super().__init__()
        self.cfg = cfg
        layers: list[nn.Module] = [ConvBN(cfg.in_channels, cfg.stem_width, cfg.stem_kernel, cfg.stem_stride)]
        c = cfg.stem_width
        segments, start = [], 0
        block = BLOCKS[cfg.block]
        for i, stage in enumerate(cfg.stages):
            for b in range(stage.blocks):
                layers.append(block(c, stage.width, stage.stride if b == 0 else 1))
                c = stage.width
            if i in cfg.exits:
                k = cfg.exits.index(i)
                head = ExitHead(c, cfg.num_classes, cfg.head_hidden[k])
                segments.append(Segment(nn.Sequential(*layers[start:]), head, last=(i == cfg.exits[-1])))
                start = len(layers)
        self.segments = nn.ModuleList(segments)

    @property
    def num_exits(self) -> int:
        return len(self.segments)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Logits of every exit (training and evaluation compute all of them)."""
        return exit_logits(self.segments, x)


def build_classifier(cfg: ResNetConfig, seed: int) -> EarlyExitResNet:
    """Build with a fixed weight-initialization seed."""
    torch.manual_seed(seed)
    return EarlyExitResNet(cfg)
