"""Stage entry: `write_report(run_dir)` -> RUN/report/{report.md, report.json, *.png}.

A report is the concatenation of sections.  Each module `tinyexit.eval.section_*`
contributes one (see docs/artifacts.md); a section that finds nothing in the run
directory returns None and is left out.  Measured and modelled figures are
labelled as such by the sections themselves.
"""
from __future__ import annotations

import datetime as _dt
import importlib
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path

import tinyexit.eval as eval_pkg
from tinyexit import __version__
from tinyexit.eval.headline import headline
from tinyexit.rundir import require_run_dir, write_json


@dataclass
class Section:
    key: str
    data: dict
    markdown: str
    plots: list[str] = field(default_factory=list)


def section_modules() -> list:
    mods = [importlib.import_module(f"tinyexit.eval.{m.name}")
            for m in pkgutil.iter_modules(eval_pkg.__path__) if m.name.startswith("section_")]
    return sorted(mods, key=lambda m: (getattr(m, "ORDER", 100), m.__name__))


def write_report(run_dir: Path, progress=print) -> Path:
    run_dir = require_run_dir(run_dir)
    report_dir = run_dir / "report"
    report_dir.mkdir(parents=True, exist_ok=True)
    data = {"tinyexit_version": __version__, "run_dir": str(run_dir),
            "generated": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    parts = [f"# tinyexit report: `{run_dir.name}`\n",
             f"tinyexit {__version__}. Every figure says whether it was **measured** (on a device, or "
             "computed on data) or **modelled** (derived from a formula or a profile).\n"]
    for mod in section_modules():
        section = mod.build(run_dir, report_dir)
        if section is None:
            continue
        progress(f"report: {section.key} section ({len(section.plots)} plots)")
        data[section.key] = section.data
        parts.append(section.markdown.rstrip() + "\n")
    summary = headline(data)
    if summary:
        parts.insert(2, summary)
    write_json(report_dir / "report.json", data)
    (report_dir / "report.md").write_text("\n".join(parts))
    return report_dir
