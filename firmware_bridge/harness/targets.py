"""Targets of `tinyexit bench`: the spawned host agent, QEMU (another module's hook), a pyserial URL,
or a labgrid place (`labgrid:PLACE`, labgrid_target.py: acquired, its serial port opened over RFC 2217).

`start_target` returns an open link plus what the results must say about the
target.  The host agent runs on this machine at the far end of a real pty pair;
everything it measures is labelled "host-agent", never a Raspberry Pi.

A device the harness started (agent, QEMU) can be restarted by it when it dies
(`Target.restart`); the new device announces itself and the session resumes.
With `cfg.faults` (a faults.FaultConfig) the link runs through a seeded
fault-injecting relay: a pty bridge for the agent, a loopback TCP relay for QEMU.
"""
from __future__ import annotations

import importlib
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from tinyexit.errors import UserError
from tinyexit.firmware_bridge.protocol.link import PtyPair, SerialLink

HOST_AGENT = "host-agent"
HOST_AGENT_LABEL = "host-agent on this machine"
FAULTS_LABEL = ", through a seeded fault-injecting relay"
_QEMU_MODULE = "tinyexit.firmware_bridge.harness.qemu"
LABGRID_PREFIX = "labgrid:"


@dataclass
class Target:
    spec: str
    kind: str                       # "agent", "qemu" or "url"
    name: str
    url: str
    simulated_or_real: str
    link: object
    alive: Callable[[], str | None] = lambda: None
    closers: list = field(default_factory=list)
    restarter: Callable[[], None] | None = None     # restarts a device the harness started; may replace link/url
    fault_counts: Callable[[], dict] | None = None  # {"to_device": {...}, "to_host": {...}} of a fault relay
    relay: object = None                            # the fault relay (set_dead, counts), when there is one
    place: str | None = None                        # the labgrid place behind the link, when there is one
    instruction_counts: Callable | None = None      # RESULT -> exact counts (QEMU's te_count plugin) or None

    def restart(self) -> None:
        if self.restarter is None:
            raise UserError(f"device at {self.url} went away and tinyexit did not start it, so it cannot restart "
                            "it; check the device and re-run with --resume")
        self.restarter()

    def close(self) -> None:
        for close in reversed(self.closers):
            try:
                close()
            except Exception:  # closing must not mask the error that ended the run
                pass
        self.closers.clear()


def target_kind(spec: str) -> str:
    return spec if spec in ("agent", "qemu") else "url"


def target_name(spec: str) -> str:
    """Directory-safe name: host-agent, qemu, ttyUSB0, socket-host-5000, rfc2217-host-2217."""
    if spec == "agent":
        return HOST_AGENT
    if spec == "qemu":
        return "qemu"
    if spec.startswith(LABGRID_PREFIX):  # labgrid:qemu-0 -> labgrid-qemu-0; a pattern keeps its text
        return re.sub(r"[^A-Za-z0-9._=-]+", "-", "labgrid-" + spec[len(LABGRID_PREFIX):]).strip("-")
    if spec.startswith("/"):
        return re.sub(r"[^A-Za-z0-9._-]+", "-", Path(spec).name).strip("-") or "serial"
    scheme, _, rest = spec.partition("://")
    return re.sub(r"[^A-Za-z0-9._-]+", "-", f"{scheme}-{rest}").strip("-")


def bench_name(specs: list[str]) -> str:
    names = sorted({target_name(s) for s in specs})
    return names[0] if len(names) == 1 else "+".join(names)


def start_target(spec: str, run_dir: Path, artifact_dir: Path, cfg, log_dir: Path, index: int) -> Target:
    kind = target_kind(spec)
    faults = getattr(cfg, "faults", None)
    if kind == "agent":
        return _start_agent(spec, artifact_dir, cfg, log_dir, index, faults)
    if kind == "qemu":
        return _start_qemu(spec, run_dir, cfg, faults)
    if faults is not None and spec.startswith(LABGRID_PREFIX):
        raise UserError(f"target {spec}: fault injection needs a device tinyexit starts (--target agent or qemu)")
    if spec.startswith(LABGRID_PREFIX):
        from tinyexit.firmware_bridge.harness.labgrid_target import open_place

        return open_place(spec, cfg)
    if faults is not None:
        raise UserError(f"target {spec}: fault injection needs a device tinyexit starts (--target agent or qemu)")
    if spec.startswith("rfc2217://"):  # pyserial's RFC 2217 client cannot take SerialLink's changing timeouts
        from tinyexit.firmware_bridge.harness.rfc2217_link import Rfc2217Link

        link = Rfc2217Link(spec, cfg.baud)
    else:
        link = SerialLink(spec, cfg.baud)
    return Target(spec, "url", target_name(spec), spec, f"device at {spec}", link, closers=[link.close])


