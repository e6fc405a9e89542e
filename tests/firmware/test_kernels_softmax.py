"""SOFTMAX (int8): the NumPy reference and both C kernel sets, bit-exact against TensorFlow Lite Micro
on seeded random shapes, input scales and beta (host tier; arm_dsp through -DTE_EMULATE_DSP)."""

import numpy as np
import pytest

from tinyexit.errors import UserError
from tinyexit.export import int8_ref as ref
from tinyexit.export import tflite_graph as tg

from helpers import tflite_models as TM

# (input shape, float spread of the calibration data, beta): classifier heads, a KWS-sized head,
# a per-pixel softmax over 4 classes (rows > 1), a wide spread that sends differences below diff_min.
CASES = [((1, 10), 1.0, 1.0), ((1, 12), 5.0, 1.0), ((1, 2), 0.3, 1.0), ((1, 4, 5, 4), 2.0, 1.0),
         ((1, 37), 20.0, 1.0)]


def _softmax_model(shape, spread, beta, seed) -> bytes:
    tf = TM._tf()
    rng = np.random.default_rng(seed)

    @tf.function(input_signature=[tf.TensorSpec(list(shape), tf.float32)])
    def f(x):
        return {"logits": tf.nn.softmax(x * beta)}
    return TM._convert(f, [rng.normal(0, spread, shape).astype(np.float32) for _ in range(64)])


_CACHE = {}


def _blob(i):
    if i not in _CACHE:
        _CACHE[i] = _softmax_model(*CASES[i], 100 + i)
    return _CACHE[i]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_numpy_reference_bit_exact(case):
    blob = _blob(case)
    g = tg.read_model(blob)[0]
    assert [op.type for op in g.ops].count("SOFTMAX") == 1
    op = next(op for op in g.ops if op.type == "SOFTMAX")
    p = ref.prepare_softmax(g.tensors[op.inputs[0]].qparams[0], op.options.get("beta", 1.0))
    xs = TM.random_inputs(CASES[case][0], 200, seed=case)
    want = np.stack([o[0] for o in TM.tflm_run(blob, xs)])
    assert [op.type for op in g.ops] == ["SOFTMAX"]
    got = np.stack([ref.softmax(x, p) for x in xs])
    np.testing.assert_array_equal(got.reshape(want.shape), want)
    assert p.exp_lut[0] == 2**31 - 1  # exp(0) = One
    np.testing.assert_array_equal(p.exp_lut[np.arange(256) > -p.diff_min], 0)  # skipped differences


@pytest.mark.parametrize("kernels", ["reference", "arm_dsp"])
def test_c_kernels_bit_exact(tmp_path, kernels):
    for case in range(len(CASES)):
        blob = _blob(case)
        runner, src = TM.host_runner(tmp_path / str(case), [blob], kernels, name=f"sm{case}")
        xs = TM.random_inputs(src.segments[0]["in_shape"], 150, seed=10 + case)
        logits, _ = runner.run_segment(0, np.stack(xs))
        want = np.stack([o[0].ravel() for o in TM.tflm_run(blob, xs)])
        np.testing.assert_array_equal(logits, want, err_msg=f"case {CASES[case]}")


def test_wrong_output_quantization_is_refused(tmp_path):
    from tinyexit.export.codegen import CodegenConfig, generate_c
    blob = bytearray(_blob(0))
    g = tg.read_model(bytes(blob))[0]
    tg.set_quantization(blob, 0, g.outputs[0], np.float32(1 / 128), -128)
    with pytest.raises(UserError, match="SOFTMAX .* output quantization other than scale 1/256"):
        generate_c([bytes(blob)], CodegenConfig(model_name="bad"))
