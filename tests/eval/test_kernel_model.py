"""Per-kernel predictors: exact recovery of a known cost law, held-out shapes, no negative prediction, flags.

The synthetic sweep prices each layer with a fixed law over the same features the firmware's loops
run (export/microbench.py); a fit on some shapes must predict the held-out ones exactly.  The real
sweep on QEMU is exercised by tests/core/test_profile_cli.py (slow)."""
import numpy as np
import pytest

from tinyexit.eval import kernel_model as km

LAW = {"conv_m1": {"inner": 10.0, "chan_pairs": 41.0, "gather_rows": 42.0, "widen_words": 8.5, "one": 250.0},
       "add": {"out_bytes": 13.0, "one": 62.0},
       "copy": {"in_bytes": 1.5, "out_bytes": 0.5, "one": 20.0}}
EMPTY = {"instructions": 19.0}


def _layer(kind, rng):
    feats = {f: int(rng.integers(1, 5000)) for f in km.features_of(kind) if f != "one"}
    return {"kind": kind, **feats}


def _cost(layers):
    return EMPTY["instructions"] + sum(c * (1.0 if f == "one" else layer[f])
                                       for layer in layers for f, c in LAW[layer["kind"]].items())


def _sweep(n, seed):
    rng = np.random.default_rng(seed)
    pts = []
    for i in range(n):
        kind = ("conv_m1", "add")[i % 2]
        layers = [_layer(kind, rng)] + ([_layer("copy", rng)] if i % 3 == 0 else [])
        pts.append({"layers": layers, "instructions": _cost(layers)})
    return pts


def test_fit_recovers_the_law_and_predicts_held_out_shapes():
    train, held = _sweep(60, 1), _sweep(20, 2)
    fit = km.fit_profile(train, EMPTY)
    prof = {"fit": fit}
    for kind, law in LAW.items():
        for f, c in law.items():
            assert fit["instructions"]["kernels"][kind][f] == pytest.approx(c, rel=1e-6)
    for p in held:
        assert km.predict_layers(prof, p["layers"])["value"] == pytest.approx(p["instructions"], rel=1e-9)
    errs = km.held_out_errors(train, EMPTY, folds=5)
    assert max(abs(e) for e in errs) < 1e-6


def test_predictions_are_never_negative_and_out_of_range_is_flagged():
    fit = km.fit_profile(_sweep(40, 3), EMPTY)
    prof = {"fit": fit}
    tiny = {"kind": "add", "out_bytes": 0}
    assert km.predict_layers(prof, [tiny])["value"] >= 0
    assert all(c >= 0 for k in fit["instructions"]["kernels"].values() for c in k.values())
    hi = fit["ranges"]["add"]["out_bytes"][1]
    res = km.predict_layers(prof, [{"kind": "add", "out_bytes": int(hi) * 10}])
    assert res["out_of_range"] == ["add.out_bytes"]
    res = km.predict_layers(prof, [{"kind": "logistic", "in_bytes": 10, "out_bytes": 10}])
    assert res["unknown_kinds"] == ["logistic"] and res["value"] == EMPTY["instructions"]


def test_weighting_minimises_relative_error():
    # two kinds of points disagree; 1/measured weighting keeps the small one's relative error small too
    pts = [{"layers": [{"kind": "add", "out_bytes": n}], "instructions": 19 + 13 * n + 62 + (n % 7)}
           for n in range(10, 4000, 37)]
    errs = km.held_out_errors(pts, EMPTY, folds=4)
    assert max(abs(e) for e in errs) < 0.05


def test_wall_feature_set_prices_operator_families_in_microseconds():
    """The host agent's profile: conv column modes are one family, priced on MACs, im2col bytes and output."""
    law = {"macs": 2e-4, "im2col": 1e-3, "out_pixels": 0.01, "one": 1.5}
    rng = np.random.default_rng(5)
    pts = []
    for i in range(40):
        layer = {"kind": ("conv_m0", "conv_plain", "conv_m2")[i % 3], "macs": int(rng.integers(100, 10 ** 6)),
                 "out_pixels": int(rng.integers(1, 256)), "kh": 3, "kw": 3, "cin": int(rng.integers(1, 32)),
                 "in_bytes": int(rng.integers(1, 4096)), "out_bytes": int(rng.integers(1, 4096))}
        us = 8.0 + sum(c * km.value_of(layer, f) for f, c in law.items())
        pts.append({"layers": [layer], "us": us})
    fit = km.fit_profile(pts, {"us": 8.0}, ("us",), "wall")
    assert fit["feature_set"] == "wall" and list(fit["us"]["kernels"]) == ["conv"]
    prof = {"fit": fit, "fit_key": "us"}
    for f, c in law.items():
        assert fit["us"]["kernels"]["conv"][f] == pytest.approx(c, rel=1e-6)
    held = {"kind": "conv_m1", "macs": 5000, "out_pixels": 16, "kh": 3, "kw": 3, "cin": 8, "in_bytes": 100,
            "out_bytes": 100}
    assert km.predict_layers(prof, [held])["value"] == pytest.approx(
        8.0 + sum(c * km.value_of(held, f) for f, c in law.items()), rel=1e-9)
    assert km.value_of(held, "im2col") == 16 * 9 * 8


