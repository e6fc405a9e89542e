"""The early-exit study: accuracy, exit statistics and cost of each policy on a split.

Pure NumPy over saved per-exit logits (RUN/predictions/*.npz), so a report never
re-runs a model.  The run's operating threshold is chosen on the validation split at
training time (tinyexit.models.threshold) and read from the run; the calibrated rows here
are chosen on val too; headline numbers are on test.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from tinyexit.exit_policy import FINE_GRID, ExitPolicy, gather_exit_logits, max_softmax

SWEEP = {
    "max_softmax": (0.1, 0.15, 0.25, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999),
    "entropy": (0.001, 0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.75, 0.9),
    "patience": (1, 2, 3),
}
# The calibrated search starts at 0 (every sample leaves at that exit): an early exit as accurate as
# full depth on val must be reachable, or a 0.5 floor clips the search and hides it.
CALIBRATION_GRID = tuple(float(v) for v in np.round(np.arange(0.0, 0.5, 0.05), 5)) + FINE_GRID
# Calibrated rows: the val accuracy each may lose against full depth (fractions, not points).
CALIBRATION_DROPS = (0.0, 0.005, 0.01, 0.02)


@dataclass(frozen=True)
class Predictions:
    """Per-exit logits (E, N, C) and labels of one split."""
    logits: np.ndarray
    y: np.ndarray


def accuracy(logits: np.ndarray, y: np.ndarray) -> float:
    return float((np.asarray(logits).argmax(-1) == y).mean())


def evaluate(policy: ExitPolicy, p: Predictions, cumulative_macs: list[int]) -> dict:
    """Accuracy, exit fractions and mean MACs of one policy on one split."""
    exits = policy.exit_index(p.logits)
    taken = gather_exit_logits(p.logits, exits)
    n_exits = p.logits.shape[0]
    return {"accuracy": accuracy(taken, p.y),
            "exit_fractions": np.bincount(exits, minlength=n_exits).astype(float).__truediv__(len(exits)).tolist(),
            "mean_macs": float(np.asarray(cumulative_macs, dtype=float)[exits].mean()),
            "exits": exits}


def calibrate(val: Predictions, cumulative_macs: list[int], target_accuracy: float,
              grid=CALIBRATION_GRID) -> tuple[float, ...]:
    """Per-exit max-softmax thresholds meeting `target_accuracy` on val at the least mean MACs."""
    return calibrate_all(val, cumulative_macs, [target_accuracy], grid)[0]


def calibrate_all(val: Predictions, cumulative_macs: list[int], targets: list[float],
                  grid=CALIBRATION_GRID) -> list[tuple[float, ...]]:
    """`calibrate` for several targets in one pass over the grid (each tuple is evaluated once).

    Ties in cost keep the first tuple in grid order (the lowest thresholds); a target no grid tuple
    meets gets all thresholds 1.0 (full depth)."""
    n_free = val.logits.shape[0] - 1
    conf = max_softmax(val.logits[:-1])                    # (E-1, N)
    right = val.logits.argmax(-1) == val.y                 # (E, N)
    cost = np.asarray(cumulative_macs, dtype=float)
    goal = np.asarray(targets, dtype=float) - 1e-12
    best = [tuple([1.0] * n_free)] * len(targets)
    best_cost = np.full(len(targets), np.inf)
    for ts in itertools.product(grid, repeat=n_free):
        exits = np.full(val.y.shape, n_free)
        for k in reversed(range(n_free)):
            exits = np.where(conf[k] >= ts[k], k, exits)
        acc = right[exits, np.arange(len(exits))].mean()
        c = cost[exits].mean()
        for i in np.flatnonzero((acc >= goal) & (c < best_cost)):
            best[i], best_cost[i] = tuple(float(t) for t in ts), c
    return best


def _row(name: str, params: tuple, val: Predictions, test: Predictions, cumulative_macs: list[int],
         baseline_macs: int) -> dict:
    policy = ExitPolicy(name, params)
    t = evaluate(policy, test, cumulative_macs)
    v = evaluate(policy, val, cumulative_macs)
    return {"policy": name, "threshold": params[0] if len(params) == 1 else list(params),
            "accuracy": t["accuracy"], "val_accuracy": v["accuracy"],
            "mac_ratio": t["mean_macs"] / baseline_macs, "mac_ratio_vs_full": t["mean_macs"] / cumulative_macs[-1],
            "mean_macs": t["mean_macs"], "exit_fractions": t["exit_fractions"]}


def calibrated_rows(val: Predictions, test: Predictions, cumulative_macs: list[int], baseline_macs: int,
                    drops=CALIBRATION_DROPS, grid=CALIBRATION_GRID) -> list[dict]:
    """One row per distinct threshold tuple that calibration chose for the drops.

    Several drops often choose the same tuple (when exit 0 alone is as accurate as full depth on val,
    every drop sends everything out at exit 0), which used to give identical rows.  Each row says
    which drops chose it (`chosen_for_drops`: it is the cheapest on val within that drop) and which
    drops' val targets it meets (`meets_drops`), with the full-depth val accuracy they are taken from."""
    val_full = accuracy(val.logits[-1], val.y)
    chosen = calibrate_all(val, cumulative_macs, [val_full - d for d in drops], grid)
    rows = []
    for params in dict.fromkeys(chosen):                   # distinct, in order of the drops
        row = _row("calibrated", params, val, test, cumulative_macs, baseline_macs)
        row["chosen_for_drops"] = [d for d, p in zip(drops, chosen) if p == params]
        row["meets_drops"] = [d for d in drops if row["val_accuracy"] >= val_full - d - 1e-12]
        row["val_full_depth_accuracy"] = val_full
        rows.append(row)
    return rows


