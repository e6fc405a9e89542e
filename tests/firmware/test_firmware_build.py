"""`tinyexit firmware build`: cross-compiled ELFs for both boards, the size report, refusals with numbers."""
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tinyexit.cli import main
from tinyexit.errors import UserError
from tinyexit.firmware_bridge.firmware import build as fb
from tinyexit.firmware_bridge.firmware.build import FirmwareConfig, build_firmware
from tinyexit.firmware_bridge.firmware.host import FIRMWARE_DIR

from helpers import tflite_models as TM

pytestmark = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="needs gcc-arm-none-eabi")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return TM.fake_run(tmp_path_factory.mktemp("fw"), TM.chain_models())


def test_mps2_build_reports_flash_ram_and_tflm_arena(run, capsys):
    assert main(["firmware", "build", str(run), "--board", "mps2-an386", "--model", "tm"]) == 0
    out = run / "firmware" / "tm" / "mps2-an386-arm_dsp"
    rep = json.loads((out / "firmware.json").read_text())
    assert (out / "fw.elf").is_file() and (out / "te_models.c").is_file()
    codegen = json.loads((run / "export" / "tm" / "c" / "codegen.json").read_text())
    # every constant array of the model is in flash, byte for byte what the generator counted
    assert rep["flash"]["weights"] == codegen["weight_bytes"]
    assert rep["flash"]["code"] + rep["flash"]["weights"] == rep["flash_bytes"]
    s = rep["sections"]
    assert rep["ram_bytes"] == s[".data"] + s[".bss"] + s[".noinit"] + s[".stack"]
    assert rep["ram"]["arena"] == rep["peak_arena_bytes"] == codegen["arena_bytes"]
    assert rep["ram"]["input_buffer"] == 4096 and rep["ram"]["stack"] == 2048
    assert rep["bit_exact_vs_tflm"] is True and rep["host_tier"]["samples"] == 40
    tflm = rep["tflm_arena"]["per_segment"]
    assert len(tflm) == 3 and rep["tflm_arena_bytes"] == max(t["total"] for t in tflm) > rep["peak_arena_bytes"]
    assert rep["arena_vs_tflm"] == round(rep["peak_arena_bytes"] / rep["tflm_arena_bytes"], 4)
    text = capsys.readouterr().out
    assert "bit-exact on every segment" in text and f"flash {rep['flash_bytes']} B" in text


def test_generic_cortex_m4_port_compiles_with_both_kernel_sets(run):
    for kernels in ("reference", "arm_dsp"):
        rep = build_firmware(run, "tm", FirmwareConfig(board="generic-cortex-m4", kernels=kernels, verify=False),
                             log=lambda msg: None)
        assert Path(rep["elf"]).is_file() and rep["limits"] == {"flash_bytes": 512 << 10, "ram_bytes": 128 << 10}
        nm = subprocess.run(["arm-none-eabi-nm", rep["elf"]], capture_output=True, text=True).stdout
        assert ("te_conv_pairs" in nm) == (kernels == "arm_dsp")  # the optimized set, never the other


def test_too_large_for_the_board_is_refused_with_the_numbers(run):
    with pytest.raises(UserError, match=r"weights alone need \d+ B of flash, mps2-an386 has 10000 B"):
        build_firmware(run, "tm", FirmwareConfig(flash_bytes=10_000, verify=False), log=lambda m: None)
    with pytest.raises(UserError, match=r"arena \d+ B \+ input buffer 4096 B exceed the 5000 B of RAM"):
        build_firmware(run, "tm", FirmwareConfig(ram_bytes=5000, verify=False), log=lambda m: None)
    with pytest.raises(UserError, match=r"firmware needs \d+ B flash and \d+ B RAM; the limits are \d+ B and 9000 B"):
        build_firmware(run, "tm", FirmwareConfig(ram_bytes=9000, verify=False), log=lambda m: None)


def test_missing_toolchain_names_the_install_command(run, monkeypatch):
    real = shutil.which
    monkeypatch.setattr(fb.shutil, "which", lambda name: None if name.startswith("arm-none-eabi") else real(name))
    with pytest.raises(UserError, match="sudo apt-get install -y gcc-arm-none-eabi libnewlib-arm-none-eabi"):
        build_firmware(run, "tm", FirmwareConfig(verify=False))


def test_makefile_refuses_an_incomplete_optimized_set(tmp_path):
    tree = tmp_path / "firmware"
    shutil.copytree(FIRMWARE_DIR, tree, ignore=shutil.ignore_patterns("build"))
    (tree / "kernels" / "arm_dsp" / "te_pad.c").unlink()
    res = subprocess.run(["make", "-C", str(tree), "KERNELS=arm_dsp", f"MODEL_DIR={tmp_path}"],
                         capture_output=True, text=True)
    assert res.returncode != 0
    assert "kernel set 'arm_dsp' does not provide every kernel (te_pad.c missing)" in res.stderr
    res = subprocess.run(["make", "-C", str(tree), "BOARD=nucleo", f"MODEL_DIR={tmp_path}"], capture_output=True,
                         text=True)
    assert "unknown BOARD 'nucleo'" in res.stderr


