"""Boundary quantization: features-k and the input of segment k+1 carry bit-identical scale and zero point."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tinyexit.errors import InternalError
from tinyexit.export import boundary, onnx_export, runtimes as rt, tflite_graph as tg
from helpers.trained_runs import exported_run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return exported_run(tmp_path_factory.getbasetemp())


def _files(model_dir):
    multi = (model_dir / f"{model_dir.name}.int8.tflite").read_bytes()
    singles = sorted((model_dir / "tflm").glob("segment_*.int8.tflite"))
    return multi, [p.read_bytes() for p in singles]


@pytest.mark.parametrize("model", ["classifier", "denoiser"])
def test_every_tflite_boundary_is_bit_identical(run, model):
    model_dir = run / "export" / model
    multi, singles = _files(model_dir)
    manifest = json.loads((model_dir / "manifest.json").read_text())
    n = len(manifest["segments"])
    assert len(singles) == n >= 3
    assert boundary.boundaries_identical(multi, singles) == [True] * (n - 1)
    m = {sg.signature: sg for sg in tg.read_model(multi)}
    for k in range(n - 1):
        out = m[f"exit{k}"].tensors[m[f"exit{k}"].sig_outputs["features"]]
        nxt = m[f"exit{k + 1}"].tensors[m[f"exit{k + 1}"].sig_inputs["x"]]
        assert np.float32(out.scale[0]).tobytes() == np.float32(nxt.scale[0]).tobytes()
        assert out.zero_point == nxt.zero_point
    assert manifest["boundary_quant_identical"] is True
    for k, seg in enumerate(manifest["segments"][:-1]):
        feats = seg["outputs"][1]
        assert (feats["scale"], feats["zero_point"]) == (manifest["segments"][k + 1]["inputs"][0]["scale"],
                                                        manifest["segments"][k + 1]["inputs"][0]["zero_point"])


def test_unify_repairs_a_last_bit_difference(run, tmp_path):
    """The post-pass is what guarantees the identity: perturb segment 1's input scale by one ulp, then repair."""
    multi, singles = _files(run / "export" / "classifier")
    multi, singles = bytearray(multi), [bytearray(b) for b in singles]
    sg1 = tg.read_model(bytes(multi))[1]
    x = sg1.tensors[sg1.sig_inputs["x"]]
    bumped = np.nextafter(np.float32(x.scale[0]), np.float32(1))
    # as the converter does it: the input and the PAD reading it share the (slightly different) scale
    for buf, sub in ((multi, 1), (singles[1], 0)):
        sg = tg.read_model(bytes(buf))[sub]
        pad_out = [op.outputs[0] for op in sg.ops if op.type == "PAD"]
        for idx in [sg.sig_inputs["x"]] + pad_out:
            tg.set_quantization(buf, sub, idx, bumped, x.zero_point[0])
    assert boundary.boundaries_identical(bytes(multi), [bytes(b) for b in singles]) == [False, True]
    records = boundary.unify(multi, singles)
    assert boundary.boundaries_identical(bytes(multi), [bytes(b) for b in singles]) == [True, True]
    assert 0 < records[0]["max_relative_adjustment"] < 1e-6
    assert records[1]["max_relative_adjustment"] == 0.0
    # the PAD in front of segment 1's stride-2 conv must keep its input's quantization, or XNNPACK refuses it
    for buf, sub in ((multi, 1), (singles[1], 0)):
        sg = tg.read_model(bytes(buf))[sub]
        (pad,) = [op for op in sg.ops if op.type == "PAD"]
        assert pad.inputs[0] == sg.sig_inputs["x"]
        qa, qb = sg.tensors[pad.inputs[0]], sg.tensors[pad.outputs[0]]
        assert (qa.scale, qa.zero_point) == (qb.scale, qb.zero_point)
    path = tmp_path / "segment_1.int8.tflite"
    path.write_bytes(bytes(singles[1]))
    rt.check_loads(path)


def test_unify_refuses_boundaries_calibrated_on_different_data(run):
    multi, singles = _files(run / "export" / "classifier")
    multi, singles = bytearray(multi), [bytearray(b) for b in singles]
    sg1 = tg.read_model(bytes(multi))[1]
    x = sg1.tensors[sg1.sig_inputs["x"]]
    tg.set_quantization(multi, 1, x.index, np.float32(x.scale[0] * 1.5), x.zero_point[0])
    with pytest.raises(InternalError, match="boundary 0"):
        boundary.unify(multi, singles)


@pytest.mark.parametrize("model", ["classifier", "denoiser"])
def test_onnx_qdq_boundaries_are_identical(run, model):
    onnx_dir = run / "export" / model / "onnx"
    n = len(json.loads((run / "export" / model / "manifest.json").read_text())["segments"])
    for k in range(n - 1):
        out = onnx_export.qdq_params(onnx_dir / f"segment_{k}.int8.onnx", "features", "output")
        nxt = onnx_export.qdq_params(onnx_dir / f"segment_{k + 1}.int8.onnx", "x", "input")
        assert out == nxt


def test_int8_features_cross_the_boundary_unchanged_in_tflm(run):
    """TFLite Micro on the per-segment files: segment 1 fed features-0 as int8 equals the multi-signature chain."""
    from tinyexit.export import runtimes as rt
    from tinyexit.models.data import load_digits

    model_dir = run / "export" / "classifier"
    man = json.loads((model_dir / "manifest.json").read_text())
    x = rt.to_nhwc(load_digits().test.x[:40])
    tflm = rt.per_segment_chain([rt.segment_runner_tflm(model_dir / s["files"]["tflm"]["path"], len(s["outputs"]))
                                 for s in man["segments"]], man, x)
    ref = rt.per_segment_chain([rt.segment_runner_litert_ref(model_dir / s["files"]["tflm"]["path"])
                                for s in man["segments"]], man, x)
    multi = rt.litert_chain(model_dir / man["files"]["tflite"]["path"], man, x)
    for k in range(3):
        np.testing.assert_array_equal(tflm.inputs[k], ref.inputs[k])
        # LiteRT reference kernels and TFLite Micro may round the logits differently by one LSB, never more
        d = np.abs(tflm.int8[k]["logits"].astype(int) - ref.int8[k]["logits"].astype(int)).max()
        assert d <= 1
        d = np.abs(tflm.int8[k]["logits"].astype(int) - multi.int8[k]["logits"].astype(int)).max()
        assert d <= 4   # LiteRT's optimized kernels round differently again
