"""Stage entry: `verify_run(run_dir, VerifyConfig) -> dict` — every artifact on the test split.

Runtimes: torch float, ONNX Runtime float and QDQ int8, LiteRT int8 (the
multi-signature file), TFLite Micro int8 (per-segment files), all chained
through the boundaries as a device chains them.  Files are checked (structure,
then sha256 against the manifest) before anything runs or is written, so a bad
artifact stops verify with one line and leaves earlier results in place.
Writes its own results only, RUN/export/verify.json (layout in docs/artifacts.md); it never
touches a report: `tinyexit report` renders verify.json.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tinyexit.bundle import load_bundle
from tinyexit.errors import UserError
from tinyexit.export import boundary, manifest as mf, runtimes as rt, tflite_graph as tg
from tinyexit.export.config import VerifyConfig
from tinyexit.export.families import FAMILIES
from tinyexit.exit_policy import ExitPolicy
from tinyexit.rundir import read_json, require_run_dir, sha256_file, write_json


def verify_run(run_dir, cfg: VerifyConfig = VerifyConfig(), progress=print) -> dict:
    from tinyexit.export.quiet import quiet_tensorflow

    quiet_tensorflow()
    run = require_run_dir(run_dir)
    dirs = _exported(run, cfg.models)
    manifests = {name: check_artifacts(d) for name, d in dirs.items()}
    results = {}
    for name, d in dirs.items():
        progress(f"verify: {name}: running torch, ONNX Runtime, LiteRT and TFLite Micro on the test split")
        results[name] = verify_model(run, d, manifests[name], cfg, progress)
    results = {**_still_valid(run, set(results)), **results}
    out = {"config": cfg.to_dict(), "models": results, "passed": all(r["passed"] for r in results.values())}
    write_json(run / "export" / "verify.json", out)
    for line in _summary_lines(out):
        progress(line)
    progress(f"verify: {'PASSED' if out['passed'] else 'FAILED'} -> {run / 'export' / 'verify.json'}")
    return out


def _summary_lines(out: dict) -> list[str]:
    """One line per model and exit; the full table is the report's (tinyexit.eval.section_export)."""
    lines = []
    for name, res in out["models"].items():
        lines.append(f"verify: {name}: {res.get('samples')} test samples, {'passed' if res.get('passed') else 'FAILED'}")
        for row in res.get("per_exit") or []:
            int8 = {k[len("accuracy_int8_"):]: v for k, v in row.items() if k.startswith("accuracy_int8_")}
            if "accuracy_float" in row and int8:
                lines.append(f"verify:   exit {row['exit']}: float {100 * row['accuracy_float']:.2f} %, int8 "
                             + ", ".join(f"{rt} {100 * v:.2f} %" for rt, v in int8.items()))
        lines += [f"verify:   FAIL {f}" for f in res.get("failures", [])]
    return lines


def _still_valid(run: Path, fresh: set) -> dict:
    """Earlier results of models not verified this time, kept while their export is unchanged."""
    path = run / "export" / "verify.json"
    if not path.is_file():
        return {}
    try:
        old = read_json(path).get("models", {})
    except UserError:
        return {}
    keep = {}
    for name, res in old.items():
        mpath = run / "export" / name / "manifest.json"
        if name not in fresh and isinstance(res, dict) and mpath.is_file() and \
                read_json(mpath).get("artifact_hash") == res.get("artifact_hash"):
            keep[name] = res
    return keep


def _exported(run: Path, wanted: tuple[str, ...]) -> dict[str, Path]:
    names = wanted or tuple(n for n in FAMILIES if (run / "export" / n / "manifest.json").is_file())
    if not names:
        raise UserError(f"{run}/export: nothing exported; run 'tinyexit export {run}' first")
    dirs = {n: run / "export" / n for n in names}
    for n, d in dirs.items():
        if not (d / "manifest.json").is_file():
            raise UserError(f"{d}/manifest.json: missing; run 'tinyexit export {run} --models {n}' first")
    return dirs


def check_artifacts(model_dir: Path) -> dict:
    """Structure of every .tflite/.onnx first (a truncated file says so), then sha256 against the manifest."""
    from tinyexit.export import onnx_export

    man = read_json(model_dir / "manifest.json")
    for rec in mf.all_files(man) if isinstance(man, dict) else []:
        path = model_dir / rec.get("path", "")
        if not path.is_file():
            continue  # reported by load_bundle with the fix
        if path.suffix == ".tflite":
            tg.read_file(path)
            rt.check_loads(path)
        elif path.suffix == ".onnx":
            onnx_export.check(path)
    return load_bundle(model_dir, verify=True).manifest


def verify_model(run: Path, model_dir: Path, man: dict, cfg: VerifyConfig, progress=print) -> dict:
    fam = FAMILIES[man["model"]]
    ckpt = run / man["source_checkpoint"]["path"]
    if not ckpt.is_file() or sha256_file(ckpt) != man["source_checkpoint"]["sha256"]:
        raise UserError(f"{ckpt}: missing or changed since export (sha256 differs from manifest.json); "
                        f"re-run 'tinyexit export {run}'")
    model = fam.load(ckpt)
    data = fam.data(run, model, 8)
    n = cfg.samples or len(data.test_x)
    x, y = data.test_x[:n], data.test_y[:n]
    chains = run_chains(model_dir, man, model, x)
    lsb = lsb_differences(model_dir, man, chains["tflm_int8"])
    if man["model"] == "classifier":
        result = score_classifier(man, chains, y, cfg)
    else:
        from tinyexit.export import denoiser_family
        result = denoiser_family.score(run, man, chains, model, data, cfg, progress)
    singles = [(model_dir / s["files"]["tflm"]["path"]).read_bytes() for s in man["segments"]]
    same = boundary.boundaries_identical((model_dir / man["files"]["tflite"]["path"]).read_bytes(), singles)
    result.update({
        "artifact_hash": man["artifact_hash"],
        "samples": int(n),
        "boundary_quant_identical": all(same),
        "boundaries": [{"boundary": k, "identical": s} for k, s in enumerate(same)],
        "lsb": lsb,
        "sizes": sizes(model_dir, man),
    })
    return result


