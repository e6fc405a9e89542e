import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from helpers.torch_macs import count_macs, cumulative_exit_macs, segment_macs
from tinyexit.models.classifier import ResNetConfig, StageSpec, build_classifier


def _flop_counter_macs(model, shape):
    x, out = torch.zeros((1, *shape)), []
    model.eval()
    for seg in model.segments:
        with FlopCounterMode(display=False) as fc:
            y = seg(x)
        out.append(fc.get_total_flops() // 2)
        x = y[1] if isinstance(y, tuple) else x
    return out


@pytest.mark.parametrize("cfg,shape", [
    (ResNetConfig(), (1, 8, 8)),
    (ResNetConfig().single_exit(), (1, 8, 8)),
    (ResNetConfig().scaled(0.5), (1, 8, 8)),
    (ResNetConfig(in_channels=3, stem_width=6, stages=(StageSpec(6, 2, 1), StageSpec(12, 1, 2)), exits=(0, 1),
                  head_hidden=(0, 16)), (3, 12, 12)),
])
def test_macs_equal_flop_counter(cfg, shape):
    model = build_classifier(cfg, 0)
    assert segment_macs(count_macs(model, shape)) == _flop_counter_macs(model, shape)


def test_default_model_counts_by_hand():
    seg = segment_macs(count_macs(build_classifier(ResNetConfig(), 0), (1, 8, 8)))
    stem = 64 * 12 * 9
    block0 = 2 * 64 * 12 * 12 * 9
    head0 = 64 * 32 * 12 + 32 * 10
    assert seg[0] == stem + block0 + head0
    block1 = 16 * 32 * 12 * 9 + 16 * 32 * 32 * 9 + 16 * 32 * 12
    assert seg[1] == block1 + 32 * 10
    # An input leaving at exit 2 paid for heads 0 and 1 on the way.
    assert cumulative_exit_macs(seg) == [seg[0], seg[0] + seg[1], sum(seg)]
    assert seg[0] / sum(seg) < 0.32  # the first exit is cheap: about 31 % of the full network
