"""manifest.json: MACs counted from the exported graph equal the analytic torch counts; hashes; layout keys."""
from __future__ import annotations

import hashlib
import json

import pytest

from tinyexit.errors import UserError
from helpers.torch_macs import count_macs
from tinyexit.bundle import load_bundle
from helpers.trained_runs import copy_run, exported_run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return exported_run(tmp_path_factory.getbasetemp())


def _manifest(run, model):
    return json.loads((run / "export" / model / "manifest.json").read_text())


def _torch_model(run, model):
    from tinyexit.export.families import FAMILIES

    return FAMILIES[model].load(run / FAMILIES[model].checkpoint)


@pytest.mark.parametrize("model,in_shape", [("classifier", (1, 8, 8)), ("denoiser", (2, 8, 8))])
def test_graph_macs_equal_analytic_torch_counts(run, model, in_shape):
    man = _manifest(run, model)
    layers = count_macs(_torch_model(run, model), in_shape)
    assert [s["macs"] for s in man["segments"]] == [sum(lm.macs for lm in seg) for seg in layers]
    for seg, torch_layers in zip(man["segments"], layers):
        graph = sorted(op["macs"] for op in seg["ops"] if op["macs"])
        assert graph == sorted(lm.macs for lm in torch_layers)
    cum = 0
    for e, seg in zip(man["exits"], man["segments"]):
        cum += seg["macs"]
        assert e["cumulative_macs"] == cum
        assert e["mac_ratio"] == pytest.approx(cum / man["full_macs"], rel=1e-12)
    assert man["all_exits_macs"] == cum


def test_full_network_macs_are_the_backbone_plus_last_head(run):
    from tinyexit.models.classifier import EarlyExitResNet

    man = _manifest(run, "classifier")
    model = _torch_model(run, "classifier")
    plain = EarlyExitResNet(model.cfg.single_exit())
    assert man["full_macs"] == sum(lm.macs for seg in count_macs(plain, (1, 8, 8)) for lm in seg)
    assert man["full_macs"] < man["all_exits_macs"]
    # the default classifier, computed by hand: stem 4608, block1 2x36x12x12x9=... summed per segment
    assert man["segments"][0]["macs"] == 64 * 12 * 9 + 2 * 64 * 12 * 12 * 9 + 64 * 32 * 12 + 32 * 10


def test_manifest_follows_the_documented_layout(run):
    man = _manifest(run, "classifier")
    for key in ("schema_version", "tinyexit_version", "model", "source_checkpoint", "config", "config_sha256",
                "artifact_hash", "layout", "input", "float_input_range", "files", "segments", "exits", "full_macs",
                "policy", "inputs"):
        assert key in man, key
    assert man["layout"] == "NHWC" and man["model"] == "classifier" and man["schema_version"] == 1
    assert man["policy"]["name"] == "max_softmax" and man["policy"]["provenance"]["source"] == "chosen at training"
    assert man["config_sha256"] == hashlib.sha256(json.dumps(man["config"], sort_keys=True).encode()).hexdigest()
    lines = [man["files"]["tflite"]["sha256"]] + [s["files"]["tflm"]["sha256"] for s in man["segments"]]
    assert man["artifact_hash"] == hashlib.sha256("\n".join(lines).encode()).hexdigest()
    assert set(man["segments"][0]["files"]) == {"onnx", "onnx_int8", "tflm"}
    den = _manifest(run, "denoiser")
    assert den["denoiser"]["T"] == len(den["denoiser"]["delta"])
    assert len(den["denoiser"]["timestep_encoding"]["values"]) == den["denoiser"]["T"]
    assert {"A_y_neg", "A_y_pos", "B_y_neg", "B_y_pos"} <= set(den["denoiser"]["mixing"])
    assert den["input"]["shape"] == [1, 8, 8, 2] and den["float_input_range"] == [-1.0, 1.0]


def test_load_bundle_accepts_the_export_and_names_a_tampered_file(run, tmp_path):
    load_bundle(run / "export" / "classifier", verify=True)
    bad = copy_run(run, tmp_path / "run")
    seg = bad / "export" / "classifier" / "tflm" / "segment_1.int8.tflite"
    data = bytearray(seg.read_bytes())
    data[-9] ^= 0x01
    seg.write_bytes(bytes(data))
    with pytest.raises(UserError, match=r"segment_1\.int8\.tflite: sha256 differs from .*manifest\.json.*tinyexit export"):
        load_bundle(bad / "export" / "classifier", verify=True)


def test_ops_and_monolithic_records_come_from_the_graph(run):
    """Every op record is tflite_graph.op_record of the exported file; the monolithic models are recorded
    as segments are, so a latency model needs the manifest only."""
    from tinyexit.export import tflite_graph as tg

    d = run / "export" / "classifier"
    man = _manifest(run, "classifier")
    for seg in man["segments"]:
        (sg,) = tg.read_file(d / seg["files"]["tflm"]["path"])[1]
        assert seg["ops"] == [tg.op_record(op) for op in sg.ops]
    conv = next(op for op in man["segments"][0]["ops"] if op["type"] == "CONV_2D")
    assert conv["input_shapes"] == [[1, 8, 8, 1]] and conv["kernel"] == [3, 3] and conv["stride"] == [1, 1]
    mono = man["monolithic"]
    assert set(mono) == {"full", "all_exits"}
    for name, macs_key in (("full", "full_macs"), ("all_exits", "all_exits_macs")):
        rec = mono[name]
        (sg,) = tg.read_file(d / man["files"][rec["file"]]["path"])[1]
        assert rec["file"] == f"{name}_tflite" and rec["signature"] == name
        assert rec["macs"] == sg.macs == man[macs_key] and rec["param_bytes"] == sg.param_bytes
        assert rec["ops"] == [tg.op_record(op) for op in sg.ops]
        assert rec["inputs"] == [man["input"]]
    assert [o["name"] for o in mono["all_exits"]["outputs"]] == ["logits", "logits_0", "logits_1"]
    assert [o["name"] for o in mono["full"]["outputs"]] == ["logits"]
    assert len(mono["all_exits"]["ops"]) == sum(len(s["ops"]) for s in man["segments"])
    bundle = load_bundle(d)
    assert bundle.monolithic["full"].macs == man["full_macs"] and bundle.monolithic["full"].ops == tuple(
        mono["full"]["ops"])
    assert [t.name for t in bundle.monolithic["all_exits"].outputs] == ["logits", "logits_0", "logits_1"]
