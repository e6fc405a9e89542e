"""The denoiser network, its device constants, the exit schedule, sampling, training and checkpoints."""
import json

import numpy as np
import pytest
import torch
from torch import nn

from tinyexit.errors import UserError
from tinyexit.models import diffusion as d
from tinyexit.models.blocks import BasicBlock, ConvBN
from tinyexit.models.data import Split, Splits, load_dataset
from tinyexit.models.denoiser import (BinaryDenoiser, DenoiserConfig, PixelHead, build_denoiser,
                                      choose_exit_schedule, device_constants, sample)
from tinyexit.models.train_denoiser import (DenoiserRunConfig, _exit_macs, load_denoiser, marginal_logits,
                                            train_denoiser)


def _model(seed=0, **kw):
    marg = np.linspace(-2, 1, 64)
    return build_denoiser(DenoiserConfig(**kw), seed, marg)


def test_config_round_trip_and_validation():
    cfg = DenoiserConfig()
    assert cfg.T == 50 and len(cfg.delta) == 50 and cfg.schedule == "power"
    assert np.prod(1 - 2 * np.array(cfg.delta)) == pytest.approx(0.01)
    assert DenoiserConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert DenoiserConfig(schedule="constant").delta == d.Schedule.constant(50).delta
    with pytest.raises(UserError, match="timestep_encoding 'x'"):
        DenoiserConfig(timestep_encoding="x")
    with pytest.raises(UserError, match="3 flip probabilities for T=50"):
        DenoiserConfig(delta=(0.1, 0.1, 0.1))
    with pytest.raises(UserError, match="schedule 'linear'"):
        DenoiserConfig(schedule="linear")


def test_segment_contract_and_block_vocabulary():
    model = _model().eval()
    x = model.encode(torch.ones(3, 1, 8, 8), torch.tensor([1, 20, 50]))
    assert x.shape == (3, 2, 8, 8)
    assert torch.allclose(x[:, 1, 0, 0], torch.tensor([0.02, 0.4, 1.0]))
    with torch.no_grad():
        outs, h = [], x
        for k, seg in enumerate(model.segments):
            out = seg(h)
            if k < len(model.segments) - 1:
                logits, h = out
                assert h.shape[-2:] == (8, 8)
            else:
                logits = out
            assert logits.shape == (3, 1, 8, 8)
            outs.append(logits)
        for a, b in zip(outs, model(x)):
            assert torch.equal(a, b)
    allowed = (BinaryDenoiser, nn.ModuleList, nn.Sequential, ConvBN, BasicBlock, PixelHead, nn.Conv2d, nn.BatchNorm2d,
               type(model.segments[0]))
    assert all(isinstance(m, allowed) for m in model.modules())


def test_exit_macs_are_exact():
    from helpers.torch_macs import count_macs, cumulative_exit_macs, segment_macs

    model = _model()
    # stem 2->8: 64*9*2*8; block 8->8: 2 * 64*9*8*8; head: 64*8*16 + 64*16*1
    exit0 = 9216 + 73728 + 8192 + 1024
    # block 8->16: 64*9*8*16 + 64*9*16*16 + projection 64*8*16; head 64*16*16 + 64*16
    exit1 = exit0 + 73728 + 147456 + 8192 + 16384 + 1024
    block16 = 2 * 147456 + 16384 + 1024
    assert _exit_macs(model) == [exit0, exit1, exit1 + block16, exit1 + 2 * block16] == [92160, 338944, 651264, 963584]
    assert cumulative_exit_macs(segment_macs(count_macs(model, (2, 8, 8)))) == _exit_macs(model)


def test_x0_logits_add_the_zero_compute_prior():
    model = _model().eval()
    y = torch.where(torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0)) < 0.5, 1.0, -1.0)
    t = torch.tensor([3, 40])
    with torch.no_grad():
        raw = model(model.encode(y, t))
        total = model.x0_logits(y, t)
    prior = d.prior_x0_logits(model.marginal, y, t, model.cfg.process)
    for r, z in zip(raw, total):
        assert torch.allclose(z, r + prior)


def test_device_constants_reproduce_the_mixing():
    """The manifest's formula, evaluated in NumPy from the recorded constants, equals the training maths."""
    cfg = DenoiserConfig()
    marg = np.linspace(-2, 1, 64)
    c = device_constants(cfg, marg, [3] * 25 + [-1] * 25)
    assert c["T"] == 50 and len(c["mixing"]["A_y_pos"]) == 50 and c["exit_schedule"]["per_step"][-1] == -1
    assert c["timestep_encoding"]["values"][9] == pytest.approx(0.2)
    table = torch.tensor(d.posterior_table(cfg.process), dtype=torch.float64)
    rng = np.random.default_rng(0)
    for t in (1, 2, 17, 50):
        r = rng.normal(size=64) * 2
        y = np.where(rng.random(64) < 0.5, 1.0, -1.0)
        lg = c["logits"]
        z = r + np.array(lg["marginal_logits"]) + y * lg["observation_log_odds"][t - 1]
        p = 1 / (1 + np.exp(-z))
        m = c["mixing"]
        A = np.where(y > 0, m["A_y_pos"][t - 1], m["A_y_neg"][t - 1])
        B = np.where(y > 0, m["B_y_pos"][t - 1], m["B_y_neg"][t - 1])
        device_p = p * A + (1 - p) * B
        yt = torch.tensor(y).reshape(1, 64)
        zt = torch.tensor(r).reshape(1, 64) + d.prior_x0_logits(torch.tensor(marg).reshape(1, 64), yt,
                                                                torch.tensor([t]), cfg.process)
        log_p, _ = d.mixed_log_probs(zt, yt, torch.tensor([t]), table)
        np.testing.assert_allclose(device_p, log_p.exp().numpy().ravel(), rtol=1e-10, atol=1e-12)


