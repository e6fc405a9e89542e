"""The bench report section on synthetic bench results whose latencies follow a known model."""
import json
import sys

import numpy as np
import pytest

from tinyexit.errors import UserError
from tinyexit.eval import section_bench
from tinyexit.eval.study import SWEEP

# Classifier: 3 segments, exits after each; the monolithic model has no intermediate heads.
CLS_SEGS = [(20000, 5), (40000, 8), (60000, 6)]          # (MACs, ops)
CLS_FULL = (110000, 15)
DEN_SEGS = [(30000, 4), (50000, 7)]
DEN_FULL = (80000, 10)
A, B, C = 1, 2000, 5000                                   # ns per MAC, per op, per call (tick_hz = 1e9)
N = 12


def ns(macs, ops):
    return A * macs + B * ops + C


def manifest(segs, full, model):
    """A minimal valid bundle manifest (tinyexit.bundle checks it): segment k's features feed segment k + 1."""
    cum = np.cumsum([m for m, _ in segs]).tolist()

    def spec(name, k):
        return {"name": name, "shape": [1, 4, 4, 2 + k], "dtype": "int8", "scale": 0.05, "zero_point": 0}

    def outputs(k):
        logits = {"name": "logits", "shape": [1, 10], "dtype": "int8", "scale": 0.1, "zero_point": 0}
        return [logits] + ([spec("features", k + 1)] if k + 1 < len(segs) else [])

    return {"model": model, "schema_version": 1, "artifact_hash": "0" * 64, "files": {},
            "input": spec("input", 0), "full_macs": full[0], "monolithic": {"full": {"ops": [{"type": "CONV_2D"}] * full[1]}},
            "segments": [{"index": k, "macs": m, "param_bytes": 100 * k, "inputs": [spec("input", k)],
                          "outputs": outputs(k),
                          "ops": [{"type": "CONV_2D", "macs": m}] + [{"type": "ADD", "macs": 0}] * (o - 1)}
                         for k, (m, o) in enumerate(segs)],
            "exits": [{"index": k, "cumulative_macs": c, "mac_ratio": c / full[0]} for k, c in enumerate(cum)],
            "policy": {"name": "max_softmax", "params": [0.9]}}


