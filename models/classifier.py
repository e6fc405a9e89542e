"""Early-exit ResNet classifiers, split into segments.

The segment contract: segment 0 takes the model input; segment k > 0 takes the
features segment k-1 returned.  Every segment but the last returns
(logits_k, features_k); the last returns its logits.  A plain network is the
same class with a single exit (one segment).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from tinyexit.errors import UserError
from tinyexit.models.blocks import BasicBlock, ConvBN, ExitHead, Segment


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
    """Architecture of an early-exit ResNet.  `exits` lists the stages followed by a head."""

    in_channels: int = 1
    num_classes: int = 10
    stem_width: int = 12
    stages: tuple[StageSpec, ...] = (StageSpec(12, 1, 1), StageSpec(32, 1, 2), StageSpec(64, 1, 2))
    exits: tuple[int, ...] = (0, 1, 2)
    head_hidden: tuple[int, ...] = (32, 0, 0)  # per exit; 0 = plain pool -> linear

    def __post_init__(self):
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

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ResNetConfig":
        return cls(**{**d, "stages": tuple(StageSpec(**s) for s in d["stages"])})

    def single_exit(self) -> "ResNetConfig":
        """The same backbone with only the final head: the plain baseline."""
        return ResNetConfig(self.in_channels, self.num_classes, self.stem_width, self.stages,
                            (len(self.stages) - 1,), (self.head_hidden[-1],))

    def scaled(self, factor: float, depth: int | None = None) -> "ResNetConfig":
        """A narrower (and optionally shallower) single-exit network: the small baseline."""
        stages = self.stages[:depth] if depth else self.stages
        stages = tuple(StageSpec(max(2, round(s.width * factor)), s.blocks, s.stride) for s in stages)
        return ResNetConfig(self.in_channels, self.num_classes, max(2, round(self.stem_width * factor)), stages,
                            (len(stages) - 1,), (round(self.head_hidden[-1] * factor),))


class EarlyExitResNet(nn.Module):
    def __init__(self, cfg: ResNetConfig):
        super().__init__()
        self.cfg = cfg
        layers: list[nn.Module] = [ConvBN(cfg.in_channels, cfg.stem_width, 3, 1, relu=True)]
        c = cfg.stem_width
        segments, start = [], 0
        for i, stage in enumerate(cfg.stages):
            for b in range(stage.blocks):
                layers.append(BasicBlock(c, stage.width, stage.stride if b == 0 else 1))
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
        outs = []
        for seg in self.segments:
            if seg.last:
                outs.append(seg(x))
            else:
                logits, x = seg(x)
                outs.append(logits)
        return outs


def build_classifier(cfg: ResNetConfig, seed: int) -> EarlyExitResNet:
    """Build with a fixed weight-initialization seed."""
    torch.manual_seed(seed)
    return EarlyExitResNet(cfg)
