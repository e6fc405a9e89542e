import numpy as np
import torch

from tinyexit.models.classifier import ResNetConfig, StageSpec, build_classifier
from tinyexit.models.data import load_digits
from tinyexit.models.train_classifier import TrainConfig, predict_logits, train_model

TINY = ResNetConfig(stem_width=4, stages=(StageSpec(4, 1, 1), StageSpec(8, 1, 2)), exits=(0, 1), head_hidden=(8, 0))


def _train(seed):
    torch.set_num_threads(1)
    s = load_digits()
    model = build_classifier(TINY, seed)
    cfg = TrainConfig(epochs=4, seed=seed, rotate_deg=10, scale=0.1, ema=0.9)
    hist = train_model(model, s.train, s.val, cfg, desc="repro")["history"]
    return model, hist, predict_logits(model, s.val.x[:50])


def test_training_is_reproducible_with_fixed_seed():
    m1, h1, l1 = _train(3)
    m2, h2, l2 = _train(3)
    assert h1 == h2
    for (k, a), (_, b) in zip(m1.state_dict().items(), m2.state_dict().items()):
        assert torch.equal(a, b), k
    np.testing.assert_array_equal(l1, l2)
    _, h3, l3 = _train(4)
    assert not np.array_equal(l1, l3)
    # The joint loss goes down and training accuracy rises above chance (10 %).
    assert h1[-1]["loss"] < h1[0]["loss"] and h1[-1]["train_acc"] > 0.2