def sweep(val: Predictions, test: Predictions, cumulative_macs: list[int], baseline_macs: int) -> list[dict]:
    """Rows of (policy, parameter) -> test/val accuracy, MAC ratios and exit fractions."""
    rows = [_row(name, (v,), val, test, cumulative_macs, baseline_macs) for name, grid in SWEEP.items() for v in grid]
    rows += calibrated_rows(val, test, cumulative_macs, baseline_macs)
    full_macs = cumulative_macs[-1]
    n_exits = test.logits.shape[0]
    for k in range(n_exits):  # every sample leaves at exit k: the per-exit end points of the curves
        rows.append({"policy": "fixed_exit", "threshold": k, "accuracy": accuracy(test.logits[k], test.y),
                     "val_accuracy": accuracy(val.logits[k], val.y), "mac_ratio": cumulative_macs[k] / baseline_macs,
                     "mac_ratio_vs_full": cumulative_macs[k] / full_macs, "mean_macs": float(cumulative_macs[k]),
                     "exit_fractions": [float(i == k) for i in range(n_exits)]})
    return rows


def spike_threshold(rows: list[dict], policy: str = "max_softmax") -> dict:
    """Where in the sweep the MAC ratio changes most between consecutive thresholds."""
    r = [row for row in rows if row["policy"] == policy]
    jumps = [abs(b["mac_ratio"] - a["mac_ratio"]) for a, b in zip(r, r[1:])]
    i = int(np.argmax(jumps))
    return {"threshold": r[i + 1]["threshold"], "from_threshold": r[i]["threshold"], "mac_ratio_change": jumps[i]}


def min_threshold_beating(rows: list[dict], accuracy_to_beat: float, policy: str = "max_softmax"):
    beating = [row["threshold"] for row in rows if row["policy"] == policy and row["accuracy"] > accuracy_to_beat]
    return min(beating) if beating else None


def confidence_split(policy: ExitPolicy, p: Predictions) -> dict:
    """Mean max-softmax of samples leaving early (at their exit) vs. passing through (at the last exit),
    plus both groups' confidence at exit 0, which is what the exit test saw."""
    exits = policy.exit_index(p.logits)
    conf_taken = max_softmax(gather_exit_logits(p.logits, exits))
    conf0 = max_softmax(p.logits[0])
    early = exits < p.logits.shape[0] - 1
    mean = lambda a: float(a.mean()) if a.size else None
    return {"confidence_exiting_early": mean(conf_taken[early]),
            "confidence_passing_through": mean(conf_taken[~early]),
            "exit0_confidence_exiting_early": mean(conf0[early]),
            "exit0_confidence_passing_through": mean(conf0[~early])}


def curve_accuracy_at(rows: list[dict], mac_ratio: float, policy: str = "max_softmax") -> float | None:
    """Early-exit test accuracy at a given MAC ratio, interpolated along the threshold sweep
    extended to its full-depth end point (every sample through the last exit)."""
    last = max(row["threshold"] for row in rows if row["policy"] == "fixed_exit")
    pts = sorted((row["mac_ratio"], row["accuracy"]) for row in rows
                 if row["policy"] == policy or (row["policy"] == "fixed_exit" and row["threshold"] == last))
    xs, ys = np.array([p[0] for p in pts]), np.array([p[1] for p in pts])
    if mac_ratio < xs[0] or mac_ratio > xs[-1]:
        return None
    return float(np.interp(mac_ratio, xs, ys))