def test_choose_exit_schedule_hand_made():
    # rows: zero-compute, exit0, exit1; 4 steps; full depth = 0.50 + 0.20 + 0.10 + 0.02 = 0.82
    kl = np.array([[0.70, 0.40, 0.15, 0.02],
                   [0.55, 0.25, 0.11, 0.02],
                   [0.50, 0.20, 0.10, 0.02]])
    macs = [10, 100]
    assert choose_exit_schedule(kl, macs, 0.0) == [1, 1, 1, -1]
    # 5 % of 0.82 = 0.041 of slack: only exit 0 at step 3 (+0.01) fits; every other downgrade costs >= 0.04
    assert choose_exit_schedule(kl, macs, 0.05) == [1, 1, 0, -1]
    # 30 % = 0.246: all zero-compute costs +0.45, one exit-0 step still >= +0.30; two exit-0 steps +0.15 fit
    s = choose_exit_schedule(kl, macs, 0.3)
    extra = sum(kl[k + 1, t] - kl[2, t] for t, k in enumerate(s))
    assert extra <= 0.3 * 0.82 + 1e-12 and s == [0, 0, -1, -1]


def test_sampling_is_deterministic_under_a_seed():
    model = _model(T=10, widths=(4, 4), stem_width=4, head_hidden=4)
    a, kept = sample(model, 5, seed=3, keep=(10, 5, 0))
    b, _ = sample(model, 5, seed=3)
    c, _ = sample(model, 5, seed=4)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(kept[0], a) and set(kept) == {10, 5, 0}
    s, _ = sample(model, 5, seed=3, exit_schedule=[-1] * 5 + [0] * 5)
    assert s.shape == (5, 1, 8, 8) and set(s.unique().tolist()) <= {-1.0, 1.0}


def _tiny_splits() -> Splits:
    full = load_dataset("digits")
    return Splits("digits", Split(full.train.x[:64], full.train.y[:64]), Split(full.val.x[:24], full.val.y[:24]),
                  Split(full.test.x[:24], full.test.y[:24]), 10)


TINY = dict(epochs=2, batch_size=32, eval_draws=1, num_samples=6,
            arch=DenoiserConfig(T=8, stem_width=4, widths=(4, 6), head_hidden=4))


def test_train_denoiser_tiny_budget(tmp_path):
    preds = train_denoiser(_tiny_splits(), DenoiserRunConfig(**TINY), tmp_path)
    ckpt = torch.load(tmp_path / "checkpoints" / "denoiser.pt", weights_only=True)
    assert ckpt["arch"] == "binary_denoiser" and set(ckpt) >= {"config", "train_config", "state_dict", "device"}
    assert ckpt["config"]["T"] == 8 and ckpt["device"]["T"] == 8
    saved = json.loads((tmp_path / "predictions" / "denoiser.json").read_text())
    assert saved["T"] == 8 and len(saved["exit_schedule"]) == 8
    assert np.array(saved["kl_bits_per_dim"]["test"]).shape == (3, 8)
    assert len(saved["samples"]["full"]) == 6 and len(saved["samples"]["full"][0]) == 64
    assert preds["exit_macs"] == saved["exit_macs"]
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["denoiser"]["epochs"] == 2 and config["denoiser"]["arch"]["widths"] == [4, 6]
    model, loaded = load_denoiser(tmp_path / "checkpoints" / "denoiser.pt")
    assert loaded["exit_schedule"] == saved["exit_schedule"]
    assert torch.allclose(model.marginal.ravel(), torch.tensor(marginal_logits(d.binarize(_tiny_splits().train.x)),
                                                               dtype=torch.float32).ravel())
    # same seed, same weights: training is deterministic
    again = tmp_path / "again"
    train_denoiser(_tiny_splits(), DenoiserRunConfig(**TINY), again)
    other = torch.load(again / "checkpoints" / "denoiser.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(v, other[k]) for k, v in ckpt["state_dict"].items())


def test_load_denoiser_errors(tmp_path):
    with pytest.raises(UserError, match="denoiser checkpoint missing; run 'tinyexit train denoiser"):
        load_denoiser(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="not a readable checkpoint"):
        load_denoiser(bad)
    foreign = tmp_path / "foreign.pt"
    torch.save({"arch": "early_exit_resnet", "config": {}, "state_dict": {}}, foreign)
    with pytest.raises(UserError, match="architecture 'early_exit_resnet' is not a denoiser"):
        load_denoiser(foreign)
    broken = tmp_path / "broken.pt"
    torch.save({"arch": "binary_denoiser", "config": DenoiserConfig().to_dict(), "state_dict": {}}, broken)
    with pytest.raises(UserError, match="config or weights do not match a binary denoiser"):
        load_denoiser(broken)


def test_run_config_validation_and_rgb_rejected(tmp_path):
    with pytest.raises(UserError, match="epochs"):
        DenoiserRunConfig(epochs=0)
    cfg = DenoiserRunConfig()
    assert DenoiserRunConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    rgb = Split(np.zeros((4, 3, 8, 8), np.float32), np.zeros(4, np.int64))
    with pytest.raises(UserError, match="needs 1-channel images, got 3"):
        train_denoiser(Splits("npz:x", rgb, rgb, rgb, 10), DenoiserRunConfig(**TINY), tmp_path)
