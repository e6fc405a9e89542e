"""`tinyexit check`: the regression gate catches an accuracy drop, a MAC change, latency-ratio growth
and instruction-count changes, and rejects missing or garbled files with one-line errors."""
import copy
import json

import pytest

from tinyexit.cli import main
from tinyexit.errors import UserError
from tinyexit.eval.check import CheckConfig, check_run, extract_metrics

REPORT = {
    "run_dir": "/runs/demo", "generated": "2025-01-01T00:00:00+00:00",
    "classifier": {"accuracy": {"per_exit": [0.90, 0.95, 0.97], "early_exit": 0.968, "baseline": 0.971},
                   "macs": {"per_exit_cumulative": [20000, 60000, 120000], "full": 120000, "baseline": 110000}},
    "bench": {
        "agent": {"latency_unit": "s", "deterministic": False, "agreement_top1": 1.0, "agreement_exit": 1.0,
                  "per_exit": [{"exit": k, "macs": m, "latency_ratio": r, "latency_median": 1e-4 * r}
                               for k, (m, r) in enumerate([(20000, 0.25), (60000, 0.6), (120000, 1.1)])],
                  "early_exit": {"accuracy": 0.968, "mac_ratio": 0.4, "latency_ratio": 0.45}},
        "qemu": {"latency_unit": "instructions", "deterministic": True, "tick_instructions": 40.0,
                 "per_exit": [{"exit": 0, "macs": 20000, "latency_ratio": 0.2, "latency_median": 24000.0,
                               "segments_timed": 1},
                              {"exit": 1, "macs": 60000, "latency_ratio": 0.6, "latency_median": 72000.0,
                               "segments_timed": 2}],
                 "per_layer": [{"name": "conv0", "instructions": 5000}]},
    },
}


def write_run(tmp_path, report, name="run"):
    run = tmp_path / name
    (run / "report").mkdir(parents=True, exist_ok=True)
    (run / "report" / "report.json").write_text(json.dumps(report))
    return run


@pytest.fixture
def baseline(tmp_path):
    path = tmp_path / "baseline.json"
    check_run(write_run(tmp_path, REPORT, "base_run"), path, update=True)
    return path


def rows_by_metric(result):
    return {r.metric: r for r in result.rows}


def test_extracted_metrics_and_kinds():
    m = extract_metrics(REPORT)
    assert m["classifier.accuracy.per_exit[1]"] == {"kind": "accuracy", "value": 0.95}
    assert m["classifier.macs.per_exit_cumulative[2]"] == {"kind": "macs", "value": 120000}
    assert m["bench.agent.per_exit[0].latency_ratio"] == {"kind": "ratio", "value": 0.25}
    assert "bench.agent.per_exit[0].latency_median" not in m          # wall time is noisy: not checked
    assert m["bench.qemu.per_exit[1].latency_median"] == {"kind": "count", "value": 72000.0, "abs_tol": 80.0}
    assert m["bench.qemu.per_layer[conv0].instructions"] == {"kind": "count", "value": 5000, "abs_tol": 40.0}
    assert len(m) == 28


def test_identical_run_passes(tmp_path, baseline):
    result = check_run(write_run(tmp_path, REPORT), baseline)
    assert result.ok and all(r.status == "ok" for r in result.rows)


def test_injected_accuracy_drop_is_caught(tmp_path, baseline):
    rep = copy.deepcopy(REPORT)
    rep["classifier"]["accuracy"]["per_exit"][1] = 0.94          # -0.01 > 0.005
    rep["classifier"]["accuracy"]["per_exit"][0] = 0.897         # -0.003: moved, within tolerance
    rep["classifier"]["accuracy"]["early_exit"] = 0.98           # +0.012: improved
    rows = rows_by_metric(check_run(write_run(tmp_path, rep), baseline))
    assert rows["classifier.accuracy.per_exit[1]"].status == "regression"
    assert rows["classifier.accuracy.per_exit[0]"].status == "moved"
    assert rows["classifier.accuracy.early_exit"].status == "improved"
    assert check_run(write_run(tmp_path, rep), baseline, CheckConfig(acc_tol=0.02)).ok


def test_mac_change_is_caught_exactly(tmp_path, baseline):
    rep = copy.deepcopy(REPORT)
    rep["bench"]["agent"]["per_exit"][2]["macs"] = 119999
    result = check_run(write_run(tmp_path, rep), baseline)
    assert [r.metric for r in result.regressions] == ["bench.agent.per_exit[2].macs"]


def test_latency_ratio_relative_tolerance(tmp_path, baseline):
    rep = copy.deepcopy(REPORT)
    rep["bench"]["agent"]["per_exit"][1]["latency_ratio"] = 0.6 * 1.09     # within 10 %
    rep["bench"]["agent"]["per_exit"][0]["latency_ratio"] = 0.25 * 1.11    # beyond
    rep["bench"]["agent"]["early_exit"]["latency_ratio"] = 0.45 * 0.8      # faster: improved
    rows = rows_by_metric(check_run(write_run(tmp_path, rep), baseline))
    assert rows["bench.agent.per_exit[1].latency_ratio"].status == "moved"
    assert rows["bench.agent.per_exit[0].latency_ratio"].status == "regression"
    assert rows["bench.agent.early_exit.latency_ratio"].status == "improved"


