"""The report's latency model: predictions from a device profile only (the old segment regression is gone).

A synthetic wall-clock profile with a known law prices a two-segment bundle whose bench results were
written to follow that law, except the monolithic model (measured 20 us, predicted 17 us): every
figure below is exact.  Segment 0 starts a RUN (per-RUN overhead), segment 1 follows in it; an
early-exit path pays the exit test after each segment but the last."""
import json

import pytest

from tinyexit.eval import latency_profile as lp, section_bench
from tinyexit.eval.kernel_model import decision_layer

RUN_US, INVOKE_US = 5.0, 2.0
KERNELS = {"conv": {"macs": 1e-3, "one": 2.0}, "add": {"out_bytes": 0.01, "one": 1.0},
           "decision_max_softmax": {"logits": 0.1, "one": 1.0}}
SEG0 = [{"kind": "conv_m0", "macs": 1000, "name": "0:CONV_2D"}, {"kind": "add", "out_bytes": 100, "macs": 0}]
SEG1 = [{"kind": "conv_m1", "macs": 3000, "name": "0:CONV_2D"}]
# us: segment 0 = 5 + 2 + 3 + 2 = 12, segment 1 (hot) = 2 + 5 = 7, exit test on 10 logits = 2
MEASURED_US = {"segment:0": [12.0], "segment:1": [12.0, 7.0], "full": [20.0], "early_exit:0": [12.0],
               "early_exit:1": [12.0, 7.0]}
DECISION_US = 2.0


def _profile():
    sweep = [{"layers": [{"kind": "conv_m0", "macs": m, "out_pixels": 4}], "us": RUN_US + INVOKE_US + 1e-3 * m + 2}
             for m in (500, 2000, 8000)]
    ranges = {"conv": {"macs": [500, 8000]}, "add": {"out_bytes": [10, 1000]},
              "decision_max_softmax": {"logits": [2, 256]}}
    fit = {"feature_set": "wall", "key": "us", "ranges": ranges,
           "us": {"kernels": KERNELS, "overhead": INVOKE_US, "run_overhead": RUN_US, "decision_overhead": 0.0,
                  "per_kind": {}, "in_sample": {}}}
    return {"unit": "s", "fit_key": "us", "fit": fit, "sweep": {"points": sweep}, "device": {"target": "agent"},
            "held_out": {"max_abs_error": 0.0}}


def _manifest():
    def spec(name, shape):
        return {"name": name, "shape": shape, "dtype": "int8", "scale": 0.05, "zero_point": 0}

    return {"model": "classifier", "schema_version": 1, "artifact_hash": "0" * 64, "files": {},
            "input": spec("input", [1, 4, 4, 1]), "full_macs": 4000, "monolithic": {},
            "segments": [{"index": 0, "macs": 1000, "param_bytes": 0, "inputs": [spec("input", [1, 4, 4, 1])],
                          "outputs": [spec("logits", [1, 10]), spec("features", [1, 4, 4, 2])], "ops": []},
                         {"index": 1, "macs": 3000, "param_bytes": 0, "inputs": [spec("input", [1, 4, 4, 2])],
                          "outputs": [spec("logits", [1, 10])], "ops": []}],
            "exits": [{"index": 0, "cumulative_macs": 1000, "mac_ratio": 0.25},
                      {"index": 1, "cumulative_macs": 4000, "mac_ratio": 1.0}],
            "policy": {"name": "max_softmax", "params": [0.9]}}


