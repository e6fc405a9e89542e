"""verify on a small trained model: ONNX Runtime, LiteRT and TFLite Micro agree; results and thresholds."""
from __future__ import annotations

import json

import pytest

from tinyexit.cli import main
from tinyexit.export.config import VerifyConfig
from helpers.trained_runs import copy_run, exported_run
from tinyexit.export.verify import verify_run

SAMPLES = 150


@pytest.fixture(scope="module")
def verified(tmp_path_factory):
    run = copy_run(exported_run(tmp_path_factory.getbasetemp()), tmp_path_factory.mktemp("v") / "run")
    (run / "report").mkdir()
    (run / "report" / "report.json").write_text('{"tinyexit_version": "0.1.0"}\n')
    (run / "report" / "report.md").write_text("# report\n\n## Other section\n\ntext\n")
    return run, verify_run(run, VerifyConfig(samples=SAMPLES), progress=lambda m: None)


def test_int8_runtimes_agree_with_float_on_every_exit(verified):
    _, out = verified
    res = out["models"]["classifier"]
    assert res["samples"] == SAMPLES and len(res["per_exit"]) == 3
    for row in res["per_exit"]:
        for key in ("accuracy_float", "accuracy_float_ort", "accuracy_int8_ort", "accuracy_int8_litert",
                    "accuracy_int8_tflm", "agreement_int8"):
            assert 0.0 <= row[key] <= 1.0, key
        assert row["accuracy_float_ort"] == row["accuracy_float"]       # same float network
        assert row["agreement_int8"] >= 0.95                             # a few-epoch model, 150 samples
        assert abs(row["accuracy_int8_tflm"] - row["accuracy_float"]) <= 0.03
    assert res["boundary_quant_identical"] is True
    for lsb in res["lsb"]:
        assert lsb["logits"] <= 1                     # reference kernels vs TFLite Micro: at most one LSB
        assert lsb.get("features", 0) <= 1
    ee = res["early_exit_int8"]
    assert 0 < ee["mac_ratio"] <= res["per_exit"][-1]["exit"] + 2 and 0 <= ee["accuracy"] <= 1
    assert sum(ee["exit_fractions"]) == pytest.approx(1.0)
    assert res["sizes"]["param_bytes"] and all(b > 0 for b in res["sizes"]["files"].values())


def test_denoiser_bits_per_dim_int8_close_to_float(verified):
    run, out = verified
    res = out["models"]["denoiser"]
    assert res["bits_per_dim_float"] > 0
    assert abs(res["bits_per_dim_increase"]) < 0.02
    assert (run / "export" / "denoiser" / res["samples_png"]).read_bytes()[:4] == b"\x89PNG"


def test_verify_writes_its_own_json_and_table_never_the_report(verified, tmp_path):
    from tinyexit.eval import section_export

    run, out = verified
    saved = json.loads((run / "export" / "verify.json").read_text())
    assert saved["passed"] == out["passed"]
    expect = all(r["agreement_int8"] >= 0.99 and r["max_drop_points"] <= 1.0
                 for r in out["models"]["classifier"]["per_exit"])
    assert out["models"]["classifier"]["passed"] == expect
    # verify leaves the report alone; the report renders verify.json itself
    assert (run / "report" / "report.json").read_text() == '{"tinyexit_version": "0.1.0"}\n'
    assert (run / "report" / "report.md").read_text() == "# report\n\n## Other section\n\ntext\n"
    section = section_export.build(run, tmp_path)
    assert section.data["classifier"]["per_exit"][0]["accuracy_int8_tflm"] == \
           out["models"]["classifier"]["per_exit"][0]["accuracy_int8_tflm"]
    assert "bits_per_dim_int8" in section.data["denoiser"]
    assert section.data["classifier"]["policy"]["provenance"]["source"] == "chosen at training"
    assert "## Export: int8 artifacts" in section.markdown
    assert section.markdown.count("| exit |") == 2
    assert not (run / "export" / "verify.md").exists()  # one renderer of verify.json: the report's


def test_thresholds_are_flags_and_decide_the_exit_code(verified, capsys):
    run, out = verified
    rows = out["models"]["classifier"]["per_exit"]
    code = main(["verify", str(run), "--samples", str(SAMPLES), "--models", "classifier", "--min-agreement", "1.0"])
    assert code == (0 if all(r["agreement_int8"] == 1.0 for r in rows) else 1)
    code = main(["verify", str(run), "--samples", str(SAMPLES), "--models", "classifier", "--min-agreement", "0",
                 "--max-drop", "100"])
    assert code == 0
    assert "PASSED" in capsys.readouterr().out
    # a run verified for one model keeps the other model's results while its export is unchanged
    assert set(json.loads((run / "export" / "verify.json").read_text())["models"]) == {"classifier", "denoiser"}
