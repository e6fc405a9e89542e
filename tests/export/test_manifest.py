"""manifest.json: MACs counted from the exported graph equal the analytic torch counts; hashes; layout keys."""
from __future__ import annotations

import hashlib
import json

import pytest

from tinyexit.errors import UserError
from tinyexit.eval.macs import count_macs
from tinyexit.export import manifest as mf
from tinyexit.export.testing import copy_run, exported_run


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
    for key in ("tinyexit_version", "model", "source_checkpoint", "config", "config_sha256", "artifact_hash",
                "layout", "input", "float_input_range", "files", "segments", "exits", "full_macs", "policy"):
        assert key in man, key
    assert man["layout"] == "NHWC" and man["model"] == "classifier"
    assert man["policy"] == {"name": "max_softmax", "params": [0.9]}   # no report yet: the default
    assert man["config_sha256"] == hashlib.sha256(json.dumps(man["config"], sort_keys=True).encode()).hexdigest()
    lines = [man["files"]["tflite"]["sha256"]] + [s["files"]["tflm"]["sha256"] for s in man["segments"]]
    assert man["artifact_hash"] == hashlib.sha256("\n".join(lines).encode()).hexdigest()
    assert set(man["segments"][0]["files"]) == {"onnx", "onnx_int8", "tflm"}
    den = _manifest(run, "denoiser")
    assert den["denoiser"]["T"] == len(den["denoiser"]["delta"])
    assert len(den["denoiser"]["timestep_encoding"]["values"]) == den["denoiser"]["T"]
    assert {"A_y_neg", "A_y_pos", "B_y_neg", "B_y_pos"} <= set(den["denoiser"]["mixing"])
    assert den["input"]["shape"] == [1, 8, 8, 2] and den["float_input_range"] == [-1.0, 1.0]


def test_load_checked_accepts_the_export_and_names_a_tampered_file(run, tmp_path):
    mf.load_checked(run / "export" / "classifier")
    bad = copy_run(run, tmp_path / "run")
    seg = bad / "export" / "classifier" / "tflm" / "segment_1.int8.tflite"
    data = bytearray(seg.read_bytes())
    data[-9] ^= 0x01
    seg.write_bytes(bytes(data))
    with pytest.raises(UserError, match=r"segment_1\.int8\.tflite: sha256 does not match manifest\.json.*tinyexit export"):
        mf.load_checked(bad / "export" / "classifier")


def test_policy_comes_from_the_report_and_threshold_overrides(tmp_path):
    from tinyexit.export.exporter import run_policy
    from tinyexit.rundir import write_json

    assert run_policy(tmp_path, None) == {"name": "max_softmax", "params": [0.9]}
    write_json(tmp_path / "report" / "report.json",
               {"classifier": {"early_exit": {"policy": "max_softmax", "threshold": 0.75}}})
    assert run_policy(tmp_path, None) == {"name": "max_softmax", "params": [0.75]}
    assert run_policy(tmp_path, 0.6) == {"name": "max_softmax", "params": [0.6]}
