"""Host tier: the arm_dsp column modes on odd shapes, bit-exact against TensorFlow Lite Micro.

The test models elsewhere are 8x8/4x4/2x2; here widths and pixel counts are odd (a pixel pair's second
pixel is the first one again, or lies on the next row), strides 2 meet SAME padding, and every column
mode of the packed CONV_2D (per pixel, row ring, padded word rows) runs next to the reference kernels.
"""
from functools import lru_cache

import numpy as np
import pytest

from tinyexit.export.codegen_lower import lower, read_segment
from tinyexit.export.codegen_pack import column_mode, why_not_packed

from helpers import tflite_models as TM


@lru_cache(maxsize=None)
def _odd_model() -> bytes:
    tf = TM._tf()
    rng = np.random.default_rng(77)
    stem, a, b, c = TM._w(rng, (3, 3, 1, 4)), TM._w(rng, (3, 3, 4, 8), 0.2), TM._w(rng, (3, 3, 8, 16), 0.15), \
        TM._w(rng, (3, 3, 16, 18), 0.1)

    @tf.function(input_signature=[tf.TensorSpec([1, 7, 7, 1], tf.float32)])
    def odd(x):
        y = tf.nn.relu(tf.nn.conv2d(x, stem, 1, "SAME"))            # 7x7x1 -> 7x7x4   padded word rows
        y = tf.nn.relu(tf.nn.conv2d(y, a, 1, "SAME"))               # 7x7x4 -> 7x7x8   row ring, odd width
        z = tf.nn.relu(tf.nn.conv2d(y, b, 2, "SAME"))               # 7x7x8 -> 4x4x16  row ring, stride 2, SAME
        w = tf.nn.conv2d(z, c, 1, "VALID")                          # 4x4x16 -> 2x2x18 per pixel (18 outputs)
        return {"features": z, "logits": tf.reshape(tf.reduce_mean(w, [1, 2]), [1, 18])}

    xs = [rng.uniform(0, 1, (1, 7, 7, 1)).astype(np.float32) for _ in range(40)]
    return TM._convert(odd, xs)


def test_the_odd_model_takes_every_column_mode():
    layers = [layer for layer in lower(read_segment(_odd_model())) if layer.kind == "conv"]
    assert all(why_not_packed(layer) is None for layer in layers)
    assert sorted(column_mode(layer) for layer in layers) == [0, 1, 1, 2]


@pytest.mark.parametrize("kernels", ["reference", "arm_dsp"])
def test_odd_shapes_bit_exact_against_tflite_micro(tmp_path, kernels):
    blob = _odd_model()
    runner, src = TM.host_runner(tmp_path, [blob], kernels)
    inputs = TM.random_inputs((1, 7, 7, 1), 80, seed=8)
    logits, feats = runner.run_segment(0, np.stack(inputs))
    want = [TM.split_outputs(outs, src.segments[0]) for outs in TM.tflm_run(blob, inputs)]
    np.testing.assert_array_equal(logits, np.stack([w[0] for w in want]))
    np.testing.assert_array_equal(feats, np.stack([w[1] for w in want]))
