"""Report section "export": int8 artifacts verified on torch, ONNX Runtime, LiteRT and TFLite Micro.

Reads RUN/export/verify.json (written by `tinyexit verify`) and the manifests.
Accuracies and bits/dim are **measured** on the test split; MAC ratios are
**analytic**, counted from the exported TFLite graphs.  Keys (report.json):
export.<model>.per_exit[k].{accuracy_float, accuracy_int8_ort, accuracy_int8_litert,
accuracy_int8_tflm, agreement_int8}, export.<model>.boundary_quant_identical,
export.<model>.sizes, export.classifier.early_exit_int8.{accuracy, mac_ratio},
export.denoiser.bits_per_dim_int8.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from tinyexit.eval.report import Section
from tinyexit.rundir import read_json

ORDER = 30


def build(run_dir: Path, report_dir: Path) -> Section | None:
    from tinyexit.export.verify_report import markdown, summary

    export = Path(run_dir) / "export"
    verify = export / "verify.json"
    if verify.is_file():
        results = read_json(verify)
        data = summary(results, export)
        text = markdown(results)
    else:
        data, text = _unverified(export)
        if not data:
            return None
    plots = []
    png = export / "denoiser" / "samples_int8.png"
    if "denoiser" in data and png.is_file():
        name = "export_denoiser_samples_int8.png"
        shutil.copyfile(png, Path(report_dir) / name)
        plots.append(name)
        text = text.rstrip() + f"\n\n![denoiser samples from the int8 network]({name})\n"
    return Section("export", data, text, plots)


def _unverified(export: Path) -> tuple[dict, str]:
    """Exported but not verified yet: sizes, boundaries and MAC ratios straight from the manifests."""
    data, lines = {}, []
    for mpath in sorted(export.glob("*/manifest.json")):
        m = read_json(mpath)
        name = m.get("model", mpath.parent.name)
        data[name] = {
            "verified": False,
            "boundary_quant_identical": m.get("boundary_quant_identical"),
            "sizes": {"files": {r["path"]: r["bytes"] for r in _files(m)},
                      "param_bytes": [s.get("param_bytes") for s in m.get("segments", [])]},
            "exits": m.get("exits"),
        }
        lines.append(f"- {name}: exported, not verified (run 'tinyexit verify {export.parent}'); MAC ratio per "
                     f"exit {[round(e['mac_ratio'], 3) for e in m.get('exits', [])]} (analytic, from the graph)")
    if not data:
        return {}, ""
    return data, "## Export: int8 artifacts on four runtimes\n\n" + "\n".join(lines) + "\n"


def _files(m: dict) -> list[dict]:
    recs = list(m.get("files", {}).values())
    for seg in m.get("segments", []):
        recs.extend(seg.get("files", {}).values())
    return recs
