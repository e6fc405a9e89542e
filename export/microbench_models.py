"""Stage entry of `tinyexit profile-device`'s first step: the sweep's models, ready for a device.

`firmware_models(points, work)`: C of every point (model `mb<i>`, export.codegen; the exit
decision as a generated call of the firmware's te_policy_passes) for the microbenchmark
firmware, with each model's layer features.  `agent_models(points, work)`: every point as a
bundle the agent serves (the same import as `tinyexit import`): one segment per operator
model; for the exit decision two tiny segments, so the agent runs its own exit test
between them in an early-exit RUN.  Both convert with TensorFlow once per point and keep
the files under `work`, so a rerun resumes.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tinyexit.errors import UserError
from tinyexit.export import microbench as mb

MAX_OUT_BYTES = 256          # a RESULT holds at most 256 logits (protocol MAX_LOGITS)


def cached_tflite(folder: Path, point: mb.SweepPoint, seed: int, max_out_bytes: int | None = None) -> bytes:
    """The point's int8 TFLite file, converted once (keyed by the point, its seed and the output limit)."""
    key_parts = [point.to_dict(), seed] + ([max_out_bytes] if max_out_bytes is not None else [])
    key = hashlib.sha256(json.dumps(key_parts).encode()).hexdigest()[:16]
    return _cached(Path(folder) / f"{point.kind}-{key}.tflite",
                   lambda: [mb.single_op_tflite(point, seed, max_out_bytes)])[0]


def _cached(path: Path, make) -> list[bytes]:
    """Files path, path.1, ... made once by make() -> [bytes, ...]; written atomically, so a rerun resumes."""
    paths = [path] + [path.with_suffix(f".{i}.tflite") for i in range(1, 8)]
    have = [p for p in paths if p.is_file()]
    if have:
        return [p.read_bytes() for p in have]
    blobs = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    for p, blob in zip(paths, blobs):
        tmp = p.with_suffix(".tmp")
        tmp.write_bytes(blob)
        tmp.replace(p)
    return blobs


def _decision_row(p: mb.SweepPoint, name: str) -> dict:
    return {"name": name, "point": p.to_dict(), "label": p.label, "arena_bytes": max(p.cout, 8),
            "layers": [mb.decision_features(p.policy, p.cout)]}


def firmware_models(points: list, work: Path, progress=None) -> tuple[list[dict], list[dict]]:
    """(rows, skipped): C under work/c for every point the converter and the code generator take."""
    rows, skipped, first_decision = [], [], True
    c_dir = Path(work) / "c"
    for i, p in enumerate(points):
        if progress:
            progress(i + 1, len(points), p.label)
        name = f"mb{len(rows)}"
        try:
            if p.kind == mb.DECISION:
                c_dir.mkdir(parents=True, exist_ok=True)
                (c_dir / f"{name}_model.c").write_text(mb.decision_c(p, name, first_decision))
                first_decision = False
                rows.append(_decision_row(p, name))
                continue
            blob = cached_tflite(Path(work) / "tflite", p, i)
            rows.append(mb.write_sweep_c([p], [blob], c_dir, name=name)[0])
        except UserError as exc:
            skipped.append({"point": p.to_dict(), "why": str(exc)})
    return rows, skipped


def agent_models(points: list, work: Path, progress=None) -> tuple[list[dict], list[dict]]:
    """(rows, skipped): each point as a bundle under work/bundles (row["bundle"]); decision rows carry none."""
    rows, skipped = [], []
    for i, p in enumerate(points):
        if progress:
            progress(i + 1, len(points), p.label)
        name = f"mb{i}"
        try:
            if p.kind == mb.DECISION:
                key = hashlib.sha256(json.dumps([p.to_dict(), i]).encode()).hexdigest()[:16]
                blobs = _cached(Path(work) / "tflite" / f"decision-{key}.tflite", lambda: list(mb.decision_tflite(p, i)))
            else:
                blobs = [cached_tflite(Path(work) / "tflite", p, i, MAX_OUT_BYTES)]
        except UserError as exc:
            skipped.append({"point": p.to_dict(), "why": str(exc)})
            continue
        bundle = _imported(Path(work), name, blobs)
        if p.kind == mb.DECISION:  # timed alone: the exit test between the two segments of an early-exit RUN
            rows.append(_decision_row(p, name) | {"bundle": str(bundle)})
            continue
        rows.append({"name": name, "point": p.to_dict(), "label": p.label, "bundle": str(bundle),
                     "layers": mb.model_layers(blobs[0], name, arm_dsp_layout=False)})
    return rows, skipped


def _imported(work: Path, name: str, blobs: list[bytes]) -> Path:
    """The bundle of `blobs` (its segments), imported once per content: a rerun resumes here."""
    from tinyexit.export.import_tflite import ImportConfig, import_tflite

    key = hashlib.sha256(b"".join(blobs)).hexdigest()[:16]
    run = work / "bundles" / key
    bundle = run / "export" / name
    if not (bundle / "manifest.json").is_file():
        srcs = [run / f"segment{k}.tflite" for k in range(len(blobs))]
        run.mkdir(parents=True, exist_ok=True)
        for src, blob in zip(srcs, blobs):
            src.write_bytes(blob)
        import_tflite(srcs, run, ImportConfig(name=name, generate_c=False), progress=lambda *_: None)
    return bundle
