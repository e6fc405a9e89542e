"""`tinyexit profile-device --target qemu` end to end on two kernel kinds (slow: TensorFlow's converter)."""
import json
import shutil

import pytest

from tinyexit.cli import main
from tinyexit.errors import UserError
from tinyexit.profile_cli import ProfileConfig

pytestmark = pytest.mark.skipif(shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None,
                                reason="needs qemu-system-arm and gcc-arm-none-eabi")


def test_unsupported_target_is_one_line():
    with pytest.raises(UserError, match="--target agent: not supported yet"):
        ProfileConfig(target="agent")


@pytest.mark.slow
@pytest.mark.qemu
def test_profile_device_fits_held_out_shapes(tmp_path):
    out = tmp_path / "p.json"
    assert main(["profile-device", "--target", "qemu", "--out", str(out), "--kinds", "add,fc"]) == 0
    prof = json.loads(out.read_text())
    assert prof["unit"] == "instructions" and prof["device"]["board"] == "mps2-an386"
    assert len(prof["firmware_sources_sha256"]) == 64
    pts = prof["sweep"]["points"]
    assert len(pts) == 24 and all(p["instructions"] > prof["empty"]["instructions"] for p in pts)
    # ADD is one loop over the bytes: exact on shapes it never saw
    add = [p for p in pts if p["point"]["kind"] == "add"]
    assert max(abs(p["held_out_error"]) for p in add) < 1e-3
    # FULLY_CONNECTED: within 5 % (median) on held-out shapes, never more than 150 instructions off
    fc = [p for p in pts if p["point"]["kind"] == "fc"]
    assert sorted(abs(p["held_out_error"]) for p in fc)[len(fc) // 2] < 0.05
    assert max(abs(p["held_out_error"]) * p["instructions"] for p in fc) < 150
    # resumable: the same sweep on the same firmware is kept, not re-measured
    mtime = out.stat().st_mtime_ns
    assert main(["profile-device", "--target", "qemu", "--out", str(out), "--kinds", "add,fc"]) == 0
    assert out.stat().st_mtime_ns == mtime
