"""Report section "export": int8 artifacts verified on torch, ONNX Runtime, LiteRT and TFLite Micro.

Reads RUN/export/verify.json (written by `tinyexit verify`) and the bundles (through
tinyexit.bundle); never imports tinyexit.export.  Accuracies and bits/dim are **measured** on
the test split; MAC ratios are **analytic**, counted from the exported TFLite graphs.  Keys
(report.json): export.<model>.per_exit[k].{accuracy_float, accuracy_int8_ort,
accuracy_int8_litert, accuracy_int8_tflm, agreement_int8}, export.<model>.boundary_quant_identical,
export.<model>.sizes, export.<model>.policy (with provenance), export.classifier.early_exit_int8.{accuracy,
mac_ratio}, export.denoiser.bits_per_dim_int8.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from tinyexit.errors import UserError
from tinyexit.eval.report import Section
from tinyexit.rundir import read_json

ORDER = 30
HEADING = "## Export: int8 artifacts on four runtimes"
_RUNTIMES = (("accuracy_float", "torch float"), ("accuracy_float_ort", "ORT float"),
             ("accuracy_int8_ort", "ORT int8"), ("accuracy_int8_litert", "LiteRT int8"),
             ("accuracy_int8_tflm", "TFLM int8"))


def build(run_dir: Path, report_dir: Path) -> Section | None:
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


def _bundle(export: Path, name: str):
    from tinyexit.bundle import load_bundle

    try:
        return load_bundle(export / name)
    except UserError:
        return None


def _policy(bundle) -> dict | None:
    if bundle is None or bundle.policy is None:
        return None
    prov = bundle.policy_provenance.to_dict() if bundle.policy_provenance else None
    return {**bundle.policy.to_dict(), "provenance": prov}


def summary(verify: dict, export_dir: Path | None = None) -> dict:
    """report.json["export"]: per model the verify results, plus export time and the bundle's policy."""
    out = {"passed": verify.get("passed"), "thresholds": verify.get("config", {})}
    for name, res in verify.get("models", {}).items():
        d = dict(res)
        if export_dir is not None:
            log = Path(export_dir) / name / "export_log.json"
            if log.is_file():
                d["export_seconds"] = read_json(log).get("seconds")
            policy = _policy(_bundle(Path(export_dir), name))
            if policy:
                d["policy"] = policy
        out[name] = d
    return out


def _pct(v) -> str:
    return "—" if v is None else f"{100 * v:.2f}"


def markdown(verify: dict) -> str:
    lines = [HEADING, "",
             "Accuracy (%) on the test split, **measured**; int8 chains hand the int8 features from one segment to "
             "the next unchanged, as a device does. LSB: largest |LiteRT reference kernels − TFLite Micro| on "
             "identical inputs.", ""]
    for name, res in verify.get("models", {}).items():
        lines += [f"### {name} ({res.get('samples')} test samples) — {'passed' if res.get('passed') else 'FAILED'}", ""]
        if res.get("per_exit") and "accuracy_float" in res["per_exit"][0]:
            if "metric" in res["per_exit"][0]:
                lines += [f"Accuracy here: {res['per_exit'][0]['metric']}; agreement: same sign of the x0-logit "
                          "as torch float, per pixel.", ""]
            lines += _exit_table(res)
        for key, label in (("bits_per_dim_float", "bits/dim float"), ("bits_per_dim_int8", "bits/dim int8")):
            if key in res:
                lines.append(f"- {label}: {res[key]:.4f}")
        ee = res.get("early_exit_int8")
        if ee:
            src = (ee.get("policy_provenance") or {}).get("source", "unknown")
            lines.append(f"- early exit ({ee['policy']['name']} {ee['policy']['params']}, {src}) on TFLM int8: "
                         f"accuracy {_pct(ee['accuracy'])} %, MAC ratio {ee['mac_ratio']:.3f} vs the full network "
                         f"(float: {_pct(ee['accuracy_float'])} %, {ee['mac_ratio_float']:.3f})")
        lines.append(f"- boundary quantization bit-identical: {res.get('boundary_quant_identical')}")
        s = res.get("sizes", {})
        lines.append(f"- bytes: multi-signature TFLite {s.get('tflite_bytes')}, full network {s.get('full_tflite_bytes')},"
                     f" parameters per segment {s.get('param_bytes')}")
        for f in res.get("failures", []):
            lines.append(f"- **FAIL** {f}")
        lines.append("")
    return "\n".join(lines)


def _exit_table(res: dict) -> list[str]:
    cols = [(k, label) for k, label in _RUNTIMES if k in res["per_exit"][0]]
    head = "| exit | " + " | ".join(label for _, label in cols) + " | agreement int8 | max drop (pts) | LSB logits | LSB features |"
    rows = [head, "|" + "---|" * (len(cols) + 5)]
    lsb = {r["segment"]: r for r in res.get("lsb", [])}
    for row in res["per_exit"]:
        k = row["exit"]
        lrow = lsb.get(k, {})
        rows.append(f"| {k} | " + " | ".join(_pct(row.get(c)) for c, _ in cols) +
                    f" | {_pct(row.get('agreement_int8'))} | {row.get('max_drop_points', 0):.2f} | "
                    f"{lrow.get('logits', '—')} | {lrow.get('features', '—')} |")
    return rows + [""]


def _unverified(export: Path) -> tuple[dict, str]:
    """Exported but not verified yet: sizes, boundaries and MAC ratios straight from the bundles."""
    from tinyexit.bundle import load_bundle

    data, lines = {}, []
    for mpath in sorted(export.glob("*/manifest.json")):
        b = load_bundle(mpath.parent)
        data[b.model] = {
            "verified": False,
            "boundary_quant_identical": b.manifest.get("boundary_quant_identical"),
            "sizes": {"files": {r["path"]: r["bytes"] for r in b.all_file_entries()},
                      "param_bytes": [s.get("param_bytes") for s in b.manifest.get("segments", [])]},
            "exits": b.manifest.get("exits"),
            "policy": _policy(b),
        }
        lines.append(f"- {b.model}: exported, not verified (run 'tinyexit verify {export.parent}'); MAC ratio per "
                     f"exit {[round(e.mac_ratio, 3) for e in b.exits]} (analytic, from the graph)")
    if not data:
        return {}, ""
    return data, HEADING + "\n\n" + "\n".join(lines) + "\n"
