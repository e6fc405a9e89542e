"""Generated C vs TensorFlow Lite Micro on a run's test split (host tier), and TFLM's own arena need.

`verify_host_tier(run, model, kernels)` compiles the run's generated C with one
kernel set for the host, feeds every segment the test split (segment k > 0 gets
TFLM's own features of segment k-1) and compares logits and features byte for
byte with the `tflite-micro` Python interpreter on the per-segment files.
"""
from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path

import numpy as np

from tinyexit.errors import UserError


def test_split_inputs(run: Path, model: str, seed: int = 12) -> np.ndarray:
    """Segment 0's int8 inputs for the whole test split (N, *input shape).

    The denoiser's network input is (y_t, timestep plane): when the export wrote
    no usable inputs.npz, each test image is binarized to +-1, noised to a step
    t (cycling 1..T) by the forward process (each pixel flips with probability
    (1 - alpha_bar[t]) / 2) and given the timestep plane, from the manifest.
    """
    from tinyexit.bundle import load_bundle, load_test_inputs

    art = load_bundle(Path(run) / "export" / model)
    den = art.manifest.get("denoiser")
    try:
        x, _ = load_test_inputs(art)
    except UserError:
        if not den:
            raise
        x = _denoiser_inputs(Path(run), art, den, seed)
    return x.reshape((len(x), *art.input.shape))


def _denoiser_inputs(run: Path, art, den: dict, seed: int) -> np.ndarray:
    from tinyexit.bundle import quantize
    from tinyexit.models.data import load_dataset
    from tinyexit.rundir import load_config

    images = load_dataset(load_config(run).get("denoiser", {}).get("dataset", "digits")).test.x
    x0 = np.where(images[:, 0] >= 0.5, 1.0, -1.0)                       # (N, H, W)
    T = int(den["T"])
    t = np.arange(len(x0)) % T + 1
    flip = np.asarray(den["alpha_bar"], np.float64)[t]
    rng = np.random.default_rng(seed)
    y = np.where(rng.random(x0.shape) < ((1 - flip) / 2)[:, None, None], -x0, x0)
    plane = np.asarray(den["timestep_encoding"]["values"], np.float64)[t - 1]
    x = np.stack([y, np.broadcast_to(plane[:, None, None], y.shape)], axis=-1)   # NHWC, channel 1 = code
    return quantize(x.astype(np.float32), art.input)


test_split_inputs.__test__ = False  # a helper, not a pytest test


def _tflm():
    try:
        from tflite_micro.python.tflite_micro import runtime
    except ImportError:
        raise UserError("comparing with TensorFlow Lite Micro needs the 'tflite-micro' package; "
                        "install it with: pip install 'tinyexit[export]'") from None
    return runtime


def tflm_outputs(blob: bytes, inputs: np.ndarray) -> list[list[np.ndarray]]:
    """The interpreter's outputs for each input (one interpreter, invoked per sample)."""
    it = _tflm().Interpreter.from_bytes(blob, arena_size=max(256 * 1024, 20 * len(blob)))
    n_out = _n_outputs(blob)
    res = []
    for x in inputs:
        it.set_input(np.asarray(x, np.int8), 0)
        it.invoke()
        res.append([it.get_output(i).copy() for i in range(n_out)])
    return res


def _n_outputs(blob: bytes) -> int:
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as fb
    return len(fb.Model.GetRootAsModel(blob, 0).Subgraphs(0).OutputsAsNumpy())


@contextlib.contextmanager
def _capture_fd2():
    """TFLM's RecordingMicroAllocator prints to the C stderr; collect it."""
    with tempfile.TemporaryFile() as tmp:
        saved = os.dup(2)
        os.dup2(tmp.fileno(), 2)
        out = {}
        try:
            yield out
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            out["text"] = tmp.read().decode(errors="replace")


def tflm_arena_bytes(blob: bytes) -> dict:
    """TFLM's recorded arena use for one model: total, head (tensors), tail (persistent), in bytes.

    Measured by the Python interpreter on this 64-bit host, so TFLM's persistent
    structures (pointers) are larger than on a 32-bit Cortex-M; 'head' is the
    tensor arena proper and does not depend on the pointer size.
    """
    runtime = _tflm()
    it = runtime.Interpreter.from_bytes(blob, arena_size=max(256 * 1024, 20 * len(blob)))
    shape = _input_shape(blob)
    it.set_input(np.zeros(shape, np.int8), 0)
    it.invoke()
    with _capture_fd2() as cap:
        it.print_allocations()
    text = cap["text"]
    vals = {k: int(v) for k, v in re.findall(r"Arena allocation (total|head|tail) (\d+) bytes", text)}
    if "total" not in vals:
        raise UserError("tflite-micro printed no arena report; this tflite-micro version is not supported")
    return vals


def _input_shape(blob: bytes) -> tuple[int, ...]:
    from tinyexit.export.codegen_graph import read_tflite
    g = read_tflite(blob)
    return g.tensors[g.inputs[0]].shape


def _split(outs: list[np.ndarray], seg: dict) -> tuple[np.ndarray, np.ndarray | None]:
    logits = next(o for o in outs if list(o.shape) == seg["logits_shape"])
    rest = [o for o in outs if o is not logits]
    return logits.reshape(-1), (rest[0].reshape(-1) if rest else None)


def verify_host_tier(run: Path, model: str, kernels: str = "reference", workdir: Path | None = None,
                     inputs: np.ndarray | None = None) -> dict:
    """Byte-for-byte comparison of every segment with TFLite Micro; returns a JSON-able summary."""
    import json

    from tinyexit.firmware_bridge.firmware.host import HostRunner, build_host_runner

    run = Path(run)
    mdir = run / "export" / model
    c_dir = mdir / "c"
    if not (c_dir / "codegen.json").is_file():
        raise UserError(f"{c_dir}: no generated C; run 'tinyexit export {run} --formats c' first")
    manifest = json.loads((mdir / "manifest.json").read_text())
    blobs = [(mdir / s["files"]["tflm"]["path"]).read_bytes() for s in manifest["segments"]]
    x = test_split_inputs(run, model) if inputs is None else np.asarray(inputs, np.int8)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        flags = ("-DTE_EMULATE_DSP",) if kernels == "arm_dsp" else ()
        exe = build_host_runner(c_dir, model, Path(tmp) / "runner", kernels, extra_flags=flags)
        runner = HostRunner.from_c_dir(exe, c_dir)
        rows, cur = [], list(x)
        for k, blob in enumerate(blobs):
            seg = runner.segments[k]
            want = [_split(o, seg) for o in tflm_outputs(blob, cur)]
            logits, feats = runner.run_segment(k, np.stack(cur))
            want_l = np.stack([w[0] for w in want])
            row = {"index": k, "samples": len(cur), "logits_equal": bool(np.array_equal(logits, want_l)),
                   "logits_mismatched_samples": int((logits != want_l).any(axis=1).sum())}
            if feats is not None:
                want_f = np.stack([w[1] for w in want])
                row["features_equal"] = bool(np.array_equal(feats, want_f))
                row["features_mismatched_samples"] = int((feats != want_f).any(axis=1).sum())
                cur = [w[1].reshape(runner.segments[k + 1]["in_shape"]) for w in want]
            rows.append(row)
    exact = all(r["logits_equal"] and r.get("features_equal", True) for r in rows)
    return {"kernels": kernels, "samples": int(len(x)), "segments": rows, "bit_exact": exact,
            "reference": "tflite-micro Python interpreter, per-segment files"}