def test_config_validation():
    with pytest.raises(UserError, match="--board esp32: unknown"):
        FirmwareConfig(board="esp32")
    with pytest.raises(UserError, match="--kernels cmsis: unknown"):
        FirmwareConfig(kernels="cmsis")
    assert FirmwareConfig.from_dict(FirmwareConfig(app="mlperf").to_dict()).dir_name == "mps2-an386-arm_dsp-mlperf"


def test_the_build_consumes_the_c_folder_and_refuses_it_missing_or_stale(run, tmp_path):
    mine = tmp_path / "run"
    shutil.copytree(run, mine, ignore=shutil.ignore_patterns("firmware"))
    c_dir = mine / "export" / "tm" / "c"
    hint = f"run 'tinyexit export {mine.resolve()} --formats c'"
    (c_dir / "tm_model.c").unlink()
    with pytest.raises(UserError, match=f"{c_dir.resolve()}: tm_model.c missing; {hint}"):
        build_firmware(mine, "tm", FirmwareConfig(verify=False), log=lambda m: None)
    meta = json.loads((c_dir / "codegen.json").read_text())
    meta["segments"][1]["source_sha256"] = "0" * 64
    (c_dir / "codegen.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match=r"generated from other segment files than .* \(stale C\)"):
        build_firmware(mine, "tm", FirmwareConfig(verify=False), log=lambda m: None)
    shutil.rmtree(c_dir)
    with pytest.raises(UserError, match=f"^{c_dir.resolve()} missing; {hint}$"):
        build_firmware(mine, "tm", FirmwareConfig(verify=False), log=lambda m: None)
    assert not (c_dir).exists()  # never regenerated by the build


def test_c_generated_for_other_kernel_layouts_is_refused_before_it_runs(run, tmp_path):
    """C written by another tinyexit would hand the kernels weights in a layout they do not read (an
    illegal instruction or wrong numbers at run time): the build refuses it by codegen.json, and the
    compiler by the generated #error when the C is used without the build."""
    from tinyexit.export.codegen import KERNEL_ABI
    from tinyexit.firmware_bridge.firmware.sources import kernel_abi

    assert KERNEL_ABI == kernel_abi()
    mine = tmp_path / "run"
    shutil.copytree(run, mine, ignore=shutil.ignore_patterns("firmware"))
    c_dir = mine / "export" / "tm" / "c"
    meta = json.loads((c_dir / "codegen.json").read_text())
    assert meta["kernel_abi"] == KERNEL_ABI
    del meta["kernel_abi"]  # what a tinyexit from before the ABI number wrote
    (c_dir / "codegen.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match=rf"^{c_dir.resolve()}: generated by tinyexit .* for kernel ABI 1, these "
                                        rf"kernels are ABI {KERNEL_ABI} \(their weight layouts differ\); run "
                                        rf"'tinyexit export {mine.resolve()} --formats c'$"):
        build_firmware(mine, "tm", FirmwareConfig(verify=False), log=lambda m: None)
    source = (c_dir / "tm_model.c").read_text()
    assert f"#if !defined(TE_KERNEL_ABI) || TE_KERNEL_ABI != {KERNEL_ABI}\n#error" in source
    res = subprocess.run(["gcc", "-std=c99", "-fsyntax-only", f"-DTE_KERNEL_ABI={KERNEL_ABI + 1}", "-include",
                          "stdint.h", "-I", str(FIRMWARE_DIR / "core"), "-I", str(c_dir), "-x", "c", "-"],
                         input=source.replace('#include "te_kernels.h"\n', ""), capture_output=True, text=True)
    assert res.returncode != 0 and "re-run tinyexit export" in res.stderr


def test_a_bundle_directory_builds_on_its_own_and_verifies_on_its_inputs(run, tmp_path):
    bundle = tmp_path / "copied" / "tm"
    shutil.copytree(run / "export" / "tm", bundle)  # the bundle alone: no config.json, no run around it
    rep = build_firmware(bundle, "ignored", FirmwareConfig(kernels="reference"), log=lambda m: None)
    out = bundle.resolve() / "firmware" / "tm" / "mps2-an386-reference"
    assert rep["model"] == "tm" and Path(rep["elf"]) == out / "fw.elf" and (out / "firmware.json").is_file()
    assert rep["host_tier"]["inputs"] == "seeded random (tests)" and rep["host_tier"]["samples"] == 40
    assert rep["bit_exact_vs_tflm"] is True
