"""Targets of `tinyexit bench`: the spawned host agent, QEMU (another module's hook), or a pyserial URL.

`start_target` returns an open link plus what the results must say about the
target.  The host agent runs on this machine at the far end of a real pty pair;
everything it measures is labelled "host-agent", never a Raspberry Pi.
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
from tinyexit.firmware_bridge.link import PtyPair, SerialLink

HOST_AGENT = "host-agent"
HOST_AGENT_LABEL = "host-agent on this machine"
_QEMU_MODULE = "tinyexit.firmware_bridge.qemu_target"


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
    if spec.startswith("/"):
        return re.sub(r"[^A-Za-z0-9._-]+", "-", Path(spec).name).strip("-") or "serial"
    scheme, _, rest = spec.partition("://")
    return re.sub(r"[^A-Za-z0-9._-]+", "-", f"{scheme}-{rest}").strip("-")


def bench_name(specs: list[str]) -> str:
    names = sorted({target_name(s) for s in specs})
    return names[0] if len(names) == 1 else "+".join(names)


def start_target(spec: str, run_dir: Path, artifact_dir: Path, cfg, log_dir: Path, index: int) -> Target:
    kind = target_kind(spec)
    if kind == "agent":
        return _start_agent(spec, artifact_dir, cfg, log_dir, index)
    if kind == "qemu":
        return _start_qemu(spec, run_dir, cfg)
    link = SerialLink(spec, cfg.baud)
    return Target(spec, "url", target_name(spec), spec, f"device at {spec}", link, closers=[link.close])


def _start_agent(spec: str, artifact_dir: Path, cfg, log_dir: Path, index: int) -> Target:
    pair = PtyPair()
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"agent-{index}.log"
    log = open(log_path, "ab")
    name = HOST_AGENT + (f" {index}" if index else "")
    cmd = [sys.executable, "-m", "tinyexit", "agent", "--port", pair.slave_path, "--artifact", str(artifact_dir),
           "--runtime", cfg.runtime, "--baud", str(cfg.baud), "--name", name]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log)

    def alive() -> str | None:
        code = proc.poll()
        return None if code is None else f"the host agent exited with code {code}; see {log_path}"

    def stop() -> None:
        pair.close()  # the agent sees its port close and exits on its own
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()

    return Target(spec, "agent", HOST_AGENT, pair.slave_path, HOST_AGENT_LABEL, pair.link, alive, [stop])


def _start_qemu(spec: str, run_dir: Path, cfg) -> Target:
    try:
        module = importlib.import_module(_QEMU_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name != _QEMU_MODULE:
            raise
        raise UserError("target 'qemu': QEMU target not available in this install "
                        f"({_QEMU_MODULE} missing); use --target agent or a serial URL") from None
    url, handle = module.start_qemu_target(run_dir, cfg.model, cfg)
    stop = getattr(handle, "close", None) or getattr(handle, "stop", None) or getattr(handle, "terminate")
    try:
        link = SerialLink(url, cfg.baud)
    except BaseException:
        stop()
        raise
    label = getattr(handle, "simulated_or_real", "simulated: QEMU")
    alive = getattr(handle, "alive", None) or (lambda: None)
    return Target(spec, "qemu", getattr(handle, "target_name", "qemu"), url, label, link, alive, [stop, link.close])
