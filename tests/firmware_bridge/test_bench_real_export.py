"""The benchmark on a real exported classifier: trained, exported by tinyexit.export, served by the agent."""
import numpy as np
import pytest

from tinyexit.firmware_bridge.artifact import load_artifact, load_test_inputs
from tinyexit.firmware_bridge.bench import BenchConfig, run_benchmark
from tinyexit.firmware_bridge.results import read_results, record_key

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    from tinyexit.export.config import ExportConfig
    from tinyexit.export.exporter import export_run
    from tinyexit.export.testing import copy_run, tiny_run

    run = copy_run(tiny_run(tmp_path_factory.mktemp("real")), tmp_path_factory.mktemp("mine") / "run")
    export_run(run, ExportConfig(formats=("onnx", "tflite", "tflm"), models=("classifier",),
                                 calibration_samples=200), progress=lambda msg: None)
    return run


@pytest.mark.parametrize("runtime", ["litert", "onnxruntime"])
def test_real_export_on_the_host_agent_equals_the_host_reference(real_run, runtime):
    modes = ("early_exit", "full", "segments") if runtime == "litert" else ("early_exit", "segments")
    cfg = BenchConfig(limit=80, modes=modes, warmup=1, progress=False, runtime=runtime, name=f"agent-{runtime}")
    summary = run_benchmark(real_run, ["agent"], cfg, log=lambda msg: None)
    records, _ = read_results(real_run / "bench" / f"agent-{runtime}" / "results.jsonl")
    assert len(records) == 80 * (len(modes) + 2) == len({record_key(r) for r in records})
    assert all(r["host_logits_equal"] and r["exit"] == r["host_exit"] for r in records)
    assert summary["devices"][0]["info"]["runtime"] == runtime
    assert summary["payload_efficiency"] >= 0.9
    art = load_artifact(real_run / "export" / "classifier")
    assert [e["macs"] for e in summary["per_exit"]] == [e["cumulative_macs"] for e in art.manifest["exits"]]


def test_harness_inputs_match_the_exported_input_quantization(real_run):
    art = load_artifact(real_run / "export" / "classifier")
    x, y = load_test_inputs(real_run, art)
    assert x.shape == (447, 8, 8, 1) and x.dtype == np.int8 and len(y) == 447
    # digits pixels are k/16: with scale 1/255 and zero point -128 they map to -128 .. 127 exactly at the ends
    assert x.min() == -128 and x.max() == 127
