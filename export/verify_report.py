"""The verify table (Markdown) that `tinyexit verify` prints and writes to RUN/export/verify.md.

The report renders RUN/export/verify.json on its own (tinyexit.eval.section_export); eval never
imports export, so this file only serves verify's own output.
"""
from __future__ import annotations

HEADING = "## Export: int8 artifacts on four runtimes"

_RUNTIMES = (("accuracy_float", "torch float"), ("accuracy_float_ort", "ORT float"),
             ("accuracy_int8_ort", "ORT int8"), ("accuracy_int8_litert", "LiteRT int8"),
             ("accuracy_int8_tflm", "TFLM int8"))


def _pct(v) -> str:
    return "—" if v is None else f"{100 * v:.2f}"


def markdown(verify: dict) -> str:
    lines = [HEADING, "",
             "Accuracy (%) on the test split, **measured**; int8 chains hand the int8 features from one segment to "
             "the next unchanged, as a device does. LSB: largest |LiteRT reference kernels − TFLite Micro| on "
             "identical inputs.", ""]
    for name, res in verify.get("models", {}).items():
        lines += [f"### {name} ({res.get('samples')} test samples) — {'passed' if res.get('passed') else 'FAILED'}", ""]
        if "per_exit" in res and res["per_exit"] and "accuracy_float" in res["per_exit"][0]:
            if "metric" in res["per_exit"][0]:
                lines += [f"Accuracy here: {res['per_exit'][0]['metric']}; agreement: same sign of the x0-logit "
                          "as torch float, per pixel.", ""]
            lines += _exit_table(res)
        for key, label in (("bits_per_dim_float", "bits/dim float"), ("bits_per_dim_int8", "bits/dim int8")):
            if key in res:
                lines.append(f"- {label}: {res[key]:.4f}")
        ee = res.get("early_exit_int8")
        if ee:
            lines.append(f"- early exit ({ee['policy']['name']} {ee['policy']['params']}) on TFLM int8: accuracy "
                         f"{_pct(ee['accuracy'])} %, MAC ratio {ee['mac_ratio']:.3f} vs the full network "
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
