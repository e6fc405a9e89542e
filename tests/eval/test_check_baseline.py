"""The committed baseline of the default demo models (eval/baselines/demo.json).

The MAC counts in it must be those of the default architectures: changing the
default model without `tinyexit check runs/demo --baseline eval/baselines/demo.json
--update` fails here.  With `--tinyexit-run RUN` (a `tinyexit demo` run that was
benchmarked and reported) the run is checked against the baseline, which is how
CI gates a demo run.
"""
from pathlib import Path

import pytest

from tinyexit.eval.check import KINDS, load_baseline

BASELINE = Path(__file__).resolve().parents[2] / "eval" / "baselines" / "demo.json"


def test_committed_baseline_is_well_formed_and_covers_every_kind():
    metrics = load_baseline(BASELINE)
    assert {m["kind"] for m in metrics.values()} == set(KINDS)
    for k in range(3):
        assert f"classifier.accuracy.per_exit[{k}]" in metrics
        assert metrics[f"bench.qemu.per_exit[{k}].latency_median"]["abs_tol"] == 40.0 * (k + 1)
    assert 0.95 < metrics["classifier.accuracy.early_exit"]["value"] <= 1.0


def test_baseline_macs_are_the_default_architectures():
    from helpers.torch_macs import count_macs, cumulative_exit_macs, segment_macs
    from tinyexit.models.classifier import ResNetConfig, build_classifier

    metrics = load_baseline(BASELINE)
    arch = ResNetConfig(in_channels=1)
    cum = cumulative_exit_macs(segment_macs(count_macs(build_classifier(arch, 0), (1, 8, 8))))
    base = cumulative_exit_macs(segment_macs(count_macs(build_classifier(arch.single_exit(), 0), (1, 8, 8))))
    msg = "default architecture changed: refresh eval/baselines/demo.json with 'tinyexit check RUN --update'"
    assert [metrics[f"classifier.macs.per_exit_cumulative[{k}]"]["value"] for k in range(3)] == cum, msg
    assert [metrics[f"bench.qemu.per_exit[{k}].macs"]["value"] for k in range(3)] == cum, msg
    assert metrics["classifier.macs.baseline"]["value"] == base[-1], msg


def test_demo_run_against_the_committed_baseline(request, tinyexit_check):
    if not request.config.getoption("--tinyexit-run"):
        pytest.skip("pass --tinyexit-run RUN (a benchmarked, reported demo run) to gate it on the baseline")
    result = tinyexit_check(baseline=str(BASELINE))
    assert result.ok
