"""--arch presets, the TOML exits file, and training only what was asked for."""
from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch

from tinyexit.errors import UserError
from tinyexit.models.backbones import PRESETS, resolve_arch
from tinyexit.models.classifier import build_classifier
from tinyexit.models.macs import cumulative_exit_macs


@pytest.mark.parametrize("name,shape,classes,exits", [
    ("resnet-digits", (1, 8, 8), 10, 3), ("resnet8-ee", (3, 32, 32), 10, 3),
    ("dscnn-ee", (1, 49, 10), 12, 2), ("mobilenetv1-ee", (3, 32, 32), 10, 3)])
def test_presets_build_and_follow_the_segment_contract(name, shape, classes, exits):
    cfg, origin = resolve_arch(name, shape, classes)
    assert origin == {"name": name, "toml": None} and cfg.in_channels == shape[0] and cfg.num_classes == classes
    model = build_classifier(cfg, 0).eval()
    outs = model(torch.zeros(2, *shape))
    assert len(outs) == exits and all(tuple(o.shape) == (2, classes) for o in outs)


def test_resnet8_is_mlperf_tiny_resnet8_plus_heads():
    cfg, _ = resolve_arch("resnet8-ee", (3, 32, 32), 10)
    model = build_classifier(cfg.single_exit(), 0)
    # MLPerf Tiny IC ResNet-8: 78,666 weights+biases in Keras; here convs have no bias and BatchNorm has
    # 2 learned parameters per channel, so count conv and dense weights only.
    weights = sum(m.weight.numel() for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)))
    assert weights == 3 * 16 * 9 + 2 * 16 * 16 * 9 + 16 * 32 * 9 + 32 * 32 * 9 + 16 * 32 + 32 * 64 * 9 \
        + 64 * 64 * 9 + 32 * 64 + 64 * 10
    assert cumulative_exit_macs(model, (3, 32, 32)) == [12501632]


def test_toml_places_exits_and_is_validated(tmp_path):
    f = tmp_path / "a.toml"
    f.write_text('preset = "resnet8-ee"\n[exits]\nafter_stages = [1, 2]\nhead_hidden = [16, 0]\n')
    cfg, origin = resolve_arch(str(f), (3, 32, 32), 10)
    assert cfg.exits == (1, 2) and cfg.head_hidden == (16, 0) and cfg.stem_width == 16
    assert origin["toml"] == f.read_text()
    bad = {
        'preset = "resnet8-ee"\n[exits]\nafter_stages = [0, 1]\n': "must be increasing stage indices ending at the last",
        '[backbone]\nwidth = 3\n': "[backbone] has unknown key(s) ['width']",
        'colour = 1\n': "unknown key(s) ['colour']",
        '[backbone]\nstem_width = "wide"\n': "bad value (stem_width = 'wide')",
        '[backbone]\nstages = [{width = 8, stride = 3}]\n[exits]\nafter_stages = [0]\n': "stride 1 or 2",
        '[exits]\nhead_hidden = [1, 2]\n': "head_hidden (1, 2): needs one entry per exit (3)",
        'preset = "vgg"\n': "preset 'vgg' unknown",
        'x = = 1\n': "not valid TOML",
    }
    for text, msg in bad.items():
        f.write_text(text)
        with pytest.raises(UserError) as e:
            resolve_arch(str(f), (1, 8, 8), 10)
        assert str(e.value).startswith(f"{f}: ") and msg in str(e.value), (text, str(e.value))


def _tiny_cifar(root, n=30):
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(root / name, "wb") as f:
            pickle.dump({b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                         b"labels": rng.integers(0, 10, n).tolist()}, f)


def test_arch_trains_the_early_exit_net_alone_and_records_its_config(tmp_path, capsys):
    from tinyexit.cli import main

    _tiny_cifar(tmp_path / "c" / "cifar-10-batches-py")
    f = tmp_path / "exits.toml"
    f.write_text('preset = "resnet8-ee"\n[backbone]\nstem_width = 4\nstages = [{width = 4}, {width = 8, stride = 2}]\n'
                 '[exits]\nafter_stages = [0, 1]\nhead_hidden = [0, 0]\n')
    out = tmp_path / "run"
    assert main(["train", "early-exit", "--arch", str(f), "--dataset", "cifar10", "--data-dir", str(tmp_path / "c"),
                 "--out", str(out), "--epochs", "1"]) == 0
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["early_exit.pt"]
    assert sorted(p.name for p in (out / "predictions").iterdir()) == ["early_exit.npz"]
    sec = json.loads((out / "config.json").read_text())["classifier"]
    assert sec["study"] is False and sec["arch_name"] == str(f) and sec["arch_toml"] == f.read_text()
    assert sec["arch"]["exits"] == [0, 1] and sec["arch"]["in_channels"] == 3 and sec["splits"]["val"] == 15
    assert "validation split has 15 images" in capsys.readouterr().err
