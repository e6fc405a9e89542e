"""Post-pass over converted TFLite files: names, output order and bit-identical boundaries.

The converter calibrates every signature on its own, so the scale it gives
features-k (an op output in segment k) and the input of segment k+1 can differ
in the last bits even though both saw the same data.  A device hands the int8
features across unchanged, so this pass copies features-k's scale and zero
point onto segment k+1's input — in the multi-signature file and in the
per-segment TFLite Micro files — and records how large each adjustment was.
It also names the I/O tensors x / logits / features and puts logits first.
"""
from __future__ import annotations

import numpy as np

from tinyexit.errors import InternalError
from tinyexit.export import tflite_graph as tg

# A larger disagreement means the two sides were not calibrated on the same data: a bug, not rounding.
MAX_RELATIVE_ADJUSTMENT = 1e-3
# Ops whose int8 kernels require output quantization == input quantization (XNNPACK refuses a PAD otherwise).
SAME_SCALE_OPS = {"PAD", "PADV2", "RESHAPE", "SQUEEZE", "EXPAND_DIMS", "MAX_POOL_2D", "TRANSPOSE", "SLICE",
                  "STRIDED_SLICE", "GATHER"}


def name_io(buf: bytearray) -> None:
    """Name each signature's I/O tensors after its signature names; outputs: logits, features, then the rest."""
    for sg in tg.read_model(bytes(buf)):
        if not sg.signature:
            raise InternalError(f"subgraph {sg.index}: converter left no signature")
        for name, idx in {**sg.sig_inputs, **sg.sig_outputs}.items():
            tg.rename_tensor(buf, sg.index, idx, name)
        names = [n for n in ("logits", "features") if n in sg.sig_outputs]
        names += sorted(n for n in sg.sig_outputs if n not in names)
        tg.set_outputs_order(buf, sg.index, [sg.sig_outputs[n] for n in names])


def _features(sg: tg.SubgraphInfo) -> tg.TensorInfo:
    return sg.tensors[sg.sig_outputs["features"]]


def _input(sg: tg.SubgraphInfo) -> tg.TensorInfo:
    return sg.tensors[sg.sig_inputs["x"]]


def unify(multi: bytearray, singles: list[bytearray]) -> list[dict]:
    """Make every boundary's quantization identical; returns one record per boundary."""
    m = {sg.signature: sg for sg in tg.read_model(bytes(multi))}
    s = [tg.read_model(bytes(b))[0] for b in singles]
    records = []
    for k in range(len(singles) - 1):
        src = _features(m[f"exit{k}"])
        scale, zp = np.float32(src.scale[0]), src.zero_point[0]
        targets = [(multi, m[f"exit{k + 1}"].index, _input(m[f"exit{k + 1}"])),
                   (singles[k], 0, _features(s[k])), (singles[k + 1], 0, _input(s[k + 1]))]
        worst = 0.0
        for buf, sub, t in targets:
            rel = abs(float(np.float32(t.scale[0])) - float(scale)) / float(scale)
            if rel > MAX_RELATIVE_ADJUSTMENT or t.zero_point[0] != zp:
                raise InternalError(f"boundary {k}: scale {t.scale[0]!r}/zp {t.zero_point[0]} vs features "
                                    f"{float(scale)!r}/zp {zp}: calibration data differed")
            worst = max(worst, rel)
            for idx in _same_scale_closure(tg.read_model(bytes(buf))[sub], t.index):
                tg.set_quantization(buf, sub, idx, scale, zp)
        records.append({"boundary": k, "scale": float(scale), "zero_point": int(zp),
                        "max_relative_adjustment": worst})
    return records


def _same_scale_closure(sg: tg.SubgraphInfo, tensor: int) -> list[int]:
    """The tensor plus every tensor tied to it through ops that must keep the input's quantization."""
    out, todo = [], [tensor]
    while todo:
        t = todo.pop()
        if t in out:
            continue
        out.append(t)
        todo += [o for op in sg.ops if op.type in SAME_SCALE_OPS and op.inputs and op.inputs[0] == t
                 for o in op.outputs]
    return out


def boundaries_identical(multi: bytes, singles: list[bytes]) -> list[bool]:
    """Per boundary: are features-k and input-(k+1) bit-identical in every file (scale bits and zero point)?"""
    m = {sg.signature: sg for sg in tg.read_model(multi)}
    s = [tg.read_model(b)[0] for b in singles]
    out = []
    for k in range(len(singles) - 1):
        ts = [_features(m[f"exit{k}"]), _input(m[f"exit{k + 1}"]), _features(s[k]), _input(s[k + 1])]
        bits = {(np.float32(t.scale[0]).tobytes(), t.zero_point[0]) for t in ts}
        out.append(len(bits) == 1 and all(len(t.scale) == 1 for t in ts))
    return out
