import json

import pytest

from tinyexit.cli import main

KEYS = {
    "macs": {"full", "per_exit_cumulative", "baseline", "small"},
    "accuracy": {"baseline", "small", "per_exit", "early_exit"},
    "early_exit": {"policy", "threshold", "exit_fractions", "mac_ratio", "confidence_exiting_early",
                   "confidence_passing_through"},
}


@pytest.mark.slow
def test_train_then_report_has_every_key(tmp_path):
    run = tmp_path / "run"
    assert main(["train", "early-exit", "--epochs", "1", "--out", str(run)]) == 0
    assert main(["report", str(run)]) == 0
    rep = json.loads((run / "report" / "report.json").read_text())
    c = rep["classifier"]
    assert c["splits"] == {"train": 1000, "val": 350, "test": 447}
    for key, sub in KEYS.items():
        assert sub <= set(c[key]), key
    for key in ("sweep", "spike_threshold", "min_threshold_beating_small", "seeds"):
        assert key in c
    assert c["macs"]["per_exit_cumulative"][-1] == c["macs"]["full"]
    assert abs(sum(c["early_exit"]["exit_fractions"]) - 1) < 1e-9
    assert len(c["seeds"]) == 3
    assert (run / "report" / "classifier_accuracy_vs_macs.png").stat().st_size > 10_000
    assert "gaussian_exit_theory" in rep
    md = (run / "report" / "report.md").read_text()
    assert "Early-exit classifier" in md and "cascading-Gaussian" in md
    # A threshold given by the user replaces the val choice and is recorded in config.json.
    assert main(["report", str(run), "--threshold", "0.99"]) == 0
    rep = json.loads((run / "report" / "report.json").read_text())
    assert rep["classifier"]["early_exit"]["threshold"] == 0.99
    assert json.loads((run / "config.json").read_text())["report"] == {"threshold": 0.99}
