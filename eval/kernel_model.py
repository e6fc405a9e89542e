"""Per-kernel cost models fitted on a device's microbenchmark sweep, and predictions for any model's layers.

A device profile (`tinyexit profile-device`) holds, per sweep point, the layers of a
single-operator model (features from export/microbench.py: kind, MACs, bytes, channel
counts, output pixels, ...) and its measured cost.  `fit_profile` fits one linear
predictor per kernel kind on that kind's justified features, all kinds jointly (a
sweep model may hold a reshape beside its operator), by non-negative least squares
weighted by 1/measured: every coefficient is a cost per unit of a count, so no
prediction can be negative and the fit minimises relative error.

`predict_layers(profile, layers)` sums kernel predictions plus the interval's fixed
overhead; a layer whose features lie outside the sweep's range, or whose kind the
sweep never measured, is flagged (`out_of_range`, `unknown_kinds`), never silently
extrapolated.
"""
from __future__ import annotations

import numpy as np

# Features each kernel's cost is linear in: the trip counts of the firmware's arm_dsp loops
# (export/microbench.py computes them from the lowered layer), plus "one", the call overhead.
_CONV = ("inner", "chan_pairs", "pix_pairs", "gather_taps", "gather_rows", "gather_bytes", "outside_bytes",
         "clamp", "rows", "widen_words", "one")
# packed kernels (te_conv_packed.h): computed channel pairs in chunks of 16 groups, the sign correction where
# act_min < out_zp, pruned channels' constants per pixel pair
_PACKED = ("chunks", "signed_outs", "const_outs", "pair_calls")
FEATURES = {
    "conv_m0": _CONV + _PACKED,           # packed weights, im2col per pixel pair
    "conv_m1": _CONV + _PACKED,           # packed weights, ring of widened input rows
    "conv_m2": _CONV + _PACKED + ("widen_rest",),   # packed weights, zero-point-padded copy of the input
    "conv_1x1": ("inner", "chan_pairs", "pix_pairs", "col_pairs", "col_odd", "rows", "clamp", "one") + _PACKED,
    "conv_plain": _CONV + ("odd_inner", "byte_gather", "fast_outs", "general_outs"),
    "dwconv": ("quad_interior", "quad_taps", "quad_border", "tail_pairs", "tail_odd", "tail_border_taps",
               "tail_outs", "out_bytes", "general_outs", "out_pixels", "one"),   # four channels per word
    "dwconv_pc": ("interior_pairs", "interior_odd", "border_taps", "out_bytes", "general_outs", "out_pixels",
                  "one"),                                                          # per channel
    # te_dwconv.c dw_ring: widened lines per group of 4 channels, 4/2/1-output passes per channel and line
    "dwconv_ring": ("fill_slots", "fill_iters", "fill_words", "groups", "strips", "widen_calls", "img_lines",
                    "zp_lines", "zp_line_words",
                    "mixed_pairs", "mixed_pixels", "main_pairs", "narrow_lines", "narrow_pairs", "narrow_bytes",
                    "chan_calls", "move_calls", "move_words",
                    *(f"{pre}_{n}" for pre in ("s1", "s2", "gs1", "gs2")
                      for n in ("lines", "quad_passes", "two_passes", "one_passes")), "one"),
    # te_fc.c: the input widened once, then blocks of 4 rows (packed) or te_fc_rows4 and single rows (plain)
    "fc": ("widen_words", "widen_tail", "widen_tail_call", "block_groups", "block_chunks", "blocks",
           "block_calls", "tail_rows", "tail_call", "clamp_outs", "one"),
    "fc_plain": ("widen_words", "widen_tail", "widen_tail_call", "row4_groups", "row4_blocks", "row_groups", "rows",
                 "fast_outs", "general_outs", "one"),
    "add": ("out_bytes", "one"),
    "mean": ("quad_iters", "odd_iters", "quads", "odd_c", "one"),
    # te_avgpool.c: 8- and 4-channel int16-lane passes (per run, per window pixel), the per-channel fallback
    "avgpool": ("lane8_passes", "lane8_runs", "lane8_pixels", "lane4_passes", "lane4_runs", "lane4_pixels",
                "chan_outs", "chan_rows", "chan_pixels", "out_pixels", "out_rows", "one"),
    "pad": ("in_bytes", "pad_bytes", "body_rows", "pad_rows", "one"),
    "softmax": ("in_bytes", "rows", "one"),
    # the exit test between two segments (firmware te_policy_passes, agent ExitDecider): per logit and per call
    "decision_max_softmax": ("logits", "one"),
    "decision_entropy": ("logits", "one"),
    "decision_patience": ("logits", "one"),
}
DEFAULT_FEATURES = ("in_bytes", "out_bytes", "one")  # any other kind (copy, requant, logistic)

