"""QEMU tier for the arm_dsp depthwise line passes (kernels/arm_dsp/te_dwconv_asm.h): the host tier runs their C
twin (-DTE_EMULATE_DSP), so the assembly itself is only exercised here.  Two chains of 3x3 depthwise layers,
one along image rows and one transposed (taller than wide), cover strides 1 and 2 with lines of 4k, 4k+1, +2
and +3 outputs and a channel tail; both flash modes, bit-exact to TFLite Micro over the serial protocol."""
import shutil

import numpy as np
import pytest

from helpers import tflite_models as TM

pytestmark = [pytest.mark.qemu, pytest.mark.skipif(
    shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None,
    reason="needs qemu-system-arm and gcc-arm-none-eabi")]

# (input H, W, C, [(stride, padding), ...]): rows 6x11 -> 6x11 (2 passes + 3) -> 3x6 s2 (1 + 2) -> 3x6 (1 + 2)
# -> 2x3 s2 (3); transposed 13x6 -> 13x6 (3 passes + 1) -> 7x3 s2 (1 + 3) -> 7x3 (1 + 3) -> 5x1 VALID (1 + 1).
# strips: 20x40 -> 20x40 (4 strips of lines) -> 10x20 s2 (4 strips) -> 10x20 (one strip) -> 5x10 s2.
CHAINS = {"rows": (6, 11, 6, [(1, "SAME"), (2, "SAME"), (1, "SAME"), (2, "SAME")]),
          "strips": (20, 40, 4, [(1, "SAME"), (2, "SAME"), (1, "SAME"), (2, "SAME")]),
          "columns": (13, 6, 8, [(1, "SAME"), (2, "SAME"), (1, "SAME"), (1, "VALID")])}


def _chain_model(name) -> bytes:
    tf = TM._tf()
    h, w, c, layers = CHAINS[name]
    rng = np.random.default_rng(7100 + len(name))
    ws = [rng.normal(0, 0.4, (3, 3, c, 1)).astype(np.float32) for _ in layers]
    bs = [rng.normal(0, 0.2, (c,)).astype(np.float32) for _ in layers]

    @tf.function(input_signature=[tf.TensorSpec([1, h, w, c], tf.float32)])
    def f(x):
        for (s, pad), wd, b in zip(layers, ws, bs):
            x = tf.nn.relu(tf.nn.depthwise_conv2d(x, wd, [1, s, s, 1], pad) + b)
        return {"logits": tf.reshape(x, [1, -1])}
    return TM._convert(f, [rng.normal(0, 1, (1, h, w, c)).astype(np.float32) for _ in range(32)])


@pytest.mark.parametrize("flash_mode", ["speed", "size"])
@pytest.mark.parametrize("chain", sorted(CHAINS))
def test_depthwise_line_passes_bit_exact_on_the_core(tmp_path, chain, flash_mode):
    from tinyexit.export.codegen_lower import lower, read_segment
    from tinyexit.export.codegen_pack import dw_general, dw_transposed, why_not_packed_dw

    blob = _chain_model(chain)
    layers = [layer for layer in lower(read_segment(blob)) if layer.kind == "dwconv"]
    assert len(layers) == 4 and all(why_not_packed_dw(la) is None and not dw_general(la) for la in layers)
    assert [dw_transposed(la) for la in layers] == [chain == "columns"] * 4
    TM.assert_qemu_matches_tflm(tmp_path, blob, (1,) + CHAINS[chain][:3], flash_mode, chain)
