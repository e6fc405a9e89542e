"""Per-segment ONNX: float (torch.onnx dynamo exporter) and static QDQ int8 (ONNX Runtime quantizer).

The QDQ models keep float I/O, so a boundary is crossed as a dequantized
tensor; it round-trips to the same int8 values only if the DequantizeLinear on
features-k and the QuantizeLinear on segment k+1's input use identical
parameters.  Segment k+1 is therefore quantized with a TensorQuantOverrides
entry that pins its input to features-k's scale and zero point (a shared
calibration of the boundary tensor), not with its own estimate.
"""
from __future__ import annotations

import io
import logging
import warnings
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np

from tinyexit.errors import InternalError, UserError


def _quiet_exporters() -> None:
    for name in ("torch.onnx", "torch._export", "torch.export", "onnxscript", "root"):
        logging.getLogger(name).setLevel(logging.ERROR)
    logging.getLogger().setLevel(logging.ERROR)


def export_float(segment, example: np.ndarray, path: Path) -> None:
    """One segment as a single-file opset-20 ONNX model with a dynamic batch dimension."""
    import torch

    _quiet_exporters()
    names = ["logits"] if segment.last else ["logits", "features"]
    batch = torch.export.Dim("batch", min=1, max=4096)
    sink = io.StringIO()
    with torch.no_grad(), redirect_stdout(sink), redirect_stderr(sink), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecation notices from torch.export internals
        program = torch.onnx.export(segment, (torch.from_numpy(example[:2]),), dynamo=True, external_data=False,
                                    input_names=["x"], output_names=names, dynamic_shapes={"x": {0: batch}},
                                    opset_version=20, verbose=False, optimize=True)
    program.save(str(path), external_data=False)
    check(path)


def check(path: Path) -> None:
    """onnx.checker on a file; a damaged file becomes one UserError naming it."""
    import onnx

    try:
        onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    except Exception as exc:
        raise UserError(f"{path}: not a valid ONNX model ({type(exc).__name__}: {str(exc).splitlines()[0][:120]}); "
                        "re-run 'tinyexit export'") from None


class _Reader:
    """Calibration data reader: one sample per call, as onnxruntime.quantization asks."""

    def __init__(self, x: np.ndarray):
        self._rows = iter(range(len(x)))
        self._x = x

    def get_next(self):
        i = next(self._rows, None)
        return None if i is None else {"x": self._x[i:i + 1].astype(np.float32)}

    def rewind(self):
        self._rows = iter(range(len(self._x)))


def quantize(float_path: Path, int8_path: Path, calib: np.ndarray, input_qparams: tuple | None) -> None:
    """Static QDQ int8: per-channel int8 weights, int8 activations, min-max calibration on `calib` (NCHW)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    _quiet_exporters()
    extra = {"ActivationSymmetric": False, "WeightSymmetric": True}
    if input_qparams is not None:
        scale, zp = input_qparams
        extra["TensorQuantOverrides"] = {"x": [{"scale": np.array(scale, dtype=np.float32),
                                                "zero_point": np.array(zp, dtype=np.int8)}]}
    sink = io.StringIO()
    with redirect_stdout(sink), redirect_stderr(sink):
        quantize_static(str(float_path), str(int8_path), _Reader(calib), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax, extra_options=extra)
    check(int8_path)


def qdq_params(path: Path, tensor: str, role: str) -> tuple[float, int]:
    """Scale and zero point of a graph input's QuantizeLinear (role 'input') or a graph output's DequantizeLinear."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in model.graph.node:
        hit = (role == "input" and node.op_type == "QuantizeLinear" and node.input[0] == tensor) or \
              (role == "output" and node.op_type == "DequantizeLinear" and node.output[0] == tensor)
        if hit:
            return float(np.float32(inits[node.input[1]])), int(inits[node.input[2]])
    raise InternalError(f"{path}: no QDQ pair on {role} '{tensor}'")
