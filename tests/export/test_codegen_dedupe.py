"""Constant arrays shared by the models of one export: each distinct content is defined once.

The segmented model defines its arrays; a variant generated with the same pool declares identical ones
`extern` and defines only what differs.  Linked together, every model stays bit-exact to TFLite Micro.
"""
import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tinyexit.export.codegen import CodegenConfig, generate_c, generate_c_for_run
from tinyexit.export.codegen_consts import ConstPool
from tinyexit.firmware_bridge.firmware.host import FIRMWARE_DIR, HostRunner, kernel_sources

from helpers import tflite_models as TM

_DEF = re.compile(r"^const (int8_t|int16_t|int32_t) (\w+)\[(\d+)\] = \{(.*?)\};", re.S | re.M)
_EXTERN = re.compile(r"^extern const (int8_t|int16_t|int32_t) (\w+)\[(\d+)\];", re.M)
_SIZE = {"int8_t": 1, "int16_t": 2, "int32_t": 4}


def _view(text: str, kernels: str) -> str:
    """The generated C as one kernel set's build sees it (drop the other layout branch)."""
    drop = "#if !TE_ARM_DSP_LAYOUT\n" if kernels == "arm_dsp" else "#if TE_ARM_DSP_LAYOUT\n"
    keep = "#if TE_ARM_DSP_LAYOUT\n" if kernels == "arm_dsp" else "#if !TE_ARM_DSP_LAYOUT\n"
    text = re.sub(re.escape(drop) + r".*?#endif\n", "", text, flags=re.S)
    return text.replace(keep, "")


def _definitions(text: str, kernels: str = "arm_dsp") -> list[tuple[str, str, int, str]]:
    return [(ct, name, int(n), re.sub(r"\s", "", body)) for ct, name, n, body in _DEF.findall(_view(text, kernels))]


def _link(tmp: Path, c_dir: Path, names: list[str], run: str, kernels: str) -> Path:
    """host_runner + every model file of `names` + one kernel set; TE_MODEL = `run`."""
    exe = tmp / f"runner_{run}_{kernels}"
    flags = ["-DTE_EMULATE_DSP"] if kernels == "arm_dsp" else []
    srcs = [FIRMWARE_DIR / "tools" / "host_runner.c", *(c_dir / f"{n}_model.c" for n in names),
            *kernel_sources(kernels)]
    subprocess.run(["gcc", "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-fwrapv", *flags,
                    f"-I{FIRMWARE_DIR / 'core'}", f"-I{FIRMWARE_DIR / 'kernels'}", f"-I{c_dir}",
                    f"-DTE_MODEL={run}_model", *map(str, srcs), "-o", str(exe)], check=True)
    return exe


def test_a_variant_with_the_same_weights_defines_no_array_and_links_bit_exact(tmp_path):
    blobs = TM.chain_models()
    pool = ConstPool()
    a = generate_c(blobs, CodegenConfig(model_name="tm"), pool)
    b = generate_c(blobs, CodegenConfig(model_name="tm_again"), pool)
    assert _definitions(b.files["tm_again_model.c"]) == []
    externs = _EXTERN.findall(b.files["tm_again_model.c"])
    assert externs and all(name.startswith("tm_L") for _, name, _ in externs)
    defs_a = _definitions(a.files["tm_model.c"])
    assert b.shared_arrays == len(externs) and b.weight_bytes == 0 and b.shared_weight_bytes > 0
    assert a.weight_bytes == sum(_SIZE[ct] * n for ct, _, n, _ in defs_a)
    assert a.weight_bytes_reference == sum(_SIZE[ct] * n for ct, _, n, _ in _definitions(a.files["tm_model.c"],
                                                                                         "reference"))
    c_dir = tmp_path / "c"
    a.write(c_dir)
    b.write(c_dir, primary=False)
    x0 = TM.random_inputs((1, 8, 8, 1), 60, seed=11)
    for kernels in ("reference", "arm_dsp"):
        runner = HostRunner(_link(tmp_path, c_dir, ["tm", "tm_again"], "tm_again", kernels), b.segments)
        cur = x0
        for k, blob in enumerate(blobs):
            logits, feats = runner.run_segment(k, np.stack(cur))
            want = [TM.split_outputs(outs, b.segments[k]) for outs in TM.tflm_run(blob, cur)]
            np.testing.assert_array_equal(logits, np.stack([w[0] for w in want]))
            if feats is not None:
                np.testing.assert_array_equal(feats, np.stack([w[1] for w in want]))
                cur = [w[1].reshape(b.segments[k + 1]["in_shape"]) for w in want]


