"""Per-segment ONNX: checker passes, opset 20, float equals torch, QDQ int8 with per-channel weights."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from tinyexit.export import runtimes as rt
from helpers.trained_runs import exported_run


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return exported_run(tmp_path_factory.getbasetemp()) / "export" / "classifier"


@pytest.mark.parametrize("k", [0, 1, 2])
def test_onnx_files_pass_the_checker_at_opset_20(model_dir, k):
    for name in (f"segment_{k}.onnx", f"segment_{k}.int8.onnx"):
        m = onnx.load(str(model_dir / "onnx" / name))
        onnx.checker.check_model(m, full_check=True)
        assert {o.domain: o.version for o in m.opset_import}[""] >= 20
        assert [i.name for i in m.graph.input] == ["x"]
        assert [o.name for o in m.graph.output] == (["logits"] if k == 2 else ["logits", "features"])


def test_qdq_weights_are_per_channel_int8(model_dir):
    m = onnx.load(str(model_dir / "onnx" / "segment_1.int8.onnx"))
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    convs = [n for n in m.graph.node if n.op_type == "Conv"]
    assert len(convs) == 3
    producers = {o: n for n in m.graph.node for o in n.output}
    for conv in convs:
        dq = producers[conv.input[1]]
        assert dq.op_type == "DequantizeLinear"
        w, scale = inits[dq.input[0]], inits[dq.input[1]]
        assert w.dtype == np.int8 and scale.shape == (w.shape[0],)   # one scale per output channel
    acts = [n for n in m.graph.node if n.op_type == "QuantizeLinear"]
    assert acts and all(inits[n.input[2]].dtype == np.int8 for n in acts)


def test_float_onnx_matches_torch_and_int8_agrees(model_dir):
    from tinyexit.export.families import FAMILIES
    from tinyexit.models.data import load_digits

    run = model_dir.parent.parent
    model = FAMILIES["classifier"].load(run / "checkpoints" / "early_exit.pt")
    x = load_digits().test.x[:200]
    torch_out = rt.torch_chain(model, x)
    flt = rt.ort_chain([model_dir / f"onnx/segment_{k}.onnx" for k in range(3)], x)
    q = rt.ort_chain([model_dir / f"onnx/segment_{k}.int8.onnx" for k in range(3)], x)
    for k in range(3):
        np.testing.assert_allclose(flt.logits[k], torch_out.logits[k], atol=1e-4)
        agree = (q.logits[k].argmax(-1) == torch_out.logits[k].argmax(-1)).mean()
        assert agree >= 0.95, (k, agree)


def test_manifest_records_onnx_files(model_dir):
    man = json.loads((model_dir / "manifest.json").read_text())
    assert [s["files"]["onnx_int8"]["path"] for s in man["segments"]] == \
           [f"onnx/segment_{k}.int8.onnx" for k in range(3)]
    assert all(b["onnx_identical"] for b in man["boundaries"])
