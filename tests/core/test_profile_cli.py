"""`tinyexit profile-device --target qemu` end to end on two kernel kinds (slow: TensorFlow's converter)."""
import json
import shutil

import pytest

from tinyexit.cli import main
from tinyexit.errors import UserError
from tinyexit.profile_cli import ProfileConfig

needs_qemu = pytest.mark.skipif(shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None,
                                reason="needs qemu-system-arm and gcc-arm-none-eabi")


def test_unknown_target_is_one_line():
    with pytest.raises(UserError, match="--target nowhere: not a target; use qemu, agent or a serial URL"):
        ProfileConfig(target="nowhere")
    assert ProfileConfig(target="agent").target == "agent"
    assert ProfileConfig(target="socket://localhost:5000").target == "socket://localhost:5000"


@needs_qemu
@pytest.mark.slow
@pytest.mark.qemu
def test_profile_device_fits_held_out_shapes(tmp_path):
    out = tmp_path / "p.json"
    assert main(["profile-device", "--target", "qemu", "--out", str(out), "--kinds", "add,fc"]) == 0
    prof = json.loads(out.read_text())
    assert prof["unit"] == "instructions" and prof["device"]["board"] == "mps2-an386"
    assert len(prof["firmware_sources_sha256"]) == 64
    pts = prof["sweep"]["points"]
    assert len(pts) == 24 and all(p["instructions"] > prof["empty"]["instructions"] for p in pts)
    # ADD is one loop over the bytes: exact on shapes it never saw
    add = [p for p in pts if p["point"]["kind"] == "add"]
    assert max(abs(p["held_out_error"]) for p in add) < 1e-3
    # FULLY_CONNECTED: within 5 % (median) on held-out shapes, never more than 150 instructions off
    fc = [p for p in pts if p["point"]["kind"] == "fc"]
    assert sorted(abs(p["held_out_error"]) for p in fc)[len(fc) // 2] < 0.05
    assert max(abs(p["held_out_error"]) * p["instructions"] for p in fc) < 150
    # resumable: the same sweep on the same firmware is kept, not re-measured
    mtime = out.stat().st_mtime_ns
    assert main(["profile-device", "--target", "qemu", "--out", str(out), "--kinds", "add,fc"]) == 0
    assert out.stat().st_mtime_ns == mtime


@needs_qemu
@pytest.mark.slow
@pytest.mark.qemu
def test_the_firmware_exit_test_is_profiled_per_logit(tmp_path):
    out = tmp_path / "d.json"
    assert main(["profile-device", "--target", "qemu", "--out", str(out), "--kinds", "decision"]) == 0
    prof = json.loads(out.read_text())
    pts = {(p["point"]["policy"], p["point"]["cout"]): p["instructions"] - prof["empty"]["instructions"]
           for p in prof["sweep"]["points"]}
    assert len(pts) == 24
    # patience compares argmaxes only: one cost whatever the logit count; the softmax tests grow with it
    assert len({v for (pol, _), v in pts.items() if pol == "patience"}) == 1
    for pol in ("max_softmax", "entropy"):
        assert pts[(pol, 256)] > 20 * pts[(pol, 4)] > 0
    assert prof["fit"]["instructions"]["decision_overhead"] == prof["empty"]["instructions"]


def test_agent_sweep_subsamples_the_qemu_sweep_and_adds_chains():
    from tinyexit.export.microbench import chain_sweep, default_sweep, agent_sweep

    full = default_sweep(("conv", "fc", "add"), 7)
    sub = agent_sweep(("conv", "fc", "add"), 7, 2)
    one_layer = [p for p in sub if p.depth == 1]
    assert [p.kind for p in one_layer[:10]] == ["conv"] * 6 + ["fc"] * 2 + ["add"] * 2
    assert all(p in full for p in one_layer[:10])
    assert one_layer[0] == full[0] and one_layer[9] == [p for p in full if p.kind == "add"][-1]  # both ends
    # the deep end of a CNN (small maps, wide channels), then chains of 2, 4 and 8 layers of one kind
    assert len(one_layer) == 10 + 15 and all(p.h <= 4 and p.cin >= 32 for p in one_layer[10:])
    chains = [p for p in sub if p.depth > 1]
    assert chains == chain_sweep(("conv", "fc", "add")) and [p.depth for p in chains[:3]] == [2, 4, 8]
    assert len(chains) == 3 * (3 + 1 + 1)


def test_the_exit_decision_is_a_sweep_kind_without_changing_the_older_points():
    from tinyexit.export.microbench import DECISION_LOGITS, DECISION_POLICIES, default_sweep

    pts = default_sweep(None, 7)
    dec = [p for p in pts if p.kind == "decision"]
    assert len(dec) == len(DECISION_POLICIES) * len(DECISION_LOGITS) and pts[-len(dec):] == dec
    assert [p.to_dict() for p in default_sweep(("conv",), 7)] == [p.to_dict() for p in pts if p.kind == "conv"]
    assert "depth" not in pts[0].to_dict() and "policy" not in pts[0].to_dict()  # older caches keep their keys


def test_profile_device_on_the_host_agent(tmp_path):
    """Sweep models through a real spawned host agent: structure, never timings."""
    out = tmp_path / "agent.json"
    argv = ["profile-device", "--target", "agent", "--out", str(out), "--kinds", "fc,add,decision", "--per-kind", "1",
            "--repeats", "3", "--rounds", "1", "--burst", "2"]
    assert main(argv) == 0
    prof = json.loads(out.read_text())
    assert prof["unit"] == "s" and prof["fit_key"] == "us" and prof["device"]["name"] == "host-agent"
    assert "simulated" in prof["device"]["simulated_or_real"] and len(prof["identity_sha256"]) == 64
    assert prof["identity"]["runtime"] == "litert" and prof["identity"]["tinyexit_version"]
    pts = prof["sweep"]["points"]
    kinds = [(p["point"]["kind"], p["point"].get("depth", 1)) for p in pts]
    assert kinds == [("fc", 1), ("add", 1)] + [("decision", 1)] * 3 + [("fc", 2), ("fc", 4), ("fc", 8), ("add", 2),
                                                                     ("add", 4), ("add", 8)]
    dec, ops = pts[2:5], pts[:2] + pts[5:]
    assert [(p["point"]["policy"], p["point"]["cout"]) for p in dec] == [("max_softmax", 2), ("entropy", 2),
                                                                          ("patience", 2)]
    assert prof["sweep"]["skipped"] == []
    assert all(len(p["us_runs"]) == 3 and len(p["us_burst_runs"]) == 3 and p["burst"] == 2 for p in ops)
    # every model also timed cold: one invoke right after a RUN of one of the two heaviest models on a second agent
    assert all(len(p["us_cold_runs"]) == 3 and p["us_cold"] > 0 for p in ops)
    assert all("us_cold_runs" not in p for p in dec)
    assert prof["config"]["timing"]["thrash"] is True and prof["config"]["timing"]["gap_us"] == 350.0
    # the agent's own exit test, from the decision ticks of early-exit RUNs on two-segment bundles
    assert all(p["hot_only"] and len(p["us_runs"]) == 6 and p["us"] > 0 for p in dec)
    # a zero-MAC operator ends in a one-output FULLY_CONNECTED (the bundle needs MACs), priced jointly; its
    # features are the unpacked (int8 weights) kind, which the wall-clock fit prices as "fc"
    assert [layer["kind"] for layer in pts[1]["layers"]][0] == "add" and pts[1]["layers"][-1]["kind"] == "fc_plain"
    us = prof["fit"]["us"]
    assert prof["fit"]["feature_set"] == prof["fit"]["feature_set_choice"]["chosen"]
    assert prof["fit"]["feature_set"] in ("wall:4", "wall:8", "wall:16")
    assert set(us["kernels"]) >= {"fc", "add", "decision_entropy"}
    assert us["overhead"] >= 0 and us["run_overhead"] >= 0 and prof["empty"]["per_run_us"] == us["run_overhead"]
    assert set(us["cold"]) == {"cold_weights", "cold_bytes", "cold_layers"} and us["switch_overhead"] >= 0
    from tinyexit.eval.kernel_model import predict_layers

    for p in pts:
        assert predict_layers(prof, p["layers"])["value"] >= 0
    conv = [{"kind": "conv_m0", "macs": 10 ** 9, "in_bytes": 10, "out_bytes": 10, "out_pixels": 1}]
    pred = predict_layers(prof, conv)
    assert pred["unknown_kinds"] == ["conv"] and pred["value"] >= 0  # a kind never measured: flagged
    # resumable: every model's timing is cached, and an unchanged sweep on the same agent keeps the profile
    cached = sorted((tmp_path / "agent.json.work" / "agent" / "timings").glob("mb*.json"))
    assert len(cached) == 8 + 3
    mtime = out.stat().st_mtime_ns
    assert main(argv) == 0 and out.stat().st_mtime_ns == mtime
    out.unlink()  # the profile lost: rebuilt from the cached timings, no model timed again
    mtimes = [c.stat().st_mtime_ns for c in cached]
    assert main(argv) == 0 and [c.stat().st_mtime_ns for c in cached] == mtimes


def test_the_cold_runs_follow_the_heaviest_sweep_models():
    from tinyexit.firmware_bridge.harness.profile_device import AgentTimingConfig, heaviest

    def row(name, cin, cout, policy=None):
        point = {"kind": "decision" if policy else "fc", **({"policy": policy} if policy else {})}
        return {"name": name, "bundle": f"/b/{name}", "point": point,
                "layers": [{"kind": "fc", "macs": cin * cout, "out_pixels": 1}]}

    rows = [row("a", 8, 8), row("b", 64, 64), row("c", 32, 16), row("d", 999, 999, "entropy")]
    assert [r["name"] for r in heaviest(rows)] == ["b", "c"]     # exit-test bundles never thrash
    with pytest.raises(UserError, match="gap_us 0..100000"):
        AgentTimingConfig(gap_us=-1.0)
