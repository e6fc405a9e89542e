"""DEPTHWISE_CONV_2D (the arm_dsp four-channel path, its 3x3 interior fast path, borders, channel tails,
strides, dilation), AVERAGE_POOL_2D and RESHAPE at MLPerf Tiny shapes: both C kernel sets bit-exact against
TensorFlow Lite Micro on seeded random shapes and inputs (host tier; arm_dsp through -DTE_EMULATE_DSP)."""
from pathlib import Path

import numpy as np
import pytest

from helpers import tflite_models as TM

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


# The depthwise layers of DS-CNN and MobileNetV1 0.25 (3x3, multiplier 1): (H, W, C, stride, padding,
# activation).  relu at out_zp -128 takes the ring kernel's short requantization, relu6 and none the general one;
# C = 10 and 2 have a channel tail (the last group of four is widened byte by byte), 70 columns exceed the
# ring (TE_DW_RING_W) and take the general path.
# Lines of 4k + 1, 2, 3 outputs take the one-, two- and two-plus-one-output passes; maps taller than wide run
# transposed (lines along columns: 25x5, 13x6, 30x7, 11x3 VALID, 7x3 stride 2).
MLPERF_DW_CASES = [(25, 5, 64, 1, "SAME", "relu"), (12, 12, 8, 1, "SAME", "relu"), (12, 12, 16, 2, "SAME", "relu"),
                   (12, 12, 32, 2, "VALID", "relu6"), (6, 6, 128, 1, "SAME", "relu"), (6, 6, 128, 2, "SAME", "relu"),
                   (3, 3, 256, 1, "SAME", "relu"), (9, 7, 10, 2, "SAME", "none"), (5, 6, 2, 1, "SAME", "relu"),
                   (7, 9, 12, 1, "VALID", "none"), (3, 70, 4, 1, "SAME", "relu"), (13, 6, 8, 1, "SAME", "relu"),
                   (30, 7, 4, 1, "SAME", "relu"), (11, 3, 6, 1, "VALID", "relu"), (7, 3, 8, 2, "SAME", "relu"),
                   (5, 11, 8, 2, "SAME", "relu"), (4, 7, 12, 1, "SAME", "relu"),
                   (40, 40, 6, 1, "SAME", "relu"), (48, 48, 4, 2, "SAME", "relu")]
# Maps too long for one strip of lines (the planes hold TE_DW_PLANE words): lines carried between strips, a
# channel tail of two, the bottom padding row of a stride-2 SAME layer on an even map.
MLPERF_DW_STRIPS = {17: 8, 18: 12}
# (case, transposed, outputs per line): the pass mix each case exercises, checked against the generator.
MLPERF_DW_LINES = {0: (True, 25), 5: (False, 3), 6: (False, 3), 7: (True, 5), 11: (True, 13), 12: (True, 30),
                   13: (True, 9), 14: (True, 4), 15: (False, 6), 16: (False, 7)}
_ACT = {"relu": "relu", "relu6": "relu6", "none": None}


def _mlperf_dw_model(case) -> bytes:
    if case in _CACHE:
        return _CACHE[case]
    tf = TM._tf()
    h, w, c, s, pad, act = case
    rng = np.random.default_rng(3000 + MLPERF_DW_CASES.index(case))
    wd = rng.normal(0, 0.4, (3, 3, c, 1)).astype(np.float32)
    b = rng.normal(0, 0.2, (c,)).astype(np.float32)

    @tf.function(input_signature=[tf.TensorSpec([1, h, w, c], tf.float32)])
    def f(x):
        y = tf.nn.depthwise_conv2d(x, wd, [1, s, s, 1], pad) + b
        y = getattr(tf.nn, _ACT[act])(y) if _ACT[act] else y
        return {"logits": tf.reshape(y, [1, -1])}
    _CACHE[case] = TM._convert(f, [rng.normal(0, 1, (1, h, w, c)).astype(np.float32) for _ in range(32)])
    return _CACHE[case]


def _host_runner(tmp, blob, name, flash_mode):
    from tinyexit.export.codegen import CodegenConfig, generate_c
    from tinyexit.firmware_bridge.firmware.host import HostRunner, build_host_runner

    src = generate_c([blob], CodegenConfig(model_name=name))
    c_dir = src.write(Path(tmp) / f"c_{name}")
    flags = ("-DTE_EMULATE_DSP",) + (("-DTE_ARM_DSP_LAYOUT=0",) if flash_mode == "size" else ())
    exe = build_host_runner(c_dir, name, Path(tmp) / f"runner_{name}_{flash_mode}", "arm_dsp", extra_flags=flags)
    return HostRunner(exe, src.segments), src


