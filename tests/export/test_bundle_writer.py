"""The bundle export writes: loads with tinyexit.bundle (verified), follows docs/bundle.schema.json,
carries the policy with its provenance and the quantized test inputs."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from helpers.json_schema import validate
from helpers.trained_runs import copy_run, exported_run
from tinyexit.bundle import SCHEMA_VERSION, load_bundle, quantize, read_inputs

SCHEMA = Path(__file__).resolve().parents[2] / "docs" / "bundle.schema.json"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return exported_run(tmp_path_factory.getbasetemp())


@pytest.mark.parametrize("model", ["classifier", "denoiser"])
def test_export_loads_verified_and_matches_the_schema(run, model):
    bundle = load_bundle(run / "export" / model, verify=True)
    assert bundle.schema_version == SCHEMA_VERSION == 1
    man = json.loads((run / "export" / model / "manifest.json").read_text())
    assert validate(man, json.loads(SCHEMA.read_text())) == []


def test_bundle_carries_the_checkpoint_and_config_digests(run):
    import hashlib

    for model, ckpt in (("classifier", "early_exit.pt"), ("denoiser", "denoiser.pt")):
        bundle = load_bundle(run / "export" / model)
        assert bundle.source_checkpoint_sha256 == hashlib.sha256((run / "checkpoints" / ckpt).read_bytes()).hexdigest()
        assert bundle.config_sha256 == bundle.manifest["config_sha256"]
        assert set(bundle.monolithic) == {"full", "all_exits"}


def test_a_bundle_without_checkpoint_or_monolithic_records_loads(run, tmp_path):
    """An imported bundle has no checkpoint, config or monolithic records: the typed fields are empty."""
    import shutil

    d = tmp_path / "imported"
    shutil.copytree(run / "export" / "classifier", d)
    man = json.loads((d / "manifest.json").read_text())
    for key in ("source_checkpoint", "config", "config_sha256", "monolithic"):
        del man[key]
    (d / "manifest.json").write_text(json.dumps(man))
    bundle = load_bundle(d, verify=True)
    assert (bundle.source_checkpoint_sha256, bundle.config_sha256, bundle.monolithic) == (None, None, {})
    assert validate(man, json.loads(SCHEMA.read_text())) == []


def test_schema_validator_catches_a_broken_manifest(run):
    man = json.loads((run / "export" / "classifier" / "manifest.json").read_text())
    del man["inputs"]["sha256"]
    man["policy"]["provenance"]["source"] = "report.json"
    errors = validate(man, json.loads(SCHEMA.read_text()))
    assert any("inputs" in e for e in errors) and any("provenance.source" in e or "anyOf" in e for e in errors)


def test_classifier_policy_is_the_one_training_chose_on_val(run):
    import torch

    ckpt = torch.load(run / "checkpoints" / "early_exit.pt", weights_only=True)
    bundle = load_bundle(run / "export" / "classifier")
    assert bundle.policy.to_dict() == {"name": "max_softmax", "params": ckpt["exit_policy"]["params"]}
    prov = bundle.policy_provenance
    assert (prov.source, prov.split, prov.chosen_value) == ("chosen at training", "val", ckpt["exit_policy"]["params"])
    assert "full-depth answer on val" in prov.rule
    assert load_bundle(run / "export" / "denoiser").policy is None


def test_inputs_are_the_test_split_quantized_as_segment_0_input(run):
    from tinyexit.models.data import load_digits

    bundle = load_bundle(run / "export" / "classifier")
    got = read_inputs(bundle)
    test = load_digits().test
    np.testing.assert_array_equal(got.x, quantize(np.transpose(test.x, (0, 2, 3, 1)), bundle.input))
    np.testing.assert_array_equal(got.y, test.y)
    assert got.y.dtype == np.int64 and got.t is None
    assert bundle.inputs["n"] == len(test.y) == 447 and bundle.inputs["labels"] is True
    assert bundle.inputs["source"] == "test split of digits"


def test_denoiser_inputs_carry_steps_and_clean_targets(run):
    bundle = load_bundle(run / "export" / "denoiser")
    got = read_inputs(bundle)
    T = bundle.manifest["denoiser"]["T"]
    assert got.x.shape == (447, 8, 8, 2) and got.y.shape == (447, 8, 8, 1) and got.t.shape == (447,)
    assert set(np.unique(got.y)) == {-1, 1} and got.t.min() >= 1 and got.t.max() <= T
    assert bundle.inputs["timesteps"] is True and bundle.inputs["labels"] is False
    # channel 1 is the timestep plane: constant over each image, one code per step
    codes = np.asarray(bundle.manifest["denoiser"]["timestep_encoding"]["values"])
    plane = quantize(codes[got.t - 1][:, None, None], bundle.input)
    np.testing.assert_array_equal(got.x[..., 1], np.broadcast_to(plane, got.x.shape[:3]))


def test_threshold_override_and_default_are_recorded(run, tmp_path):
    from tinyexit.export.exporter import run_policy

    chosen = load_bundle(run / "export" / "classifier").policy.params[0]
    msgs = []
    over = run_policy(run, 0.6, msgs.append)
    assert over["params"] == [0.6] and over["provenance"]["source"] == "override (--threshold)"
    assert over["provenance"]["chosen_value"] == [chosen] and msgs == []
    old = copy_run(run, tmp_path / "old")
    import torch

    ckpt = torch.load(old / "checkpoints" / "early_exit.pt", weights_only=True)
    del ckpt["exit_policy"]
    torch.save(ckpt, old / "checkpoints" / "early_exit.pt")
    cfg = json.loads((old / "config.json").read_text())
    del cfg["classifier"]["exit_policy"]
    (old / "config.json").write_text(json.dumps(cfg))
    default = run_policy(old, None, msgs.append)
    assert default["params"] == [0.9] and default["provenance"]["source"] == "default"
    assert len(msgs) == 1 and "default 0.9" in msgs[0]
    assert run_policy(old, 0.7, msgs.append)["provenance"]["chosen_value"] is None


def test_export_never_reads_a_report(run, tmp_path):
    from tinyexit.export.exporter import run_policy

    fake = copy_run(run, tmp_path / "r")
    (fake / "report").mkdir(exist_ok=True)
    (fake / "report" / "report.json").write_text(json.dumps({"classifier": {"early_exit": {
        "policy": "max_softmax", "threshold": 0.11}}}))
    assert run_policy(fake, None, print)["params"] != [0.11]
