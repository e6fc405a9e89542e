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


def test_agent_sweep_subsamples_the_qemu_sweep():
    from tinyexit.export.microbench import default_sweep
    from tinyexit.profile_cli import agent_sweep

    full = default_sweep(("conv", "fc", "add"), 7)
    sub = agent_sweep(("conv", "fc", "add"), 7, 2)
    assert [p.kind for p in sub] == ["conv"] * 6 + ["fc"] * 2 + ["add"] * 2
    assert all(p in full for p in sub)
    assert sub[0] == full[0] and sub[-1] == [p for p in full if p.kind == "add"][-1]  # both ends of each kind


def test_profile_device_on_the_host_agent(tmp_path):
    """Two sweep models (and the two empty ones) through a real spawned host agent: structure, never timings."""
    out = tmp_path / "agent.json"
    assert main(["profile-device", "--target", "agent", "--out", str(out), "--kinds", "fc,add", "--per-kind", "1",
                 "--repeats", "5"]) == 0
    prof = json.loads(out.read_text())
    assert prof["unit"] == "s" and prof["fit_key"] == "us" and prof["device"]["name"] == "host-agent"
    assert "simulated" in prof["device"]["simulated_or_real"]
    pts = prof["sweep"]["points"]
    assert [p["point"]["kind"] for p in pts] == ["fc", "add"] and prof["sweep"]["skipped"] == []
    assert all(len(p["us_runs"]) == 5 and p["us"] > 0 for p in pts) and prof["empty"]["us"] > 0
    # a zero-MAC operator ends in a one-output FULLY_CONNECTED (the bundle needs MACs), priced jointly
    assert [layer["kind"] for layer in pts[1]["layers"]][0] == "add" and pts[1]["layers"][-1]["kind"] == "fc"
    assert prof["fit"]["feature_set"] == "wall" and set(prof["fit"]["us"]["kernels"]) >= {"fc", "add"}
    from tinyexit.eval.kernel_model import predict_layers

    for p in pts:
        assert predict_layers(prof, p["layers"])["value"] >= 0
    conv = [{"kind": "conv_m0", "macs": 10 ** 9, "in_bytes": 10, "out_bytes": 10, "out_pixels": 1}]
    pred = predict_layers(prof, conv)
    assert pred["unknown_kinds"] == ["conv"] and pred["value"] >= 0  # a kind never measured: flagged
    # resumable: every model's measurement is cached, so a re-run measures nothing again
    cached = sorted((tmp_path / "agent.json.work" / "agent").glob("mb*.json"))
    assert len(cached) == 4  # two empty models (invoke and per-operator overhead) and the two sweep points
    assert prof["empty"]["per_operator_us"] >= 0 and len(prof["empty"]["measured_us"]) == 2
    mtimes = [c.stat().st_mtime_ns for c in cached]
    assert main(["profile-device", "--target", "agent", "--out", str(out), "--kinds", "fc,add", "--per-kind", "1",
                 "--repeats", "5"]) == 0
    assert [c.stat().st_mtime_ns for c in cached] == mtimes