WALL_LAW = {"conv": {"macs": 2e-4, "weights": 3e-3, "out_pixels": 0.01, "one": 0.5},
            "add": {"out_bytes": 1e-3, "one": 0.4},
            "decision_max_softmax": {"logits": 0.1, "one": 1.2}}
INVOKE, RUN = 1.75, 6.5        # microseconds per invoke and per RUN (the first invoke after the device woke up)


def _wall_layer(kind, rng):
    if kind == "conv":
        px = int(rng.integers(1, 64))
        w = int(rng.integers(100, 40000))
        return {"kind": ("conv_m0", "conv_plain")[px % 2], "macs": px * w, "out_pixels": px,
                "in_bytes": int(rng.integers(16, 4096)), "out_bytes": int(rng.integers(16, 4096))}
    return {"kind": "add", "out_bytes": int(rng.integers(16, 4096)), "in_bytes": int(rng.integers(16, 4096))}


def _wall_cost(layers):
    return sum(c * km.value_of(layer, f) for layer in layers
               for f, c in WALL_LAW[km.family(layer["kind"], "wall")].items())


def _wall_sweep(n, seed, burst=8):
    """Models of 1 to 8 layers, each timed as one invoke starting a RUN and as a RUN of `burst` invokes; exit
    tests timed alone (hot)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        kind = ("conv", "add")[i % 2]
        layers = [_wall_layer(kind, rng) for _ in range(1 + i % 8)]
        k = _wall_cost(layers)
        rows.append({"layers": layers, "us": RUN + INVOKE + k, "us_burst": RUN + burst * (INVOKE + k),
                     "burst": burst})
    for n_logits in (2, 10, 64, 256):
        layers = [km.decision_layer("max_softmax", n_logits)]
        rows.append({"layers": layers, "us": _wall_cost(layers), "hot_only": True})
    return rows


def test_wall_fit_separates_per_invoke_and_per_run_overheads_and_predicts_held_out_models_exactly():
    fit = km.fit_profile(_wall_sweep(48, 11), None, ("us",), "wall")
    us = fit["us"]
    assert us["overhead"] == pytest.approx(INVOKE, rel=1e-6) and us["run_overhead"] == pytest.approx(RUN, rel=1e-6)
    assert us["decision_overhead"] == 0.0
    for kind, law in WALL_LAW.items():
        for f, c in law.items():
            assert us["kernels"][kind][f] == pytest.approx(c, rel=1e-6), (kind, f)
    prof = {"fit": fit, "fit_key": "us"}
    held = _wall_sweep(12, 12)
    rng = np.random.default_rng(13)
    chain = [[_wall_layer("conv", rng), _wall_layer("add", rng)] for _ in range(3)]
    # a chain of 3 segments in one RUN: three invokes, one RUN overhead; a later segment alone: no RUN overhead
    assert km.predict_layers(prof, [x for s in chain for x in s], calls=3)["value"] == pytest.approx(
        RUN + 3 * INVOKE + sum(_wall_cost(s) for s in chain), rel=1e-9)
    assert km.predict_layers(prof, chain[1], first=False)["value"] == pytest.approx(INVOKE + _wall_cost(chain[1]),
                                                                                   rel=1e-9)
    for r in held:
        assert km.sweep_error(prof, r, "us") == pytest.approx(0.0, abs=1e-9)
    # an exit test on a logit count the sweep never had: priced per logit, flagged out of range
    res = km.predict_layers(prof, [km.decision_layer("calibrated", 1000)], calls=0, first=False)
    assert res["value"] == pytest.approx(0.1 * 1000 + 1.2) and res["out_of_range"] == ["decision_max_softmax.logits"]
    assert max(abs(e) for e in km.held_out_errors(_wall_sweep(48, 11), None, 4, "us", "wall")) < 1e-6


COLD_LAW = {"cold_weights": 2e-4, "cold_bytes": 5e-4, "cold_layers": 0.3}
SWITCH = 9.0    # the cold sweep RUN follows a RUN on another agent (another process), as a bench RUN follows the harness


def test_wall_fit_prices_a_cold_start_apart_from_the_switch_between_agents():
    rows = _wall_sweep(48, 21)
    for r in rows:
        if not r.get("hot_only"):
            cold = sum(c * v for f, v in km.cold_values(r["layers"]).items() for c in [COLD_LAW[f]])
            r["us_cold"] = r["us"] + cold + SWITCH
    fit = km.fit_profile(rows, None, ("us",), "wall")
    us = fit["us"]
    assert us["switch_overhead"] == pytest.approx(SWITCH, rel=1e-6)
    assert us["cold"] == pytest.approx(COLD_LAW, rel=1e-6)
    assert us["overhead"] == pytest.approx(INVOKE, rel=1e-6) and us["run_overhead"] == pytest.approx(RUN, rel=1e-6)
    prof = {"fit": fit, "fit_key": "us"}
    rng = np.random.default_rng(23)
    seg = [_wall_layer("conv", rng), _wall_layer("add", rng)]
    warm = RUN + INVOKE + _wall_cost(seg)
    refill = sum(COLD_LAW[f] * v for f, v in km.cold_values(seg).items())
    assert km.predict_layers(prof, seg)["value"] == pytest.approx(warm, rel=1e-9)      # warm: no refill
    # a bench RUN starts cold: the switch once (first invoke), the refill of each cold layer
    assert km.predict_layers(prof, seg, cold=seg)["value"] == pytest.approx(warm + SWITCH + refill, rel=1e-9)
    assert km.predict_layers(prof, seg, cold=seg, cold_share=0.5)["value"] == pytest.approx(
        warm + (SWITCH + refill) / 2, rel=1e-9)
    later = km.predict_layers(prof, seg, first=False, cold=seg)["value"]     # a later segment of the RUN
    assert later == pytest.approx(INVOKE + _wall_cost(seg) + refill, rel=1e-9)
    # the exit tests a path runs are never cold (they are Python in the agent, no weights)
    dec = [km.decision_layer("max_softmax", 10)]
    assert km.predict_layers(prof, seg + dec, cold=seg + dec)["value"] == pytest.approx(
        warm + SWITCH + refill + _wall_cost(dec), rel=1e-9)
    for r in rows:
        assert km.sweep_error(prof, r, "us") == pytest.approx(0.0, abs=1e-9)


def test_pointwise_convolutions_are_their_own_wall_family():
    pw = {"kind": "conv_1x1", "kh": 1, "kw": 1, "stride": 1, "macs": 1024, "out_pixels": 64, "cin": 4, "cout": 4}
    assert km.layer_family(pw, "wall:16") == "conv_pw" and km.layer_family(pw, "arm_dsp") == "conv_1x1"
    assert km.layer_family(pw | {"kh": 3, "kw": 3}, "wall") == "conv"
    assert km.layer_family(pw | {"stride": 2}, "wall") == "conv"          # strided: gathered first
    assert km.layer_family({"kind": "conv_m0", "macs": 8}, "wall") == "conv"  # shape unknown: the general kernel
    assert "im2col" not in km.features_of("conv_pw", "wall:8") and "im2col" in km.features_of("conv", "wall:8")
    # a profile fitted before the split prices a pointwise convolution with its one conv family
    old = {"fit_key": "us", "fit": {"feature_set": "wall", "ranges": {}, "us": {
        "kernels": {"conv": {"macs": 0.5, "one": 1.0}}, "overhead": 0.0, "run_overhead": 0.0}}}
    res = km.predict_layers(old, [pw], calls=0, first=False)
    assert res["value"] == pytest.approx(0.5 * 1024 + 1.0) and res["unknown_kinds"] == []


def test_a_cold_start_refills_the_weights_and_the_arena_once():
    conv = {"kind": "conv_m0", "macs": 64 * 288, "out_pixels": 64, "in_bytes": 512, "out_bytes": 512, "kh": 3,
            "kw": 3, "cin": 8}
    add = {"kind": "add", "in_bytes": 512, "out_bytes": 512}
    got = km.cold_values([conv, add, conv])
    # weights: every layer its own (288 bytes per conv); activations: the largest layer's in + out + im2col (the
    # runtime's arena is reused from layer to layer), not the sum of the three layers' traffic
    assert got == {"cold_weights": 576.0, "cold_bytes": 512 + 512 + 64 * 9 * 8, "cold_layers": 3.0}
    assert km.cold_values([]) == {"cold_weights": 0.0, "cold_bytes": 0.0, "cold_layers": 0.0}
