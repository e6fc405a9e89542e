"""The arm_dsp packed CONV_2D layout prepared on the host (export/codegen_pack.py) and what the C build does with it."""
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tinyexit.errors import UserError
from tinyexit.export import int8_ref as ref
from tinyexit.export.codegen import CodegenConfig, generate_c
from tinyexit.export.codegen_lower import lower, read_segment
from tinyexit.export.codegen_pack import (HEADER_WORDS, MAGIC, acc_bound, column_mode, fast_requant, pack_conv,
                                          packed_taps, why_not_packed)
from tinyexit.firmware_bridge.firmware.host import FIRMWARE_DIR, HostRunner, build_host_runner

from helpers import tflite_models as TM


def _convs():
    blobs = list(TM.chain_models()) + [TM.op_models()["conv_block"]]
    return [layer for b in blobs for layer in lower(read_segment(b)) if layer.kind == "conv"]


def test_fast_requantization_equals_tflites_double_rounding_on_every_packed_layer():
    rng = np.random.default_rng(7)
    layers = [layer for layer in _convs() if why_not_packed(layer) is None]
    assert len(layers) >= 10
    for layer in layers:
        rq = layer.p["rq"]
        bound = int(acc_bound(layer.p["weights"], layer.p["bias_folded"]).min())
        r = -rq.shift.astype(np.int64)
        t = (np.arange(-64, 64)[:, None] << r) + (np.int64(1) << (r - 1))   # ties of the second rounding
        ties = [(t << 31) // rq.mult.astype(np.int64) + d for d in range(-2, 3)]
        acc = np.concatenate([rng.integers(-bound, bound + 1, size=(20000, rq.mult.size)),
                              np.repeat(np.arange(-4096, 4096)[:, None], rq.mult.size, axis=1), *ties])
        acc = np.clip(acc, -bound, bound)
        want = np.clip(ref.multiply_by_quantized_multiplier(acc, rq.mult, rq.shift) + rq.out_zp, -128, 127)
        np.testing.assert_array_equal(fast_requant(acc, rq.mult, rq.shift, rq.out_zp), want)


def _unpack(words: np.ndarray, c_out: int, groups: int) -> np.ndarray:
    """The packed weight words back to (c_out, 4*groups) int taps (still doubled)."""
    w = words[HEADER_WORDS:].astype(np.int64).reshape(c_out // 2, groups, 4)
    lo16 = ((w & 0xFFFF) ^ 0x8000) - 0x8000
    hi16 = w >> 16
    out = np.zeros((c_out // 2, 2, groups, 4), np.int64)
    for ch, (lo_word, hi_word) in enumerate(((0, 1), (2, 3))):
        out[:, ch, :, 0], out[:, ch, :, 2] = lo16[..., lo_word], hi16[..., lo_word]
        out[:, ch, :, 1], out[:, ch, :, 3] = lo16[..., hi_word], hi16[..., hi_word]
    return out.reshape(c_out, 4 * groups)


def test_packed_words_hold_the_doubled_weights_in_smlad_order_and_the_modes_fit_the_shapes():
    modes = {}
    for layer in _convs():
        packed = pack_conv(layer)
        if packed is None:
            continue
        p = layer.p
        c_out, (k_h, k_w), c_in = p["out_shape"][2], p["k"], p["in_shape"][2]
        groups = packed_taps(layer) // 4
        assert list(packed.weights[:4]) == [MAGIC, k_h * k_w * c_in, c_out, groups]
        taps = _unpack(packed.weights, c_out, groups)
        w = 2 * p["weights"].astype(np.int64).reshape(c_out, k_h, k_w * c_in)
        # every mode: the K taps contiguous, zero weights up to the next multiple of 4
        np.testing.assert_array_equal(taps[:, :w[0].size], w.reshape(c_out, -1))
        assert not taps[:, w[0].size:].any()
        assert list(packed.weights[6:8]) == [c_out // 2, 0]    # every channel computed (none all-zero)
        b = packed.bias.reshape(-1, 10)
        np.testing.assert_array_equal(b[:, :2].ravel(), 2 * p["bias_folded"])
        np.testing.assert_array_equal(b[:, [2, 6]].ravel(), p["rq"].mult)
        np.testing.assert_array_equal(b[:, [4, 8]].ravel(), -p["rq"].shift)
        np.testing.assert_array_equal(b[:, [5, 9]].ravel(), np.arange(c_out))   # output byte offsets
        modes.setdefault(column_mode(layer), []).append((c_in, c_out, tuple(p["dilation"])))
    assert (1, 8, (1, 1)) in modes[2] and (3, 8, (1, 1)) in modes[2]      # stems: rows of words
    assert (8, 8, (1, 1)) in modes[1] and (16, 16, (1, 1)) in modes[1]    # few output channels: row ring
    assert (8, 8, (2, 2)) in modes[0] and (32, 32, (1, 1)) in modes[0]    # dilated, or many outputs: per pixel


def test_layers_the_fast_path_cannot_prove_stay_plain():
    layer = next(layer for layer in _convs() if why_not_packed(layer) is None)
    p = dict(layer.p)
    rq = p["rq"]
    left = type(rq)(rq.mult, rq.shift + 40, rq.out_zp, rq.act_min, rq.act_max)
    assert "left shift" in why_not_packed(type(layer)(layer.kind, layer.op, layer.inputs, layer.outputs,
                                                      layer.macs, {**p, "rq": left}))
    big = {**p, "bias_folded": p["bias_folded"] + (1 << 30)}
    assert "2^30" in why_not_packed(type(layer)(layer.kind, layer.op, layer.inputs, layer.outputs, layer.macs, big))
    assert pack_conv(type(layer)(layer.kind, layer.op, layer.inputs, layer.outputs, layer.macs, big)) is None


def _nm_sizes(tmp: Path, c_file: Path, flags: list[str]) -> dict[str, int]:
    obj = tmp / "m.o"
    subprocess.run(["gcc", "-std=c99", "-c", "-Wall", "-Werror", *flags, f"-I{FIRMWARE_DIR / 'core'}",
                    f"-I{FIRMWARE_DIR / 'kernels'}", str(c_file), "-o", str(obj)], check=True)
    nm = subprocess.run(["nm", "-S", "--defined-only", str(obj)], capture_output=True, text=True, check=True).stdout
    return {parts[3]: int(parts[1], 16) for parts in (line.split() for line in nm.splitlines()) if len(parts) == 4}


def test_each_kernel_set_links_only_its_own_layout_and_the_option_turns_packing_off(tmp_path):
    blobs = TM.chain_models()
    src = generate_c(blobs, CodegenConfig(model_name="tm"))
    c_dir = src.write(tmp_path / "c")
    plain = _nm_sizes(tmp_path, c_dir / "tm_model.c", [])
    dsp = _nm_sizes(tmp_path, c_dir / "tm_model.c", ["-DTE_KERNELS_ARM_DSP=1"])
    layer1 = next(layer for layer in lower(read_segment(blobs[0])) if layer.label.startswith("1:"))
    assert plain["tm_L1_w"] == layer1.p["weights"].size + 4
    assert dsp["tm_L1_w"] == 4 * pack_conv(layer1).weights.size
    assert "tm_L1_mult" in plain and "tm_L1_mult" not in dsp
    assert sum(plain.values()) < sum(dsp.values())
    assert src.weight_bytes > src.weight_bytes_reference
    assert sum(1 for row in src.layers if row["arm_dsp_layout"] == "packed") == \
        sum(1 for row in src.layers if row["kind"] in ("conv", "fc"))
    off = generate_c(blobs, CodegenConfig(model_name="tm", arm_dsp_layout=False))
    assert "TE_ARM_DSP_LAYOUT" not in off.files["tm_model.c"]
    assert off.weight_bytes == off.weight_bytes_reference == src.weight_bytes_reference
    assert {row["arm_dsp_layout"] for row in off.layers} == {"plain"}


def test_a_packed_header_that_disagrees_with_the_layer_stops_the_kernel(tmp_path):
    blobs = TM.chain_models()[:1]
    src = generate_c(blobs, CodegenConfig(model_name="tm"))
    c_dir = src.write(tmp_path / "c")
    text = (c_dir / "tm_model.c").read_text()
    bad = re.sub(r"(const int32_t tm_L1_w\[\d+\] = \{\n    )" + str(MAGIC), r"\g<1>" + str(MAGIC + 1), text)
    assert bad != text
    (c_dir / "tm_model.c").write_text(bad)
    exe = build_host_runner(c_dir, "tm", tmp_path / "runner", "arm_dsp", extra_flags=("-DTE_EMULATE_DSP",))
    with pytest.raises(UserError, match="exit status"):
        HostRunner(exe, src.segments).run_segment(0, np.stack(TM.random_inputs((1, 8, 8, 1), 2, seed=1)))
    exe = build_host_runner(c_dir, "tm", tmp_path / "runner_ref", "reference")  # the plain branch is untouched
    logits, _ = HostRunner(exe, src.segments).run_segment(0, np.stack(TM.random_inputs((1, 8, 8, 1), 2, seed=1)))
    assert logits.shape == (2, 10)


def test_an_add_writes_in_place_over_an_input_only_it_still_reads():
    from tinyexit.export import codegen_plan

    blobs = TM.chain_models()
    src = generate_c(blobs, CodegenConfig(model_name="tm"))
    graph = read_segment(blobs[0])
    layers = lower(graph)
    add = next(i for i, layer in enumerate(layers) if layer.kind == "add")
    segs = [(graph, layers, 0)]
    plan = codegen_plan.plan_arena(codegen_plan.collect_buffers(segs, lambda s, t: ("t", s, t)))
    out = plan.offset(("t", 0, layers[add].outputs[0]))
    ins = [plan.offset(("t", 0, t)) for t in layers[add].inputs]
    assert out in ins
    shared = next(t for t in layers[add].inputs if plan.offset(("t", 0, t)) == out)
    assert shared not in graph.inputs and shared not in graph.outputs
    assert src.peak_live_bytes <= src.arena_bytes