def test_instruction_counts_exact_within_one_tick_per_segment(tmp_path, baseline):
    rep = copy.deepcopy(REPORT)
    rep["bench"]["qemu"]["per_exit"][1]["latency_median"] = 72000.0 + 80      # 2 segments x 1 tick of 40
    rep["bench"]["qemu"]["per_exit"][0]["latency_median"] = 24000.0 - 80      # 2 ticks on 1 segment
    rows = rows_by_metric(check_run(write_run(tmp_path, rep), baseline))
    assert rows["bench.qemu.per_exit[1].latency_median"].status == "moved"
    assert rows["bench.qemu.per_exit[0].latency_median"].status == "regression"


def test_missing_metric_fails_and_new_metric_does_not(tmp_path, baseline):
    rep = copy.deepcopy(REPORT)
    del rep["bench"]["qemu"]
    rep["bench"]["agent"]["agreement_top1"] = None
    rep["classifier"]["accuracy"]["per_exit"].append(0.99)
    result = check_run(write_run(tmp_path, rep), baseline)
    rows = rows_by_metric(result)
    assert rows["bench.qemu.per_exit[0].macs"].status == "missing"
    assert rows["bench.agent.agreement_top1"].status == "missing"
    assert rows["classifier.accuracy.per_exit[3]"].status == "new"
    assert not result.ok and not rows["classifier.accuracy.per_exit[3]"].failed


def test_cli_prints_what_moved_and_exits_1_on_regression(tmp_path, baseline, capsys):
    rep = copy.deepcopy(REPORT)
    rep["classifier"]["accuracy"]["per_exit"][2] = 0.90
    run = write_run(tmp_path, rep)
    assert main(["check", str(run), "--baseline", str(baseline)]) == 1
    out = capsys.readouterr().out
    assert "| classifier.accuracy.per_exit[2] | accuracy | 0.97 | 0.9 | -0.07 | ±0.005 abs | REGRESSION |" in out
    assert out.strip().endswith("28 metrics checked, 1 moved, 1 regressions: FAILED")
    assert "per_exit[1]" not in out                  # unchanged rows are not printed
    assert main(["check", str(run), "--baseline", str(baseline), "--acc-tol", "0.1"]) == 0


def test_update_rewrites_the_baseline(tmp_path, baseline, capsys):
    rep = copy.deepcopy(REPORT)
    rep["bench"]["agent"]["per_exit"][0]["macs"] = 1
    run = write_run(tmp_path, rep)
    assert main(["check", str(run), "--baseline", str(baseline), "--update"]) == 0
    assert "written (28 metrics)" in capsys.readouterr().out
    data = json.loads(baseline.read_text())
    assert data["format"] == "tinyexit-baseline" and data["metrics"]["bench.agent.per_exit[0].macs"]["value"] == 1
    assert main(["check", str(run), "--baseline", str(baseline)]) == 0
    new = tmp_path / "sub" / "new.json"                    # --update creates a missing baseline
    assert main(["check", str(run), "--baseline", str(new), "--update"]) == 0 and new.is_file()


@pytest.mark.parametrize("setup, message", [
    ("no_report", r"report/report.json: missing; run 'tinyexit report .*' first"),
    ("garbled_report", r"report/report.json: not valid JSON \(JSONDecodeError\)"),
    ("no_baseline", r"nope.json: missing; create it with 'tinyexit check RUN --baseline .*nope.json --update'"),
    ("garbled_baseline", r"baseline.json: not valid JSON"),
    ("foreign_baseline", r"baseline.json: not a tinyexit baseline"),
    ("bad_metric", r"baseline.json: metric 'x' needs a kind in \{accuracy, macs, ratio, count\}"),
    ("no_run", r"no such run directory"),
    ("empty_report", r"no accuracy, MAC or bench figures to check"),
])
def test_bad_files_are_one_line_user_errors(tmp_path, baseline, setup, message, capsys):
    run = write_run(tmp_path, REPORT)
    base = baseline
    if setup == "no_report":
        (run / "report" / "report.json").unlink()
    elif setup == "garbled_report":
        (run / "report" / "report.json").write_text('{"classifier": ')
    elif setup == "no_baseline":
        base = tmp_path / "nope.json"
    elif setup == "garbled_baseline":
        base.write_bytes(b"\xff\x00garbage")
    elif setup == "foreign_baseline":
        base.write_text('{"accuracy": 0.9}')
    elif setup == "bad_metric":
        base.write_text(json.dumps({"format": "tinyexit-baseline", "metrics": {"x": {"kind": "speed", "value": 1}}}))
    elif setup == "no_run":
        run = tmp_path / "missing_run"
    elif setup == "empty_report":
        (run / "report" / "report.json").write_text("{}")
    with pytest.raises(UserError, match=message):
        check_run(run, base)
    assert main(["check", str(run), "--baseline", str(base)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tinyexit: error: ") and err.count("\n") == 1 and "Traceback" not in err


def test_tolerance_validation():
    with pytest.raises(UserError, match=r"--acc-tol -0.1: must be in \[0, 1\)"):
        CheckConfig(acc_tol=-0.1)
    with pytest.raises(UserError, match="--latency-rel-tol"):
        CheckConfig(latency_rel_tol=-1)
