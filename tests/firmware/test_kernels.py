"""Host tier: generated C + each kernel set, compiled with the host gcc, bit-exact against TensorFlow Lite Micro.

The arm_dsp set runs here through -DTE_EMULATE_DSP (C versions of SXTB16/SMLAD/...);
the same sources run on real DSP instructions in the QEMU tier (test_qemu*.py).
"""
import json
import shutil
import subprocess

import numpy as np
import pytest

from tinyexit.errors import UserError
from tinyexit.firmware_bridge.firmware import host as firmware_host
from tinyexit.firmware_bridge.firmware.host import FIRMWARE_DIR, build_host_runner, kernel_sources

from helpers import tflite_models as TM

KERNELS = ["reference", "arm_dsp"]


def _check_segment(runner, seg_row, k, blob, inputs):
    logits, feats = runner.run_segment(k, np.stack(inputs))
    want = [TM.split_outputs(outs, seg_row) for outs in TM.tflm_run(blob, inputs)]
    np.testing.assert_array_equal(logits, np.stack([w[0] for w in want]))
    if feats is not None:
        np.testing.assert_array_equal(feats, np.stack([w[1] for w in want]))
    return want


@pytest.mark.parametrize("kernels", KERNELS)
@pytest.mark.parametrize("name", ["conv_block", "dw_pool", "fc_tensor", "logistic"])
def test_every_kernel_bit_exact_against_tflite_micro(tmp_path, kernels, name):
    blob = TM.op_models()[name]
    runner, src = TM.host_runner(tmp_path, [blob], kernels)
    n = 1 if name == "logistic" else 120
    shape = src.segments[0]["in_shape"]
    inputs = [np.arange(-128, 128, dtype=np.int8).reshape(shape)] if name == "logistic" else \
        TM.random_inputs(shape, n, seed=3)
    _check_segment(runner, src.segments[0], 0, blob, inputs)


@pytest.mark.parametrize("kernels", KERNELS)
def test_segments_alone_and_chained_bit_exact(tmp_path, kernels):
    blobs = TM.chain_models()
    runner, src = TM.host_runner(tmp_path, blobs, kernels)
    x0 = TM.random_inputs((1, 8, 8, 1), 150, seed=21)
    cur, want_logits = x0, []
    for k, blob in enumerate(blobs):
        want = _check_segment(runner, src.segments[k], k, blob, cur)
        want_logits.append(np.stack([w[0] for w in want]))
        cur = [w[1].reshape(src.segments[k + 1]["in_shape"]) for w in want] if k < 2 else None
    chained = runner.run_chain(2, np.stack(x0))  # features handed over in place in the arena
    for k in range(3):
        np.testing.assert_array_equal(chained[k], want_logits[k])


def _rescale_tensor(blob: bytes, tensor_name_part: str, factor: float) -> bytes:
    import flatbuffers
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as fb
    m = fb.ModelT.InitFromObj(fb.Model.GetRootAsModel(blob, 0))
    sg = m.subgraphs[0]
    t = next(t for i, t in enumerate(sg.tensors) if i == int(tensor_name_part))
    t.quantization.scale = np.asarray(t.quantization.scale, np.float32) * np.float32(factor)
    b = flatbuffers.Builder(len(blob) + 1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


@pytest.mark.parametrize("kernels", KERNELS)
def test_left_shifts_and_saturation_take_the_general_paths(tmp_path, kernels):
    """A conv output scale 1/64 of the calibrated one: multipliers > 1 (left shifts), saturated outputs."""
    from tinyexit.export.codegen_lower import read_segment
    blob = TM.chain_models()[0]
    g = read_segment(blob)
    first_conv_out = g.ops[0].outputs[0]
    blob = _rescale_tensor(blob, str(first_conv_out), 1 / 64)
    runner, src = TM.host_runner(tmp_path, [blob], kernels)
    layers = [layer for layer in src.layers if layer["kind"] == "conv"]
    assert layers
    _check_segment(runner, src.segments[0], 0, blob, TM.random_inputs((1, 8, 8, 1), 60, seed=5))


def test_optimized_set_never_falls_back(tmp_path, monkeypatch):
    tree = tmp_path / "firmware"
    shutil.copytree(FIRMWARE_DIR / "kernels", tree / "kernels")
    (tree / "kernels" / "arm_dsp" / "te_mean.c").unlink()
    monkeypatch.setattr(firmware_host, "FIRMWARE_DIR", tree)
    with pytest.raises(UserError, match="lacks te_mean.c; refusing to fall back"):
        firmware_host.kernel_sources("arm_dsp")
    monkeypatch.undo()
    assert [p.name for p in kernel_sources("arm_dsp")] == [p.name for p in kernel_sources("reference")]
    with pytest.raises(UserError, match="kernels need a Cortex-M with the DSP extension"):
        build_host_runner(tmp_path, "tm", tmp_path / "x", "arm_dsp")
    # without the emulation switch a non-DSP compiler stops at the #error, it does not degrade
    res = subprocess.run(["gcc", "-std=c99", "-c", f"-I{FIRMWARE_DIR / 'kernels'}", "-o", str(tmp_path / "c.o"),
                          str(FIRMWARE_DIR / "kernels" / "arm_dsp" / "te_conv.c")], capture_output=True, text=True)
    assert res.returncode != 0 and "needs a core with the Arm DSP extension" in res.stderr
    with pytest.raises(UserError, match="kernel set 'fast': unknown"):
        kernel_sources("fast")


@pytest.mark.slow
@pytest.mark.parametrize("model", ["classifier", "denoiser"])
def test_exported_models_every_segment_whole_test_split(tmp_path_factory, model):
    """The real exported segments of both families on the whole digits test split, both kernel sets."""
    from helpers.trained_runs import exported_run
    from tinyexit.firmware_bridge.firmware.verify import test_split_inputs

    run = exported_run(tmp_path_factory.getbasetemp())
    mdir = run / "export" / model
    manifest = json.loads((mdir / "manifest.json").read_text())
    blobs = [(mdir / s["files"]["tflm"]["path"]).read_bytes() for s in manifest["segments"]]
    x0 = test_split_inputs(run, model)
    assert len(x0) == 447
    for kernels in KERNELS:
        tmp = tmp_path_factory.mktemp(f"{model}_{kernels}")
        runner, src = TM.host_runner(tmp, blobs, kernels, name=model)
        cur = list(x0)
        for k, blob in enumerate(blobs):
            want = _check_segment(runner, src.segments[k], k, blob, cur)
            if k < len(blobs) - 1:
                cur = [w[1].reshape(src.segments[k + 1]["in_shape"]) for w in want]
