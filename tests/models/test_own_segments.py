"""The user segment API: contract checks with clear errors, training, trained weights, and the way on to export."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from tinyexit.errors import UserError
from tinyexit.models.own_segments import check_segments, train_own_segments

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "own_segments.py"


def _example():
    spec = importlib.util.spec_from_file_location("own_segments_example", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_example_trains_and_exports(tmp_path):
    from tinyexit.bundle import load_bundle
    from tinyexit.export.config import ExportConfig
    from tinyexit.export.exporter import export_run
    from tinyexit.models.train_classifier import load_checkpoint, predict_logits

    run = tmp_path / "run"
    _example().main([str(run), "--epochs", "1"])
    sec = json.loads((run / "config.json").read_text())["classifier"]
    assert sec["arch_name"] == "own-segments" and sec["arch"]["kind"] == "own_segments" and len(sec["exit_macs"]) == 2
    # conv 1->16 and 16->16 at 8x8, head 16x10; conv 16->32 s2, dw 3x3 x32, 1x1 32->48 at 4x4, head 48x10
    assert sec["exit_macs"] == [64 * 16 * 9 + 64 * 16 * 16 * 9 + 160,
                                64 * 16 * 9 + 64 * 16 * 16 * 9 + 160 + 16 * 32 * 16 * 9 + 16 * 32 * 9 + 16 * 32 * 48 + 480]
    model = load_checkpoint(run / "checkpoints" / "early_exit.pt")  # rebuilt from the JSON spec
    saved = np.load(run / "predictions" / "early_exit.npz")
    from tinyexit.models.data import load_digits

    np.testing.assert_array_equal(predict_logits(model, load_digits().val.x), saved["val_logits"])
    export_run(run, ExportConfig(formats=("tflite",), calibration_samples=50), progress=lambda msg: None)
    bundle = load_bundle(run / "export" / "classifier")
    assert bundle.n_segments == 2 and [s.signature for s in bundle.segments] == ["exit0", "exit1"]
    ops = [op["type"] for op in bundle.manifest["segments"][1]["ops"]]
    assert ops.count("DEPTHWISE_CONV_2D") == 1 and ops.count("CONV_2D") == 2


def test_trained_weights_are_kept(tmp_path):
    stages, heads = _example().my_segments()
    torch.manual_seed(5)
    for m in [*stages, *heads]:
        for p in m.parameters():
            p.data.normal_(0, 0.1)
    before = {k: v.clone() for k, v in stages[1].state_dict().items()}
    run = train_own_segments(stages, heads, tmp_path / "r", trained=True)
    saved = torch.load(run / "checkpoints" / "early_exit.pt", weights_only=True)
    assert saved["arch"] == "early_exit_segments" and saved["history"][0]["epoch"] == -1
    for k, v in before.items():
        assert torch.equal(saved["state_dict"][f"segments.1.body.{k}"], v)


def _conv(c_in, c_out, **kw):
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, **kw), nn.ReLU())


def _head(c, k=10):
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, k))


class _Custom(nn.Module):
    def forward(self, x):
        return x * 2


@pytest.mark.parametrize("stages,heads,msg", [
    ([_conv(1, 4)], [], "1 stages and 0 heads"),
    ([_conv(1, 4)], [_head(5)], "own segments: head 0 fails on input (N, 4, 8, 8)"),
    ([_conv(1, 4), _conv(5, 4)], [_head(4), _head(4)], "own segments: stage 1 fails on input (N, 4, 8, 8)"),
    ([_conv(1, 4)], [_head(4, 7)], "head 0 returns shape (2, 7) for a batch of 2; expected (N, 10)"),
    ([nn.Sequential(_conv(1, 4), nn.Flatten())], [nn.Linear(256, 10)], "stage 0 returns shape (2, 256)"),
    ([nn.Sequential(_conv(1, 4), _Custom())], [_head(4)], "stage 0.1: module type _Custom is not exportable"),
    ([_conv(1, 4, dilation=2)], [_head(4)], "stage 0.0: Conv2d kernel (3, 3) stride (1, 1) dilation (2, 2)"),
    ([nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.MaxPool2d(2))], [_head(4)], "module type MaxPool2d is not "),
    (["conv"], [_head(4)], "stage 0 is a str, not a torch.nn.Module"),
])
def test_contract_errors_are_one_clear_line(stages, heads, msg, tmp_path):
    with pytest.raises(UserError) as e:
        check_segments(stages, heads, (1, 8, 8), 10)
    assert msg in str(e.value) and "\n" not in str(e.value)


def test_nothing_written_when_the_contract_fails(tmp_path):
    with pytest.raises(UserError):
        train_own_segments([_conv(1, 4)], [_head(5)], tmp_path / "r")
    assert not (tmp_path / "r").exists()
