"""Stage entry: `export_run(run_dir, ExportConfig) -> {model: manifest}`.

For each model family in the run: lower the checkpoint to the export IR,
convert it to full-int8 TFLite (multi-signature, per-segment, full network),
unify the boundary quantization, export ONNX float + QDQ int8 per segment, write
the quantized test inputs (inputs.npz) and manifest.json (the bundle, read back by
tinyexit.bundle.load_bundle).  The exit policy comes from the checkpoint, where
training recorded the threshold it chose on val; `--threshold` overrides it and
the manifest says so.  Export never reads a report.  Everything is written into a temporary folder beside the
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
from tinyexit.rundir import load_config, require_run_dir, sha256_file, update_config, write_json

DEFAULT_POLICY = {"name": "max_softmax", "params": [0.9]}


def export_run(run_dir, cfg: ExportConfig = ExportConfig(), progress=print) -> dict[str, dict]:
    from tinyexit.export.quiet import quiet_tensorflow

    quiet_tensorflow()
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


def run_policy(run: Path, threshold: float | None, progress=print) -> dict:
    """The classifier's exit policy with its provenance, as the bundle records it.

    Training chose the threshold on val and saved it with the checkpoint (and in config.json);
    `threshold` (--threshold) overrides it and is recorded as an override.  A run trained before
    thresholds were chosen at training time gets the default, and says so.
    """
    chosen = _chosen_at_training(run)
    if threshold is not None:
        return {"name": chosen["name"] if chosen else DEFAULT_POLICY["name"], "params": [float(threshold)],
                "provenance": {"source": "override (--threshold)",
                               "split": chosen["provenance"].get("split") if chosen else None,
                               "rule": "set by the user with 'tinyexit export --threshold'",
                               "chosen_value": list(chosen["params"]) if chosen else None}}
    if chosen:
        return chosen
    progress(f"export: {run}: no exit threshold chosen at training (checkpoint from an older tinyexit); "
             f"using the default {DEFAULT_POLICY['params'][0]} (retrain, or pass --threshold)")
    return {**DEFAULT_POLICY, "provenance": {"source": "default", "split": None,
                                             "rule": "tinyexit's default max-softmax threshold",
                                             "chosen_value": None}}


def _chosen_at_training(run: Path) -> dict | None:
    """The policy the checkpoint recorded, else the one in config.json's classifier section."""
    from tinyexit.models.train_classifier import read_exit_policy

    ckpt = run / "checkpoints" / "early_exit.pt"
    policy = read_exit_policy(ckpt) if ckpt.is_file() else None
    if not policy and (run / "config.json").is_file():
        policy = load_config(run).get("classifier", {}).get("exit_policy")
    if not policy:
        return None
    return {"name": policy["name"], "params": [float(p) for p in policy["params"]],
            "provenance": dict(policy.get("provenance") or {"source": "chosen at training", "split": "val"})}


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
        swap_in(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest


def swap_in(tmp: Path, dest: Path) -> None:
    """Replace `dest` by the finished folder `tmp`, so a failed stage never leaves half a bundle."""
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
    full_sg, every_sg = tg.read_model(bytes(full))[0], tg.read_model(bytes(every))[0]
    _check_int8_io(seg_infos + tg.read_model(bytes(multi)) + [full_sg, every_sg])
    seg_recs = [mf.segment_record(k, sg, seg_files[k]) for k, sg in enumerate(seg_infos)]
    monolithic = {name: mf.monolithic_record(name, sg) for name, sg in (("full", full_sg), ("all_exits", every_sg))}
    full_macs = full_sg.macs
    bounds = [{**a, "identical": same, **({"onnx_identical": onnx_bounds[i]} if onnx_bounds else {})}
              for i, (a, same) in enumerate(zip(adjustments, identical))]
    ckpt = {"path": fam.checkpoint, "sha256": sha256_file(run / fam.checkpoint)}
    inputs = write_inputs(out, data, seg_recs[0]["inputs"][0], _inputs_source(run, fam.name))
    policy = run_policy(run, cfg.threshold, progress) if fam.name == "classifier" else None
    return mf.build(fam.name, ckpt, model.cfg.to_dict(), cfg.to_dict(), files, seg_recs, full_macs,
                    seg_recs[0]["inputs"][0], data.float_input_range, policy,
                    bounds, {k: v for k, v in data.manifest_extra.items() if k != "policy"}, inputs, monolithic)


def write_inputs(out: Path, data, input_record: dict, source: str) -> dict:
    """inputs.npz: the test split quantized exactly as segment 0's input (tinyexit.bundle.quantize), NHWC int8;
    y = labels (classifier) or the clean ±1 targets NHWC (denoiser); t = the denoiser's step per input."""
    from tinyexit.bundle import INPUTS_FILE, TensorSpec, quantize

    x = quantize(np.transpose(data.test_x, (0, 2, 3, 1)), TensorSpec.from_dict(input_record))
    denoiser = data.test_t is not None
    y = np.transpose(data.test_y, (0, 2, 3, 1)).astype(np.int8) if denoiser else np.asarray(data.test_y, np.int64)
    arrays = {"x": np.ascontiguousarray(x), "y": np.ascontiguousarray(y)}
    if denoiser:
        arrays["t"] = np.asarray(data.test_t, dtype=np.int64)
    with open(out / INPUTS_FILE, "wb") as f:  # np.savez on a path would append .npz to other names
        np.savez(f, **arrays)
    return {**mf.file_record(out, INPUTS_FILE), "n": int(len(x)), "labels": not denoiser, "timesteps": denoiser,
            "source": source}


def _inputs_source(run: Path, model: str) -> str:
    from tinyexit.export.denoiser_family import TEST_SEED

    section = load_config(run).get(model, {}) if (run / "config.json").is_file() else {}
    dataset = section.get("dataset", "digits")
    if model == "denoiser":
        return (f"test split of {dataset}, binarized to ±1, noised to one uniformly drawn step each "
                f"(seed {TEST_SEED}); y = clean ±1 targets, t = the step")
    return f"test split of {dataset}"


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
