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


def test_run_without_study_networks_is_reported_against_full_depth(tmp_path):
    """Only predictions/early_exit.npz (no --study): hand-made logits with known exits, accuracies and MACs."""
    import numpy as np

    from tinyexit.eval import section_classifier
    from tinyexit.eval.headline import headline

    run = tmp_path / "run"
    (run / "predictions").mkdir(parents=True)
    # exit-0 confidences 0.982, 0.5, 0.953, 0.731: at threshold 0.9 samples 0 and 2 leave at exit 0.
    logits = np.array([[[4, 0], [0, 0], [0, 3], [1, 0]],
                       [[0, 2], [0, 5], [0, 5], [3, 0]]], dtype=np.float32)
    y = np.array([0, 1, 1, 0])
    np.savez(run / "predictions" / "early_exit.npz", val_logits=logits, val_y=y, test_logits=logits, test_y=y,
             exit_macs=np.array([100, 400]), macs_source=np.str_("hand-made"), threshold=np.float64(0.9))
    (run / "config.json").write_text(json.dumps({"tinyexit_version": "0.1.0", "classifier": {
        "splits": {"train": 0, "val": 4, "test": 4},
        "exit_policy": {"policy": "max_softmax", "params": [0.9],
                        "provenance": {"source": "chosen at training", "split": "val"}}}}))
    (run / "report").mkdir()
    s = section_classifier.build(run, run / "report")
    c = s.data
    assert c["reference"]["accuracy"] == 0.75 and c["reference"]["macs"] == 400 and c["reference"]["exit"] == 1
    assert c["accuracy"] == {"baseline": None, "small": None, "per_exit": [0.75, 0.75], "early_exit": 1.0,
                             "split": "test"}
    assert c["macs"]["baseline"] is None and c["macs"]["full"] == 400
    assert c["small_networks"] is None and c["seeds"] is None and c["curve_vs_small"] is None
    ee = c["early_exit"]
    assert ee["threshold"] == 0.9 and ee["chosen_on"] == "val" and ee["exit_fractions"] == [0.5, 0.5]
    assert ee["mac_ratio"] == ee["mac_ratio_vs_full"] == 0.625 and ee["mean_macs"] == 250.0
    conf = np.exp(logits[0]).max(-1) / np.exp(logits[0]).sum(-1)
    assert ee["confidence_exiting_early"] == pytest.approx((conf[0] + conf[2]) / 2)
    assert [r["mac_ratio"] for r in c["sweep"] if r["policy"] == "fixed_exit"] == [0.25, 1.0]
    assert "| 1. full-depth accuracy (early-exit net at full depth; trained without --study: no separate " \
           "baseline) | 75.00 % at 400 MACs |" in s.markdown
    assert "| 4. MAC ratio vs full depth | 0.625 |" in s.markdown and "5. small network" not in s.markdown
    assert "re-train with 'tinyexit train early-exit --study'" in s.markdown
    assert "| early exit at threshold 0.9 (chosen on val): accuracy / MAC ratio vs full depth | 100.00 % / 0.625 |" \
        in headline({"classifier": c})