@pytest.mark.parametrize("flash_mode", ["speed", "size"])
def test_mlperf_depthwise_shapes_bit_exact_in_both_flash_modes(tmp_path, flash_mode):
    from tinyexit.export.codegen_lower import lower, read_segment
    from tinyexit.export.codegen_pack import DW_RING_W, dw_transposed, why_not_packed, why_not_packed_dw

    for i, case in enumerate(MLPERF_DW_CASES):
        blob = _mlperf_dw_model(case)
        layer = next(layer for layer in lower(read_segment(blob)) if layer.kind == "dwconv")
        assert (why_not_packed_dw(layer) is None) == (case[1] != 70), (case, why_not_packed_dw(layer))
        assert why_not_packed(layer) == why_not_packed_dw(layer)
        if i in MLPERF_DW_LINES:
            tr, n = MLPERF_DW_LINES[i]
            assert dw_transposed(layer) == tr and layer.p["out_shape"][0 if tr else 1] == n, case
        if i in MLPERF_DW_STRIPS:
            out, st = layer.p["out_shape"][0], case[3]
            words = ((out - 1) * st + 5) // 2
            assert -(-out // ((5 * DW_RING_W // 2 // words - 3) // st + 1)) == MLPERF_DW_STRIPS[i], case
        runner, src = _host_runner(tmp_path / str(i), blob, f"mdw{i}", flash_mode)
        xs = TM.random_inputs(src.segments[0]["in_shape"], 24, seed=90 + i)
        xs[0] = np.full_like(xs[0], -128)   # every tap at the input zero point's extreme, and the other one
        xs[1] = np.full_like(xs[1], 127)
        logits, _ = runner.run_segment(0, np.stack(xs))
        want = np.stack([o[0].ravel() for o in TM.tflm_run(blob, xs)])
        np.testing.assert_array_equal(logits, want, err_msg=f"case {case}, {flash_mode}")


def test_packed_depthwise_words_and_the_ring_width_match_the_kernel():
    from tinyexit.export.codegen_lower import lower, read_segment
    from tinyexit.export.codegen_pack import (DW_BLOCK_WORDS, DW_HEADER_WORDS, DW_MAGIC, DW_RING_W, dw_general,
                                              pack_dwconv)
    from tinyexit.firmware_bridge.firmware.host import FIRMWARE_DIR

    header = (FIRMWARE_DIR / "kernels" / "te_kernels.h").read_text()
    assert f"#define TE_DW_RING_W {DW_RING_W}\n" in header
    kernel = (FIRMWARE_DIR / "kernels" / "arm_dsp" / "te_dwconv.c").read_text()
    for text in (f"#define TE_DW_BLOCK {DW_BLOCK_WORDS}\n", f"#define TE_DW_MAGIC 0x{DW_MAGIC:08X}",
                 f"#define TE_DW_HEADER {DW_HEADER_WORDS} "):
        assert text in kernel, text
    layer = next(layer for layer in lower(read_segment(_mlperf_dw_model(MLPERF_DW_CASES[0]))) if layer.kind == "dwconv")
    words = pack_dwconv(layer)
    p, rq = layer.p, layer.p["rq"]
    # the 25x5 map runs transposed: header word 3, and the block's kernel rows are the kernel's columns
    assert words.size == DW_HEADER_WORDS + 64 * DW_BLOCK_WORDS and list(words[:4]) == [DW_MAGIC, 64, 0, 1]
    assert not dw_general(layer) and rq.out_zp == -128
    blk = words[DW_HEADER_WORDS + 5 * DW_BLOCK_WORDS:][:DW_BLOCK_WORDS]   # channel 5
    w = np.asarray(p["weights"], np.int64).reshape(3, 3, 64)[:, :, 5].T
    r = -int(rq.shift[5])
    assert list(blk[:4]) == [rq.mult[5], (1 << (r - 1)) - 128 * (1 << r), r, 2 * p["bias_folded"][5]]
    for ky in range(3):
        u, v = int(blk[4 + 2 * ky]) & 0xFFFFFFFF, int(blk[5 + 2 * ky]) & 0xFFFFFFFF
        halves = [((x & 0xFFFF) ^ 0x8000) - 0x8000 for x in (u, u >> 16, v, v >> 16)]
        assert halves == [2 * w[ky, 0], 2 * w[ky, 1], 2 * w[ky, 1], 2 * w[ky, 2]]


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
