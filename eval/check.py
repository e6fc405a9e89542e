"""Regression gate: a run's report.json against a baseline JSON.

Stage entry `check_run(run_dir, baseline, CheckConfig)`.  A baseline is a flat
map of metric name -> {"kind", "value"} extracted from a report:

  accuracy       per exit, early exit, agreement   fails if it drops by more than acc_tol (absolute)
  macs           analytic MAC counts                fails on any change (the model changed)
  ratio          latency ratios, early-exit MAC ratio  fails if it grows by more than latency_rel_tol (relative);
                 absolute times are noisy on shared machines, ratios are stable
  count          instruction counts on a deterministic target (QEMU -icount)
                 fails on any change beyond the timer's edge tolerance: +-1 tick per timed segment

Improvements beyond tolerance are reported as such and do not fail; a metric in
the baseline that the run lacks fails.  `--update` writes the run's metrics as
the new baseline (delete entries from the file to stop checking them; an update
rewrites all of them).
"""
from __future__ import annotations

import datetime as _dt
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from tinyexit import __version__
from tinyexit.errors import UserError
from tinyexit.rundir import write_json

FORMAT = "tinyexit-baseline"
KINDS = ("accuracy", "macs", "ratio", "count")


@dataclass(frozen=True)
class CheckConfig:
    acc_tol: float = 0.005
    latency_rel_tol: float = 0.1

    def __post_init__(self):
        if not 0.0 <= self.acc_tol < 1.0:
            raise UserError(f"--acc-tol {self.acc_tol}: must be in [0, 1) (an absolute accuracy difference)")
        if not 0.0 <= self.latency_rel_tol < 10.0:
            raise UserError(f"--latency-rel-tol {self.latency_rel_tol}: must be in [0, 10) (a relative difference)")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "CheckConfig":
        return cls(**d)


@dataclass(frozen=True)
class Row:
    metric: str
    kind: str
    baseline: float | None
    current: float | None
    tolerance: str
    status: str          # ok | moved | improved | regression | missing | new

    @property
    def failed(self) -> bool:
        return self.status in ("regression", "missing")


@dataclass(frozen=True)
class CheckResult:
    rows: list
    baseline_path: Path
    updated: bool = False

    @property
    def regressions(self) -> list[Row]:
        return [r for r in self.rows if r.failed]

    @property
    def ok(self) -> bool:
        return not self.regressions


def extract_metrics(report: dict) -> dict[str, dict]:
    """The checked figures of a report.json, flat and named by their JSON path."""
    m: dict[str, dict] = {}

    def put(name, kind, value, **extra):
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            m[name] = {"kind": kind, "value": value, **extra}

    cls = report.get("classifier") or {}
    acc, macs = cls.get("accuracy") or {}, cls.get("macs") or {}
    for k, v in enumerate(acc.get("per_exit") or []):
        put(f"classifier.accuracy.per_exit[{k}]", "accuracy", v)
    for key in ("early_exit", "baseline"):
        put(f"classifier.accuracy.{key}", "accuracy", acc.get(key))
    for k, v in enumerate(macs.get("per_exit_cumulative") or []):
        put(f"classifier.macs.per_exit_cumulative[{k}]", "macs", v)
    for key in ("full", "baseline"):
        put(f"classifier.macs.{key}", "macs", macs.get(key))
    for target, b in sorted((report.get("bench") or {}).items()):
        _bench_metrics(put, f"bench.{target}", b)
    return m


def _bench_metrics(put, pre: str, b: dict) -> None:
    tick = b.get("tick_instructions") or 1
    exact = bool(b.get("deterministic")) and b.get("latency_unit") == "instructions"
    for key in ("agreement_top1", "agreement_exit"):
        put(f"{pre}.{key}", "accuracy", b.get(key))
    ee = b.get("early_exit") or {}
    put(f"{pre}.early_exit.accuracy", "accuracy", ee.get("accuracy"))
    put(f"{pre}.early_exit.mac_ratio", "ratio", ee.get("mac_ratio"))
    put(f"{pre}.early_exit.latency_ratio", "ratio", ee.get("latency_ratio"))
    for e in b.get("per_exit") or []:
        k = e.get("exit")
        put(f"{pre}.per_exit[{k}].macs", "macs", e.get("macs"))
        put(f"{pre}.per_exit[{k}].latency_ratio", "ratio", e.get("latency_ratio"))
        if exact:
            put(f"{pre}.per_exit[{k}].latency_median", "count", e.get("latency_median"),
                abs_tol=tick * (e.get("segments_timed") or 1))
    if exact:
        for i, layer in enumerate(b.get("per_layer") or []):
            put(f"{pre}.per_layer[{layer.get('name', i)}].instructions", "count", layer.get("instructions"),
                abs_tol=tick)


def compare(baseline: dict[str, dict], current: dict[str, dict], cfg: CheckConfig) -> list[Row]:
    rows = [_compare_one(name, b, current.get(name), cfg) for name, b in baseline.items()]
    rows += [Row(name, c["kind"], None, c["value"], "–", "new")
             for name, c in current.items() if name not in baseline]
    return rows


