"""The emulated board: the firmware on `qemu-system-arm -M mps2-an386`, reached over loopback TCP.

`start_qemu_target(run_dir, model, cfg) -> (url, handle)` is what `tinyexit bench
--target qemu` calls: it builds the firmware if needed, starts one QEMU for the
whole benchmark with `-icount shift=0` (one guest instruction = 1 ns of virtual
time, so the 25 MHz timer counts one tick per 40 instructions, identically on
every run) and returns `socket://127.0.0.1:PORT`.  `handle.close()` sends the
firmware's EXIT request without waiting for a reply, then reads QEMU's exit
status; QEMU is killed if it does not stop in time.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tinyexit.errors import UserError

# The selftest profile runs on the same emulated board; it is the firmware room's (profile.py).
from tinyexit.firmware_bridge.firmware.profile import (  # noqa: F401  (re-exported for callers of harness.qemu)
    INSTRUCTIONS_PER_TICK, MACHINE, QEMU, TICK_HZ, check_qemu, parse_selftest, profile_layers, run_selftest,
)

MSG_EXIT = 0x05          # firmware extension: end the program (semihosting exit 0); no reply
LABEL = (f"simulated: QEMU {MACHINE} (Cortex-M4F), -icount shift=0: 1 tick = {INSTRUCTIONS_PER_TICK} "
         "instructions (not cycles of a real chip)")


def qemu_command(elf: Path, port: int, plugin: list[str] = ()) -> list[str]:
    return [QEMU, "-M", MACHINE, "-display", "none", "-monitor", "none", "-kernel", str(elf),
            "-semihosting-config", "enable=on,target=native", "-icount", "shift=0",
            "-serial", f"tcp:127.0.0.1:{port},server=on,wait=on,nodelay=on", *plugin]


def _counting_plugin(elf: Path, port: int) -> tuple[list[str], Path | None]:
    """-plugin arguments of the te_count plugin (exact instruction counts), or none without a host compiler."""
    from tinyexit.firmware_bridge.firmware import plugin as fp

    try:
        so = fp.build_plugin(elf.parent)
        out = elf.parent / f"counts-{os.getpid()}-{port}.txt"
        return fp.plugin_args(so, elf, out), out
    except UserError as exc:
        print(f"qemu: no exact instruction counts ({exc}); timing falls back to ticks")
        return [], None


def qemu_available() -> tuple[bool, str]:
    """(True, "") when the emulated board can be used, else (False, why and the install command).

    For `tinyexit demo`, which benchmarks on QEMU by default and says why when it
    falls back to the host agent."""
    from tinyexit.firmware_bridge.firmware.build import check_toolchain

    if shutil.which(QEMU) is None:
        return False, f"{QEMU} not found (sudo apt-get install -y qemu-system-arm)"
    try:
        check_toolchain()
    except UserError as exc:
        return False, str(exc)
    return True, ""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port: int) -> bool:
    """Is something listening on 127.0.0.1:port?  Read from /proc so the one client QEMU accepts stays free."""
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return False
    want = f"0100007F:{port:04X}"
    return any(p[1] == want and p[3] == "0A" for p in (line.split() for line in lines) if len(p) > 3)


@dataclass
class QemuHandle:
    proc: subprocess.Popen
    port: int
    elf: Path
    log_path: Path
    started_s: float
    simulated_or_real: str = LABEL
    target_name: str = "qemu"
    instructions_per_tick: int = INSTRUCTIONS_PER_TICK
    exit_status: int | None = None
    profile: dict = field(default_factory=dict)     # per-layer instructions (profile.json), when available
    counts_path: Path | None = None                  # the te_count plugin's marks (exact instruction counts)
    _marks: object = None

    def result_counts(self, res) -> dict | None:
        """Exact instructions of a RUN's intervals (per segment, exit tests, classes, modelled cycles), from the
        plugin's marks up to this RESULT; None without the plugin or when they do not match the ticks."""
        from tinyexit.firmware_bridge.firmware import plugin as fp
        from tinyexit.firmware_bridge.protocol import constants as pc

        if self.counts_path is None or not res.ticks:
            return None
        if self._marks is None:
            self._marks = fp.MarkReader(self.counts_path)
        marks = self._marks.take()
        per_tick = 1e9 / res.tick_hz if res.tick_hz else self.instructions_per_tick
        return fp.split_run(marks, res.mode == pc.MODE_EARLY_EXIT, list(res.ticks), res.decision_ticks,
                            res.repeat, per_tick)

    def alive(self) -> str | None:
        code = self.proc.poll()
        return None if code is None else f"QEMU exited with status {code}; see {self.log_path}"

    def close(self, timeout: float = 5.0) -> int | None:
        """EXIT request (no reply awaited), then QEMU's own exit status; SIGTERM/SIGKILL on timeout."""
        if self.proc.poll() is None:
            _send_exit(self.port)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=2)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        self.exit_status = self.proc.returncode
        if self.counts_path is not None:
            self.counts_path.unlink(missing_ok=True)  # read while the bench ran; the results hold the counts
        return self.exit_status


