"""Reading one target's RUN/bench/<target>/ and reducing it to latencies per path.

results.jsonl lines (docs/artifacts.md) carry device ticks per segment executed
and the tick rate.  Ticks become seconds (ticks / tick_hz) or, on QEMU with
`-icount shift=N`, instructions: virtual time advances 2**N ns per instruction,
so one tick of a tick_hz timer is 1e9 / (tick_hz * 2**N) instructions.
Latencies are medians over every sample and repeat of a mode: int8 inference
does the same work for every input, so the spread is timing noise.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tinyexit.errors import UserError
from tinyexit.rundir import read_json

DTYPE_BYTES = {"int8": 1, "uint8": 1, "int16": 2, "int32": 4, "float32": 4}


@dataclass
class TargetRun:
    name: str
    path: Path
    lines: list[dict]
    summary: dict
    discarded_torn_line: bool = False
    models: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Timing:
    unit: str                           # "s" or "instructions"
    instructions_per_tick: float | None  # set when unit == "instructions"
    deterministic: bool


def read_results(path: Path) -> tuple[list[dict], bool]:
    """Lines of results.jsonl; a torn last line (an interrupted write) is dropped and reported."""
    try:
        raw = Path(path).read_text()
    except FileNotFoundError:
        raise UserError(f"{path}: file missing; run 'tinyexit bench RUN --target ...' first") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not text; delete it and re-run 'tinyexit bench'") from None
    rows, torn = [], False
    texts = raw.split("\n")
    for i, text in enumerate(texts, 1):
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
            if not _well_formed(obj):
                raise ValueError("not a result record")
        except ValueError:
            if i == len(texts) and not raw.endswith("\n"):
                torn = True
                continue
            raise UserError(f"{path}: line {i} is not a result record (JSON object with sample, mode, numeric "
                            "ticks); repair or delete the file and re-run 'tinyexit bench'") from None
        rows.append(obj)
    return rows, torn


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _well_formed(r) -> bool:
    """The fields the report computes with have the documented types (a bit flip can keep JSON valid)."""
    if not isinstance(r, dict) or not isinstance(r.get("mode"), str) or not _num(r.get("sample")):
        return False
    ticks = r.get("ticks", [])
    if not isinstance(ticks, list) or not all(_num(t) and t >= 0 for t in ticks):
        return False
    if any(k in r and r[k] is not None and not _num(r[k]) for k in ("tick_hz", "runs", "decision_ticks", "exit")):
        return False
    return not (r.get("mode") == "early_exit" and not _num(r.get("exit")))


def load_target(target_dir: Path) -> TargetRun:
    lines, torn = read_results(target_dir / "results.jsonl")
    summary = read_json(target_dir / "summary.json") if (target_dir / "summary.json").is_file() else {}
    run = TargetRun(target_dir.name, target_dir, lines, summary, torn)
    run.models = sorted({model_of(r, summary) for r in lines})
    return run


def model_of(line: dict, summary: dict) -> str:
    return line.get("model") or summary.get("model") or "classifier"


def timing_of(run: TargetRun) -> Timing:
    """Seconds, or instructions on QEMU: `instructions_per_tick` when the bench states it, 1 when its
    ticks are instructions (`tick_unit`), else derived from the timer rate and `-icount shift`
    (0 unless stated: the only setting tinyexit runs QEMU with)."""
    s = run.summary
    if s.get("instructions_per_tick") is not None:
        return Timing("instructions", float(s["instructions_per_tick"]), True)
    if s.get("tick_unit") == "instructions":
        return Timing("instructions", 1.0, True)
    specs = {str(d.get("spec")) for d in s.get("devices") or [] if isinstance(d, dict)}
    if (s.get("latency_unit") == "instructions" or s.get("icount_shift") is not None or "qemu" in specs
            or (not specs and run.name.startswith("qemu"))):
        hz = s.get("tick_hz") or next((r.get("tick_hz") for r in run.lines if r.get("tick_hz")), None)
        if not hz:
            raise UserError(f"{run.path}: QEMU results without tick_hz; re-run 'tinyexit bench --target qemu'")
        return Timing("instructions", 1e9 / (float(hz) * 2 ** int(s.get("icount_shift") or 0)), True)
    return Timing("s", None, False)


def _scale(line: dict, timing: Timing, run: TargetRun) -> float:
    if timing.unit == "instructions":
        return timing.instructions_per_tick
    hz = line.get("tick_hz") or run.summary.get("tick_hz")
    if not hz:
        raise UserError(f"{run.path / 'results.jsonl'}: sample {line.get('sample')} has no tick_hz; "
                        "re-run 'tinyexit bench'")
    return 1.0 / float(hz)


def line_latency(line: dict, timing: Timing, run: TargetRun, segment: int | None = None) -> float | None:
    """One inference's latency: (segment ticks + exit-decision ticks) / runs, the device having
    repeated the request `runs` times back to back; or segment `segment`'s own share."""
    ticks = line.get("ticks") or []
    runs = max(int(line.get("runs") or 1), 1)
    if segment is not None:
        return ticks[segment] / runs * _scale(line, timing, run) if segment < len(ticks) else None
    if not ticks:
        return None
    return (sum(ticks) + (line.get("decision_ticks") or 0)) / runs * _scale(line, timing, run)


