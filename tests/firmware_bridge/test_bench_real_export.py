"""The benchmark on a real exported classifier: trained, exported by tinyexit.export, served by the agent."""
import numpy as np
import pytest

from tinyexit.bundle import load_bundle, load_test_inputs
from tinyexit.firmware_bridge.harness.bench import BenchConfig, run_benchmark
from tinyexit.firmware_bridge.harness.results import read_results, record_key

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    from tinyexit.export.config import ExportConfig
    from tinyexit.export.exporter import export_run
    from helpers.trained_runs import copy_run, tiny_run

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
    # full expands to full + full:all_exits (the export writes the all-exits model); segments to 3 chains
    expanded = {"litert": ["early_exit", "full", "full:all_exits", "segment:0", "segment:1", "segment:2"],
                "onnxruntime": ["early_exit", "segment:0", "segment:1", "segment:2"]}[runtime]
    assert summary["modes"] == expanded and {r["mode"] for r in records} == set(expanded)
    assert len(records) == 80 * len(expanded) == len({record_key(r) for r in records})
    if runtime == "litert":
        assert summary["segment_overhead_detail"]["baseline"] == "full:all_exits"
    assert all(r["host_logits_equal"] and r["exit"] == r["host_exit"] for r in records)
    assert summary["devices"][0]["info"]["runtime"] == runtime
    assert summary["payload_efficiency"] >= 0.9
    art = load_bundle(real_run / "export" / "classifier")
    assert [e["macs"] for e in summary["per_exit"]] == [e["cumulative_macs"] for e in art.manifest["exits"]]


def test_harness_inputs_match_the_exported_input_quantization(real_run):
    art = load_bundle(real_run / "export" / "classifier")
    x, y = load_test_inputs(art)
    assert x.shape == (447, 8, 8, 1) and x.dtype == np.int8 and len(y) == 447
    # digits pixels are k/16: with scale 1/255 and zero point -128 they map to -128 .. 127 exactly at the ends
    assert x.min() == -128 and x.max() == 127


@pytest.mark.qemu
def test_real_export_on_the_qemu_firmware_equals_tflite_micro(real_run):
    import shutil

    if shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("qemu-system-arm or arm-none-eabi-gcc missing")
    from tinyexit.export import codegen

    codegen.generate_c_for_run(real_run, "classifier")
    cfg = BenchConfig(limit=40, warmup=1, progress=False)
    summary = run_benchmark(real_run, ["qemu"], cfg, log=lambda msg: None)
    assert summary["target"] == "qemu" and summary["simulated_or_real"].startswith("simulated: QEMU")
    assert summary["devices"][0]["reference_runtime"] == "tflm"
    assert all(a["logits_equal"] == 1.0 and a["exit"] == 1.0 for a in summary["agreement"].values())
    # instruction-count ticks are deterministic: the chain costs what the all-exits monolith costs
    assert summary["segment_overhead"] == pytest.approx(0.0, abs=0.01)