def _send_exit(port: int) -> None:
    from tinyexit.firmware_bridge.protocol.framing import Frame, encode_frame

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(encode_frame(Frame(MSG_EXIT, 0xFFFE, b""), lead=True))
    except OSError:
        pass  # QEMU already gone or not accepting: close() falls back to signals


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the forked child, before exec: the kernel sends SIGKILL to QEMU when the thread that started it
    (the spawner thread, see _spawn) dies: a harness killed with SIGKILL leaves no QEMU behind.  Linux
    only; elsewhere a no-op."""
    import ctypes
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


_SPAWN_LOCK = threading.Lock()
_SPAWNER: list = []


def _spawn(cmd: list, **kwargs) -> subprocess.Popen:
    """Popen from one long-lived thread.  PR_SET_PDEATHSIG fires when the *thread* that forked the child
    exits, not the process: a QEMU started from a short-lived thread (a worker restarting a device, a
    test's watcher) would be killed with that thread.  The spawner thread lives as long as the harness."""
    from concurrent.futures import ThreadPoolExecutor

    with _SPAWN_LOCK:
        if not _SPAWNER:
            _SPAWNER.append(ThreadPoolExecutor(max_workers=1, thread_name_prefix="qemu-spawner"))
    return _SPAWNER[0].submit(subprocess.Popen, cmd, **kwargs).result()


def start_qemu(elf: Path, log_path: Path, boot_timeout: float = 10.0, count: bool = True) -> tuple[str, QemuHandle]:
    """Start QEMU on `elf`, listening on a free loopback port; returns (pyserial URL, handle).  With `count`,
    the te_count plugin writes exact instruction counts (handle.result_counts)."""
    check_qemu()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(3):  # another process may grab the free port first
        port = _free_port()
        log = open(log_path, "ab")
        plugin, counts = _counting_plugin(elf, port) if count else ([], None)
        t0 = time.monotonic()
        proc = _spawn(qemu_command(elf, port, plugin), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                      preexec_fn=_die_with_parent)
        log.close()
        while time.monotonic() - t0 < boot_timeout and proc.poll() is None and not _listening(port):
            time.sleep(0.01)
        if _listening(port):
            return f"socket://127.0.0.1:{port}", QemuHandle(proc, port, elf, log_path, time.monotonic() - t0,
                                                            counts_path=counts)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if "Address already in use" not in log_path.read_text(errors="replace"):
            break
    raise UserError(f"{QEMU} did not start listening on 127.0.0.1 (see {log_path})")


def firmware_for(run: Path, model: str, kernels: str = "arm_dsp", log=print) -> Path:
    """The mps2-an386 firmware ELF of a run (or bundle directory), built (or rebuilt for a new export) when needed."""
    from tinyexit.bundle import load_bundle
    from tinyexit.firmware_bridge.firmware.build import FirmwareConfig, build_firmware, firmware_sources_sha256
    from tinyexit.firmware_bridge.firmware.sources import locate

    bundle_dir, root = locate(run, model)
    bundle = load_bundle(bundle_dir)
    cfg = FirmwareConfig(board=MACHINE, kernels=kernels)
    out = root / "firmware" / bundle.model / cfg.dir_name
    meta = json.loads((out / "firmware.json").read_text()) if (out / "firmware.json").is_file() else {}
    if not (out / "fw.elf").is_file() or meta.get("artifact_hash") != bundle.artifact_hash \
            or meta.get("firmware_sources_sha256") != firmware_sources_sha256():
        build_firmware(run, model, cfg, log=log)
    return out / "fw.elf"


def start_qemu_target(run_dir, model: str, cfg) -> tuple[str, QemuHandle]:
    """Hook of `tinyexit bench --target qemu`: one QEMU per benchmark run (a run or a bundle directory)."""
    kernels = getattr(cfg, "kernels", "arm_dsp")
    elf = firmware_for(Path(run_dir), model, kernels)
    profile = _profile_for(Path(run_dir), model, kernels)
    url, handle = start_qemu(elf, elf.parent / "qemu.log")
    handle.profile = profile
    return url, handle


def _profile_for(run: Path, model: str, kernels: str) -> dict:
    """profile.json beside the firmware: per-layer instructions, measured once per export."""
    from tinyexit.bundle import load_bundle
    from tinyexit.firmware_bridge.firmware.build import firmware_sources_sha256
    from tinyexit.firmware_bridge.firmware.sources import locate

    bundle_dir, root = locate(run, model)
    bundle = load_bundle(bundle_dir)
    path = root / "firmware" / bundle.model / f"{MACHINE}-{kernels}" / "profile.json"
    if path.is_file():
        prof = json.loads(path.read_text())
        if prof.get("artifact_hash") == bundle.artifact_hash and \
                prof.get("firmware_sources_sha256") == firmware_sources_sha256():
            return prof
    prof = profile_layers(run, model, kernels, log=lambda msg: None)
    print(f"qemu: per-layer profile of {bundle.model} ({kernels}): {prof['instructions_per_mac']:.3f} "
          f"instructions/MAC -> {path}")
    return prof