def mode_lines(run: TargetRun, model: str, mode: str) -> list[dict]:
    return [r for r in run.lines if r.get("mode") == mode and model_of(r, run.summary) == model]


def stats(values: list[float]) -> dict:
    if not values:
        return {"median": None, "p90": None, "n": 0}
    a = np.asarray(values, dtype=np.float64)
    return {"median": float(np.median(a)), "p90": float(np.percentile(a, 90)), "n": int(a.size)}


def path_latencies(run: TargetRun, timing: Timing, model: str, mode: str) -> list[float]:
    vals = (line_latency(r, timing, run) for r in mode_lines(run, model, mode))
    return [v for v in vals if v is not None]


def segment_latencies(run: TargetRun, timing: Timing, model: str, j: int) -> list[float]:
    """Segment j's own ticks from every chained per-segment run that reached it."""
    out = []
    for r in run.lines:
        mode = str(r.get("mode", ""))
        if model_of(r, run.summary) != model or not mode.startswith("segment:"):
            continue
        v = line_latency(r, timing, run, segment=j)
        if v is not None:
            out.append(v)
    return out


def first_per_sample(lines: list[dict]) -> list[dict]:
    """One record per sample: timing repeats re-run the same input and must not weigh twice."""
    seen, out = set(), []
    for r in sorted(lines, key=lambda r: (r.get("sample", -1), r.get("repeat") or 0)):
        if r.get("sample") not in seen:
            seen.add(r.get("sample"))
            out.append(r)
    return out


def per_sample_latency(run: TargetRun, timing: Timing, lines: list[dict]) -> dict:
    by: dict = {}
    for r in lines:
        v = line_latency(r, timing, run)
        if v is not None:
            by.setdefault(r.get("sample"), []).append(v)
    return {k: float(np.median(v)) for k, v in by.items()}


def segment_feature(seg: dict, feature: str) -> float:
    if feature == "ops":
        return float(len(seg.get("ops") or []))
    moved = float(seg.get("param_bytes") or 0)
    for t in list(seg.get("inputs") or []) + list(seg.get("outputs") or []):
        moved += float(np.prod(t.get("shape") or [0])) * DTYPE_BYTES.get(t.get("dtype", "int8"), 1)
    return moved


# Monolithic modes of the harness: mode -> (manifest MAC key, manifest file key, key under manifest "monolithic").
MONOLITHIC = {"full": ("full_macs", "full_tflite", "full"),
              "full:all_exits": ("all_exits_macs", "all_exits_tflite", "all_exits")}


def monolithic_feature(manifest: dict, feature: str, model_dir: Path | None = None,
                       mode: str = "full") -> float | None:
    """A monolithic model's op count or bytes, from the manifest's record of it (`monolithic.full` for
    the full-depth model, `monolithic.all_exits`), as export wrote it from the graph.  None when the
    bundle has no such record: eval reads no model file (it may not import export's TFLite reader)."""
    _, _, record_key = MONOLITHIC[mode]
    full = (manifest.get("monolithic") or {}).get(record_key)
    if not isinstance(full, dict):
        return None
    if feature == "ops" and full.get("ops") is not None:
        return float(len(full["ops"]))
    if feature == "bytes" and (full.get("inputs") or full.get("param_bytes") is not None):
        return segment_feature(full, "bytes")
    return None


def fraction(pairs) -> float | None:
    pairs = [bool(p) for p in pairs if p is not None]
    return float(np.mean(pairs)) if pairs else None
