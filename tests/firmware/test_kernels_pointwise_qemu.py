"""QEMU tier for the arm_dsp packed CONV_2D assembly (kernels/arm_dsp/te_conv_packed.h): the host tier runs its C
twin (-DTE_EMULATE_DSP), so the pair loop (chunks of 16 groups entered part-way), its two requantizations
(with the sign correction, and without it where act_min >= out_zp) and the direct 1x1 columns (te_cols_pair:
odd group counts, stride 2, odd pixel counts) are only exercised here.  One chain covers them all, beside a
one-channel 4x3 stride-2 stem (mode 2) and a 3x3 layer on the row ring (mode 1); both flash modes, bit-exact
to TFLite Micro over the serial protocol."""
import shutil

import numpy as np
import pytest

from helpers import tflite_models as TM

pytestmark = [pytest.mark.qemu, pytest.mark.skipif(
    shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None,
    reason="needs qemu-system-arm and gcc-arm-none-eabi")]

SHAPE = (1, 9, 5, 1)


def _chain_model() -> bytes:
    tf = TM._tf()
    rng = np.random.default_rng(7300)
    stem, a, b, c, d = (TM._w(rng, s, sc) for s, sc in (((4, 3, 1, 12), 0.5), ((1, 1, 12, 20), 0.3),
                                                         ((1, 1, 20, 72), 0.3), ((1, 1, 72, 8), 0.2),
                                                         ((3, 3, 8, 16), 0.2)))

    @tf.function(input_signature=[tf.TensorSpec(SHAPE, tf.float32)])
    def f(x):
        y = tf.nn.relu(tf.nn.conv2d(x, stem, 2, "SAME"))     # 5x3 (odd pixel count), 1 channel: mode 2
        y = tf.nn.relu(tf.nn.conv2d(y, a, 1, "VALID"))       # 1x1 12 -> 20: 3 groups, the ReLU requantization
        y = tf.nn.conv2d(y, b, 2, "VALID")                   # 1x1 stride 2, 20 -> 72: 5 groups, sign correction
        y = tf.nn.relu6(tf.nn.conv2d(y, c, 1, "VALID"))      # 72 -> 8: 18 groups (a chunk and two), clamp to 6
        y = tf.nn.relu(tf.nn.conv2d(y, d, 1, "SAME"))        # 3x3 on the row ring
        return {"logits": tf.reshape(y, [1, -1])}
    return TM._convert(f, [rng.normal(0, 1, SHAPE).astype(np.float32) for _ in range(32)])


@pytest.mark.parametrize("flash_mode", ["speed", "size"])
def test_packed_conv_assembly_bit_exact_on_the_core(tmp_path, flash_mode):
    from tinyexit.export.codegen_lower import lower, read_segment
    from tinyexit.export.codegen_pack import column_mode, why_not_packed

    blob = _chain_model()
    convs = [layer for layer in lower(read_segment(blob)) if layer.kind == "conv"]
    assert len(convs) == 5 and all(why_not_packed(la) is None for la in convs)
    assert [column_mode(la) for la in convs] == [2, 0, 0, 1, 1]
    relu = [la.p["rq"].act_min >= la.p["rq"].out_zp for la in convs]
    assert relu == [True, True, False, True, True]
    TM.assert_qemu_matches_tflm(tmp_path, blob, SHAPE, flash_mode, "")
