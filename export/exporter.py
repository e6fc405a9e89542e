"""Stage entry: `export_run(run_dir, ExportConfig) -> {model: manifest}`.

For each model family in the run: lower the checkpoint to the export IR,
convert it to full-int8 TFLite (multi-signature, per-segment, full network),
unify the boundary quantization, export ONNX float + QDQ int8 per segment, and
write manifest.json.  Everything is written into a temporary folder beside the
destination and swapped in at the end, so a failed export overwrites nothing.
"""
from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from tinyexit.errors import InternalError, UserError
from tinyexit.export import boundary, manifest as mf, tflite_graph as tg
from tinyexit.export.config import ExportConfig
from tinyexit.export.families import Family, select
from tinyexit.export.lower import lower_segment
from tinyexit.rundir import read_json, require_run_dir, sha256_file, update_config, write_json

DEFAULT_POLICY = {"name": "max_softmax", "params": [0.9]}


def export_run(run_dir, cfg: ExportConfig = ExportConfig(), progress=print) -> dict[str, dict]:
    run = require_run_dir(run_dir)
    formats = set(cfg.formats)
    manifests = {}
    for fam in select(run, cfg.models):
        if formats - {"c"}:
            t0 = time.perf_counter()
            manifests[fam.name] = export_model(run, fam, cfg, progress)
            seconds = time.perf_counter() - t0
            write_json(run / "export" / fam.name / "export_log.json",
                       {"seconds": round(seconds, 3), "export_config": cfg.to_dict()})
            progress(f"export: {fam.name} done in {seconds:.1f} s -> {run / 'export' / fam.name}")
        if "c" in formats:
            _generate_c(run, fam.name, explicit=(formats == {"c"}), progress=progress)
    if formats - {"c"}:
        update_config(run, "export", cfg.to_dict())
    return manifests


def _generate_c(run: Path, model: str, explicit: bool, progress) -> None:
    try:
        from tinyexit.export import codegen
    except ImportError:
        if explicit:
            raise UserError("--formats c: C generation is not available yet in this tinyexit; "
                            "use --formats onnx,tflite,tflm") from None
        progress("export: C generation is not available yet; skipped")
        return
    codegen.generate_c_for_run(run, model)


def run_policy(run: Path, threshold: float | None) -> dict:
    """The run's chosen exit policy (from the report, chosen on val) or max_softmax 0.9; --threshold overrides."""
    path = run / "report" / "report.json"
    policy = dict(DEFAULT_POLICY)
    if path.is_file():
        ee = read_json(path).get("classifier", {}).get("early_exit", {})
        if "policy" in ee and "threshold" in ee:
            policy = {"name": ee["policy"], "params": [float(ee["threshold"])]}
    if threshold is not None:
        policy = {"name": policy["name"], "params": [float(threshold)]}
    return policy