def test_only_equal_contents_are_shared():
    pool = ConstPool()
    s1 = pool.array("m", "m_L0_w", "int8_t", [1, 2, 3], pad=1)
    assert pool.array("m", "m_L5_w", "int8_t", [1, 2, 3, 0]) == s1          # same bytes, padding included
    assert pool.array("m_full", "m_full_L0_w", "int8_t", [1, 2, 3], pad=1) == s1
    assert pool.array("m", "m_L1_w", "int8_t", [1, 2, 4], pad=1) == "m_L1_w"
    assert pool.array("m", "m_L2_b", "int32_t", [1, 2, 3, 0]) == "m_L2_b"   # another C type is another array
    assert pool.array("m", "m_L3_w", "int8_t", [1, 2, 3, 0], layout="packed") == "m_L3_w"  # another branch
    assert pool.bytes_of("m", "reference") == 4 + 4 + 16 and pool.bytes_of("m", "arm_dsp") == 4 + 4 + 16 + 4
    assert pool.bytes_of("m_full", "reference") == 0 and pool.bytes_of("m_full", "reference", owned=False) == 4
    text = pool.emit("m_full")
    assert text == "extern const int8_t m_L0_w[4];\n"
    assert "#if TE_ARM_DSP_LAYOUT\nconst int8_t m_L3_w[4]" in pool.emit("m")


def _logits_position(blob: bytes) -> int:
    from tinyexit.export.codegen_lower import read_segment
    g = read_segment(blob)
    names = [g.tensors[i].name.split(":")[0].split(";")[0] for i in g.outputs]
    return names.index("logits") if "logits" in names else 0


@pytest.mark.slow
def test_exported_variants_hold_each_weight_once_and_stay_bit_exact(tmp_path_factory):
    """The real export: segmented, full-depth and all-exits models; flash ~1x the distinct arrays."""
    from helpers.trained_runs import copy_run, exported_run
    from tinyexit.firmware_bridge.firmware.verify import test_split_inputs

    run = copy_run(exported_run(tmp_path_factory.getbasetemp()), tmp_path_factory.mktemp("dedupe") / "run")
    c_dir = generate_c_for_run(run, "classifier")
    names = ["classifier", "classifier_full", "classifier_all_exits"]
    texts = {n: (c_dir / f"{n}_model.c").read_text() for n in names}
    metas = {n: json.loads((c_dir / f"{n}_codegen.json").read_text()) for n in names}
    for kernels, key in (("arm_dsp", "weight_bytes"), ("reference", "weight_bytes_reference")):
        defs = [d for n in names for d in _definitions(texts[n], kernels)]
        contents = [(ct, body) for ct, _, _, body in defs]
        assert len(contents) == len(set(contents)), "an array content is defined twice"
        assert sum(m[key] for m in metas.values()) == sum(_SIZE[ct] * n for ct, _, n, _ in defs)
    # the variants borrow the segmented model's weights: most of their constant bytes are shared
    for n in names[1:]:
        assert metas[n]["shared_weight_bytes"] > 5 * metas[n]["weight_bytes"]
        assert all(name.startswith("classifier_") for _, name, _ in _EXTERN.findall(texts[n]))
    manifest = json.loads((run / "export" / "classifier" / "manifest.json").read_text())
    x = test_split_inputs(run, "classifier")
    tmp = tmp_path_factory.mktemp("dedupe_bin")
    for n, key in (("classifier_full", "full_tflite"), ("classifier_all_exits", "all_exits_tflite")):
        blob = (run / "export" / "classifier" / manifest["files"][key]["path"]).read_bytes()
        pos = _logits_position(blob)
        want = np.stack([outs[pos].ravel() for outs in TM.tflm_run(blob, list(x))])
        for kernels in ("reference", "arm_dsp"):
            runner = HostRunner(_link(tmp, c_dir, names, n, kernels), metas[n]["segments"])
            logits, _ = runner.run_segment(0, x)
            np.testing.assert_array_equal(logits, want)
