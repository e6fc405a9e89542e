"""The export IR is generic over the block vocabulary: folding, depthwise, LOGISTIC, refusal of unknown blocks."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from torch import nn

from tinyexit.errors import UserError
from tinyexit.export import tflite_graph as tg
from tinyexit.export.lower import Conv, lower_segment
from tinyexit.models.blocks import BasicBlock, ConvBN, DepthwiseSeparable


class _Seg(nn.Module):
    def __init__(self, body, head, last):
        super().__init__()
        self.body, self.head, self.last = body, head, last

    def forward(self, x):
        f = self.body(x)
        return self.head(f) if self.last else (self.head(f), f)


def _toy(seed=3) -> _Seg:
    torch.manual_seed(seed)
    body = nn.Sequential(ConvBN(1, 4, 3, 2), nn.Conv2d(4, 4, 3, padding=1, groups=4, bias=False),
                         nn.BatchNorm2d(4), nn.ReLU(), BasicBlock(4, 6, 1))
    head = nn.Sequential(nn.Conv2d(6, 1, 1), nn.Sigmoid())
    seg = _Seg(body, head, True)
    with torch.no_grad():  # non-trivial BatchNorm statistics, so folding is exercised
        for m in seg.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return seg.eval()


def test_lowering_folds_batchnorm_and_fuses_activations():
    ir = lower_segment(_toy(), "toy")
    kinds = [type(op).__name__ for op in ir.body]
    assert kinds == ["Conv", "Conv", "Residual"]
    dw = ir.body[1]
    assert isinstance(dw, Conv) and dw.depthwise and dw.act == "relu" and dw.w.shape == (3, 3, 4, 1)
    assert ir.head[0].act == "sigmoid"


def test_tf_mirror_matches_torch_and_converts_to_depthwise_and_logistic():
    from tinyexit.export import tflite_convert

    seg = _toy()
    ir = lower_segment(seg, "toy")
    x = np.random.default_rng(0).random((16, 1, 8, 8), dtype=np.float32)
    errs = tflite_convert.float_check([ir], [seg], x)
    assert errs[0] < 1e-5
    xh = np.ascontiguousarray(np.transpose(x, (0, 2, 3, 1)))
    bundle = tflite_convert.convert([ir], [xh], progress=lambda m: None)
    (sg,) = tg.read_model(bundle.segments[0])
    ops = Counter(op.type for op in sg.ops)
    assert ops == {"PAD": 1, "CONV_2D": 5, "DEPTHWISE_CONV_2D": 1, "ADD": 1, "LOGISTIC": 1}
    macs = {op.type: op.macs for op in sg.ops if op.type == "DEPTHWISE_CONV_2D"}
    assert macs["DEPTHWISE_CONV_2D"] == 4 * 4 * 4 * 9            # output elements x k_h x k_w
    from helpers.torch_macs import count_macs

    holder = nn.Module()
    holder.segments = nn.ModuleList([seg])
    assert sg.macs == sum(lm.macs for lm in count_macs(holder, (1, 8, 8))[0])


def test_unknown_block_is_refused_with_the_fix():
    class Mystery(nn.Module):
        def forward(self, x):
            return x * 2

    seg = _Seg(nn.Sequential(ConvBN(1, 2), Mystery()), nn.Identity(), True)
    with pytest.raises(UserError, match=r"toy\.body\.1: module type Mystery has no export rule"):
        lower_segment(seg, "toy")


def test_segment_without_contract_attributes_is_refused():
    with pytest.raises(UserError, match="has no 'body'"):
        lower_segment(nn.Conv2d(1, 1, 3), "seg0")


def _pool_head_seg() -> _Seg:
    torch.manual_seed(1)
    body = nn.Sequential(ConvBN(1, 4, 3, 1), DepthwiseSeparable(4, 6))
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3))
    return _Seg(body, head, True).eval()


def test_pool_flatten_head_and_depthwise_separable_lower():
    ir = lower_segment(_pool_head_seg(), "seg")
    assert [type(op).__name__ for op in ir.body] == ["Conv", "Conv", "Conv"]
    assert ir.body[1].depthwise and ir.body[1].act == "relu" and not ir.body[2].depthwise
    assert [type(op).__name__ for op in ir.head] == ["Mean", "Dense"]
    bad = _Seg(nn.Sequential(ConvBN(1, 2)), nn.Sequential(nn.Flatten(), nn.Linear(2 * 64, 3)), True)
    with pytest.raises(UserError, match=r"toy\.head\.0: Flatten is exportable only right after AdaptiveAvgPool2d"):
        lower_segment(bad, "toy")


@pytest.mark.parametrize("hw,pool_ops", [(8, {"MEAN": 1}), (16, {"AVERAGE_POOL_2D": 1})])
def test_large_maps_pool_with_average_pool(hw, pool_ops):
    """Above MEAN_MAX_PIXELS the global pool is AVERAGE_POOL_2D (TFLite's int8 MEAN is a slow generic
    reduction on a large map); the 8x8 digits maps keep MEAN."""
    from tinyexit.export import tflite_convert
    from tinyexit.export.tf_mirror import MEAN_MAX_PIXELS

    assert MEAN_MAX_PIXELS == 64
    seg = _pool_head_seg()
    ir = lower_segment(seg, "seg")
    x = np.random.default_rng(0).random((8, 1, hw, hw), dtype=np.float32)
    assert tflite_convert.float_check([ir], [seg], x)[0] < 1e-5
    bundle = tflite_convert.convert([ir], [np.ascontiguousarray(x.transpose(0, 2, 3, 1))], progress=lambda m: None)
    (sg,) = tg.read_model(bundle.segments[0])
    ops = Counter(op.type for op in sg.ops)
    assert {k: v for k, v in ops.items() if k in ("MEAN", "AVERAGE_POOL_2D")} == pool_ops
    assert ops["DEPTHWISE_CONV_2D"] == 1 and ops["FULLY_CONNECTED"] == 1