def export_model(run: Path, fam: Family, cfg: ExportConfig, progress=print) -> dict:
    ckpt_path = run / fam.checkpoint
    model = fam.load(ckpt_path)
    data = fam.data(run, model, cfg.calibration_samples)
    segments = [lower_segment(seg, f"segment{k}") for k, seg in enumerate(model.segments)]
    dest = run / "export" / fam.name
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{fam.name}-", dir=dest.parent))
    try:
        manifest = _write_artifacts(tmp, fam, model, segments, data, cfg, run, progress)
        write_json(tmp / "manifest.json", manifest)
        _swap_in(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest


def _swap_in(tmp: Path, dest: Path) -> None:
    old = dest.with_name(f".{dest.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if dest.exists():
        dest.rename(old)
    tmp.rename(dest)
    shutil.rmtree(old, ignore_errors=True)


def _write_artifacts(out: Path, fam, model, segments, data, cfg: ExportConfig, run: Path, progress) -> dict:
    from tinyexit.export import tflite_convert

    formats = set(cfg.formats)
    calib_nhwc = np.ascontiguousarray(np.transpose(data.calib, (0, 2, 3, 1)))
    progress(f"export: {fam.name}: {len(segments)} segments, calibrating on {len(calib_nhwc)} training images")
    tflite_convert.float_check(segments, model.segments, data.calib[:32])
    inputs = tflite_convert.calibration_features(segments, calib_nhwc)
    bundle = tflite_convert.convert(segments, inputs, progress)
    multi, singles = bytearray(bundle.multi), [bytearray(b) for b in bundle.segments]
    full, every = bytearray(bundle.full), bytearray(bundle.all_exits)
    for buf in (multi, full, every, *singles):
        boundary.name_io(buf)
    adjustments = boundary.unify(multi, singles)
    identical = boundary.boundaries_identical(bytes(multi), [bytes(b) for b in singles])

    (out / "tflm").mkdir()
    tflite_name, full_name = f"{fam.name}.int8.tflite", f"{fam.name}.full.int8.tflite"
    every_name = f"{fam.name}.all_exits.int8.tflite"
    (out / tflite_name).write_bytes(multi)
    (out / full_name).write_bytes(full)
    (out / every_name).write_bytes(every)
    seg_files = [{} for _ in segments]
    for k, buf in enumerate(singles):
        (out / f"tflm/segment_{k}.int8.tflite").write_bytes(buf)
    # The TFLite files are always written: the manifest's shapes, quantization and MACs come from them.
    files = {"tflite": mf.file_record(out, tflite_name), "full_tflite": mf.file_record(out, full_name),
             "all_exits_tflite": mf.file_record(out, every_name)}
    for k in range(len(segments)):
        seg_files[k]["tflm"] = mf.file_record(out, f"tflm/segment_{k}.int8.tflite")
    onnx_bounds = _write_onnx(out, model, data, seg_files, progress) if "onnx" in formats else []

    seg_infos = [tg.read_model(bytes(b))[0] for b in singles]
    _check_int8_io(seg_infos + tg.read_model(bytes(multi)) + tg.read_model(bytes(full)) +
                   tg.read_model(bytes(every)))
    seg_recs = [mf.segment_record(k, sg, seg_files[k]) for k, sg in enumerate(seg_infos)]
    full_macs = tg.read_model(bytes(full))[0].macs
    bounds = [{**a, "identical": same, **({"onnx_identical": onnx_bounds[i]} if onnx_bounds else {})}
              for i, (a, same) in enumerate(zip(adjustments, identical))]
    ckpt = {"path": fam.checkpoint, "sha256": sha256_file(run / fam.checkpoint)}
    return mf.build(fam.name, ckpt, model.cfg.to_dict(), cfg.to_dict(), files, seg_recs, full_macs,
                    seg_recs[0]["inputs"][0], data.float_input_range,
                    run_policy(run, cfg.threshold) if fam.name == "classifier" else data.manifest_extra.get("policy"),
                    bounds, {k: v for k, v in data.manifest_extra.items() if k != "policy"})


def _check_int8_io(subgraphs: list[tg.SubgraphInfo]) -> None:
    for sg in subgraphs:
        for t in sg.input_tensors() + sg.output_tensors():
            if t.dtype != "int8" or len(t.scale) != 1:
                raise InternalError(f"subgraph {sg.signature}: I/O tensor {t.name} is {t.dtype}, not per-tensor int8")


def _write_onnx(out: Path, model, data, seg_files: list[dict], progress) -> list[bool]:
    """Float and QDQ int8 ONNX per segment; returns, per boundary, whether the QDQ parameters are identical."""
    import torch

    from tinyexit.export import onnx_export

    (out / "onnx").mkdir()
    x = data.calib
    pinned, identical = None, []
    for k, seg in enumerate(model.segments):
        progress(f"export: ONNX segment {k} (float + QDQ int8)")
        f_rel, q_rel = f"onnx/segment_{k}.onnx", f"onnx/segment_{k}.int8.onnx"
        onnx_export.export_float(seg, x, out / f_rel)
        onnx_export.quantize(out / f_rel, out / q_rel, x, pinned)
        if pinned is not None:
            identical.append(onnx_export.qdq_params(out / q_rel, "x", "input") == pinned)
        seg_files[k]["onnx"] = mf.file_record(out, f_rel)
        seg_files[k]["onnx_int8"] = mf.file_record(out, q_rel)
        if not seg.last:
            pinned = onnx_export.qdq_params(out / q_rel, "features", "output")
            with torch.no_grad():
                x = seg(torch.from_numpy(x))[1].numpy()
    return identical
