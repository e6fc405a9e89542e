"""Bad input to export and verify: one line naming the file and the fix, exit code 2, nothing overwritten."""
from __future__ import annotations

import json

import pytest

from tinyexit.cli import main
from helpers.trained_runs import copy_run, exported_run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return exported_run(tmp_path_factory.getbasetemp())


@pytest.fixture
def damaged(run, tmp_path):
    """A private copy with a sentinel verify.json, to prove a failed verify writes nothing."""
    r = copy_run(run, tmp_path / "run")
    (r / "export" / "verify.json").write_text('{"sentinel": true}\n')
    return r


def _cli(argv, capsys) -> tuple[int, str]:
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return code, err[0]


def test_export_without_checkpoints(tmp_path, capsys):
    (tmp_path / "config.json").write_text('{"tinyexit_version": "0.1.0"}')
    code, msg = _cli(["export", str(tmp_path)], capsys)
    assert code == 2
    assert "checkpoints: no checkpoint to export" in msg and "tinyexit train early-exit" in msg


def test_export_of_unknown_architecture_keeps_the_old_export(damaged, capsys):
    import torch

    before = (damaged / "export" / "classifier" / "classifier.int8.tflite").read_bytes()
    torch.save({"arch": "mystery_net", "config": {}, "state_dict": {}}, damaged / "checkpoints" / "early_exit.pt")
    code, msg = _cli(["export", str(damaged), "--models", "classifier"], capsys)
    assert code == 2
    assert "early_exit.pt: unknown architecture 'mystery_net'" in msg
    assert (damaged / "export" / "classifier" / "classifier.int8.tflite").read_bytes() == before


def test_verify_truncated_tflite(damaged, capsys):
    f = damaged / "export" / "classifier" / "classifier.int8.tflite"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 3])
    code, msg = _cli(["verify", str(damaged)], capsys)
    assert code == 2
    assert "classifier.int8.tflite" in msg and "re-run 'tinyexit export" in msg
    assert ("corrupt or truncated" in msg) or ("cannot" in msg)
    assert json.loads((damaged / "export" / "verify.json").read_text()) == {"sentinel": True}


def test_verify_truncated_tflm_segment(damaged, capsys):
    f = damaged / "export" / "denoiser" / "tflm" / "segment_2.int8.tflite"
    f.write_bytes(f.read_bytes()[:100])
    code, msg = _cli(["verify", str(damaged)], capsys)
    assert code == 2 and "segment_2.int8.tflite" in msg and "tinyexit export" in msg
    assert json.loads((damaged / "export" / "verify.json").read_text()) == {"sentinel": True}


def test_verify_corrupt_onnx(damaged, capsys):
    f = damaged / "export" / "classifier" / "onnx" / "segment_1.int8.onnx"
    f.write_bytes(b"\x08\x07garbage" * 50)
    code, msg = _cli(["verify", str(damaged)], capsys)
    assert code == 2
    assert "segment_1.int8.onnx: not a valid ONNX model" in msg and "re-run 'tinyexit export'" in msg


def test_verify_hash_mismatch_of_a_structurally_valid_file(damaged, capsys):
    """One weight byte changed: the file still parses, but its sha256 no longer matches the manifest."""
    from ai_edge_litert import schema_py_generated as fb

    f = damaged / "export" / "classifier" / "tflm" / "segment_0.int8.tflite"
    buf = bytearray(f.read_bytes())
    model = fb.Model.GetRootAs(buf, 0)
    _, i = max((model.Buffers(i).DataLength(), i) for i in range(model.BuffersLength()))
    tab = model.Buffers(i)._tab
    buf[tab.Vector(tab.Offset(4))] ^= 0x01     # first byte of the largest weight buffer
    f.write_bytes(bytes(buf))
    code, msg = _cli(["verify", str(damaged)], capsys)
    assert code == 2
    assert "segment_0.int8.tflite: sha256 differs from" in msg and "manifest.json" in msg
    assert json.loads((damaged / "export" / "verify.json").read_text()) == {"sentinel": True}


def test_verify_missing_manifest_file(damaged, capsys):
    (damaged / "export" / "classifier" / "classifier.full.int8.tflite").unlink()
    code, msg = _cli(["verify", str(damaged)], capsys)
    assert code == 2
    assert "classifier.full.int8.tflite: file listed in" in msg and "manifest.json is missing" in msg


def test_verify_before_export(tmp_path, capsys):
    (tmp_path / "config.json").write_text('{"tinyexit_version": "0.1.0"}')
    code, msg = _cli(["verify", str(tmp_path)], capsys)
    assert code == 2 and "nothing exported" in msg and "tinyexit export" in msg