# A host runtime (LiteRT on the agent) runs its own kernels, not the firmware's loops: its wall clock is priced
# on what any implementation must do (MACs, bytes in and out, output pixels) per operator family; the firmware's
# conv column modes are one family there.
# "weights" (bytes of the weight matrix) prices what a GEMM-based runtime re-packs on every call: on the small
# maps at the deep end of a CNN it costs more than the MACs.
# "blocked_macs": MACs with output channels and pixels rounded up to the B x B blocks of the int8 GEMM kernel a
# runtime's convolution ends in (ruy: B = 8 with AVX2 or NEON, 16 with AVX-512), so a 12-channel or 4-pixel
# convolution pays for 16.
WALL_FEATURES = {"conv": ("macs", "blocked_macs", "weights", "im2col", "in_bytes", "out_bytes", "out_pixels", "one"),
                 "conv_pw": ("macs", "blocked_macs", "weights", "in_bytes", "out_bytes", "out_pixels", "one"),
                 "dwconv": ("macs", "weights", "in_bytes", "out_bytes", "out_pixels", "one"),
                 "fc": ("macs", "weights", "in_bytes", "out_bytes", "one"),
                 # LiteRT's fast MEAN needs the reduced axes kept; without them a generic loop runs per byte
                 "mean": ("in_bytes", "dropped_dims_bytes", "out_bytes", "one"),
                 **{k: v for k, v in FEATURES.items() if k.startswith("decision_")}}
# Columns of a timed interval rather than of a layer (wall-clock profiles fit them; QEMU measures an empty
# interval instead): "invoke" per runtime invoke (a segment, a monolithic model), "run" once per RUN request (the
# first invoke after the device woke up for it pays it; later segments of the same RUN do not).
INTERVAL = "_interval"
INTERVAL_FEATURES = ("invoke", "run")
# A RUN that starts cold pays, once, a refill of its layers' weights, activation bytes and per-layer state, and its
# first invoke a "switch": the sweep times every model warm (after its own RUN) and cold (after a RUN of another
# model on a second agent, another process).  A bench's RUN starts cold too: between two RUNs of one mode the
# harness runs the other modes and records every result while the agent waits (docs/latency.md).
COLD_FEATURES = ("cold_weights", "cold_bytes", "cold_layers")
SWITCH = "switch"


def cold_values(layers: list[dict]) -> dict:
    """The once-per-RUN columns of a model's layers: its weight bytes (MACs per output pixel, every layer its own),
    its activation footprint (the largest in + out + im2col of one layer: a runtime's tensor arena reuses its
    buffers from layer to layer, so a cold RUN refills the arena once, not every layer's traffic) and the layer
    count."""
    w = sum(value_of(layer, "weights") for layer in layers if layer["kind"].startswith(("conv", "dwconv", "fc")))
    b = max((value_of(layer, "in_bytes") + value_of(layer, "out_bytes")
             + (value_of(layer, "im2col") if layer["kind"].startswith("conv") else 0.0) for layer in layers), default=0.0)
    return {"cold_weights": w, "cold_bytes": b, "cold_layers": float(len(layers))}


# "wall:<B>": the GEMM kernel's block is B x B (ruy: 8 with AVX2 or NEON, 16 with AVX-512); a wall-clock profile
# picks B by its held-out error on the sweep (eval/device_profile.py).
GEMM_BLOCKS = (4, 8, 16)
FEATURE_SETS = ("arm_dsp", "wall", *(f"wall:{b}" for b in GEMM_BLOCKS))


def decision_layer(policy: str, n_logits: int) -> dict:
    """The exit test after a segment, as a layer (export/microbench.decision_features writes the same for the
    sweep; eval reads no export code)."""
    policy = "max_softmax" if policy == "calibrated" else policy
    return {"kind": f"decision_{policy}", "macs": 0, "logits": int(n_logits), "in_bytes": int(n_logits),
            "name": f"exit test {policy}"}


