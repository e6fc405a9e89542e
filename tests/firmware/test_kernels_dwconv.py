"""DEPTHWISE_CONV_2D (the arm_dsp four-channel path, its 3x3 interior fast path, borders, channel tails,
strides, dilation), AVERAGE_POOL_2D and RESHAPE at MLPerf Tiny shapes: both C kernel sets bit-exact against
TensorFlow Lite Micro on seeded random shapes and inputs (host tier; arm_dsp through -DTE_EMULATE_DSP)."""
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

_KEY = "tinyexit_tests_tflite_models"
if _KEY not in sys.modules:
    _spec = importlib.util.spec_from_file_location(_KEY, Path(__file__).parent / "tflite_models.py")
    sys.modules[_KEY] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(sys.modules[_KEY])
TM = sys.modules[_KEY]

# (H, W, C, kernel, stride, dilation, padding): the 3x3 interior path (C % 4 == 0), a channel tail (C = 6),
# stride 2 on an odd map, 5x5 and dilation 2 (generic path), VALID padding, a DS-CNN-like 25x5x64 map.
DW_CASES = [(9, 7, 8, 3, 1, 1, "SAME"), (8, 8, 6, 3, 1, 1, "SAME"), (11, 9, 16, 3, 2, 1, "SAME"),
            (7, 7, 4, 5, 1, 1, "SAME"), (9, 9, 12, 3, 1, 2, "SAME"), (8, 6, 8, 3, 1, 1, "VALID"),
            (25, 5, 64, 3, 1, 1, "SAME")]
_CACHE = {}


def _model(case) -> bytes:
    if case in _CACHE:
        return _CACHE[case]
    tf = TM._tf()
    h, w, c, k, s, d, pad = case
    rng = np.random.default_rng(1000 + DW_CASES.index(case))
    wd = rng.normal(0, 0.4, (k, k, c, 1)).astype(np.float32)
    b = rng.normal(0, 0.2, (c,)).astype(np.float32)

    @tf.function(input_signature=[tf.TensorSpec([1, h, w, c], tf.float32)])
    def f(x):
        y = tf.nn.relu6(tf.nn.depthwise_conv2d(x, wd, [1, s, s, 1], pad, dilations=[d, d]) + b)
        pooled = tf.nn.avg_pool2d(y, 2, 2, "VALID") if min(y.shape[1:3]) >= 2 else y
        return {"logits": tf.reshape(pooled, [1, -1])}
    _CACHE[case] = TM._convert(f, [rng.normal(0, 1, (1, h, w, c)).astype(np.float32) for _ in range(32)])
    return _CACHE[case]


@pytest.mark.parametrize("kernels", ["reference", "arm_dsp"])
def test_depthwise_pool_reshape_bit_exact(tmp_path, kernels):
    for i, case in enumerate(DW_CASES):
        blob = _model(case)
        runner, src = TM.host_runner(tmp_path / str(i), [blob], kernels, name=f"dw{i}")
        kinds = [layer["kind"] for layer in src.layers]
        assert "dwconv" in kinds, kinds
        xs = TM.random_inputs(src.segments[0]["in_shape"], 40, seed=30 + i)
        logits, _ = runner.run_segment(0, np.stack(xs))
        want = np.stack([o[0].ravel() for o in TM.tflm_run(blob, xs)])
        np.testing.assert_array_equal(logits, want, err_msg=f"case {case}")


FC_CASES = [(20, 7), (7, 5), (640, 128), (36, 3)]   # (k, n_out): odd word counts, a k tail, the AE's first layer


def _fc_model(k, n, seed) -> bytes:
    tf = TM._tf()
    rng = np.random.default_rng(seed)
    w1, b1 = rng.normal(0, 0.3, (k, n)).astype(np.float32), rng.normal(0, 0.1, (n,)).astype(np.float32)
    w2 = rng.normal(0, 0.3, (n, 3)).astype(np.float32)

    @tf.function(input_signature=[tf.TensorSpec([1, k], tf.float32)])
    def f(x):  # a FULLY_CONNECTED chain, as the anomaly-detection autoencoder is
        return {"logits": tf.matmul(tf.nn.relu(tf.matmul(x, w1) + b1), w2)}
    return TM._convert(f, [rng.normal(0, 1, (1, k)).astype(np.float32) for _ in range(32)])


@pytest.mark.parametrize("kernels", ["reference", "arm_dsp"])
def test_fully_connected_chains_bit_exact(tmp_path, kernels):
    for i, (k, n) in enumerate(FC_CASES):
        blob = _fc_model(k, n, 50 + i)
        runner, src = TM.host_runner(tmp_path / str(i), [blob], kernels, name=f"fc{i}")
        assert [layer["kind"] for layer in src.layers] == ["fc", "fc"]
        xs = TM.random_inputs(src.segments[0]["in_shape"], 40, seed=60 + i)
        logits, _ = runner.run_segment(0, np.stack(xs))
        np.testing.assert_array_equal(logits, np.stack([o[0].ravel() for o in TM.tflm_run(blob, xs)]),
                                      err_msg=f"k={k} n_out={n}")