def lines_for(model, segs, full, scale=1, runs=1):
    """Records as the harness writes them: a record may stand for `runs` back-to-back runs."""
    seg_ticks = [ns(m, o) // scale * runs for m, o in segs]
    base = {"model": model, "repeat": 0, "device": "w0", "runs": runs, "decision_ticks": 0}
    out = []
    for s in range(N):
        for k in range(len(segs)):
            out.append(base | {"sample": s, "mode": f"segment:{k}", "ticks": seg_ticks[:k + 1]})
        out.append(base | {"sample": s, "mode": "full", "ticks": [ns(*full) // scale * runs]})
        if model == "classifier":
            e = s % 3
            top1 = s % 10 if s != 4 else 0
            # the exit test costs DECISION ticks per exit evaluated; early-exit latency includes it
            out.append(base | {"sample": s, "mode": "early_exit", "exit": e, "top1": top1, "label": s % 10,
                               "logits": [0] * 10, "ticks": seg_ticks[:e + 1], "decision_ticks": DECISION * runs,
                               "host_exit": e, "host_top1": top1 if s != 7 else 9, "host_logits_equal": s != 7})
    return out


DECISION = 1000


def harness_summary(model, **extra):
    return {"target": "agent", "model": model, "device": "host-agent",
            "simulated_or_real": "host agent on this machine (not a device)",
            "devices": [{"worker": "w0", "spec": "agent", "info": {"device": "host-agent", "runtime": "litert"}}],
            "payload_efficiency": 0.93,
            "link": {"frames": 500, "retries": 2, "crc_errors": 1, "resyncs": 1, "timeouts": 0, "bytes_on_wire": 9000},
            "energy": {"source": "modelled", "profile": {"name": "host-agent", "active_power_w": 15.0,
                                                         "source": "assumption, not a measurement"},
                       "per_mode_j": modelled_joules(model)}} | extra


def modelled_joules(model):
    """What the harness writes as modelled energy per mode: 15 W x the median latency."""
    segs, full = (CLS_SEGS, CLS_FULL) if model == "classifier" else (DEN_SEGS, DEN_FULL)
    out = {f"segment:{k}": 15.0 * sum(ns(*s) for s in segs[:k + 1]) * 1e-9 for k in range(len(segs))}
    return out | {"full": 15.0 * ns(*full) * 1e-9}


def make_run(tmp_path, target="agent", summary=None, scale=1, tick_hz=1_000_000_000, torn=False, runs=1,
             split_models=False):
    run = tmp_path / "run"
    (run / "report").mkdir(parents=True)
    (run / "config.json").write_text("{}")
    for model, segs, full in (("classifier", CLS_SEGS, CLS_FULL), ("denoiser", DEN_SEGS, DEN_FULL)):
        (run / "export" / model).mkdir(parents=True)
        (run / "export" / model / "manifest.json").write_text(json.dumps(manifest(segs, full, model)))
    cls = lines_for("classifier", CLS_SEGS, CLS_FULL, scale, runs)
    den = lines_for("denoiser", DEN_SEGS, DEN_FULL, scale, runs)
    benches = {target: (cls, "classifier"), f"{target}-denoiser": (den, "denoiser")} if split_models else \
        {target: (cls + den, "classifier")}
    for name, (rows, model) in benches.items():
        d = run / "bench" / name
        d.mkdir(parents=True)
        text = "".join(json.dumps(r | {"tick_hz": tick_hz}) + "\n" for r in rows)
        (d / "results.jsonl").write_text(text + ('{"sample": 99, "mo' if torn else ""))
        (d / "summary.json").write_text(json.dumps(summary if summary is not None else harness_summary(model)))
    return run


def test_agent_target_numbers(tmp_path):
    run = make_run(tmp_path, torn=True)
    sec = section_bench.build(run, run / "report")
    assert sec.key == "bench" and list(sec.data) == ["agent"]
    t = sec.data["agent"]
    assert t["device"] == "host-agent" and t["simulated_or_real"].startswith("host agent")
    assert t["discarded_torn_line"] is True
    assert t["samples"] == N and t["latency_unit"] == "s"
    assert t["payload_efficiency"] == 0.93
    assert t["link"] == {"frames": 500, "retries": 2, "crc_errors": 1, "resyncs": 1, "timeouts": 0,
                         "bytes_on_wire": 9000}
    full_s = ns(*CLS_FULL) * 1e-9
    chain = [sum(ns(*s) for s in CLS_SEGS[:k + 1]) * 1e-9 for k in range(3)]
    for k, e in enumerate(t["per_exit"]):
        assert e["macs"] == sum(m for m, _ in CLS_SEGS[:k + 1])
        assert e["mac_ratio"] == e["macs"] / CLS_FULL[0]
        assert e["latency_median"] == pytest.approx(chain[k], rel=1e-12)
        assert e["latency_ratio"] == pytest.approx(chain[k] / full_s, rel=1e-12)
        assert e["energy_kind"] == "modelled" and e["energy_source"].startswith("modelled: profile 'host-agent'")
        assert e["energy_j"] == pytest.approx(15.0 * chain[k])     # rendered from summary.json, not recomputed
        assert e["energy_ratio"] == pytest.approx(e["latency_ratio"])
    assert t["segment_overhead"] == pytest.approx(chain[-1] / full_s - 1)
    assert t["agreement_top1"] == pytest.approx(11 / 12) and t["agreement_exit"] == 1.0
    ee = t["early_exit"]
    exits = np.arange(N) % 3
    assert ee["accuracy"] == pytest.approx(11 / 12)
    assert ee["mac_ratio"] == pytest.approx(np.mean([t["per_exit"][e]["macs"] for e in exits]) / CLS_FULL[0])
    assert ee["latency_ratio"] == pytest.approx(np.mean([chain[e] + DECISION * 1e-9 for e in exits]) / full_s)
    assert t["per_exit"][1]["early_exit_latency_median"] == pytest.approx(chain[1] + DECISION * 1e-9)
    assert ee["exit_fractions"] == [pytest.approx(1 / 3)] * 3
    assert t["latency_model"]["mac_only_max_abs_ratio_error"] == pytest.approx(
        max(abs(e["latency_ratio"] - e["mac_ratio"]) for e in t["per_exit"]))
    assert "instructions_per_mac" not in t


def test_without_a_device_profile_nothing_is_predicted_and_the_report_says_how_to_make_one(tmp_path):
    run = make_run(tmp_path)
    sec = section_bench.build(run, run / "report")
    lm = sec.data["agent"]["latency_model"]
    assert lm["source"] is None and lm["predictions"] == [] and lm["loo_max_abs_error"] is None
    assert lm["status"] == "no device profile: run tinyexit profile-device --target agent --run RUN"
    assert "no device profile: run tinyexit profile-device --target agent --run RUN." in sec.markdown
    assert "a·MACs" not in sec.markdown and "coefficients" not in lm     # the old segment regression is gone


def test_sweep_rescored_with_measured_latency(tmp_path):
    run = make_run(tmp_path)
    (run / "predictions").mkdir()
    rng = np.random.default_rng(0)
    np.savez(run / "predictions" / "early_exit.npz", test_logits=rng.normal(size=(3, 40, 10)) * 3,
             test_y=rng.integers(0, 10, 40))
    t = section_bench.build(run, run / "report").data["agent"]
    assert len(t["sweep"]) == len(SWEEP["max_softmax"]) + len(SWEEP["entropy"])
    first = t["sweep"][0]                                 # max-softmax 0.1: every sample leaves at exit 0
    assert (first["policy"], first["threshold"], first["exit_fractions"]) == ("max_softmax", 0.1, [1.0, 0.0, 0.0])
    assert first["mac_ratio"] == pytest.approx(CLS_SEGS[0][0] / CLS_FULL[0])
    assert first["latency_ratio"] == pytest.approx(ns(*CLS_SEGS[0]) / ns(*CLS_FULL))
    for r in t["sweep"]:
        lat = np.array([e["latency_median"] for e in t["per_exit"]])
        assert r["latency_ratio"] == pytest.approx(np.array(r["exit_fractions"]) @ lat / (ns(*CLS_FULL) * 1e-9))


def test_markdown_labels_and_plots(tmp_path):
    run = make_run(tmp_path)
    sec = section_bench.build(run, run / "report")
    md = sec.markdown
    assert "## Bench on target `agent`" in md and "modelled" in md and "**measured**" in md
    assert "Where MACs mislead" in md
    assert "exit 0: measured latency ratio" in md      # exit 0 carries 5 fixed calls' worth of overhead
    # without a device profile nothing is predicted, so no measured-vs-predicted plot (test_latency_model.py has one)
    assert sec.plots == ["bench_agent_latency_vs_mac_ratio.png"]
    for p in sec.plots:
        assert (run / "report" / p).stat().st_size > 5000


@pytest.mark.parametrize("name, summary", [
    ("qemu", {"device": "mps2-an386", "icount_shift": 0}),
    ("emulated", {"device": "mps2-an386", "latency_unit": "s", "devices": [{"spec": "qemu", "info": {}}]}),
])
def test_qemu_target_reports_instructions(tmp_path, name, summary):
    layers = [{"name": "conv0", "macs": 4608, "instructions": 5000}, {"name": "mean", "macs": 0, "instructions": 640}]
    run = make_run(tmp_path, target=name, scale=40, tick_hz=25_000_000, summary=summary | {"per_layer": layers})
    t = section_bench.build(run, run / "report").data[name]
    assert t["latency_unit"] == "instructions" and t["deterministic"] and t["tick_instructions"] == 40.0
    assert t["simulated_or_real"].startswith("simulated")
    full_instr = ns(*CLS_FULL) // 40 * 40
    assert t["instructions_per_mac"] == full_instr / CLS_FULL[0]
    assert t["per_exit"][0]["latency_median"] == ns(*CLS_SEGS[0]) // 40 * 40
    assert t["per_exit"][0]["energy_j"] is None          # summary.json states no energy: the report invents none
    assert t["per_exit"][0]["energy_source"].startswith("not in summary.json")
    assert t["per_layer"][0]["instructions_per_mac"] == 5000 / 4608
    assert "instructions_per_mac" not in t["per_layer"][1]
    assert "1 layers with 0 MACs (mean) execute 640 instructions, 11.3 % of the network" in t["where_macs_mislead"]
    assert t["link"] == {k: None for k in ("frames", "retries", "crc_errors", "resyncs", "timeouts")}


def test_no_bench_means_no_section(tmp_path):
    (tmp_path / "report").mkdir()
    assert section_bench.build(tmp_path, tmp_path / "report") is None


def test_bad_files_give_one_line_errors(tmp_path):
    run = make_run(tmp_path)
    res = run / "bench" / "agent" / "results.jsonl"
    text = res.read_text().splitlines()
    res.write_text("\n".join(text[:3] + ["{garbage"] + text[3:]) + "\n")
    with pytest.raises(UserError, match=r"results.jsonl: line 4 is not a result record \(JSON object with sample, "):
        section_bench.build(run, run / "report")
    # valid JSON with a flipped type is caught the same way
    bad = json.loads(text[5])
    for field, value in (("ticks", ["12", 3]), ("tick_hz", "1e9"), ("mode", 7), ("sample", None), ("ticks", [-1])):
        res.write_text("\n".join(text[:5] + [json.dumps(bad | {field: value})] + text[6:]) + "\n")
        with pytest.raises(UserError, match=r"line 6 is not a result record"):
            section_bench.build(run, run / "report")
    res.write_text("\n".join(text) + "\n")
    (run / "export" / "denoiser" / "manifest.json").unlink()
    with pytest.raises(UserError, match=r"denoiser/manifest.json: missing but bench results name model 'denoiser'"):
        section_bench.build(run, run / "report")


def test_records_of_repeated_runs_are_divided_by_runs(tmp_path):
    one = section_bench.build(make_run(tmp_path / "a"), tmp_path / "a" / "run" / "report").data["agent"]
    many = section_bench.build(make_run(tmp_path / "b", runs=50), tmp_path / "b" / "run" / "report").data["agent"]
    for e1, e50 in zip(one["per_exit"], many["per_exit"]):
        assert e50["latency_median"] == pytest.approx(e1["latency_median"], rel=1e-12)
    assert many["early_exit"]["latency_ratio"] == pytest.approx(one["early_exit"]["latency_ratio"], rel=1e-12)


def test_models_benched_into_separate_directories_share_the_target_latency_model(tmp_path):
    run = make_run(tmp_path, split_models=True)
    data = section_bench.build(run, run / "report").data
    assert sorted(data) == ["agent", "agent-denoiser"]
    assert data["agent"]["model"] == "classifier" and data["agent-denoiser"]["model"] == "denoiser"
    for t in data.values():
        assert sorted(t["latency_model_sources"]) == ["agent", "agent-denoiser"]
    assert data["agent-denoiser"]["per_exit"][1]["latency_ratio"] == pytest.approx(
        (ns(*DEN_SEGS[0]) + ns(*DEN_SEGS[1])) / ns(*DEN_FULL))


def test_measured_energy_from_the_harness_passes_through(tmp_path):
    per_mode = {"full": {"energy_j": 2e-3}, "segment:0": {"energy_j": 5e-4}, "segment:1": {"energy_j": 1e-3},
                "segment:2": {"energy_j": 2.2e-3}}
    summary = harness_summary("classifier", energy={"source": "measured:ppk2", "meter": "PPK2 on /dev/ttyACM1",
                                                    "per_mode": per_mode})
    run = make_run(tmp_path, summary=summary)
    t = section_bench.build(run, run / "report").data["agent"]
    assert [e["energy_j"] for e in t["per_exit"]] == [5e-4, 1e-3, 2.2e-3]
    assert [e["energy_ratio"] for e in t["per_exit"]] == pytest.approx([0.25, 0.5, 1.1])
    assert {e["energy_kind"] for e in t["per_exit"]} == {"measured"}
    assert t["per_exit"][0]["energy_source"] == "measured: PPK2 on /dev/ttyACM1"


def test_report_json_exposes_the_documented_keys(tmp_path):
    t = section_bench.build(make_run(tmp_path), tmp_path / "run" / "report").data["agent"]
    for key in ("device", "simulated_or_real", "samples", "payload_efficiency", "agreement_top1", "agreement_exit",
                "segment_overhead", "per_exit", "latency_model", "early_exit", "link"):
        assert key in t, key
    for e in t["per_exit"]:
        assert {"macs", "mac_ratio", "latency_median", "latency_unit", "latency_ratio", "energy_j", "energy_ratio",
                "energy_source"} <= set(e)
    assert {"status", "loo_max_abs_error", "mac_only_max_abs_ratio_error"} <= set(t["latency_model"])
    assert {"accuracy", "mac_ratio", "latency_ratio"} <= set(t["early_exit"])
    assert {"frames", "retries", "crc_errors", "resyncs", "timeouts"} <= set(t["link"])
    json.dumps(t, allow_nan=False)


def test_qemu_per_layer_counts_from_the_firmware_profiles(tmp_path):
    summary = {"device": "qemu-mps2-an386", "devices": [{"spec": "qemu", "info": {"runtime_name": "tinyexit-c arm_dsp"}}]}
    run = make_run(tmp_path, target="qemu", scale=40, tick_hz=25_000_000, summary=summary)
    for kernels, ipm, conv in (("arm_dsp", 1.47, 7000), ("reference", 7.6, 40000)):
        d = run / "firmware" / "classifier" / f"mps2-an386-{kernels}-selftest"
        d.mkdir(parents=True)
        (d / "profile.json").write_text(json.dumps({"kernels": kernels, "instructions_per_mac": ipm, "per_layer": [
            {"name": "seg0/0:CONV_2D", "instructions": conv, "macs": 1000},
            {"name": "seg0/1:ADD", "instructions": 300, "macs": 0}]}))
    t = section_bench.build(run, run / "report").data["qemu"]
    assert t["per_layer_kernels"] == "arm_dsp"
    assert t["per_layer_source"] == "firmware/classifier/mps2-an386-arm_dsp-selftest/profile.json"
    assert [(r["op"], r["instructions"], r.get("instructions_per_mac")) for r in t["per_layer"]] == [
        ("CONV_2D", 7000, 7.0), ("ADD", 300, None)]
    assert t["instructions_per_mac_by_kernels"] == {"arm_dsp": 1.47, "reference": 7.6}
    assert "more than twice the network's 7.30 instructions per MAC" not in " ".join(t["where_macs_mislead"])
    assert "1 layers with 0 MACs (ADD) execute 300 instructions, 4.1 % of the network" in t["where_macs_mislead"]


def test_results_of_an_older_export_are_flagged_stale(tmp_path):
    run = make_run(tmp_path, summary=harness_summary("classifier", artifact_hash="a" * 64))
    path = run / "export" / "classifier" / "manifest.json"
    path.write_text(json.dumps(json.loads(path.read_text()) | {"artifact_hash": "b" * 64}))
    sec = section_bench.build(run, run / "report")
    assert sec.data["agent"]["artifact_matches_export"] is False
    assert "**Stale:** these results were measured on another export" in sec.markdown
    path.write_text(json.dumps(json.loads(path.read_text()) | {"artifact_hash": "a" * 64}))
    sec = section_bench.build(run, run / "report")
    assert sec.data["agent"]["artifact_matches_export"] is True and "Stale" not in sec.markdown
