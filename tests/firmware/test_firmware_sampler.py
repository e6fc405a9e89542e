"""The denoiser's sampler on the device: a whole reverse process per request, equal to the host twin."""
import json
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tinyexit.errors import UserError
from tinyexit.export.codegen import CodegenConfig, generate_c
from tinyexit.firmware_bridge.protocol import messages as m
from tinyexit.firmware_bridge.protocol import constants as pc
from tinyexit.firmware_bridge.firmware.build import FirmwareConfig, build_firmware, models_c
from tinyexit.firmware_bridge.firmware.host import build_host_firmware
from tinyexit.firmware_bridge.harness.sampler import MODE_GENERATE, MSG_GENERATE, generate_on_device, sample_reference
from tinyexit.firmware_bridge.protocol.framing import Frame, FrameDecoder, encode_frame

from helpers import tflite_models as TM

SEEDS = [1, 2, 3, 12345, 0xDEADBEEF]


@pytest.fixture(scope="module")
def den_run(tmp_path_factory):
    run = TM.fake_run(tmp_path_factory.mktemp("den"), TM.denoiser_models(), model="den")
    path = run / "export" / "den" / "manifest.json"
    man = json.loads(path.read_text())
    man["denoiser"] = TM.denoiser_constants()
    path.write_text(json.dumps(man))
    return run, man


def _reference(man, seed):
    blobs = TM.denoiser_models()
    segs = man["segments"]
    exit_q = [(s["outputs"][0]["scale"], s["outputs"][0]["zero_point"]) for s in segs]

    def run_exit(k, x):
        cur = [x]
        for j in range(k + 1):
            outs = TM.tflm_run(blobs[j], cur)[0]
            if j < k:
                cur = [max(outs, key=lambda o: o.shape[-1])]
        return min(outs, key=lambda o: o.shape[-1]).ravel()

    return sample_reference(man["denoiser"], (man["input"]["scale"], man["input"]["zero_point"]), run_exit, exit_q,
                            seed)


def test_generation_on_the_host_port_equals_the_reference(den_run, tmp_path):
    run, man = den_run
    src = generate_c(TM.denoiser_models(), CodegenConfig(model_name="den"))
    c_dir = src.write(tmp_path / "c")
    text = models_c("den", man, src.summary(), [], FirmwareConfig(kernels="reference"))
    assert "static const te_sampler_t te_sampler = {6, 64," in text
    (tmp_path / "te_models.c").write_text(text)
    exe = build_host_firmware(c_dir, "den", tmp_path / "te_models.c", tmp_path / "fw", kernels="reference")
    data = b"".join(encode_frame(Frame(MSG_GENERATE, i + 1, struct.pack("<I", s))) for i, s in enumerate(SEEDS))
    data += encode_frame(Frame(MSG_GENERATE, 99, b"\x01\x02"))  # a wrong payload size is refused
    res = subprocess.run([str(exe)], input=data, capture_output=True, timeout=60)
    assert res.returncode == 0, res.stderr[-2000:]
    frames = [e for e in FrameDecoder().feed(res.stdout) if isinstance(e, Frame)][1:]
    assert len(frames) == len(SEEDS) + 1
    images = []
    for seed, frame in zip(SEEDS, frames):
        r = m.Result.unpack(frame.payload)
        assert r.mode == MODE_GENERATE and len(r.logits) == 64 and set(r.logits) <= {-1, 1}
        assert r.ticks[0] > 0 and r.decision_ticks > 0
        np.testing.assert_array_equal(r.logits, _reference(man, seed), err_msg=f"seed {seed}")
        images.append(r.logits)
    assert len({tuple(i) for i in images}) == len(SEEDS)  # the seed matters
    assert m.Error.unpack(frames[-1].payload).code == pc.Status.REQ_PAYLOAD_SIZE


@pytest.mark.skipif(shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None,
                    reason="needs qemu-system-arm and gcc-arm-none-eabi")
def test_generation_on_the_emulated_board(den_run):
    from tinyexit.firmware_bridge.harness.link import SerialLink
    from tinyexit.firmware_bridge.harness.qemu import start_qemu

    run, man = den_run
    rep = build_firmware(run, "den", FirmwareConfig(verify=False), log=lambda msg: None)
    url, handle = start_qemu(Path(rep["elf"]), Path(rep["elf"]).parent / "qemu.log")
    try:
        link = SerialLink(url, 115200)
        image, net, math, hz = generate_on_device(link, 12345)
        link.close()
    finally:
        handle.close()
    np.testing.assert_array_equal(image, _reference(man, 12345))
    assert hz == 25_000_000 and net > 0 and math > 0
    with pytest.raises(UserError, match="REQ_UNKNOWN_TYPE"):  # a classifier firmware has no sampler
        classifier = TM.fake_run(run.parent / "cls", TM.chain_models())
        rep = build_firmware(classifier, "tm", FirmwareConfig(verify=False), log=lambda msg: None)
        url, handle = start_qemu(Path(rep["elf"]), Path(rep["elf"]).parent / "qemu.log")
        try:
            link = SerialLink(url, 115200)
            generate_on_device(link, 1)
        finally:
            link.close()
            handle.close()
