"""The agent's runtime choice (auto: ai-edge-litert, else tflite_runtime, else ONNX Runtime) and kernel sets,
and the host reference that compares like with like.

The fallback is exercised with the real modules: a subprocess whose import system refuses ai_edge_litert
(and tflite_runtime, which .venv does not have) is what a device without them is.  The tflite_runtime
path itself runs for real in test_agent_bundle.py (a fresh venv with only tflite-runtime).
"""
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tinyexit.bundle import load_bundle, load_test_inputs
from tinyexit.errors import UserError
from tinyexit.firmware_bridge.agent.runtime import make_backend, resolve_runtime
from tinyexit.firmware_bridge.agent.server import AgentConfig, DeviceCore
from tinyexit.firmware_bridge.harness import figures as fig
from tinyexit.firmware_bridge.harness.reference import (TOLERANCE_LSB, HostReference, compare, compute_reference,
                                                        reference_spec)

BLOCK = """
import sys
from importlib.abc import MetaPathFinder
class Absent(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("ai_edge_litert", "tflite_runtime"):
            raise ModuleNotFoundError(name, name=name)
sys.meta_path.insert(0, Absent())
from tinyexit.bundle import load_bundle
from tinyexit.errors import UserError
from tinyexit.firmware_bridge.agent.runtime import resolve_runtime
try:
    print(resolve_runtime("auto", load_bundle(sys.argv[1])))
except UserError as exc:
    print("UserError:", exc)
"""


@pytest.fixture(scope="module")
def art(fixture_run_template):
    return load_bundle(fixture_run_template / "export" / "classifier")


def _litert_version():
    import ai_edge_litert

    return ai_edge_litert.__version__


def test_auto_is_litert_here_and_the_kernels_are_named_in_info(art):
    assert resolve_runtime("auto", art) == "litert"
    for kernels in ("optimized", "reference"):
        backend = make_backend(art, "auto", kernels=kernels)
        core = DeviceCore(art, backend, AgentConfig(port="-", artifact=str(art.dir), kernels=kernels))
        info = core.info()
        assert info.runtime_name == f"ai-edge-litert {_litert_version()} {kernels}"
        assert len(info.pack()) == len(m_info_roundtrip(info))


def m_info_roundtrip(info):
    from tinyexit.firmware_bridge.protocol import messages as m

    back = m.Info.unpack(info.pack())
    assert back.runtime_name == info.runtime_name
    return back.pack()


def test_without_litert_auto_falls_back_and_says_what_to_install(art, tmp_path):
    run = lambda d: subprocess.run([sys.executable, "-c", BLOCK, str(d)], capture_output=True, text=True,  # noqa: E731
                                   timeout=120)
    done = run(art.dir)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ("UserError: --runtime auto: no inference runtime is installed; pip install "
                                   "ai-edge-litert (aarch64, x86_64) or tflite-runtime (armv7l); "
                                   "see docs/raspberry-pi.md")
    # the same bundle with int8 ONNX files listed: ONNX Runtime (installed here) is the last resort
    copy = tmp_path / "classifier"
    shutil.copytree(art.dir, copy)
    man = json.loads((copy / "manifest.json").read_text())
    for seg in man["segments"]:
        seg.setdefault("files", {})["onnx_int8"] = {"path": f"onnx/segment_{seg['index']}.int8.onnx"}
    (copy / "manifest.json").write_text(json.dumps(man))
    done = run(copy)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "onnxruntime"


def test_kernel_choices_are_checked(art):
    with pytest.raises(UserError, match="--kernels fast: choose one of optimized, reference"):
        AgentConfig(port="-", artifact=str(art.dir), kernels="fast")
    with pytest.raises(UserError, match="ONNX Runtime has only its optimized kernels"):
        make_backend(art, "onnxruntime", kernels="reference")
    assert AgentConfig(port="-", artifact=str(art.dir)).runtime == "auto"
    assert AgentConfig(port="-", artifact=str(art.dir), runtime="litert").runtime == "litert"  # old choice kept


def test_reference_spec_follows_the_device_kernels():
    assert reference_spec("ai-edge-litert 2.3.0 reference", "litert") == "litert:reference"
    assert reference_spec("tflite_runtime 2.14.0 optimized", "litert") == "litert:optimized"
    assert reference_spec("ai-edge-litert 2.3.0", "litert") == "litert:optimized"   # an older agent
    assert reference_spec("tinyexit-c arm_dsp", "tflm") == "tflm"


