"""The NumPy integer reference (tinyexit.export.int8_ref) against TFLite's definitions and TFLite Micro."""

import numpy as np
import pytest

from tinyexit.errors import UserError
from tinyexit.export import int8_ref as ref
from tinyexit.export.codegen_lower import lower, read_segment, run_layers

from helpers import tflite_models as TM

EDGES = [-(1 << 31), -(1 << 31) + 1, -(1 << 30), -12345, -1, 0, 1, 7, 1 << 20, (1 << 30) + 3, (1 << 31) - 1]


def _gemmlowp_srdhm(a: int, b: int) -> int:
    """Literal transcription of gemmlowp: sign-dependent nudge, division truncating toward zero."""
    if a == b == -(1 << 31):
        return (1 << 31) - 1
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    q = abs(ab + nudge) // (1 << 31)
    return q if ab + nudge >= 0 else -q


def test_srdhm_equals_gemmlowp_definition():
    rng = np.random.default_rng(0)
    a = np.concatenate([np.repeat(EDGES, len(EDGES)), rng.integers(-(1 << 31), 1 << 31, 3000)])
    b = np.concatenate([np.tile(EDGES, len(EDGES)), rng.integers(-(1 << 31), 1 << 31, 3000)])
    got = ref.srdhm(a, b)
    want = [_gemmlowp_srdhm(int(x), int(y)) for x, y in zip(a, b)]
    np.testing.assert_array_equal(got, want)


def test_rounding_divide_by_pot_rounds_half_away_from_zero():
    x = np.array([5, -5, 4, -4, 6, -6, 7, -7, 0, -1, 1])
    np.testing.assert_array_equal(ref.rounding_divide_by_pot(x, 1), [3, -3, 2, -2, 3, -3, 4, -4, 0, -1, 1])
    np.testing.assert_array_equal(ref.rounding_divide_by_pot(x, 2), [1, -1, 1, -1, 2, -2, 2, -2, 0, 0, 0])
    np.testing.assert_array_equal(ref.rounding_divide_by_pot(x, 0), x)


def test_quantize_multiplier_matches_tflite_cases():
    assert ref.quantize_multiplier(0.0) == (0, 0)
    assert ref.quantize_multiplier(0.5) == (1 << 30, 0)
    assert ref.quantize_multiplier(1.0) == (1 << 30, 1)
    assert ref.quantize_multiplier(0.75) == (1610612736, 0)
    assert ref.quantize_multiplier(2.0 ** -40) == (0, 0)  # shift < -31 flushes to zero
    assert ref.quantize_multiplier(1.0 - 2.0 ** -33) == (1 << 30, 1)  # mantissa rounds up to 2^31
    m, s = ref.quantize_multiplier(0.0123)
    assert abs(m * 2.0 ** (s - 31) - 0.0123) < 1e-11


def test_multiply_by_quantized_multiplier_left_and_right_shifts():
    m, s = ref.quantize_multiplier(3.0)  # shift > 0: shifted left before the high multiply
    np.testing.assert_array_equal(ref.multiply_by_quantized_multiplier(np.array([1, -7, 100]), m, s), [3, -21, 300])
    m, s = ref.quantize_multiplier(0.25)
    np.testing.assert_array_equal(ref.multiply_by_quantized_multiplier(np.array([2, -2, 6, -6]), m, s),
                                  [1, -1, 2, -2])


def test_activation_ranges():
    assert ref.activation_range("NONE", 0.1, 3) == (-128, 127)
    assert ref.activation_range("RELU", 0.1, -20) == (-20, 127)
    assert ref.activation_range("RELU6", 0.05, -128) == (-128, -8)
    with pytest.raises(UserError, match="TANH"):
        ref.activation_range("TANH", 0.1, 0)


def test_logistic_table_equals_tflite_micro_on_all_256_inputs():
    blob = TM.op_models()["logistic"]
    g = read_segment(blob)
    (layer,) = lower(g)
    x = np.arange(-128, 128, dtype=np.int8).reshape(1, 256)
    (tflm,) = TM.tflm_run(blob, [x])[0]
    np.testing.assert_array_equal(layer.p["lut"], tflm.ravel())
    assert len(set(layer.p["lut"].tolist())) > 100  # the table is not degenerate


@pytest.mark.parametrize("name", ["conv_block", "dw_pool", "fc_tensor"])
def test_op_graphs_bit_exact_against_tflite_micro(name):
    blob = TM.op_models()[name]
    g = read_segment(blob, name)
    layers = lower(g)
    kinds = {layer.kind for layer in layers}
    assert kinds >= {"conv_block": {"conv", "add", "pad", "mean", "fc"}, "dw_pool": {"dwconv", "avgpool", "mean",
                     "logistic"}, "fc_tensor": {"fc"}}[name]
    xs = TM.random_inputs(g.tensors[g.inputs[0]].shape, 60, seed=7)
    for x, want in zip(xs, TM.tflm_run(blob, xs)):
        got = run_layers(g, layers, [x])
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b.reshape(a.shape))


def test_fc_per_tensor_multiplier_uses_float32_product():
    g = read_segment(TM.op_models()["fc_tensor"])
    fc = lower(g)[0]
    x, w, y = (g.tensors[i] for i in (g.ops[0].inputs[0], g.ops[0].inputs[1], g.ops[0].outputs[0]))
    assert len(w.scale) == 1
    m, s = ref.per_tensor_fc_multiplier(x.scale[0], w.scale[0], y.scale[0])
    assert (fc.p["rq"].mult == m).all() and (fc.p["rq"].shift == s).all()


def test_segment_chain_bit_exact_against_tflite_micro():
    blobs = TM.chain_models()
    cur = TM.random_inputs((1, 8, 8, 1), 40, seed=11)
    for k, blob in enumerate(blobs):
        g = read_segment(blob)
        layers = lower(g)
        want = TM.tflm_run(blob, cur)
        nxt = []
        for x, outs in zip(cur, want):
            got = run_layers(g, layers, [x])
            for a, b in zip(got, outs):
                np.testing.assert_array_equal(a, b.reshape(a.shape))
            if k < len(blobs) - 1:
                nxt.append(max(outs, key=lambda o: o.ndim))
        cur = nxt
