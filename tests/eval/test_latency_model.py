"""The latency model's fit and its out-of-sample validation on synthetic data with a known answer."""
import numpy as np
import pytest

from tinyexit.errors import UserError
from tinyexit.eval.latency_model import LatencyModelConfig, Path, Point, fit, fit_latency_model, leave_one_out

A, B, C = 2e-9, 3e-6, 1e-5          # seconds per MAC, per op, per call
MACS = [4608, 36864, 73728, 18432, 147456, 9216, 294912, 640]
OPS = [3, 7, 5, 12, 6, 9, 4, 2]


def _truth(macs, ops, calls=1):
    return A * macs + B * ops + C * calls


def _points(noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    return [Point(f"s{i}", "segment", m, o, _truth(m, o) * (1 + noise * rng.standard_normal()))
            for i, (m, o) in enumerate(zip(MACS, OPS))]


def test_exact_data_recovers_coefficients_and_zero_out_of_sample_error():
    pts = _points()
    chain = Path("0..2", sum(MACS[:3]), sum(OPS[:3]), 3, sum(_truth(m, o) for m, o in zip(MACS[:3], OPS[:3])),
                 ("s0", "s1", "s2"))
    out = fit_latency_model(pts, [chain])
    co = out["coefficients"]
    assert co["a"] == pytest.approx(A, rel=1e-9)
    assert co["b"] == pytest.approx(B, rel=1e-9)
    assert co["c"] == pytest.approx(C, rel=1e-9)
    assert out["status"] == "ok" and out["rank"] == 3
    assert len(out["loo"]) == len(MACS) and all(r["predicted"] is not None for r in out["loo"])
    assert out["loo_max_abs_error"] < 1e-9
    # each segment of the path predicted by the fit that left it out
    assert out["paths"][0]["predicted"] == pytest.approx(chain.latency, rel=1e-9)
    assert out["path_max_abs_error"] < 1e-9


def test_leave_one_out_predicts_each_point_from_the_others_only():
    pts = _points()
    # corrupt one point: its own LOO error shows the corruption in full (it is not in its fit)
    pts[3] = Point("s3", "segment", MACS[3], OPS[3], 2 * pts[3].latency)
    loo = {r["name"]: r for r in leave_one_out(pts, ("macs", "feature", "const"))}
    assert loo["s3"]["predicted"] == pytest.approx(_truth(MACS[3], OPS[3]), rel=1e-9)
    assert loo["s3"]["rel_error"] == pytest.approx(-0.5, rel=1e-9)
    # an in-sample fit would spread the error and hide it
    coef, _ = fit(pts, ("macs", "feature", "const"))
    in_sample = coef @ [MACS[3], OPS[3], 1] / pts[3].latency - 1
    assert abs(in_sample) < 0.5


def test_mac_only_model_misses_the_op_term_out_of_sample():
    out = fit_latency_model(_points(noise=0.002, seed=3), [])
    # 0.2 % noise on the large segments is ~10 % of the smallest one's latency: LOO shows that honestly
    assert 0.005 < out["loo_max_abs_error"] < 0.05
    assert out["mac_only"]["loo_max_abs_error"] > 0.5   # ops cost 3 us each, MACs alone cannot see it
    assert set(out["mac_only"]["coefficients"]) == {"a", "c"}


def test_too_few_points_give_no_out_of_sample_errors():
    one = fit_latency_model(_points()[:1], [])
    assert one["coefficients"] is None and one["loo_max_abs_error"] is None
    assert "too few points (1)" in one["status"]
    three = fit_latency_model(_points()[:3], [Path("p", 1.0, 1.0, 2, 1.0)])
    assert three["coefficients"] is not None
    assert all(r["predicted"] is None for r in three["loo"]) and three["loo_max_abs_error"] is None
    assert three["status"].startswith("leave-one-out needs at least 4 points, have 3")
    # the MAC-only model has 2 coefficients, so 3 points allow its leave-one-out
    assert all(r["predicted"] is not None for r in three["mac_only"]["loo"])


def test_collinear_columns_are_reported_not_hidden():
    pts = [Point(f"s{i}", "segment", m, m / 1000.0, _truth(m, m / 1000.0)) for i, m in enumerate(MACS)]
    out = fit_latency_model(pts, [])
    assert out["rank"] == 2 and "collinear" in out["status"]
    assert out["loo_max_abs_error"] < 1e-9   # predictions stay right even if a and b are not unique


def test_monolithic_points_are_left_out_of_the_path_fit():
    pts = _points() + [Point("mono", "monolithic", 500000, 10, 123.0)]   # absurd measurement
    out = fit_latency_model(pts, [Path("mono", 500000, 10, 1, _truth(500000, 10))])
    assert out["paths"][0]["rel_error"] == pytest.approx(0.0, abs=1e-9)
    assert max(abs(r["rel_error"]) for r in out["loo"] if r["name"] == "mono") > 0.9


def test_config_validation_and_round_trip():
    cfg = LatencyModelConfig("bytes")
    assert LatencyModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(UserError, match="feature 'flops': unknown; use one of auto, ops, bytes"):
        LatencyModelConfig("flops")


def test_chain_paths_sum_the_left_out_predictions_of_their_segments():
    pts = _points()
    pts[1] = Point("s1", "segment", MACS[1], OPS[1], 1.5 * pts[1].latency)     # a slow segment 1
    measured = pts[0].latency + pts[1].latency                                   # the chain ran it
    out = fit_latency_model(pts, [Path("0..1", MACS[0] + MACS[1], OPS[0] + OPS[1], 2, measured, ("s0", "s1"))])
    loo = {r["name"]: r["predicted"] for r in out["loo"]}
    assert out["paths"][0]["predicted"] == pytest.approx(loo["s0"] + loo["s1"], rel=1e-12)
    # segment 1's slowness is not in its own prediction, so the chain's error shows it
    assert out["paths"][0]["rel_error"] < -0.1


def test_an_interpolating_fit_gives_no_chain_prediction():
    # 3 segments, 3 coefficients: each segment's left-out fit is underdetermined, so no chain figure
    pts = _points()[:3]
    out = fit_latency_model(pts, [Path("0..1", 1.0, 1.0, 2, 1.0, ("s0", "s1")), Path("mono", MACS[0], OPS[0], 1, 1.0)])
    assert out["paths"][0]["predicted"] is None
    assert out["paths"][1]["predicted"] is not None      # a monolithic model is never a fitted segment
