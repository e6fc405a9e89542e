"""A per-target latency model, validated only out of sample.

    latency ~= a * MACs + b * F + c,   F = number of ops (default) or bytes moved

fitted with NumPy least squares over every measured segment of every model and
the monolithic models of one target.  With a handful of points and three
coefficients an in-sample fit is always close, so nothing here reports one:

* leave-one-out (LOO): each point is predicted by a fit on all the others;
* paths: an early-exit path (segments 0..k) and a monolithic model are predicted
  from a fit on the segments alone and compared with their own measurement;
* the same for the MAC-only model latency ~= a * MACs + c, so a reader sees what
  the second term buys.

Errors are relative to the measured latency (a fraction), so targets timed in
seconds and in instructions read the same way.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from tinyexit.errors import UserError

FEATURES = ("auto", "ops", "bytes")
_TERM_NAMES = {"ops": "per op", "bytes": "per byte moved", "auto": "per unit of the points' feature"}


@dataclass(frozen=True)
class LatencyModelConfig:
    # The b-term: "ops" (op count), "bytes" (params + activations in/out), or "auto": ops unless the
    # op counts are collinear with MACs and the constant on the measured points (then bytes).
    feature: str = "auto"

    def __post_init__(self):
        if self.feature not in FEATURES:
            raise UserError(f"latency model feature '{self.feature}': unknown; use one of {', '.join(FEATURES)}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "LatencyModelConfig":
        return cls(**d)


@dataclass(frozen=True)
class Point:
    """One measured unit of work: a segment or a monolithic model."""
    name: str
    kind: str            # "segment" or "monolithic"
    macs: float
    feature: float       # ops or bytes, per LatencyModelConfig.feature
    latency: float       # measured median, in the target's latency unit


@dataclass(frozen=True)
class Path:
    """Work measured end to end that is not a fitted point: a chain of segments (an early-exit
    path; `segments` names its points) or a monolithic model (`segments` empty)."""
    name: str
    macs: float
    feature: float
    n_segments: int
    latency: float
    segments: tuple[str, ...] = ()


def full_rank(points, columns=("macs", "feature", "const")) -> bool:
    if len(points) < len(columns):
        return False
    return lstsq(design(points, columns), np.zeros(len(points)))[1] == len(columns)


def design(points, columns: tuple[str, ...]) -> np.ndarray:
    cols = {"macs": [p.macs for p in points], "feature": [p.feature for p in points],
            "const": [1.0] * len(points)}
    return np.array([cols[c] for c in columns], dtype=np.float64).T.reshape(len(points), len(columns))


def lstsq(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, int]:
    """Least squares with columns scaled to unit max, so MACs (~1e5) and a constant
    (1) do not make the SVD cut-off drop a column.  Returns (coefficients, rank)."""
    scale = np.abs(x).max(axis=0)
    scale[scale == 0] = 1.0
    coef, _, rank, _ = np.linalg.lstsq(x / scale, y, rcond=None)
    return coef / scale, int(rank)


def fit(points, columns: tuple[str, ...]) -> tuple[np.ndarray, int]:
    if not points:
        raise UserError("latency model: no measured points; run 'tinyexit bench' with per-segment modes")
    return lstsq(design(points, columns), np.array([p.latency for p in points], dtype=np.float64))


def predict(coef: np.ndarray, columns: tuple[str, ...], macs: float, feature: float, n_calls: int = 1) -> float:
    """A chain of n_calls segments pays the constant once per call."""
    terms = {"macs": macs, "feature": feature, "const": float(n_calls)}
    return float(sum(c * terms[name] for c, name in zip(coef, columns)))


def leave_one_out(points, columns: tuple[str, ...]) -> list[dict]:
    """Each point predicted by a fit on all the others.  A point whose training set
    has fewer points than coefficients gets no prediction (None), never a guess."""
    out = []
    for i, p in enumerate(points):
        rest = points[:i] + points[i + 1:]
        row = {"name": p.name, "kind": p.kind, "macs": p.macs, "feature": p.feature, "measured": p.latency,
               "predicted": None, "rel_error": None}
        if len(rest) >= len(columns):
            coef, rank = fit(rest, columns)
            row["predicted"] = predict(coef, columns, p.macs, p.feature)
            row["rel_error"] = _rel(row["predicted"], p.latency)
            row["rank_deficient"] = rank < len(columns)
        out.append(row)
    return out


def predict_paths(points, paths, columns: tuple[str, ...]) -> list[dict]:
    """Paths predicted from the segment points only.  A chain sums, per segment, the prediction of
    the fit that left that segment out: summing in-sample fits would replay the segments' own
    measurements (a chain's latency is the sum of them) and prove nothing.  A monolithic model is
    never a segment point, so the fit on all segments predicts it out of sample."""
    segs = [p for p in points if p.kind == "segment"]
    loo = {r["name"]: r["predicted"] for r in leave_one_out(segs, columns)}
    coef = fit(segs, columns)[0] if len(segs) >= len(columns) else None
    rows = []
    for q in paths:
        if q.segments:
            parts = [loo.get(n) for n in q.segments]
            pred = sum(parts) if all(v is not None for v in parts) else None
        else:
            pred = None if coef is None else predict(coef, columns, q.macs, q.feature, q.n_segments)
        rows.append({"name": q.name, "measured": q.latency, "predicted": pred,
                     "rel_error": None if pred is None else _rel(pred, q.latency)})
    return rows


def fit_latency_model(points: list[Point], paths: list[Path], cfg: LatencyModelConfig = LatencyModelConfig(),
                      unit: str = "s") -> dict:
    """Stage entry: coefficients from all points; errors only out of sample."""
    full_cols, mac_cols = ("macs", "feature", "const"), ("macs", "const")
    n_seg = sum(p.kind == "segment" for p in points)
    out = {"config": cfg.to_dict(), "unit": unit, "points": len(points), "segment_points": n_seg,
           "terms": {"a": "per MAC", "b": _TERM_NAMES[cfg.feature], "c": "constant per call"},
           "error_unit": "fraction of the measured latency (out of sample)"}
    if len(points) < 2:
        out.update(status=f"too few points ({len(points)}); need at least 2 measured segments",
                   coefficients=None, rank=0, loo=[], loo_max_abs_error=None, paths=[],
                   path_max_abs_error=None, mac_only=None)
        return out
    coef, rank = fit(points, full_cols)
    loo = leave_one_out(points, full_cols)
    out.update(coefficients=dict(zip("abc", (float(c) for c in coef))), rank=rank, loo=loo,
               loo_max_abs_error=_max_abs(loo), paths=predict_paths(points, paths, full_cols))
    out["path_max_abs_error"] = _max_abs(out["paths"])
    out["status"] = _status(len(points), n_seg, rank, len(full_cols))
    mcoef, mrank = fit(points, mac_cols)
    mloo = leave_one_out(points, mac_cols)
    mpaths = predict_paths(points, paths, mac_cols)
    out["mac_only"] = {"coefficients": {"a": float(mcoef[0]), "c": float(mcoef[1])}, "rank": mrank,
                       "loo": mloo, "loo_max_abs_error": _max_abs(mloo),
                       "paths": mpaths, "path_max_abs_error": _max_abs(mpaths)}
    return out


def _status(n: int, n_seg: int, rank: int, n_cols: int) -> str:
    if n - 1 < n_cols:
        return f"leave-one-out needs at least {n_cols + 1} points, have {n}: no out-of-sample errors"
    if n_seg <= n_cols:
        return f"out-of-sample path prediction needs at least {n_cols + 1} segment points, have {n_seg}"
    if rank < n_cols:
        return f"rank {rank} < {n_cols}: the MAC and op/byte columns are collinear; coefficients are not unique"
    return "ok"


def _rel(pred: float, measured: float) -> float | None:
    return None if measured == 0 else float((pred - measured) / measured)


def _max_abs(rows: list[dict]) -> float | None:
    errs = [abs(r["rel_error"]) for r in rows if r.get("rel_error") is not None]
    return max(errs) if errs else None
