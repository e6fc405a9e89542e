"""QEMU started by the harness dies with it: a harness killed with SIGKILL leaves no emulator running."""
import os
import subprocess
import sys
import time

import pytest

CHILD = """
import sys, time
from pathlib import Path
from tinyexit.firmware_bridge.harness.qemu import start_qemu
url, handle = start_qemu(Path(sys.argv[1]), Path(sys.argv[2]))
print(handle.proc.pid, flush=True)
time.sleep(120)
"""


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.slow
def test_qemu_dies_when_the_harness_is_killed(rel_run, need_qemu, tmp_path):
    from tinyexit.firmware_bridge.harness.qemu import firmware_for

    elf = firmware_for(rel_run, "classifier", log=lambda msg: None)
    harness = subprocess.Popen([sys.executable, "-c", CHILD, str(elf), str(tmp_path / "qemu.log")],
                               stdout=subprocess.PIPE, text=True)
    qemu_pid = int(harness.stdout.readline())
    try:
        assert _running(qemu_pid)
        harness.kill()
        harness.wait()
        deadline = time.monotonic() + 10
        while _running(qemu_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _running(qemu_pid), "QEMU outlived the harness that started it"
    finally:
        if _running(qemu_pid):
            os.kill(qemu_pid, 9)
