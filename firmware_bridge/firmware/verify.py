"""Generated C vs TensorFlow Lite Micro on the bundle's test inputs (host tier), and TFLM's own arena need.

`verify_host_tier(run, model, kernels)` compiles the bundle's generated C (c/)
with one kernel set for the host, feeds every segment the bundle's quantized
test inputs (inputs.npz; segment k > 0 gets TFLM's own features of segment
k-1) and compares logits and features byte for byte with the `tflite-micro`
Python interpreter on the per-segment files.  A bundle without inputs (an
imported model) is checked on seeded synthetic inputs, and says so.
"""
from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path

import numpy as np

from tinyexit.errors import UserError

SYNTHETIC_N = 64  # inputs for a bundle that carries none: enough to reach every kernel path


def bundle_inputs(bundle, limit: int | None = None) -> tuple[np.ndarray, str]:
    """(segment 0's int8 inputs (N, *input shape), where they came from): inputs.npz, else seeded synthetic."""
    from tinyexit.bundle import read_inputs, synthetic_inputs

    if bundle.inputs:
        x, source = read_inputs(bundle, limit).x, str(bundle.inputs.get("source") or "test split")
    else:
        x, source = synthetic_inputs(bundle, limit or SYNTHETIC_N), "synthetic (seeded)"
    return x.reshape((len(x), *bundle.input.shape)), source


def test_split_inputs(run: Path, model: str) -> np.ndarray:
    """Segment 0's int8 inputs (N, *input shape) of RUN/export/<model> (or a bundle directory): see bundle_inputs.

    For the denoiser they are the export's noised inputs (y_t and the timestep plane of each input's step t)."""
    from tinyexit.bundle import load_bundle
    from tinyexit.firmware_bridge.firmware.sources import locate

    return bundle_inputs(load_bundle(locate(run, model)[0]))[0]


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
    shape = tuple(int(v) for v in it.get_input_details(0)["shape"])
    it.set_input(np.zeros(shape, np.int8), 0)
    it.invoke()
    with _capture_fd2() as cap:
        it.print_allocations()
    text = cap["text"]
    vals = {k: int(v) for k, v in re.findall(r"Arena allocation (total|head|tail) (\d+) bytes", text)}
    if "total" not in vals:
        raise UserError("tflite-micro printed no arena report; this tflite-micro version is not supported")
    return vals


def _split(outs: list[np.ndarray], seg: dict) -> tuple[np.ndarray, np.ndarray | None]:
    logits = next(o for o in outs if list(o.shape) == seg["logits_shape"])
    rest = [o for o in outs if o is not logits]
    return logits.reshape(-1), (rest[0].reshape(-1) if rest else None)


def verify_host_tier(run: Path, model: str, kernels: str = "reference", workdir: Path | None = None,
                     inputs: np.ndarray | None = None, extra_flags: tuple[str, ...] = ()) -> dict:
    """Byte-for-byte comparison of every segment with TFLite Micro; returns a JSON-able summary.

    `run`: a run directory or a bundle directory; its c/ folder must be current (sources.check_c_sources)."""
    from tinyexit.bundle import load_bundle
    from tinyexit.firmware_bridge.firmware.host import HostRunner, build_host_runner
    from tinyexit.firmware_bridge.firmware.sources import check_c_sources, locate

    bundle = load_bundle(locate(run, model)[0])
    c_dir = check_c_sources(bundle)
    model = bundle.model
    blobs = [bundle.file(s.files.get("tflm"), f"TFLite Micro file of segment {s.index}").read_bytes()
             for s in bundle.segments]
    if inputs is None:
        x, source = bundle_inputs(bundle)
    else:
        x, source = np.asarray(inputs, np.int8), "given"
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        flags = (("-DTE_EMULATE_DSP",) if kernels == "arm_dsp" else ()) + tuple(extra_flags)
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
    return {"kernels": kernels, "samples": int(len(x)), "inputs": source, "segments": rows, "bit_exact": exact,
            "reference": "tflite-micro Python interpreter, per-segment files"}
