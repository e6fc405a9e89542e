"""The harness's shared figures (summary.json) on records with known ticks: exact values."""
from collections import defaultdict
from types import SimpleNamespace

import pytest

from tinyexit.bundle import ExitSpec
from tinyexit.firmware_bridge.harness import figures as fig
from tinyexit.firmware_bridge.harness.energy import PROFILES

SEG_TICKS = (100, 150, 250)          # per segment, timer at 25 MHz = 40 instructions per tick on QEMU
FULL_TICKS = 450
ART = SimpleNamespace(n_segments=3, full_macs=600_000, segments=[SimpleNamespace(macs=m) for m in (1e5, 2e5, 3e5)],
                      exits=tuple(ExitSpec(k, c, c / 600_000) for k, c in enumerate((100_000, 300_000, 600_000))))


def records(preempted: int = 0):
    base = {"tick_hz": 25_000_000, "runs": 1, "repeat": 0, "decision_ticks": 0, "label": 1, "top1": 1}
    out = []
    for s in range(8):
        for k in range(3):
            out.append(base | {"sample": s, "mode": f"segment:{k}", "exit": k, "ticks": list(SEG_TICKS[:k + 1])})
        out.append(base | {"sample": s, "mode": "full", "exit": 2, "ticks": [FULL_TICKS]})
        e = 0 if s < 6 else 2                                     # 6 of 8 leave at exit 0
        ticks = list(SEG_TICKS[:e + 1])
        if s == 0 and preempted:
            ticks[0] += preempted                                  # one run preempted on a busy host
        out.append(base | {"sample": s, "mode": "early_exit", "exit": e, "ticks": ticks, "decision_ticks": 10,
                           "host_exit": e, "host_top1": 1, "host_logits_equal": True})
    by = defaultdict(list)
    for r in out:
        by[r["mode"]].append(r)
    return by


def test_per_exit_and_early_exit_figures_on_qemu():
    by = records()
    costs = fig.Costs(40)
    rows, ref = fig.per_exit(ART, by, costs, fig.energy_function(PROFILES["cortex-m4"], None))
    assert ref["name"] == "full" and ref["median_instructions"] == FULL_TICKS * 40
    assert [r["latency_median_instructions"] for r in rows] == [4000.0, 10000.0, 20000.0]
    assert [r["latency_ratio"] for r in rows] == pytest.approx([100 / 450, 250 / 450, 500 / 450], rel=1e-12)
    assert [r["energy_j"] for r in rows] == pytest.approx([4000 * 3.3e-10, 10000 * 3.3e-10, 20000 * 3.3e-10])
    assert rows[1]["instructions_per_mac"] == pytest.approx(10000 / 300_000)
    ee = fig.early_exit(ART, by, costs, ref, rows)
    assert ee["samples"] == 8 and ee["exit_fractions"] == [0.75, 0.0, 0.25] and ee["accuracy"] == 1.0
    assert ee["mac_ratio"] == pytest.approx((6 * 100_000 + 2 * 600_000) / 8 / 600_000)
    assert ee["latency_expected_instructions"] == pytest.approx(0.75 * 110 * 40 + 0.25 * 510 * 40)
    assert ee["latency_ratio"] == pytest.approx((0.75 * 110 + 0.25 * 510) / 450)
    assert fig.instructions_per_mac(ART, ref)["instructions_per_mac"] == pytest.approx(450 * 40 / 600_000)
    assert fig.agreement(by)["agreement_exit"] == 1.0 and fig.agreement(by)["agreement_scope"] == "early_exit"


def test_a_preempted_run_moves_the_mean_not_the_expected_ratio():
    calm, busy = records(), records(preempted=5000)
    costs = fig.Costs(None)
    results = []
    for by in (calm, busy):
        rows, ref = fig.per_exit(ART, by, costs, fig.energy_function(PROFILES["host-agent"], None))
        results.append(fig.early_exit(ART, by, costs, ref, rows))
    assert results[1]["latency_ratio"] == results[0]["latency_ratio"]
    assert results[1]["latency_mean_ratio"] > results[0]["latency_mean_ratio"] + 1
