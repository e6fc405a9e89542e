"""The report section "export": the documented report.json keys, from verify.json or from the manifests alone."""
from __future__ import annotations

import pytest

from tinyexit.eval import section_export
from tinyexit.export.config import VerifyConfig
from helpers.trained_runs import copy_run, exported_run
from tinyexit.export.verify import verify_run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return copy_run(exported_run(tmp_path_factory.getbasetemp()), tmp_path_factory.mktemp("sec") / "run")


def test_section_before_verify_reports_the_manifests(run, tmp_path):
    sec = section_export.build(run, tmp_path)
    assert sec.key == "export"
    assert sec.data["classifier"]["verified"] is False
    assert sec.data["classifier"]["boundary_quant_identical"] is True
    assert "classifier.int8.tflite" in sec.data["classifier"]["sizes"]["files"]


def test_section_after_verify_exposes_the_issue_keys(run, tmp_path):
    verify_run(run, VerifyConfig(samples=60), progress=lambda m: None)
    sec = section_export.build(run, tmp_path)
    c, d = sec.data["classifier"], sec.data["denoiser"]
    for row in c["per_exit"] + d["per_exit"]:
        assert {"accuracy_float", "accuracy_int8_ort", "accuracy_int8_litert", "accuracy_int8_tflm",
                "agreement_int8"} <= set(row)
    assert c["boundary_quant_identical"] is True and d["boundary_quant_identical"] is True
    assert c["sizes"]["tflite_bytes"] == (run / "export/classifier/classifier.int8.tflite").stat().st_size
    assert {"accuracy", "mac_ratio"} <= set(c["early_exit_int8"])
    assert isinstance(d["bits_per_dim_int8"], float)
    assert c["export_seconds"] > 0
    assert sec.plots == ["export_denoiser_samples_int8.png"]
    assert (tmp_path / "export_denoiser_samples_int8.png").is_file()
    assert "| exit |" in sec.markdown


def test_section_absent_without_export(tmp_path):
    (tmp_path / "run").mkdir()
    assert section_export.build(tmp_path / "run", tmp_path) is None
