"""The report's denoiser section on a run trained for a moment."""
import json

import numpy as np
import pytest

from tinyexit.eval import section_denoiser
from tinyexit.eval.report import write_report
from tinyexit.models.data import Split, Splits, load_dataset
from tinyexit.models.denoiser import DenoiserConfig
from tinyexit.models.train_denoiser import DenoiserRunConfig, train_denoiser

KEYS = {"T", "delta", "macs_per_step", "bits_per_dim", "bernoulli_baseline_bits_per_dim",
        "classifier_score_samples", "classifier_score_real"}
ADAPTIVE = {"macs_per_sample_full", "macs_per_sample_schedule", "bits_per_dim_schedule"}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    full = load_dataset("digits")
    splits = Splits("digits", Split(full.train.x[:96], full.train.y[:96]), full.val,
                    Split(full.test.x[:64], full.test.y[:64]), 10)
    out = tmp_path_factory.mktemp("run")
    cfg = DenoiserRunConfig(epochs=2, eval_draws=1, num_samples=20,
                            arch=DenoiserConfig(T=10, stem_width=4, widths=(4, 6), head_hidden=4))
    train_denoiser(splits, cfg, out)
    return out


def test_report_has_every_issue_key(run):
    write_report(run, progress=lambda m: None)
    rep = json.loads((run / "report" / "report.json").read_text())["denoiser"]
    assert KEYS <= set(rep) and ADAPTIVE <= set(rep["adaptive"])
    assert rep["T"] == 10 and isinstance(rep["delta"], list) and len(rep["delta"]) == 10
    assert rep["residual_at_T"] == pytest.approx(0.01) and rep["p_replaced_by_T"] == pytest.approx(0.99)
    assert rep["macs_per_step"] == rep["exit_macs"][-1]
    assert rep["adaptive"]["macs_per_sample_full"] == 10 * rep["macs_per_step"]
    assert rep["fair_coin_bits_per_dim"] == 1.0
    # the Bernoulli baseline on the train split the run trained on (96 images), exactly, read from the
    # binarized splits training saved (the report never loads the data set)
    full = load_dataset("digits")
    tr, te = full.train.x[:96] >= 0.5, full.test.x[:64] >= 0.5
    p = (tr.sum(0) + 1) / (len(tr) + 2)
    want = float(-np.where(te, np.log2(p), np.log2(1 - p)).mean())
    assert rep["bernoulli_baseline_bits_per_dim"] == pytest.approx(want)
    # the scorer is fitted on the run's 96 training images too: weak, but well above chance on real digits
    assert 0 <= rep["classifier_score_samples"] <= 1 and 0 < rep["classifier_score_real"] <= 1
    assert rep["classifier"]["test_accuracy"] > 0.5
    assert sum(rep["classifier"]["samples"]["class_histogram"]) == 20
    for name in ("denoiser_samples.png", "denoiser_diffusion_strip.png", "denoiser_bits_per_step.png"):
        assert (run / "report" / name).stat().st_size > 5_000
    md = (run / "report" / "report.md").read_text()
    assert "Binary diffusion denoiser" in md and "MACs per generated sample" in md


def test_constant_schedule_reports_a_scalar_delta():
    data = section_denoiser.delta_fields([0.2] * 10)
    assert data["delta"] == 0.2 and data["residual_at_T"] == pytest.approx(0.6 ** 10)
    assert section_denoiser.delta_fields([0.1, 0.2])["delta"] == [0.1, 0.2]


def test_no_denoiser_no_section(tmp_path):
    assert section_denoiser.build(tmp_path, tmp_path) is None
