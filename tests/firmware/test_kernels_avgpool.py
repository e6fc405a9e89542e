"""AVERAGE_POOL_2D: the arm_dsp lane sums (8 and 4 channels, whole-width runs, row runs) and the per-channel
fallback (channel tails, windows over 255 pixels), bit-exact against TFLite Micro in both kernel sets."""
from functools import lru_cache

import numpy as np
import pytest

from helpers import tflite_models as TM

# (input H, W, C), window, strides, padding: global pools as in DS-CNN (25x5x64), ResNet-8 (8x8x64) and a
# 272-pixel window (the fallback); strided SAME windows cut at the edges (row runs); channel tails 12 and 7.
CASES = {
    "dscnn_global": ((25, 5, 64), (25, 5), (1, 1), "VALID"),
    "resnet_global_tail12": ((8, 8, 12), (8, 8), (1, 1), "VALID"),
    "over_255_pixels": ((16, 17, 8), (16, 17), (1, 1), "VALID"),
    "same_edges_c7": ((9, 11, 7), (3, 3), (2, 2), "SAME"),
    "rows_c16": ((10, 12, 16), (2, 3), (2, 3), "VALID"),
}


@lru_cache(maxsize=None)
def _model(name: str) -> bytes:
    tf = TM._tf()
    shape, window, strides, padding = CASES[name]
    rng = np.random.default_rng(sum(map(ord, name)))

    @tf.function(input_signature=[tf.TensorSpec([1, *shape], tf.float32)])
    def pool(x):
        return tf.nn.avg_pool2d(x, window, strides, padding)

    return TM._convert(pool, [rng.normal(0, 1, (1, *shape)).astype(np.float32) for _ in range(16)])


@pytest.mark.parametrize("kernels", ["reference", "arm_dsp"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_average_pool_bit_exact_against_tflite_micro(tmp_path, kernels, name):
    blob = _model(name)
    runner, src = TM.host_runner(tmp_path, [blob], kernels)
    inputs = TM.random_inputs(src.segments[0]["in_shape"], 12, seed=9)
    inputs.append(np.full(src.segments[0]["in_shape"], 127, np.int8))   # the largest lane sums
    inputs.append(np.full(src.segments[0]["in_shape"], -128, np.int8))
    logits, _ = runner.run_segment(0, np.stack(inputs))
    want = np.stack([TM.split_outputs(outs, src.segments[0])[0] for outs in TM.tflm_run(blob, inputs)])
    np.testing.assert_array_equal(logits, want)
