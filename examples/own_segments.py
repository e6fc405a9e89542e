"""Your own PyTorch segments through tinyexit: two stages and two heads on the 8x8 digits.

    python examples/own_segments.py RUN_DIR [--epochs 4]
    tinyexit export RUN_DIR && tinyexit bench RUN_DIR --target agent && tinyexit report RUN_DIR

Stages and heads are ordinary nn.Modules built from layers the exporter can lower (Conv2d,
BatchNorm2d, ReLU, Linear, AdaptiveAvgPool2d(1) + Flatten, Sequential, tinyexit.models.blocks);
see docs/training.md.  Pass trained=True to keep weights you trained yourself.
"""
from __future__ import annotations

import argparse

from torch import nn

from tinyexit.models.own_segments import train_own_segments


def my_segments(num_classes: int = 10):
    stage0 = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
                           nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
    stage1 = nn.Sequential(nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
                           nn.Conv2d(32, 32, 3, padding=1, groups=32, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
                           nn.Conv2d(32, 48, 1, bias=False), nn.BatchNorm2d(48), nn.ReLU())
    head0 = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, num_classes))
    head1 = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(48, num_classes))
    return [stage0, stage1], [head0, head1]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="train your own early-exit segments into a tinyexit run directory")
    ap.add_argument("out")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--force", action="store_true")
    a = ap.parse_args(argv)
    stages, heads = my_segments()
    run = train_own_segments(stages, heads, a.out, dataset=a.dataset, epochs=a.epochs, force=a.force)
    print(f"wrote {run}; next: tinyexit export {run}")


if __name__ == "__main__":
    main()
