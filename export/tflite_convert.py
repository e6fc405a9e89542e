"""IR segments -> full-int8 TFLite: the multi-signature file, the per-segment files, the full network.

One SavedModel holds one concrete function per segment (signature `exit<k>`)
plus the whole network (signature `full`); the converter is asked for
different subsets of its signatures.  Calibration of segment k uses the float
features that segment k-1 produces on the calibration images, so both sides
of every boundary see the same data (the post-pass in `boundary` then makes
their quantization bit-identical).
"""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import warnings
from dataclasses import dataclass

import numpy as np

from tinyexit.errors import InternalError, UserError
from tinyexit.export.lower import SegmentIR, full_network


@dataclass
class TFLiteBundle:
    multi: bytes                 # one signature per segment
    segments: list[bytes]        # single-subgraph files for TFLite Micro
    full: bytes                  # the whole network, one subgraph
    all_exits: bytes             # every exit head in one subgraph
    float_logits_max_err: list[float]   # TF float vs torch float, per segment (a lowering check)


def _tf():
    from tinyexit.export.quiet import import_tensorflow

    return import_tensorflow()  # without its banners (export/quiet.py)


def calibration_features(segments: list[SegmentIR], x0: np.ndarray) -> list[np.ndarray]:
    """Float NHWC input of every segment on the calibration set, computed through the TF mirror."""
    from tinyexit.export.tf_mirror import segment_function

    tf = _tf()
    inputs, x = [], x0
    for seg in segments:
        inputs.append(x)
        if not seg.last:
            x = segment_function(seg)(tf.constant(x))["features"].numpy()
    return inputs


def convert(segments: list[SegmentIR], calib_inputs: list[np.ndarray], progress=print) -> TFLiteBundle:
    """Build the SavedModel once and convert the three views of it."""
    from tinyexit.export.tf_mirror import all_exits_function, segment_function

    tf = _tf()
    full = full_network(segments)
    module = tf.Module()
    signatures = {}
    shapes = [[1, *a.shape[1:]] for a in calib_inputs]
    for k, seg in enumerate(segments + [full]):
        key = "full" if seg is full else f"exit{k}"
        fn = tf.function(segment_function(seg), input_signature=[tf.TensorSpec(shapes[0 if seg is full else k],
                                                                               tf.float32, name="x")])
        setattr(module, key, fn)
        signatures[key] = fn.get_concrete_function()
    fn = tf.function(all_exits_function(segments), input_signature=[tf.TensorSpec(shapes[0], tf.float32, name="x")])
    module.all_exits = fn
    signatures["all_exits"] = fn.get_concrete_function()
    data = {f"exit{k}": a for k, a in enumerate(calib_inputs)}
    data["full"] = data["all_exits"] = calib_inputs[0]
    with tempfile.TemporaryDirectory(prefix="tinyexit-savedmodel-") as tmp:
        tf.saved_model.save(module, tmp, signatures=signatures)
        keys = [f"exit{k}" for k in range(len(segments))]
        progress(f"export: converting {len(keys)} signatures to one int8 TFLite file")
        multi = _convert(tf, tmp, keys, data)
        progress("export: converting per-segment TFLite Micro files, the full network and the all-exits network")
        singles = [_convert(tf, tmp, [key], data) for key in keys]
        whole = _convert(tf, tmp, ["full"], data)
        every = _convert(tf, tmp, ["all_exits"], data)
    return TFLiteBundle(multi, singles, whole, every, [])


def full_int8(tf, conv, representative):
    """`conv` (a TFLiteConverter) set for post-training full-int8 quantization: int8 kernels only, int8 input
    and output, calibrated on what `representative()` yields; the one place these settings are written."""
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    return conv


def _convert(tf, saved_model: str, keys: list[str], data: dict[str, np.ndarray]) -> bytes:
    def representative():
        for key in keys:
            for row in data[key]:
                yield key, {"x": row[None].astype(np.float32)}

    conv = full_int8(tf, tf.lite.TFLiteConverter.from_saved_model(saved_model, signature_keys=keys), representative)
    try:
        with warnings.catch_warnings(), _native_output_silenced():
            warnings.simplefilter("ignore")  # the converter's calibrator still uses tf.lite.Interpreter
            return bytes(conv.convert())
    except Exception as exc:  # the converter reports unsupported ops as generic errors
        raise UserError(f"TFLite conversion of {', '.join(keys)} failed ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else ''}); the network uses an op TFLite int8 "
                        "cannot express") from None


@contextlib.contextmanager
def _native_output_silenced():
    """The converter's C++ code prints to the process's stdout/stderr; keep the progress lines readable."""
    saved = [os.dup(1), os.dup(2)]
    with open(os.devnull, "wb") as null:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(null.fileno(), 1)
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def float_check(segments: list[SegmentIR], torch_segments, x_nchw: np.ndarray, tol: float = 1e-3) -> list[float]:
    """Largest |TF float - torch float| on the logits of every segment; refuses a lowering that disagrees."""
    import torch

    from tinyexit.export.tf_mirror import segment_function

    tf = _tf()
    errs = []
    xt, xf = torch.from_numpy(x_nchw), np.ascontiguousarray(np.transpose(x_nchw, (0, 2, 3, 1)))
    with torch.no_grad():
        for seg_ir, seg in zip(segments, torch_segments):
            out = seg(xt)
            got = segment_function(seg_ir)(tf.constant(xf))
            ref = (out if seg_ir.last else out[0]).numpy()
            ref = np.transpose(ref, (0, 2, 3, 1)) if ref.ndim == 4 else ref
            err = float(np.abs(ref - got["logits"].numpy()).max())
            scale = float(np.abs(ref).max()) or 1.0
            if err > tol * max(1.0, scale):
                raise InternalError(f"segment {seg_ir.name}: TF mirror differs from torch by {err:g}")
            errs.append(err)
            if not seg_ir.last:
                xt, xf = out[1], got["features"].numpy()
    return errs
