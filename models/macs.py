"""MACs of a trained network, recorded at training time for the study networks that are never exported.

The exported early-exit model's MACs come from its graph (tinyexit.export.tflite_graph); the
baseline and the small networks are only ever compared in the report, so training records their
cost here, beside their predictions.  conv: H_out*W_out*C_out*K_h*K_w*C_in/groups; linear: in*out.
"""
from __future__ import annotations

SOURCE = "counted from the torch network at training time (conv and linear layers; BatchNorm folds into conv)"


def cumulative_exit_macs(model, input_shape: tuple[int, ...]) -> list[int]:
    """MACs paid by one input of `input_shape` (C, H, W) leaving at exit k (heads on the way included)."""
    import torch
    from torch import nn

    counts: list[int] = []
    x = torch.zeros((1, *input_shape))
    was_training = model.training
    model.eval()
    total = 0
    try:
        with torch.no_grad():
            for seg in model.segments:
                found: list[int] = []
                hooks = [m.register_forward_hook(_hook(found)) for m in seg.modules()
                         if isinstance(m, (nn.Conv2d, nn.Linear))]
                out = seg(x)
                for h in hooks:
                    h.remove()
                total += sum(found)
                counts.append(total)
                if isinstance(out, tuple):
                    x = out[1]
    finally:
        model.train(was_training)
    return counts


def _hook(sink: list):
    from torch import nn

    def hook(module, inputs, output):
        if isinstance(module, nn.Conv2d):
            _, c_out, h, w = output.shape
            kh, kw = module.kernel_size
            sink.append(int(h * w * c_out * kh * kw * module.in_channels // module.groups))
        else:
            sink.append(int(module.in_features * module.out_features))
    return hook