def value_of(layer: dict, f: str) -> float:
    """One feature of a layer; "im2col" (bytes a patch-matrix convolution gathers) is derived."""
    if f == "one":
        return 1.0
    if f == "im2col":
        return float(layer.get("out_pixels", 0) * layer.get("kh", 1) * layer.get("kw", 1) * layer.get("cin", 0))
    if f.startswith("blocked_macs"):  # "blocked_macs:<B>"
        b = int(f.partition(":")[2] or 8)
        k = layer.get("kh", 1) * layer.get("kw", 1) * layer.get("cin", 0)
        return float(-(-layer.get("cout", 0) // b) * b * k * (-(-layer.get("out_pixels", 0) // b) * b))
    if f == "weights":  # MACs per output pixel: cout x kh x kw x cin (fc: cin x cout; depthwise: kh x kw x cout)
        return float(layer.get("macs", 0)) / max(1, layer.get("out_pixels", 1))
    return float(layer.get(f, 0))


def family(kind: str, feature_set: str = "arm_dsp") -> str:
    if feature_set.startswith("wall"):
        return "conv" if kind.startswith("conv") else "dwconv" if kind.startswith("dwconv") else \
            "fc" if kind.startswith("fc") else kind
    return kind


def layer_family(layer: dict, feature_set: str = "arm_dsp") -> str:
    """The kernel a layer runs on: its family, and on a wall clock a pointwise convolution (1x1, stride 1) apart,
    as LiteRT runs it: a GEMM straight on the input, where any other convolution first gathers an im2col matrix
    (the conv 8x8x12 3x3 chains of the sweep were 10-13 % under-predicted with one conv family)."""
    fam = family(layer["kind"], feature_set)
    if fam == "conv" and feature_set.startswith("wall") and layer.get("kh") == 1 and layer.get("kw") == 1 \
            and layer.get("stride") == 1:
        return "conv_pw"
    return fam


def features_of(kind: str, feature_set: str = "arm_dsp") -> tuple[str, ...]:
    if feature_set.startswith("wall"):
        block = feature_set.partition(":")[2] or "8"
        return tuple(f"{f}:{block}" if f == "blocked_macs" else f
                     for f in WALL_FEATURES.get(kind if kind in WALL_FEATURES else family(kind, feature_set),
                                                DEFAULT_FEATURES))
    return FEATURES.get(kind, DEFAULT_FEATURES)


def _vector(layer: dict, fs: str = "arm_dsp") -> tuple[str, np.ndarray]:
    kind = layer_family(layer, fs)
    return kind, np.array([value_of(layer, f) for f in features_of(kind, fs)])


def _columns(samples: list[dict], fs: str = "arm_dsp") -> list[tuple[str, str]]:
    kinds = sorted({layer_family(layer, fs) for s in samples for layer in s["layers"]})
    cols = [(k, f) for k in kinds for f in features_of(k, fs)]
    cols += [(INTERVAL, f) for f in INTERVAL_FEATURES if any(s.get(f) for s in samples)]
    return cols + [(INTERVAL, f) for f in (*COLD_FEATURES, SWITCH) if any(s.get("cold") for s in samples)]


def _design(samples: list[dict], columns: list[tuple[str, str]], fs: str = "arm_dsp") -> np.ndarray:
    """One row per sample: its layers' features times `times` (a RUN repeating the model), plus the interval
    columns the sample carries ("invoke", "run"; a cold sample its cold columns and the switch)."""
    index = {c: i for i, c in enumerate(columns)}
    a = np.zeros((len(samples), len(columns)))
    for r, s in enumerate(samples):
        times = float(s.get("times", 1))
        for layer in s["layers"]:
            kind, v = _vector(layer, fs)
            for f, x in zip(features_of(kind, fs), v):
                a[r, index[(kind, f)]] += times * x
        for f in INTERVAL_FEATURES:
            if s.get(f):
                a[r, index[(INTERVAL, f)]] = float(s[f])
        if s.get("cold"):  # once per RUN, however often the RUN repeats the model
            for f, v in cold_values(s["layers"]).items():
                a[r, index[(INTERVAL, f)]] = v
            a[r, index[(INTERVAL, SWITCH)]] = 1.0
    return a


def fit_kernels(samples: list[dict], target: str = "instructions", feature_set: str = "arm_dsp") -> dict:
    """samples: [{"layers": [...features...], target: cost above the empty interval}] -> {kind: {feature: coef}}."""
    from scipy.optimize import nnls

    columns = _columns(samples, feature_set)
    a = _design(samples, columns, feature_set)
    y = np.array([float(s[target]) for s in samples])
    w = 1.0 / np.maximum(y, 1.0)
    scale = np.maximum(np.abs(a).max(axis=0), 1e-12)  # conditioning: columns of unit size
    coef, _ = nnls(a * w[:, None] / scale, y * w, maxiter=50 * len(columns))
    coef = coef / scale
    out: dict = {}
    for (kind, feat), c in zip(columns, coef):
        out.setdefault(kind, {})[feat] = float(c)
    return out


def wall_samples(rows: list[dict], target: str = "us") -> list[dict]:
    """Fit samples of a wall-clock sweep: per model its first interval (one invoke, one RUN) and its RUN of
    `burst` invokes, and (host agent) its cold first interval; an exit-decision row (timed hot, between segments)
    prices its layers alone."""
    out = []
    for r in rows:
        if r.get("hot_only"):
            out.append({"layers": r["layers"], target: r[target]})
            continue
        out.append({"layers": r["layers"], target: r[target], "invoke": 1, "run": 1})
        if r.get("us_burst") is not None:
            out.append({"layers": r["layers"], target: r["us_burst"], "invoke": r["burst"], "run": 1,
                        "times": r["burst"]})
        if r.get(f"{target}_cold") is not None:
            out.append({"layers": r["layers"], target: r[f"{target}_cold"], "invoke": 1, "run": 1, "cold": 1})
    return out


def _ranges(samples: list[dict], fs: str = "arm_dsp") -> dict:
    rng: dict = {}
    for s in samples:
        for layer in s["layers"]:
            kind = layer_family(layer, fs)
            r = rng.setdefault(kind, {})
            for f in features_of(kind, fs):
                if f == "one":
                    continue
                v = value_of(layer, f)
                lo, hi = r.get(f, (v, v))
                r[f] = (min(lo, v), max(hi, v))
    return {k: {f: [lo, hi] for f, (lo, hi) in r.items()} for k, r in rng.items()}


def predict_layer(kernels: dict, ranges: dict, layer: dict, feature_set: str = "arm_dsp") -> dict:
    """{"value", "kind", "known", "out_of_range": [feature names outside the sweep]} for one layer."""
    kind = layer_family(layer, feature_set)
    if kind not in kernels and kind == "conv_pw":  # a profile fitted before pointwise convolutions were apart
        kind = "conv"
    coef = kernels.get(kind)
    if coef is None:
        return {"kind": kind, "value": None, "known": False, "out_of_range": []}
    value = sum(c * value_of(layer, f) for f, c in coef.items())
    oor = [f for f, (lo, hi) in ranges.get(kind, {}).items() if not lo <= value_of(layer, f) <= hi]
    return {"kind": kind, "value": max(0.0, value), "known": True, "out_of_range": oor}


def fit_key(profile: dict) -> str:
    """The measured quantity a profile's fit prices: "instructions" (QEMU) or "us" (wall clock)."""
    return profile.get("fit_key") or profile["fit"].get("key") or "instructions"


def predict_layers(profile: dict, layers: list[dict], target: str | None = None, calls: int = 1,
                   first: bool = True, cold: list[dict] | None = None, cold_share: float = 1.0) -> dict:
    """Predicted cost of `calls` timed intervals (invokes) running `layers`: the sum of kernel predictions, the
    per-invoke overhead per call, when the first of them starts a RUN (`first`) the per-RUN overhead, and for a
    RUN that starts cold (wall clock) `cold_share` times its switch (first invoke) and the `cold` layers' refill."""
    target = target or fit_key(profile)
    kernels = profile["fit"][target]["kernels"]
    ranges = profile["fit"]["ranges"]
    fs = profile["fit"].get("feature_set", "arm_dsp")
    rows = [predict_layer(kernels, ranges, layer, fs) for layer in layers]
    by_kind: dict = {}
    for row in rows:
        if row["value"] is not None:
            by_kind[row["kind"]] = by_kind.get(row["kind"], 0.0) + row["value"]
    fit = profile["fit"][target]
    total = fit["overhead"] * calls + fit.get("run_overhead", 0.0) * bool(first) + sum(by_kind.values())
    if cold and fit.get("cold"):  # the RUN starts cold: its first invoke pays the switch, each cold layer a refill
        total += cold_share * (fit.get("switch_overhead", 0.0) * bool(first) + sum(
            fit["cold"].get(f, 0.0) * v for f, v in cold_values([x for x in cold if not x["kind"].startswith(
                "decision_")]).items()))
    return {"value": total, "by_kind": by_kind, "layers": rows,
            "unknown_kinds": sorted({r["kind"] for r in rows if not r["known"]}),
            "out_of_range": sorted({f"{r['kind']}.{f}" for r in rows for f in r["out_of_range"]})}


def fit_profile(sweep: list[dict], empty: dict, targets: tuple[str, ...] = ("instructions",),
                feature_set: str = "arm_dsp") -> dict:
    """The "fit" block of a device profile: per target the kernels, the overhead, in-sample and LOO errors."""
    fit: dict = {"ranges": _ranges(sweep, feature_set), "feature_set": feature_set, "key": targets[0]}
    for target in targets:
        if empty is None:  # wall clock: the per-invoke and per-RUN overheads are fitted with the kernels
            kernels = fit_kernels(wall_samples(sweep, target), target, feature_set)
            interval = kernels.pop(INTERVAL, {})
            fit[target] = {"kernels": kernels, "overhead": interval.get("invoke", 0.0),
                           "run_overhead": interval.get("run", 0.0), "decision_overhead": 0.0,
                           "cold": {f: interval.get(f, 0.0) for f in COLD_FEATURES},
                           "switch_overhead": interval.get(SWITCH, 0.0)}
        else:
            samples = [{"layers": s["layers"], target: max(0.0, s[target] - empty[target])} for s in sweep]
            kernels = fit_kernels(samples, target, feature_set)
            # the firmware times an exit test between two port_ticks() calls, as it times a segment
            fit[target] = {"kernels": kernels, "overhead": float(empty[target]),
                           "decision_overhead": float(empty[target])}
        errs = _errors(fit, target, sweep)
        fit[target]["in_sample"] = _summary(errs)
        fit[target]["per_kind"] = {k: _summary([e for e, s in zip(errs, sweep)
                                                if layer_family(main_layer(s), feature_set) == k])
                                   for k in sorted(kernels)}
    return fit


def main_layer(s: dict) -> dict:
    """The layer a sweep point measures: its operator with the most MACs (reshapes are helpers)."""
    return max(s["layers"], key=lambda layer: (layer["kind"] not in ("copy", "requant"), layer.get("macs", 0)))


def sweep_error(prof: dict, s: dict, target: str) -> float:
    """Relative error of one sweep point as it was measured: an exit decision alone (hot, between segments),
    any other model as the first invoke of a RUN."""
    hot = bool(s.get("hot_only"))
    pred = predict_layers(prof, s["layers"], target, calls=0 if hot else 1, first=not hot)["value"]
    return (pred - s[target]) / s[target]


def _errors(fit: dict, target: str, sweep: list[dict]) -> list[float]:
    prof = {"fit": fit}
    return [sweep_error(prof, s, target) for s in sweep]


def _summary(errs: list[float]) -> dict:
    a = np.abs(np.asarray(errs, dtype=float))
    if a.size == 0:
        return {"n": 0, "max_abs_error": None, "median_abs_error": None}
    return {"n": int(a.size), "max_abs_error": float(a.max()), "median_abs_error": float(np.median(a))}


def held_out_errors(sweep: list[dict], empty: dict | None, folds: int = 5, target: str = "instructions",
                    feature_set: str = "arm_dsp") -> list[float]:
    """Relative errors of each sweep point predicted by a fit on the other folds (shapes never fitted)."""
    errs = [0.0] * len(sweep)
    for f in range(folds):
        train = [s for i, s in enumerate(sweep) if i % folds != f]
        prof = {"fit": fit_profile(train, empty, (target,), feature_set)}
        for i, s in enumerate(sweep):
            if i % folds == f:
                errs[i] = sweep_error(prof, s, target)
    return errs
