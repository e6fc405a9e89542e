"""manifest.json of an exported model (layout in docs/artifacts.md): build it, and check files against it."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tinyexit import __version__
from tinyexit.bundle import SCHEMA_VERSION
from tinyexit.export import tflite_graph as tg
from tinyexit.rundir import sha256_file


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
            "ops": [tg.op_record(op) for op in sg.ops]}


# The monolithic models of a bundle: manifest "monolithic" key -> its file key in "files".
MONOLITHIC_FILES = {"full": "full_tflite", "all_exits": "all_exits_tflite"}


def monolithic_record(name: str, sg: tg.SubgraphInfo) -> dict:
    """One monolithic model (one subgraph: `full` = backbone + last head, `all_exits` = every head),
    recorded as a segment is, so a cost model needs the manifest only, never a TFLite reader."""
    return {"file": MONOLITHIC_FILES[name], "signature": sg.signature or name,
            "inputs": _io(sg, "inputs"), "outputs": _io(sg, "outputs"),
            "param_bytes": sg.param_bytes, "macs": sg.macs, "ops": [tg.op_record(op) for op in sg.ops]}


def exits_record(seg_macs: list[int], full_macs: int) -> list[dict]:
    """Cumulative MACs per exit and their ratio to the full-depth model.  A model without MACs (an imported
    graph of adds and pads) saves nothing by exiting early: its ratio is 1.0, not a division by zero."""
    out, total = [], 0
    for k, m in enumerate(seg_macs):
        total += m
        out.append({"index": k, "cumulative_macs": total, "mac_ratio": total / full_macs if full_macs else 1.0})
    return out


def artifact_hash(files: dict, segments: list[dict]) -> str:
    """sha256 of the multi-signature file's sha256 and every per-segment TFLM file's sha256, one per line."""
    lines = [files.get("tflite", {}).get("sha256", "")] + [s["files"].get("tflm", {}).get("sha256", "")
                                                           for s in segments]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def build(model: str, ckpt: dict, arch_config: dict, export_config: dict, files: dict, segments: list[dict],
          full_macs: int, input_record: dict, float_range, policy: dict | None, boundaries: list[dict],
          extra: dict, inputs: dict | None = None, monolithic: dict | None = None) -> dict:
    """The manifest (docs/artifacts.md, docs/bundle.schema.json); `policy` is {"name", "params",
    "provenance"} or None (the denoiser), `inputs` the inputs.npz file entry, `monolithic`
    {"full": monolithic_record, "all_exits": ...} for the monolithic files exported."""
    config_json = json.dumps(arch_config, sort_keys=True).encode()
    m = {
        "schema_version": SCHEMA_VERSION,
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
        "monolithic": monolithic or {},
        "policy": policy,
        "inputs": inputs,
        "boundaries": boundaries,
        "boundary_quant_identical": all(b["identical"] for b in boundaries),
    }
    m.update(extra)
    return m


def all_files(manifest: dict) -> list[dict]:
    recs = list(manifest.get("files", {}).values())
    for seg in manifest.get("segments", []):
        recs.extend(seg.get("files", {}).values())
    if isinstance(manifest.get("inputs"), dict):
        recs.append(manifest["inputs"])
    return recs