class _AgentProcess:
    """`tinyexit agent` on a pty path, respawned on the same path when it dies."""

    def __init__(self, port: str, artifact_dir: Path, cfg, log_path: Path, name: str):
        self.cmd = [sys.executable, "-m", "tinyexit", "agent", "--port", port, "--artifact", str(artifact_dir),
                    "--runtime", cfg.runtime, "--baud", str(cfg.baud), "--name", name]
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self.proc = self._spawn()

    def _spawn(self) -> subprocess.Popen:
        return subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log)

    def alive(self) -> str | None:
        code = self.proc.poll()
        if code is None:
            return None
        if code < 0:
            return f"the host agent was killed by signal {-code}; see {self.log_path}"
        last = _last_line(self.log_path)
        said = f" ({last})" if last.startswith("tinyexit: error:") else ""
        return f"the host agent exited with code {code}{said}; see {self.log_path}"

    def restart(self) -> None:
        if self.proc.poll() is None:  # hung rather than dead: a reset is a reset
            self.proc.kill()
        self.proc.wait()
        self._log.write(b"tinyexit bench: restarting the host agent\n")
        self._log.flush()
        self.proc = self._spawn()

    def stop(self) -> None:
        try:
            self.proc.wait(timeout=5)  # its port was closed first: it exits on its own
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


def _last_line(path: Path) -> str:
    """The agent's last words (its one-line error), without a traceback's noise."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, 2) - 2048))
            lines = [ln.strip() for ln in f.read().decode(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""


def _start_agent(spec: str, artifact_dir: Path, cfg, log_dir: Path, index: int, faults) -> Target:
    log_dir.mkdir(parents=True, exist_ok=True)
    name = HOST_AGENT + (f" {index}" if index else "")
    if faults is None:
        pair = PtyPair()
        agent = _AgentProcess(pair.slave_path, artifact_dir, cfg, log_dir / f"agent-{index}.log", name)
        return Target(spec, "agent", HOST_AGENT, pair.slave_path, HOST_AGENT_LABEL, pair.link, agent.alive,
                      [agent.stop, pair.close], restarter=agent.restart)
    from tinyexit.firmware_bridge.harness.faults import PtyBridge

    bridge = PtyBridge(*faults.directions())
    agent = _AgentProcess(bridge.device_path, artifact_dir, cfg, log_dir / f"agent-{index}.log", name)
    try:
        link = SerialLink(bridge.host_path, cfg.baud)
    except BaseException:
        bridge.close()
        agent.stop()
        raise
    return Target(spec, "agent", HOST_AGENT, bridge.host_path, HOST_AGENT_LABEL + FAULTS_LABEL, link, agent.alive,
                  [agent.stop, bridge.close, link.close], restarter=agent.restart, fault_counts=bridge.counts,
                  relay=bridge)


class _QemuDevice:
    """One QEMU at a time; a restart starts a fresh QEMU (new port) and re-points the relay or the link."""

    def __init__(self, module, url: str, handle, cfg, relay=None):
        self.module, self.url, self.handle, self.cfg, self.relay = module, url, handle, cfg, relay
        self.target: Target | None = None

    def alive(self) -> str | None:
        check = getattr(self.handle, "alive", None)
        return check() if check else None

    def restart(self) -> None:
        old = self.handle
        _stop_handle(old)
        url, handle = self.module.start_qemu(old.elf, old.log_path)
        if hasattr(old, "profile"):
            handle.profile = old.profile
        self.url, self.handle = url, handle
        t = self.target
        if self.relay is not None:
            self.relay.retarget(handle.port)  # the harness keeps its connection to the relay
            return
        t.link.close()
        t.link = SerialLink(url, self.cfg.baud)
        t.url = url

    def stop(self) -> None:
        _stop_handle(self.handle)


def _stop_handle(handle) -> None:
    stop = getattr(handle, "close", None) or getattr(handle, "stop", None) or getattr(handle, "terminate")
    stop()


def _start_qemu(spec: str, run_dir: Path, cfg, faults) -> Target:
    try:
        module = importlib.import_module(_QEMU_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name != _QEMU_MODULE:
            raise
        raise UserError("target 'qemu': QEMU target not available in this install "
                        f"({_QEMU_MODULE} missing); use --target agent or a serial URL") from None
    url, handle = module.start_qemu_target(run_dir, cfg.model, cfg)
    relay = None
    try:
        if faults is not None:
            from tinyexit.firmware_bridge.harness.fault_socket import SocketRelay

            relay = SocketRelay(handle.port, *faults.directions())
        link = SerialLink(relay.url if relay else url, cfg.baud)
    except BaseException:
        if relay is not None:
            relay.close()
        _stop_handle(handle)
        raise
    dev = _QemuDevice(module, url, handle, cfg, relay)
    label = getattr(handle, "simulated_or_real", "simulated: QEMU") + (FAULTS_LABEL if relay else "")
    closers = [dev.stop] + ([relay.close] if relay else []) + [lambda: dev.target.link.close()]
    target = Target(spec, "qemu", getattr(handle, "target_name", "qemu"), relay.url if relay else url, label, link,
                    dev.alive, closers, restarter=dev.restart if hasattr(module, "start_qemu") else None,
                    fault_counts=relay.counts if relay else None, relay=relay)
    counts = getattr(handle, "result_counts", None)
    if counts is not None:  # exact instructions per interval; follows the handle across restarts
        target.instruction_counts = lambda res: dev.handle.result_counts(res)
    dev.target = target
    return target
