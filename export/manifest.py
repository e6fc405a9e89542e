"""manifest.json of an exported model (layout in docs/artifacts.md): build it, and check files against it."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tinyexit import __version__
from tinyexit.errors import UserError
from tinyexit.export import tflite_graph as tg
from tinyexit.rundir import read_json, sha256_file


def file_record(root: Path, rel: str) -> dict:
    path = root / rel
    return {"path": rel, "sha256": sha256_file(path), "bytes": path.stat().st_size}


def _io(sg: tg.SubgraphInfo, which: str) -> list[dict]:
    names = {v: k for k, v in (sg.sig_inputs if which == "inputs" else sg.sig_outputs).items()}
    idxs = sg.inputs if which == "inputs" else sg.outputs
    return [sg.tensors[i].io_dict(names.get(i)) for i in idxs]


def segment_record(k: int, sg: tg.SubgraphInfo, files: dict) -> dict:
    """One segment as a device sees it: I/O tensors, cost, op list — all read from the exported graph."""
    return {"index": k, "signature": f"exit{k}", "files": files,
            "inputs": _io(sg, "inputs"), "outputs": _io(sg, "outputs"),
            "param_bytes": sg.param_bytes, "macs": sg.macs,
            "ops": [{"type": op.type, "macs": op.macs} for op in sg.ops]}


def exits_record(seg_macs: list[int], full_macs: int) -> list[dict]:
    out, total = [], 0
    for k, m in enumerate(seg_macs):
        total += m
        out.append({"index": k, "cumulative_macs": total, "mac_ratio": total / full_macs})
    return out


def artifact_hash(files: dict, segments: list[dict]) -> str:
    """sha256 of the multi-signature file's sha256 and every per-segment TFLM file's sha256, one per line."""
    lines = [files.get("tflite", {}).get("sha256", "")] + [s["files"].get("tflm", {}).get("sha256", "")
                                                           for s in segments]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def build(model: str, ckpt: dict, arch_config: dict, export_config: dict, files: dict, segments: list[dict],
          full_macs: int, input_record: dict, float_range, policy: dict, boundaries: list[dict],
          extra: dict) -> dict:
    config_json = json.dumps(arch_config, sort_keys=True).encode()
    m = {
        "tinyexit_version": __version__,
        "model": model,
        "source_checkpoint": ckpt,
        "config": arch_config,
        "config_sha256": hashlib.sha256(config_json).hexdigest(),
        "export_config": export_config,
        "artifact_hash": artifact_hash(files, segments),
        "layout": "NHWC",
        "input": input_record,
        "float_input_range": list(float_range),
        "files": files,
        "segments": segments,
        "exits": exits_record([s["macs"] for s in segments], full_macs),
        "full_macs": full_macs,
        "all_exits_macs": sum(s["macs"] for s in segments),
        "policy": policy,
        "boundaries": boundaries,
        "boundary_quant_identical": all(b["identical"] for b in boundaries),
    }
    m.update(extra)
    return m


def all_files(manifest: dict) -> list[dict]:
    recs = list(manifest.get("files", {}).values())
    for seg in manifest.get("segments", []):
        recs.extend(seg.get("files", {}).values())
    return recs


def load_checked(model_dir: Path) -> dict:
    """Read a manifest and check every file it names exists and matches its sha256."""
    path = model_dir / "manifest.json"
    if not path.is_file():
        raise UserError(f"{path}: missing; run 'tinyexit export {model_dir.parent.parent}' first")
    manifest = read_json(path)
    for key in ("model", "segments", "files", "exits"):
        if key not in manifest:
            raise UserError(f"{path}: no '{key}' key (not a tinyexit manifest); re-run 'tinyexit export'")
    for rec in all_files(manifest):
        f = model_dir / rec["path"]
        if not f.is_file():
            raise UserError(f"{f}: listed in manifest.json but missing; re-run 'tinyexit export "
                            f"{model_dir.parent.parent}'")
        if f.stat().st_size != rec["bytes"] or sha256_file(f) != rec["sha256"]:
            raise UserError(f"{f}: sha256 does not match manifest.json (changed after export); re-run "
                            f"'tinyexit export {model_dir.parent.parent}'")
    return manifest
