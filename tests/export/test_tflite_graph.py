"""The TFLite files: one signature per exit, builtin int8 ops TFLite Micro has, int8 NHWC I/O, tensor names."""
from __future__ import annotations

import json
from collections import Counter

import pytest

from tinyexit.export import tflite_graph as tg
from helpers.trained_runs import exported_run

# Everything TFLite Micro's reference kernels cover and our block vocabulary may need.
ALLOWED = {"CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "MEAN", "AVERAGE_POOL_2D", "FULLY_CONNECTED", "PAD", "LOGISTIC"}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return exported_run(tmp_path_factory.getbasetemp()) / "export" / "classifier"


@pytest.fixture(scope="module")
def manifest(model_dir):
    return json.loads((model_dir / "manifest.json").read_text())


def test_multi_signature_file_has_one_signature_per_exit(model_dir):
    _, sgs = tg.read_file(model_dir / "classifier.int8.tflite")
    assert [sg.signature for sg in sgs] == ["exit0", "exit1", "exit2"]
    assert [sorted(sg.sig_outputs) for sg in sgs] == [["features", "logits"], ["features", "logits"], ["logits"]]
    assert all(list(sg.sig_inputs) == ["x"] for sg in sgs)


def test_op_types_are_builtin_int8_ops_tflm_has(model_dir):
    _, sgs = tg.read_file(model_dir / "classifier.int8.tflite")
    counts = [Counter(op.type for op in sg.ops) for sg in sgs]
    for c in counts:
        assert set(c) <= ALLOWED, c
    # default ResNetConfig: stem + block(2 convs) + 1x1 head conv; then blocks with 1x1 stride-2 projection
    assert counts[0] == {"CONV_2D": 4, "ADD": 1, "MEAN": 1, "FULLY_CONNECTED": 1}
    assert counts[1] == {"CONV_2D": 3, "PAD": 1, "ADD": 1, "MEAN": 1, "FULLY_CONNECTED": 1}
    assert counts[2] == counts[1]


def test_every_io_tensor_is_int8_nhwc_with_kept_names(model_dir):
    files = ["classifier.int8.tflite", "classifier.full.int8.tflite"] + [f"tflm/segment_{k}.int8.tflite"
                                                                          for k in range(3)]
    for f in files:
        for sg in tg.read_file(model_dir / f)[1]:
            ins, outs = sg.input_tensors(), sg.output_tensors()
            assert [t.dtype for t in ins + outs] == ["int8"] * (len(ins) + len(outs)), f
            assert [t.name for t in ins] == ["x"]
            assert [t.name for t in outs] == (["logits"] if len(outs) == 1 else ["logits", "features"])
            assert all(len(t.scale) == 1 and len(t.zero_point) == 1 for t in ins + outs)
    x = tg.read_file(model_dir / "tflm/segment_0.int8.tflite")[1][0].input_tensors()[0]
    assert x.shape == [1, 8, 8, 1]        # NHWC, no transposes
    feats = tg.read_file(model_dir / "tflm/segment_0.int8.tflite")[1][0].output_tensors()[1]
    assert feats.shape == [1, 8, 8, 12]


def test_tflm_and_full_files_are_single_subgraph(model_dir):
    assert len(tg.read_file(model_dir / "classifier.full.int8.tflite")[1]) == 1
    multi = tg.read_file(model_dir / "classifier.int8.tflite")[1]
    for k in range(3):
        (seg,) = tg.read_file(model_dir / f"tflm/segment_{k}.int8.tflite")[1]
        assert [op.type for op in seg.ops] == [op.type for op in multi[k].ops]
        assert [(t.scale, t.zero_point) for t in seg.input_tensors() + seg.output_tensors()] == \
               [(t.scale, t.zero_point) for t in multi[k].input_tensors() + multi[k].output_tensors()]


def test_no_float_tensor_feeds_any_op(model_dir):
    """Full int8: activations int8, biases int32 — no QUANTIZE/DEQUANTIZE and no float tensor anywhere in use."""
    for sg in tg.read_file(model_dir / "classifier.int8.tflite")[1]:
        used = {i for op in sg.ops for i in op.inputs + op.outputs if i >= 0}
        assert {sg.tensors[i].dtype for i in used} <= {"int8", "int32"}


def test_manifest_segment_records_match_the_files(model_dir, manifest):
    for k, seg in enumerate(manifest["segments"]):
        (sg,) = tg.read_file(model_dir / seg["files"]["tflm"]["path"])[1]
        assert seg["macs"] == sg.macs and seg["param_bytes"] == sg.param_bytes
        assert [o["name"] for o in seg["outputs"]] == [t.name for t in sg.output_tensors()]
        assert seg["inputs"][0]["scale"] == sg.input_tensors()[0].scale[0]
    assert manifest["input"] == manifest["segments"][0]["inputs"][0]
    assert manifest["input"]["zero_point"] == -128   # [0, 1] images: the full int8 range from 0 up


def test_all_exits_file_is_one_subgraph_with_every_exit(model_dir, manifest):
    """The monolithic baseline with every head: logits (last exit) first, then logits_0, logits_1."""
    (sg,) = tg.read_file(model_dir / manifest["files"]["all_exits_tflite"]["path"])[1]
    assert sg.signature == "all_exits"
    assert [t.name for t in sg.output_tensors()] == ["logits", "logits_0", "logits_1"]
    assert [t.dtype for t in sg.input_tensors() + sg.output_tensors()] == ["int8"] * 4
    assert sg.macs == manifest["all_exits_macs"] == sum(s["macs"] for s in manifest["segments"])
    assert Counter(op.type for op in sg.ops) == sum(
        (Counter(o["type"] for o in s["ops"]) for s in manifest["segments"]), Counter())


def test_op_record_carries_shapes_kernel_stride_and_the_one_mac_count(model_dir):
    """op_record: what a cost model reading only the manifest needs; MACs are op_macs of the shapes."""
    (sg,) = tg.read_file(model_dir / "tflm/segment_1.int8.tflite")[1]
    recs = [tg.op_record(op) for op in sg.ops]
    assert [r["type"] for r in recs] == ["CONV_2D", "PAD", "CONV_2D", "CONV_2D", "ADD", "MEAN", "FULLY_CONNECTED"]
    assert recs[0] == {"type": "CONV_2D", "macs": 4 * 4 * 32 * 12, "input_shapes": [[1, 8, 8, 12]],
                       "output_shapes": [[1, 4, 4, 32]], "param_bytes": 32 * 12 + 32 * 4, "kernel": [1, 1],
                       "stride": [2, 2], "dilation": [1, 1], "padding": "VALID"}   # the 1x1 stride-2 projection
    assert recs[2]["macs"] == 4 * 4 * 32 * 3 * 3 * 12 and recs[2]["activation"] == "RELU"
    assert recs[2]["input_shapes"] == [[1, 10, 10, 12]] and recs[2]["kernel"] == [3, 3]
    assert recs[4]["input_shapes"] == [[1, 4, 4, 32]] * 2 and recs[4]["macs"] == 0
    assert recs[6] == {"type": "FULLY_CONNECTED", "macs": 320, "input_shapes": [[1, 32]], "output_shapes": [[1, 10]],
                       "param_bytes": 10 * 32 + 10 * 4}
    assert sum(r["macs"] for r in recs) == sg.macs and sum(r["param_bytes"] for r in recs) == sg.param_bytes
    json.dumps(recs)  # plain JSON values only


def test_constant_tensors_are_read_only_views_in_their_dtype(model_dir):
    (sg,) = tg.read_file(model_dir / "tflm/segment_0.int8.tflite")[1]
    conv = sg.ops[0]
    w, b = sg.tensors[conv.inputs[1]], sg.tensors[conv.inputs[2]]
    assert (w.dtype, w.data.dtype, list(w.data.shape)) == ("int8", "int8", w.shape)
    assert (b.dtype, b.data.dtype) == ("int32", "int32") and not w.data.flags.writeable
    assert not sg.tensors[conv.inputs[0]].is_const and conv.const_inputs == [False, True, True]
    assert conv.options["padding"] == "SAME" and conv.options["strideH"] == 1