def _run(tmp_path, with_profile=True):
    run = tmp_path / "run"
    bundle = run / "export" / "classifier"
    (bundle / "c").mkdir(parents=True)
    (run / "report").mkdir()
    (bundle / "manifest.json").write_text(json.dumps(_manifest()))
    (bundle / "c" / "layers.json").write_text(json.dumps({"segments": [SEG0, SEG1], "full": SEG0 + SEG1}))
    lines = []
    for s in range(5):
        for key, us in MEASURED_US.items():
            mode, _, exit_k = key.partition(":")
            rec = {"model": "classifier", "sample": s, "repeat": 0, "runs": 1, "tick_hz": 1_000_000_000,
                   "mode": key if not exit_k or mode != "early_exit" else "early_exit", "label": 0, "top1": 0,
                   "logits": [0] * 10, "ticks": [int(v * 1000) for v in us], "decision_ticks": 0}
            if mode == "early_exit":
                # one exit test either way: after segment 0 (left there, or passed on to the last segment)
                rec.update(exit=int(exit_k), decision_ticks=int(DECISION_US * 1000))
            lines.append(rec)
    d = run / "bench" / "agent"
    d.mkdir(parents=True)
    (d / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    (d / "summary.json").write_text(json.dumps({"model": "classifier", "devices": [{"spec": "agent", "info": {}}]}))
    if with_profile:
        (run / "profiles").mkdir()
        (run / "profiles" / "agent.json").write_text(json.dumps(_profile()))
    return run


def test_every_path_is_priced_with_its_invokes_run_overhead_and_exit_tests(tmp_path):
    run = _run(tmp_path)
    sec = section_bench.build(run, run / "report")
    lm = sec.data["agent"]["latency_model"]
    got = {r["name"]: (r["kind"], r["measured"], r["predicted"]) for r in lm["predictions"]}
    assert got == {"classifier segment 0": ("segment", pytest.approx(12.0), pytest.approx(12.0)),
                   "classifier segment 1": ("segment", pytest.approx(7.0), pytest.approx(7.0)),
                   "classifier chain 0..1": ("chain", pytest.approx(19.0), pytest.approx(19.0)),
                   "classifier full": ("monolithic", pytest.approx(20.0), pytest.approx(17.0)),
                   "classifier early exit at 0": ("early_exit", pytest.approx(14.0), pytest.approx(14.0)),
                   "classifier early exit at 1": ("early_exit", pytest.approx(21.0), pytest.approx(21.0))}
    # the out-of-model error keeps its report.json name
    assert lm["loo_max_abs_error"] == pytest.approx(0.15) and lm["out_of_model"]["within_10pct"] == pytest.approx(5 / 6)
    assert lm["by_path_kind"]["early_exit"]["max_abs_error"] == pytest.approx(0.0, abs=1e-12)
    assert lm["exit_paths"]["classifier"] == [pytest.approx(14.0), pytest.approx(21.0)]
    assert lm["never_negative"] is True and lm["out_of_range"] == []
    assert lm["overheads"] == {"overhead": 2.0, "run_overhead": 5.0, "decision_overhead": 0.0}
    assert "bench_agent_latency_vs_macs.png" in sec.plots
    assert "### Predicted from the device profile (out of model)" in sec.markdown


def test_threshold_sweep_points_are_exit_fractions_times_predicted_exit_paths():
    rows = [{"exit_fractions": [0.5, 0.5]}, {"exit_fractions": [1.0, 0.0]}, {"exit_fractions": [1.0]}]
    lm = {"unit": "us", "exit_paths": {"classifier": [14.0, 21.0]}}
    lp.predict_sweep(rows, lm, "classifier", 20e-6)          # the report's reference is in seconds
    assert rows[0]["latency_predicted"] == pytest.approx(17.5)
    assert rows[0]["latency_predicted_ratio"] == pytest.approx(17.5 / 20.0)
    assert rows[1]["latency_predicted"] == pytest.approx(14.0)
    assert "latency_predicted" not in rows[2]                 # a row of another model's depth is not priced


def test_an_exit_test_outside_the_sweep_is_flagged_not_extrapolated_silently(tmp_path):
    prof = _profile()
    prof["fit"]["ranges"]["decision_max_softmax"]["logits"] = [2, 8]
    man = _manifest()
    layers, n_dec = lp.exit_path(man, [SEG0, SEG1], 0)
    assert n_dec == 1 and layers[-1] == decision_layer("max_softmax", 10)
    assert lp.exit_path(man, [SEG0, SEG1], 1)[1] == 1        # no exit test after the last segment
    row = lp._row("p", "early_exit", layers, 1000, 14.0, prof, (0.0, 0.0), 1, decisions=1)
    assert row["out_of_range"] == ["decision_max_softmax.logits"] and row["predicted"] == pytest.approx(14.0)


def test_without_a_profile_the_report_names_the_command_and_predicts_nothing(tmp_path):
    run = _run(tmp_path, with_profile=False)
    sec = section_bench.build(run, run / "report")
    lm = sec.data["agent"]["latency_model"]
    assert lm == lp.no_profile("agent") | {"mac_only_max_abs_ratio_error": lm["mac_only_max_abs_ratio_error"]}
    assert lm["status"] == "no device profile: run tinyexit profile-device --target agent --run RUN"
    assert lm["loo_max_abs_error"] is None and "latency_predicted" not in json.dumps(sec.data)
    assert lp.no_profile("qemu-denoiser")["status"].endswith("--target qemu --run RUN")
    assert lp.no_profile("socket://pi:5000")["status"].endswith("--target socket://pi:5000 --run RUN")


def test_a_bench_with_its_own_name_finds_the_runs_only_profile_in_its_unit(tmp_path):
    from tinyexit.eval.latency_profile import find_profile

    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "qemu.json").write_text(json.dumps({"unit": "instructions", "device": {"target": "qemu"}}))
    (profiles / "host-agent.json").write_text(json.dumps({"unit": "s"}))
    assert find_profile(tmp_path, "qemu-denoiser", "instructions")[1] == profiles / "qemu.json"
    assert find_profile(tmp_path, "v", "instructions")[1] == profiles / "qemu.json"
    assert find_profile(tmp_path, "nightly", "s")[1] == profiles / "host-agent.json"
    (profiles / "pi.json").write_text(json.dumps({"unit": "s"}))
    assert find_profile(tmp_path, "nightly", "s") == (None, None)  # two devices: the bench name must say which
    assert find_profile(tmp_path, "pi", "s")[1] == profiles / "pi.json"
