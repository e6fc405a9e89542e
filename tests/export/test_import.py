"""`tinyexit import`: each refusal (one line naming the file and the fix), the bundle it writes, and one small
imported model end to end (firmware build, bench under QEMU, report, check) — the QEMU part marked qemu."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tinyexit.bundle import load_bundle, read_inputs
from tinyexit.errors import UserError
from tinyexit.export import tflite_graph as tg
from tinyexit.export.import_tflite import ImportConfig, import_tflite

from helpers import tflite_models as TM

TINYEXIT = str(Path(sys.executable).parent / "tinyexit")

_CACHE = {}


def _keras_small(int8_io: bool = True, pool: str = "avg") -> bytes:
    """16x16x3 -> stride-2 conv, depthwise, pointwise, average pool, FC (flattening its input), SOFTMAX (seeded)."""
    key = (int8_io, pool)
    if key in _CACHE:
        return _CACHE[key]
    tf = TM._tf()
    tf.keras.utils.set_random_seed(7)
    L = tf.keras.layers
    inp = tf.keras.Input((16, 16, 3), batch_size=1)
    y = L.Conv2D(8, 3, strides=2, padding="same", activation="relu")(inp)
    y = L.DepthwiseConv2D(3, padding="same", activation="relu")(y)
    y = L.Conv2D(16, 1, activation="relu")(y)
    y = (L.AveragePooling2D(8) if pool == "avg" else L.MaxPooling2D(8))(y)
    y = L.Softmax()(L.Dense(10)(L.Flatten()(y)))
    conv = tf.lite.TFLiteConverter.from_keras_model(tf.keras.Model(inp, y))
    rng = np.random.default_rng(8)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([rng.uniform(0, 1, (1, 16, 16, 3)).astype(np.float32)] for _ in range(32))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if int8_io:
        conv.inference_input_type = conv.inference_output_type = tf.int8
    _CACHE[key] = conv.convert()
    return _CACHE[key]


def _write(tmp_path, name, blob) -> Path:
    p = tmp_path / name
    p.write_bytes(blob)
    return p


def _refused(tmp_path, files, match, **cfg):
    with pytest.raises(UserError, match=match) as err:
        import_tflite(files, tmp_path / "run", ImportConfig(generate_c=False, **cfg), progress=lambda m: None)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "run" / "export" / (cfg.get("name") or Path(files[0]).name.split(".")[0])).exists()


def test_not_a_tflite_file_is_refused(tmp_path):
    bad = _write(tmp_path, "model.tflite", b"PK\x03\x04 this is a zip, not a flatbuffer")
    _refused(tmp_path, [bad], r"model.tflite: not a TFLite file \(no 'TFL3' identifier\)")
    _refused(tmp_path, [tmp_path / "missing.tflite"], r"missing.tflite: cannot read")


def test_float_io_is_refused_with_the_conversion_recipe(tmp_path):
    f = _write(tmp_path, "float_io.tflite", _keras_small(int8_io=False))
    _refused(tmp_path, [f], r"float_io.tflite: input/output '.*' is float32, not int8; convert it to full int8 "
                            r"with TFLiteConverter: .*inference_input_type=tf.int8, inference_output_type=tf.int8")


def test_unsupported_operators_are_named(tmp_path):
    f = _write(tmp_path, "maxpool.tflite", _keras_small(pool="max"))
    _refused(tmp_path, [f], r"maxpool.tflite: unsupported operator\(s\) MAX_POOL_2D; tinyexit's kernels run "
                            r"CONV_2D, .*SOFTMAX")


def test_asymmetric_weights_are_refused(tmp_path):
    blob = bytearray(TM.op_models()["fc_tensor"])
    g = tg.read_model(bytes(blob))[0]
    fc = next(op for op in g.ops if op.type == "FULLY_CONNECTED")
    w = g.tensors[fc.inputs[1]]
    assert len(w.scale) == 1  # per-tensor FC weights: one zero point to patch
    tg.set_quantization(blob, 0, w.index, np.float32(w.scale[0]), 3)
    f = _write(tmp_path, "asym.tflite", bytes(blob))
    _refused(tmp_path, [f], r"asym.tflite: FULLY_CONNECTED \(op #\d+\) weights '.*' have non-zero zero points")


def test_segment_contract_is_checked(tmp_path):
    blobs = TM.chain_models()
    s0, s1, s2 = (_write(tmp_path, f"seg{k}.tflite", b) for k, b in enumerate(blobs))
    _refused(tmp_path, [s0, s1], r"seg1.tflite: segment 1 of 2 has 2 outputs; the last segment returns only its logits",
             name="chain")
    moved = bytearray(blobs[1])
    g = tg.read_model(bytes(moved))[0]
    x = g.tensors[g.inputs[0]]
    tg.set_quantization(moved, 0, x.index, np.float32(x.scale[0] * 1.01), x.zero_point[0])
    bad1 = _write(tmp_path, "seg1_moved.tflite", bytes(moved))
    _refused(tmp_path, [s0, bad1, s2], r"seg0.tflite -> .*seg1_moved.tflite: features .* differ from the next "
                                       r"segment's input .*bit-identical", name="chain")


def test_inputs_of_the_wrong_layout_are_refused(tmp_path):
    f = _write(tmp_path, "small.tflite", _keras_small())
    npz = tmp_path / "nchw.npz"
    np.savez(npz, x=np.zeros((4, 3, 16, 16), np.float32))
    _refused(tmp_path, [f], r"nchw.npz: x has shape \(4, 3, 16, 16\), the model takes \(N, 16, 16, 3\) NHWC",
             inputs=str(npz))


def test_single_file_bundle(tmp_path):
    f = _write(tmp_path, "small.tflite", _keras_small())
    rng = np.random.default_rng(3)
    x, y = rng.uniform(0, 1, (12, 16, 16, 3)).astype(np.float32), rng.integers(0, 10, 12)
    np.savez(tmp_path / "data.npz", x=x, y=y)
    man = import_tflite([f], tmp_path / "run", ImportConfig(inputs=str(tmp_path / "data.npz")),
                        progress=lambda m: None)
    b = load_bundle(tmp_path / "run" / "export" / "small", verify=True)
    assert b.model == "small" and b.n_segments == 1 and b.policy is None and b.source_checkpoint_sha256 is None
    assert [o["name"] for o in man["segments"][0]["outputs"]] == ["logits"]
    assert [op["type"] for op in man["segments"][0]["ops"]] == ["CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D",
                                                              "AVERAGE_POOL_2D", "FULLY_CONNECTED", "SOFTMAX"]
    assert man["full_macs"] == 8 * 8 * 8 * 27 + 8 * 8 * 8 * 9 + 8 * 8 * 16 * 8 + 16 * 10
    got = read_inputs(b)
    from tinyexit.bundle import quantize
    np.testing.assert_array_equal(got.x, quantize(x, b.input))
    np.testing.assert_array_equal(got.y, y)
    assert json.loads((b.dir / "c" / "codegen.json").read_text())["model_name"] == "small"


def test_three_segments_get_the_imported_policy_and_signatures(tmp_path):
    files = [_write(tmp_path, f"seg{k}.tflite", b) for k, b in enumerate(TM.chain_models())]
    man = import_tflite(files, tmp_path / "run", ImportConfig(name="chain", generate_c=False),
                        progress=lambda m: None)
    assert man["policy"]["params"] == [0.9] and man["policy"]["provenance"]["source"] == "imported"
    assert man["inputs"] is None and man["boundary_quant_identical"]
    multi = tg.read_model((tmp_path / "run/export/chain/chain.int8.tflite").read_bytes())
    assert [sg.signature for sg in multi] == ["exit0", "exit1", "exit2"]
    assert [sorted(sg.sig_outputs) for sg in multi] == [["features", "logits"]] * 2 + [["logits"]]
    for k, seg in enumerate(man["segments"]):  # the per-segment files: logits first, as the manifest lists them
        g = tg.read_model((tmp_path / "run/export/chain" / seg["files"]["tflm"]["path"]).read_bytes())[0]
        assert [g.tensors[i].shape for i in g.outputs] == [o["shape"] for o in seg["outputs"]]


@pytest.mark.qemu
@pytest.mark.skipif(shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None,
                    reason="needs qemu-system-arm and gcc-arm-none-eabi")
def test_small_imported_model_end_to_end_under_qemu(tmp_path):
    f = _write(tmp_path, "small.tflite", _keras_small())
    np.savez(tmp_path / "data.npz", x=np.random.default_rng(5).uniform(0, 1, (8, 16, 16, 3)).astype(np.float32))
    run = tmp_path / "run"

    def cli(*args):
        res = subprocess.run([TINYEXIT, *map(str, args)], capture_output=True, text=True)
        assert res.returncode == 0, res.stderr[-2000:]
        return res.stdout

    cli("import", f, "--out", run, "--inputs", tmp_path / "data.npz")
    cli("firmware", "build", run)  # the run's only bundle is the default model
    fw = json.loads((run / "firmware/small/mps2-an386-arm_dsp/firmware.json").read_text())
    assert fw["bit_exact_vs_tflm"] is True and fw["host_tier"]["samples"] == 8
    cli("bench", run, "--model", "small", "--target", "qemu")
    summary = json.loads((run / "bench/qemu/summary.json").read_text())
    assert summary["samples"] == 8 and summary["agreement_logits_beyond_tolerance"] == 0
    assert summary["agreement"]["segment:0"]["logits_equal"] == 1.0 and summary["accuracy"] == {"segment:0": None}
    cli("report", run)
    cli("check", run, "--baseline", tmp_path / "base.json", "--update")
    cli("check", run, "--baseline", tmp_path / "base.json")