def test_reference_and_optimized_kernels_differ_by_at_most_the_tolerance(art):
    x, _ = load_test_inputs(art, limit=40)
    opt = compute_reference(art, x, art.policy, "litert:optimized")
    ref = compute_reference(art, x, art.policy, "litert:reference")
    assert (opt.kernels, opt.tolerance_lsb, ref.kernels, ref.tolerance_lsb) == ("optimized", 2, "reference", 0)
    diff = np.abs(opt.exit_logits.astype(np.int64) - ref.exit_logits.astype(np.int64))
    assert diff.max() <= TOLERANCE_LSB["optimized"]
    assert not ref.fragile.any()          # tolerance 0: no decision is borderline
    assert not opt.fragile[-1].any()      # the last exit always leaves


def _ref(exit_logits, early, tol=2, fragile=None):
    e, n, _ = exit_logits.shape
    return HostReference("litert:optimized", exit_logits.astype(np.int8), None, np.asarray(early), None,
                         "optimized", tol, np.zeros((e, n), bool) if fragile is None else fragile)


def test_compare_measures_logits_at_the_exit_the_device_left_at():
    logits = np.array([[[10, -5, 3]], [[40, -20, 0]]])      # 2 exits, 1 sample, 3 classes
    ref = _ref(logits, [1], fragile=np.array([[True], [False]]))
    same = compare(ref, "early_exit", 0, 1, np.array([41, -20, 0]))
    assert same == {"host_exit": 1, "host_top1": 0, "host_logits_equal": False, "host_logit_lsb": 1,
                    "host_borderline": False, "host_kernels": "optimized", "tolerance_lsb": 2}
    # the device left at exit 0 where the host went on: compared with the host's exit-0 logits
    early = compare(ref, "early_exit", 0, 0, np.array([10, -5, 5]))
    assert (early["host_exit"], early["host_logit_lsb"], early["host_borderline"]) == (1, 2, True)
    firm = compare(_ref(logits, [1]), "early_exit", 0, 0, np.array([10, -5, 3]))
    assert (firm["host_logit_lsb"], firm["host_borderline"]) == (0, False)


def test_agreement_figures_count_lsb_and_borderline_disagreements():
    def rec(sample, lsb, exit_=1, host_exit=1, top1=0, host_top1=0, borderline=False):
        return {"sample": sample, "mode": "early_exit", "exit": exit_, "host_exit": host_exit, "top1": top1,
                "host_top1": host_top1, "host_logits_equal": lsb == 0 and exit_ == host_exit,
                "host_logit_lsb": lsb, "host_borderline": borderline, "host_kernels": "optimized",
                "tolerance_lsb": 2}
    rs = [rec(0, 0), rec(1, 1), rec(2, 1), rec(3, 2, exit_=0, borderline=True), rec(4, 0)]
    a = fig.agreement({"early_exit": rs}, ["ai-edge-litert 2.3.0 optimized"])
    assert a["agreement_logit_lsb_histogram"] == [2, 2, 1]
    assert (a["agreement_exit_disagree"], a["agreement_exit_disagree_borderline"]) == (1, 1)
    assert (a["agreement_top1_disagree"], a["agreement_logits_beyond_tolerance"]) == (0, 0)
    assert a["agreement_within_tolerance"] is True and a["logits_equal"] == 0.4
    assert a["agreement_device_runtime"] == "ai-edge-litert 2.3.0 optimized"
    assert a["agreement_reference_kernels"] == "optimized"
    rs.append(rec(5, 3, top1=1, host_top1=0))
    a = fig.agreement({"early_exit": rs})
    assert a["agreement_logits_beyond_tolerance"] == 1 and a["agreement_within_tolerance"] is False


def test_the_report_row_never_says_equal():
    from tinyexit.eval.bench_markdown import AGREEMENT_ROW, agreement_rows

    t = {"agreement_device_runtime": "ai-edge-litert 2.3.0 optimized", "agreement_reference_kernels": "optimized",
         "agreement_logit_lsb_histogram": [150, 290, 7], "agreement_tolerance_lsb": 2,
         "agreement_logits_beyond_tolerance": 0, "agreement_exit_disagree": 1,
         "agreement_exit_disagree_borderline": 1, "agreement_top1_disagree": 0,
         "agreement_top1_disagree_borderline": 0}
    rows = agreement_rows(t)
    assert rows == [["device runtime / host reference kernels", "ai-edge-litert 2.3.0 optimized / optimized"],
                    ["samples by max abs(device − host) int8 logit",
                     "0 LSB: 150, 1 LSB: 290, 2 LSB: 7; tolerance ±2 LSB: all within"],
                    ["exit / top-1 disagreements (of which within the tolerance of the decision)", "1 (1) / 0 (0)"]]
    assert "equal" not in AGREEMENT_ROW + json.dumps(rows)
