"""The exit decision as a sweep kind: the same layer on both sides of the room wall, C that compiles."""
import shutil
import subprocess
from pathlib import Path

import pytest

from tinyexit.errors import UserError
from tinyexit.eval.kernel_model import decision_layer
from tinyexit.export import microbench as mb

FW = Path(__file__).resolve().parents[2] / "firmware_bridge" / "firmware"


@pytest.mark.parametrize("policy, n", [("max_softmax", 10), ("entropy", 2), ("patience", 256), ("calibrated", 3)])
def test_the_sweep_and_the_report_describe_an_exit_test_alike(policy, n):
    # export writes the sweep's layer, eval the report's (eval may not import export): they must agree
    assert mb.decision_features(policy, n) == decision_layer(policy, n)
    assert decision_layer("calibrated", n)["kind"] == "decision_max_softmax"


def test_a_decision_point_has_no_tflite_operator_and_keeps_older_cache_keys():
    p = mb.SweepPoint("decision", h=1, w=1, cin=10, cout=10, relu=False, policy="entropy")
    assert p.label == "decision entropy on 10 logits" and p.to_dict()["policy"] == "entropy"
    with pytest.raises(UserError, match="not a TFLite operator"):
        mb.single_op_tflite(p)
    with pytest.raises(UserError, match="policy 'nope'"):
        mb.SweepPoint("decision", cout=4, policy="nope")


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs the host gcc")
def test_decision_c_compiles_against_the_firmware_headers(tmp_path):
    p = mb.SweepPoint("decision", h=1, w=1, cin=16, cout=16, relu=False, policy="max_softmax")
    first = tmp_path / "mb0_model.c"
    first.write_text(mb.decision_c(p, "mb0", True))
    second = tmp_path / "mb1_model.c"
    second.write_text(mb.decision_c(mb.SweepPoint("decision", cout=4, policy="patience"), "mb1", False))
    for src in (first, second):
        res = subprocess.run(["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-c", str(src), "-o",
                              str(src.with_suffix(".o")), f"-I{FW / 'core'}"], capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
    # te_policy.c is compiled into the first decision model only (the image links one copy)
    assert '#include "te_policy.c"' in first.read_text() and "te_policy.c" not in second.read_text()
