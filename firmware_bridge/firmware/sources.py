"""Where the firmware's inputs come from: the bundle and its generated C (RUN/export/<model>/c), nothing else.

`locate(path, model)` accepts a run directory (its export/<model> bundle) or a
bundle directory itself (a folder with manifest.json, copied anywhere); builds
go under the run (or that folder) in firmware/<model>/.  `check_c_sources(bundle)`
returns the c/ folder after checking it holds every file the firmware links and
that codegen.json was generated from the segment files the manifest pins.  The
firmware never regenerates C: `tinyexit export RUN --formats c` does.
"""
from __future__ import annotations

import json
from pathlib import Path

from tinyexit.bundle import Bundle
from tinyexit.errors import UserError

# Bundle file key of a one-subgraph model -> suffix of its C files (<model>_<suffix>_model.c), as
# export/codegen writes them: the monolithic models RUN mode FULL runs.
MONOLITHIC = {"full_tflite": "full", "all_exits_tflite": "all_exits"}


def locate(path, model: str) -> tuple[Path, Path]:
    """(bundle directory, output root) of a run directory or of a bundle directory."""
    from tinyexit.rundir import load_config, require_run_dir

    p = Path(path)
    if (p / "manifest.json").is_file():
        return p.resolve(), p.resolve()
    run = require_run_dir(p)
    load_config(run)  # refuses a run written by a newer tinyexit
    return run / "export" / model, run


def _export_hint(bundle: Bundle) -> str:
    run = bundle.dir.parent.parent if bundle.dir.parent.name == "export" else bundle.dir
    return f"run 'tinyexit export {run} --formats c'"


def check_c_sources(bundle: Bundle) -> Path:
    """The bundle's c/ folder, checked: codegen.json from this bundle's segment files, every linked file present."""
    c_dir = bundle.dir / "c"
    meta = c_dir / "codegen.json"
    if not meta.is_file():
        raise UserError(f"{c_dir if not c_dir.is_dir() else meta} missing; {_export_hint(bundle)}")
    try:
        codegen = json.loads(meta.read_text())
        have = [s.get("source_sha256") for s in codegen["segments"]]
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
        raise UserError(f"{meta}: not a codegen summary; {_export_hint(bundle)}") from None
    want = [(s.files.get("tflm") or {}).get("sha256") for s in bundle.segments]
    if have != want or codegen.get("model_name", bundle.model) != bundle.model:
        raise UserError(f"{c_dir}: generated from other segment files than {bundle.dir}/manifest.json pins "
                        f"(stale C); {_export_hint(bundle)}")
    names = [f"{bundle.model}_model.c", f"{bundle.model}_model.h"]
    for key, suffix in MONOLITHIC.items():
        if bundle.files.get(key):
            names += [f"{bundle.model}_{suffix}_model.c", f"{bundle.model}_{suffix}_model.h",
                      f"{bundle.model}_{suffix}_codegen.json"]
    missing = [n for n in names if not (c_dir / n).is_file()]
    if missing:
        raise UserError(f"{c_dir}: {', '.join(missing)} missing; {_export_hint(bundle)}")
    return c_dir


def codegen_summary(c_dir: Path, name: str = "codegen") -> dict:
    """codegen.json (or <model>_<suffix>_codegen.json): arena, weights, segment layout of the generated C."""
    return json.loads((c_dir / f"{name}.json").read_text())


def monolithic_models(bundle: Bundle, c_dir: Path) -> list[tuple[str, dict]]:
    """(suffix, codegen summary) of each one-subgraph model the bundle lists."""
    return [(suffix, codegen_summary(c_dir, f"{bundle.model}_{suffix}_codegen"))
            for key, suffix in MONOLITHIC.items() if bundle.files.get(key)]
