"""Test oracle: analytic MAC counts from a torch model's structure (per layer, per segment).

The product counts MACs once, on the exported graph (tinyexit.export.tflite_graph); this torch
counter only checks that count in tests.

conv:   H_out * W_out * C_out * K_h * K_w * C_in / groups
linear: in_features * out_features (per sample)
Counts are per layer and per segment; an exit's cumulative cost includes every
exit head evaluated on the way (an input leaving at exit 2 paid for heads 0 and 1).
BatchNorm, ReLU, pooling and adds are not MACs (BN folds into the conv on export).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LayerMacs:
    segment: int
    name: str
    kind: str          # "conv" or "linear"
    macs: int
    out_shape: tuple


def count_macs(model, input_shape: tuple[int, ...]) -> list[list[LayerMacs]]:
    """Per segment, the MACs of every conv and linear layer for one sample of `input_shape` (C, H, W)."""
    import torch
    from torch import nn

    rows: list[list[LayerMacs]] = []
    x = torch.zeros((1, *input_shape))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for k, seg in enumerate(model.segments):
                found: list[LayerMacs] = []
                hooks = [m.register_forward_hook(_recorder(k, name, found))
                         for name, m in seg.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
                out = seg(x)
                for h in hooks:
                    h.remove()
                rows.append(found)
                if isinstance(out, tuple):
                    x = out[1]
    finally:
        model.train(was_training)
    return rows


def _recorder(segment: int, name: str, sink: list):
    from torch import nn

    def hook(module, inputs, output):
        if isinstance(module, nn.Conv2d):
            _, c_out, h, w = output.shape
            kh, kw = module.kernel_size
            macs = h * w * c_out * kh * kw * module.in_channels // module.groups
            sink.append(LayerMacs(segment, name, "conv", int(macs), tuple(output.shape[1:])))
        else:
            sink.append(LayerMacs(segment, name, "linear", module.in_features * module.out_features,
                                  tuple(output.shape[1:])))
    return hook


def segment_macs(layers: list[list[LayerMacs]]) -> list[int]:
    return [sum(layer.macs for layer in seg) for seg in layers]


def cumulative_exit_macs(per_segment: list[int]) -> list[int]:
    """MACs paid by an input leaving at exit k: segments 0..k, heads included."""
    out, total = [], 0
    for m in per_segment:
        total += m
        out.append(total)
    return out


def mean_macs(exits, cumulative: list[int]) -> float:
    """Mean MACs per sample for per-sample exit indices."""
    import numpy as np

    return float(np.asarray(cumulative, dtype=np.float64)[np.asarray(exits)].mean())
