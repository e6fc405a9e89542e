"""CONV_2D outputs written over their dying input, shifted down as far as the kernels need.

Exact shifts for known geometries, and a conv chain whose plan overlaps each conv's output with its
input, bit-exact against TFLite Micro with the reference kernels and both arm_dsp layouts.
"""
from functools import lru_cache
from types import SimpleNamespace

import numpy as np
import pytest

from tinyexit.export.codegen import CodegenConfig, generate_c
from tinyexit.export.codegen_lower import lower, read_segment
from tinyexit.export.codegen_plan import ALIGN, collect_buffers, conv_shift, plan_arena, plan_segments
from tinyexit.firmware_bridge.firmware.host import HostRunner, build_host_runner

from helpers import tflite_models as TM


def _conv(in_shape, out_shape, k=(3, 3), stride=(1, 1), pad=(1, 1)):
    return SimpleNamespace(p=dict(in_shape=in_shape, out_shape=out_shape, k=k, stride=stride, pad=pad))


def test_shifts_of_known_geometries():
    # 3x3, stride 1, SAME: a pixel's bytes may start one row and two pixels below its input pixel
    # (its window starts one row and one pixel up, and the reference kernel writes while it reads).
    assert conv_shift(_conv((32, 32, 16), (32, 32, 16))) == -(32 + 2) * 16
    # 1x1 widening 8 -> 16 channels: the output outruns its input by 8 bytes a pixel, so it starts
    # (pixels - 1) * 8 + 16 bytes below it.
    assert conv_shift(_conv((48, 48, 8), (48, 48, 16), k=(1, 1), pad=(0, 0))) == -(2303 * 8 + 16)
    # 1x1 narrowing 16 -> 8: pixel q ends at 8(q+1) <= 16q for every q >= 1; pixel 0 needs 8 bytes of room.
    assert conv_shift(_conv((8, 8, 16), (8, 8, 8), k=(1, 1), pad=(0, 0))) == -8
    # 3x3 stride 2 on 32x32x16 -> 16x16x32 (SAME pads bottom/right only): the input runs ahead.
    assert conv_shift(_conv((32, 32, 16), (16, 16, 32), stride=(2, 2), pad=(0, 0))) == -32


@lru_cache(maxsize=None)
def _chain() -> bytes:
    """conv 3x3 4->6, conv 3x3 6->6, conv 1x1 6->24, conv 3x3 s2 24->16, mean, dense: no residual, so
    every conv after the first has an input that dies at it; 6 channels make shifts that are not multiples
    of ALIGN before rounding (-84 and -2598 bytes)."""
    tf = TM._tf()
    rng = np.random.default_rng(77)
    w1, w2, w3, w4 = (TM._w(rng, s) for s in ((3, 3, 4, 6), (3, 3, 6, 6), (1, 1, 6, 24), (3, 3, 24, 16)))
    fc = TM._w(rng, (16, 10))

    @tf.function(input_signature=[tf.TensorSpec([1, 12, 12, 4], tf.float32)])
    def chain(x):
        y = tf.nn.relu(tf.nn.conv2d(x, w1, 1, "SAME"))
        y = tf.nn.relu(tf.nn.conv2d(y, w2, 1, "SAME"))
        y = tf.nn.conv2d(y, w3, 1, "SAME")
        y = tf.nn.relu6(tf.nn.conv2d(y, w4, 2, "SAME"))
        return tf.matmul(tf.reduce_mean(y, axis=[1, 2]), fc)

    rep = [rng.uniform(-1, 1, (1, 12, 12, 4)).astype(np.float32) for _ in range(16)]
    return TM._convert(chain, rep)


@pytest.mark.parametrize("kernels,flags", [("reference", ()), ("arm_dsp", ("-DTE_EMULATE_DSP",)),
                                           ("arm_dsp", ("-DTE_EMULATE_DSP", "-DTE_ARM_DSP_LAYOUT=0"))],
                         ids=["reference", "arm_dsp-speed", "arm_dsp-size"])
def test_a_conv_chain_written_in_place_stays_bit_exact(tmp_path, kernels, flags):
    blob = _chain()
    src = generate_c([blob], CodegenConfig(model_name="ip"))
    g = read_segment(blob)
    segs = [(g, lower(g), 0)]
    canon = lambda s, i: ("t", s, i)  # noqa: E731
    no_conv = plan_arena(collect_buffers(segs, canon, True, True, False))  # in-place ADDs only
    chosen = plan_segments(segs, canon, True)
    shifted = [b for b in chosen.buffers if b.shifts]
    assert shifted, "the plan should overlap a conv output with its input"
    assert src.arena_bytes == chosen.arena_bytes < no_conv.arena_bytes
    # the arm_dsp kernels load activations with LDRD/LDM, which fault on a misaligned address (the
    # host tier below would not notice): every tensor of the plan starts on ALIGN
    keys = [k for b in chosen.buffers for k in (b.key, *b.aliases)]
    assert all(chosen.offset(k) % ALIGN == 0 for k in keys), [(k, chosen.offset(k)) for k in keys]
    c_dir = src.write(tmp_path / "c")
    exe = build_host_runner(c_dir, "ip", tmp_path / "runner", kernels, extra_flags=flags)
    runner = HostRunner(exe, src.segments)
    inputs = TM.random_inputs(src.segments[0]["in_shape"], 24, seed=5)
    logits, _ = runner.run_segment(0, np.stack(inputs))
    want = np.stack([TM.split_outputs(outs, src.segments[0])[0] for outs in TM.tflm_run(blob, inputs)])
    np.testing.assert_array_equal(logits, want)
