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
def test_train_then_report_has_every_key(tmp_path, monkeypatch):
    import sys

    run = tmp_path / "run"
    assert main(["train", "early-exit", "--epochs", "1", "--out", str(run)]) == 0
    # The report is torch-free and reads files only: block torch, models and export while it runs.
    # (the CLI's own registration modules, models.cli and export.cli, stay: they import nothing heavy)
    for name in [m for m in sys.modules if m.split(".")[0] in ("torch", "tensorflow", "sklearn")
                 or m.startswith(("tinyexit.models.", "tinyexit.export."))] + ["torch", "tensorflow"]:
        if name not in ("tinyexit.models.cli", "tinyexit.export.cli"):
            monkeypatch.setitem(sys.modules, name, None)
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
    # The threshold is the one training chose on val (config.json; nothing exported yet), with provenance.
    chosen = json.loads((run / "config.json").read_text())["classifier"]["exit_policy"]
    ee = c["early_exit"]
    assert ee["threshold"] == ee["run_threshold"] == chosen["params"][0] and ee["chosen_on"] == "val"
    assert ee["what_if"] is False and ee["threshold_provenance"]["source"] == "chosen at training"
    assert c["macs"]["source"]["baseline"].startswith("counted from the torch network at training time")
    # A what-if threshold given to the report is used for the figures, labelled, and recorded in config.json.
    assert main(["report", str(run), "--threshold", "0.99"]) == 0
    rep = json.loads((run / "report" / "report.json").read_text())
    assert rep["classifier"]["early_exit"]["threshold"] == 0.99 and rep["classifier"]["early_exit"]["what_if"] is True
    assert rep["classifier"]["early_exit"]["run_threshold"] == chosen["params"][0]
    assert "What-if" in (run / "report" / "report.md").read_text()
    assert json.loads((run / "config.json").read_text())["report"] == {"threshold": 0.99}