def _compare_one(name: str, b: dict, c: dict | None, cfg: CheckConfig) -> Row:
    kind, base = b["kind"], b["value"]
    if c is None:
        return Row(name, kind, base, None, "–", "missing")
    cur = c["value"]
    delta = cur - base
    if kind == "accuracy":
        tol = f"±{cfg.acc_tol:g} abs"
        status = "regression" if delta < -cfg.acc_tol else "improved" if delta > cfg.acc_tol else "ok"
    elif kind == "macs":
        tol, status = "exact", "regression" if delta != 0 else "ok"
    elif kind == "ratio":
        tol = f"±{100 * cfg.latency_rel_tol:g} % rel"
        lim = cfg.latency_rel_tol * abs(base)
        status = "regression" if delta > lim else "improved" if delta < -lim else "ok"
    else:
        atol = max(float(b.get("abs_tol") or 0), float(c.get("abs_tol") or 0))
        tol = f"±{atol:g} (±1 timer tick per timed part)"
        status = "regression" if abs(delta) > atol else "ok"
    if status == "ok" and abs(delta) > 1e-12 * max(1.0, abs(base)):   # float noise is not a move
        status = "moved"
    return Row(name, kind, base, cur, tol, status)


def load_report(run_dir: Path) -> dict:
    path = Path(run_dir) / "report" / "report.json"
    if not Path(run_dir).is_dir():
        raise UserError(f"{run_dir}: no such run directory; pass the RUN_DIR that 'tinyexit report' wrote to")
    return _read(path, f"run 'tinyexit report {run_dir}' first")


def load_baseline(path: Path) -> dict[str, dict]:
    data = _read(path, f"create it with 'tinyexit check RUN --baseline {path} --update'")
    metrics = data.get("metrics") if data.get("format") == FORMAT else None
    if not isinstance(metrics, dict):
        raise UserError(f"{path}: not a tinyexit baseline (no format '{FORMAT}' / metrics); "
                        f"recreate it with 'tinyexit check RUN --baseline {path} --update'")
    for name, v in metrics.items():
        ok = isinstance(v, dict) and v.get("kind") in KINDS and isinstance(v.get("value"), (int, float)) \
            and not isinstance(v.get("value"), bool)
        if not ok:
            raise UserError(f"{path}: metric '{name}' needs a kind in {{{', '.join(KINDS)}}} and a numeric value; "
                            "fix the entry or recreate the baseline with --update")
    return metrics


def _read(path: Path, fix: str) -> dict:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: missing; {fix}") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, expected a JSON file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid JSON ({type(exc).__name__}); {fix}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object; {fix}")
    return data


def write_baseline(path: Path, metrics: dict[str, dict], report: dict, cfg: CheckConfig) -> None:
    write_json(Path(path), {
        "format": FORMAT, "version": 1, "tinyexit_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "source": {"run_dir": report.get("run_dir"), "report_generated": report.get("generated")},
        "defaults": cfg.to_dict(), "metrics": metrics})


def check_run(run_dir: Path, baseline: Path, cfg: CheckConfig = CheckConfig(), update: bool = False) -> CheckResult:
    """Stage entry: compare (or with `update`, rewrite) the baseline."""
    from tinyexit.rundir import load_config

    if (Path(run_dir) / "config.json").is_file():
        load_config(Path(run_dir))  # refuses a run written by a newer tinyexit
    report = load_report(run_dir)
    current = extract_metrics(report)
    if not current:
        raise UserError(f"{run_dir}/report/report.json: no accuracy, MAC or bench figures to check; "
                        f"run 'tinyexit bench' and 'tinyexit report {run_dir}' first")
    if update:
        old = load_baseline(baseline) if Path(baseline).is_file() else {}
        rows = compare(old, current, cfg) if old else [Row(n, c["kind"], None, c["value"], "–", "new")
                                                      for n, c in current.items()]
        write_baseline(baseline, current, report, cfg)
        return CheckResult(rows, Path(baseline), updated=True)
    return CheckResult(compare(load_baseline(baseline), current, cfg), Path(baseline))


def format_table(result: CheckResult, all_rows: bool = False) -> str:
    """What moved (or every row), then a one-line verdict."""
    from tinyexit.eval.plots import md_table

    shown = [r for r in result.rows
             if all_rows or r.status not in ("ok", "new") or (result.updated and r.status == "new")]
    lines = []
    if shown:
        lines.append(md_table(["metric", "kind", "baseline", "current", "change", "tolerance", "status"],
                              [[r.metric, r.kind, _num(r.baseline), _num(r.current), _change(r), r.tolerance,
                                r.status.upper() if r.failed and not result.updated else r.status] for r in shown]))
    n_new = sum(r.status == "new" for r in result.rows)
    n_moved = sum(r.status not in ("ok", "new") for r in result.rows)
    new = f", {n_new} new (not in the baseline)" if n_new else ""
    verdict = (f"baseline {result.baseline_path} written ({len(result.rows)} metrics)" if result.updated else
               f"{len(result.rows) - n_new} metrics checked, {n_moved} moved{new}, {len(result.regressions)} "
               "regressions: " + ("OK" if result.ok else "FAILED"))
    return "\n".join(lines + [verdict])


def _num(v) -> str:
    if v is None:
        return "–"
    return f"{v:,}" if isinstance(v, int) else f"{v:.6g}"


def _change(r: Row) -> str:
    if r.baseline is None or r.current is None:
        return "–"
    d = r.current - r.baseline
    if r.kind == "ratio" and r.baseline:
        return f"{100 * d / abs(r.baseline):+.2f} %"
    return f"{d:+,}" if isinstance(d, int) else f"{d:+.4g}"
