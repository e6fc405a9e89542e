"""Per-place figures of a bench sharded over labgrid places (summary.json "places").

Each place gets its own counts, agreement with the host reference, median device latency per mode and
its throughput over the time it was busy (sum of request round trips).  Places are grouped by device
kind (what the device reports: runtime and tick rate); devices of one kind must agree with the host
reference exactly, and a kind's latencies are reported for that kind alone, never averaged with another.
"""
from __future__ import annotations

from collections import defaultdict

from tinyexit.firmware_bridge.harness.figures import frac, latency_s, median


def device_kind_of(info) -> str:
    """A device kind from the facts its INFO carries: runtime name and tick rate."""
    if info is None:
        return "unknown"
    return f"{info.runtime_name or info.runtime}@{info.tick_hz}Hz"


def per_place(records: list[dict], workers) -> dict:
    kinds = {getattr(w.target, "place", None): device_kind_of(w.info) for w in workers if w.target is not None}
    by_place: dict = defaultdict(list)
    for r in records:
        if r.get("place"):
            by_place[r["place"]].append(r)
    places = {p: _figures(rs, kinds.get(p, "unknown")) for p, rs in sorted(by_place.items())}
    for w in workers:  # the RFC 2217 connection's own byte counts (rfc2217_link.py)
        counts = getattr(getattr(w.target, "link", None), "counts", None)
        if counts is not None and w.target.place in places:
            places[w.target.place]["rfc2217"] = counts()
    by_kind: dict = defaultdict(list)
    for p, fig in places.items():
        by_kind[fig["device_kind"]].append(p)
    return {"by_place": places, "by_kind": {k: _kind(ps, by_place) for k, ps in sorted(by_kind.items())}}


def _figures(rs: list[dict], kind: str) -> dict:
    busy = sum(r.get("rtt_s", 0.0) for r in rs)
    samples = len({r["sample"] for r in rs})
    modes = sorted({r["mode"] for r in rs})
    return {"device_kind": kind, "samples": samples, "lines": len(rs),
            "host_logits_equal": frac([r["host_logits_equal"] for r in rs if "host_logits_equal" in r]),
            "exit_agreement": frac([r["exit"] == r["host_exit"] for r in rs if "host_exit" in r]),
            "median_latency_s": {m: median([latency_s(r) for r in rs if r["mode"] == m]) for m in modes},
            "busy_s": round(busy, 4), "samples_per_busy_s": round(samples / busy, 3) if busy else None}


def _kind(places: list[str], by_place: dict) -> dict:
    rs = [r for p in places for r in by_place[p]]
    modes = sorted({r["mode"] for r in rs})
    flags = [r["host_logits_equal"] for r in rs if "host_logits_equal" in r]
    return {"places": places, "samples": len({r["sample"] for r in rs}),
            "all_equal_host_reference": bool(flags) and all(flags),
            "median_latency_s": {m: median([latency_s(r) for r in rs if r["mode"] == m]) for m in modes}}
