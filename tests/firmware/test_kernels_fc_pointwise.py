"""Host tier: FULLY_CONNECTED row blocks, few-channel and strided pointwise convolutions, 1- and 3-channel
stems and pruned (all-zero) output channels, bit-exact against TensorFlow Lite Micro in every build:
the reference kernels, arm_dsp in speed mode (packed int16 weights) and arm_dsp in size mode (int8 weights).

Shapes follow the MLPerf Tiny models: 640 -> 128 -> 8 -> 128 as in the autoencoder, row counts and input
lengths that are not multiples of the 4-row block (13, 10, k = 13), pointwise 8 / 16 / 128 channels and a 1x1
stride-2 convolution as in MobileNet and ResNet-8, 3x3 stride-2 stems on 3 and on 1 input channels.
"""
from functools import lru_cache

import numpy as np
import pytest

from tinyexit.export.codegen import CodegenConfig, generate_c
from tinyexit.export.codegen_lower import lower, read_segment
from tinyexit.export.codegen_pack import column_mode, computed_channels, pack_fc, why_not_packed
from tinyexit.firmware_bridge.firmware.host import HostRunner, build_host_runner

from helpers import tflite_models as TM

BUILDS = {"reference": ("reference", ()), "speed": ("arm_dsp", ("-DTE_EMULATE_DSP",)),
          "size": ("arm_dsp", ("-DTE_EMULATE_DSP", "-DTE_ARM_DSP_LAYOUT=0"))}


@lru_cache(maxsize=None)
def _fc_model() -> bytes:
    tf = TM._tf()
    rng = np.random.default_rng(91)
    w1, w2, w3, w4, w5 = (TM._w(rng, s, 0.1) for s in ((640, 128), (128, 8), (8, 128), (128, 13), (13, 10)))
    w3[:, [5, 6, 40]] = 0.0                       # pruned rows: constant outputs

    @tf.function(input_signature=[tf.TensorSpec([1, 640], tf.float32)])
    def fc(x):
        y = tf.nn.relu(tf.matmul(x, w1))
        y = tf.matmul(y, w2)
        y = tf.nn.relu(tf.matmul(y, w3) + 0.1)
        y = tf.matmul(y, w4)
        return {"logits": tf.matmul(y, w5)}

    return TM._convert(fc, [rng.uniform(-1, 1, (1, 640)).astype(np.float32) for _ in range(40)])


@lru_cache(maxsize=None)
def _conv_model(c_in: int) -> bytes:
    tf = TM._tf()
    rng = np.random.default_rng(92 + c_in)
    stem, a, b, c, d = TM._w(rng, (3, 3, c_in, 8)), TM._w(rng, (1, 1, 8, 16)), TM._w(rng, (1, 1, 16, 16), 0.2), \
        TM._w(rng, (1, 1, 16, 128), 0.2), TM._w(rng, (1, 1, 128, 6), 0.1)
    c[..., ::3] = 0.0                              # 43 of 128 channels pruned, 85 computed (an odd count)
    h, w = (13, 11) if c_in == 3 else (15, 9)

    @tf.function(input_signature=[tf.TensorSpec([1, h, w, c_in], tf.float32)])
    def net(x):
        y = tf.nn.relu6(tf.nn.conv2d(x, stem, 2, "SAME"))      # stem, 3x3 stride 2
        y = tf.nn.relu6(tf.nn.conv2d(y, a, 1, "VALID"))        # pointwise 8 -> 16
        y = tf.nn.conv2d(y, b, 2, "VALID")                     # 1x1 stride 2, 16 -> 16
        y = tf.nn.relu(tf.nn.conv2d(y, c, 1, "VALID"))         # 16 -> 128, pruned channels
        y = tf.nn.conv2d(y, d, 1, "VALID")                     # pointwise 128 -> 6
        return {"logits": tf.reduce_mean(y, [1, 2])}

    return TM._convert(net, [rng.uniform(0, 1, (1, h, w, c_in)).astype(np.float32) for _ in range(40)])


def _check(tmp_path, blob: bytes, build: str, n: int = 60):
    kernels, flags = BUILDS[build]
    src = generate_c([blob], CodegenConfig(model_name="fp"))
    c_dir = src.write(tmp_path / "c")
    runner = HostRunner(build_host_runner(c_dir, "fp", tmp_path / f"runner_{build}", kernels, extra_flags=flags),
                        src.segments)
    shape = src.segments[0]["in_shape"]
    inputs = TM.random_inputs(shape, n, seed=17)
    logits, _ = runner.run_segment(0, np.stack(inputs))
    want = [TM.split_outputs(outs, src.segments[0])[0] for outs in TM.tflm_run(blob, inputs)]
    np.testing.assert_array_equal(logits, np.stack(want))


def test_fc_layers_are_packed_in_row_blocks_with_tails_and_constant_rows():
    layers = [layer for layer in lower(read_segment(_fc_model())) if layer.kind == "fc"]
    assert [(layer.p["k"], layer.p["n_out"]) for layer in layers] == [(640, 128), (128, 8), (8, 128), (128, 13),
                                                                      (13, 10)]
    for layer in layers:
        assert why_not_packed(layer) is None
        packed = pack_fc(layer)
        blocks, groups = -(-layer.p["n_out"] // 4), -(-layer.p["k"] // 4)
        assert packed.weights.size == 8 + blocks * groups * 8 and packed.bias.size == 16 * blocks


@pytest.mark.parametrize("build", list(BUILDS))
def test_fc_chain_bit_exact_against_tflite_micro(tmp_path, build):
    _check(tmp_path, _fc_model(), build)


def test_conv_models_take_the_stem_and_pointwise_paths():
    for c_in in (1, 3):
        convs = [layer for layer in lower(read_segment(_conv_model(c_in))) if layer.kind == "conv"]
        assert [column_mode(layer) for layer in convs] == [2, 1, 1, 0, 1]
        assert all(why_not_packed(layer) is None for layer in convs)
        computed, const = computed_channels(convs[3])
        assert (computed.size, const.size) == (86, 42)      # 85 live + one constant to make a pair


@pytest.mark.parametrize("build", list(BUILDS))
@pytest.mark.parametrize("c_in", [1, 3])
def test_stems_and_pointwise_bit_exact_against_tflite_micro(tmp_path, build, c_in):
    _check(tmp_path, _conv_model(c_in), build)