def run_chains(model_dir: Path, man: dict, model, x: np.ndarray) -> dict[str, rt.ChainResult]:
    segs = man["segments"]
    xh = rt.to_nhwc(x)
    chains = {"torch_float": rt.torch_chain(model, x)}
    if all("onnx" in s["files"] for s in segs):
        chains["ort_float"] = rt.ort_chain([model_dir / s["files"]["onnx"]["path"] for s in segs], x)
        chains["ort_int8"] = rt.ort_chain([model_dir / s["files"]["onnx_int8"]["path"] for s in segs], x)
    chains["litert_int8"] = rt.litert_chain(model_dir / man["files"]["tflite"]["path"], man, xh)
    tflm = [rt.segment_runner_tflm(model_dir / s["files"]["tflm"]["path"], len(s["outputs"])) for s in segs]
    chains["tflm_int8"] = rt.per_segment_chain(tflm, man, xh)
    return chains


def lsb_differences(model_dir: Path, man: dict, tflm: rt.ChainResult) -> list[dict]:
    """Per segment and output: largest |LiteRT reference kernels - TFLite Micro| in LSB on identical int8 inputs."""
    out = []
    for k, seg in enumerate(man["segments"]):
        ref = rt.segment_runner_litert_ref(model_dir / seg["files"]["tflm"]["path"])
        got = [ref(q) for q in tflm.inputs[k]]
        row = {"segment": k}
        for j, o in enumerate(seg["outputs"]):
            a = np.stack([g[j] for g in got]).astype(np.int32).reshape(len(got), -1)
            b = tflm.int8[k][o["name"]].astype(np.int32).reshape(len(got), -1)
            row[o["name"]] = int(np.abs(a - b).max())
        out.append(row)
    return out


def _acc(logits: np.ndarray, y: np.ndarray) -> float:
    return float((logits.argmax(-1) == y).mean())


def score_classifier(man: dict, chains: dict, y: np.ndarray, cfg: VerifyConfig) -> dict:
    ref = chains["torch_float"].logits
    int8_names = [n for n in ("ort_int8", "litert_int8", "tflm_int8") if n in chains]
    per_exit, failures = [], []
    for k in range(len(ref)):
        top = ref[k].argmax(-1)
        row = {"exit": k, "accuracy_float": _acc(ref[k], y)}
        if "ort_float" in chains:
            row["accuracy_float_ort"] = _acc(chains["ort_float"].logits[k], y)
        for name in int8_names:
            short = name.replace("_int8", "")
            row[f"accuracy_int8_{short}"] = _acc(chains[name].logits[k], y)
            row[f"agreement_int8_{short}"] = float((chains[name].logits[k].argmax(-1) == top).mean())
        row["agreement_int8"] = min(row[f"agreement_int8_{n.replace('_int8', '')}"] for n in int8_names)
        row["max_drop_points"] = 100 * max(row["accuracy_float"] - row[f"accuracy_int8_{n.replace('_int8', '')}"]
                                           for n in int8_names)
        if row["max_drop_points"] > cfg.max_drop_points:
            failures.append(f"exit {k}: int8 drops {row['max_drop_points']:.2f} points (> {cfg.max_drop_points})")
        if row["agreement_int8"] < cfg.min_agreement:
            failures.append(f"exit {k}: int8 agrees on {100 * row['agreement_int8']:.2f} % of top-1 "
                            f"(< {100 * cfg.min_agreement:g} %)")
        per_exit.append(row)
    return {"per_exit": per_exit, "early_exit_int8": early_exit(man, chains, y, cfg.threshold),
            "failures": failures, "passed": not failures}


def early_exit(man: dict, chains: dict, y: np.ndarray, threshold: float | None) -> dict:
    """Exit decisions on the TFLite Micro int8 logits (what the device computes), and on float for comparison."""
    pol = man.get("policy") or {"name": "max_softmax", "params": [0.9]}
    policy = ExitPolicy(pol["name"], tuple(pol["params"]) if threshold is None else (threshold,))
    cum = np.array([e["cumulative_macs"] for e in man["exits"]], dtype=np.float64)
    prov = (man.get("policy") or {}).get("provenance") if threshold is None else \
        {"source": "override (verify --threshold)", "chosen_value": list((man.get("policy") or {}).get("params", []))}
    out = {"policy": policy.to_dict(), "policy_provenance": prov, "runtime": "tflm_int8"}
    for tag, chain in (("", chains["tflm_int8"]), ("_float", chains["torch_float"])):
        logits = np.stack(chain.logits)
        idx = policy.exit_index(logits)
        pred = logits[idx, np.arange(len(idx))].argmax(-1)
        out[f"accuracy{tag}"] = float((pred == y).mean())
        out[f"mean_macs{tag}"] = float(cum[idx].mean())
        out[f"mac_ratio{tag}"] = float(cum[idx].mean() / man["full_macs"])
        out[f"exit_fractions{tag}"] = [float((idx == k).mean()) for k in range(len(cum))]
    return out


def sizes(model_dir: Path, man: dict) -> dict:
    files = {rec["path"]: rec["bytes"] for rec in mf.all_files(man)}
    return {"files": files, "param_bytes": [s["param_bytes"] for s in man["segments"]],
            "tflite_bytes": man["files"]["tflite"]["bytes"], "full_tflite_bytes": man["files"]["full_tflite"]["bytes"]}
