"""A labgrid farm on one machine, loopback only: for tests, and to try `--target labgrid:...` without a lab.

`start_farm(run_dir, FarmConfig, workdir) -> Farm` starts, each in its own process group:
  - a labgrid coordinator on 127.0.0.1:PORT (its places.yaml lives in workdir/coordinator);
  - the devices: QEMU mps2-an386 boards running the bundle's firmware with `-serial pty`, and host
    agents (`tinyexit agent`) behind a pass-through pty bridge (the agent holds one pty, the exporter's
    ser2net the other, as a USB serial gadget would be seen by a lab host);
  - `exporters` labgrid exporters, each publishing some of those ptys as RawSerialPort resources.  The
    exporter starts ser2net (RFC 2217) for a port only while its place is acquired, exactly as in a
    real lab; a small wrapper pins ser2net's listening socket to 127.0.0.1 (labgrid's command line
    would listen on every interface) and turns Nagle's algorithm off on it (see _ser2net_wrapper);
  - one place per device, named qemu-0.., agent-0.., tagged kind=qemu|agent and farm=local.
`Farm.stop()` kills every process group it started (ser2net children die with their exporter).
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tinyexit.errors import UserError
from tinyexit.firmware_bridge.harness.labgrid_target import client_command, labgrid_client

LOOPBACK = "127.0.0.1"
_SER2NET = "/usr/sbin/ser2net"
_PTY_RE = re.compile(r"char device redirected to (/dev/pts/\d+)")


@dataclass(frozen=True)
class FarmConfig:
    qemu: int = 2                 # QEMU mps2-an386 places (the bundle's firmware)
    agents: int = 0               # host-agent places
    exporters: int = 2            # places are dealt round-robin to the exporters
    model: str = "classifier"
    runtime: str = "litert"       # runtime of the host agents
    speed: int = 115200

    def __post_init__(self):
        if self.qemu < 0 or self.agents < 0 or self.qemu + self.agents < 1 or self.exporters < 1:
            raise UserError(f"farm: {self.qemu} QEMU + {self.agents} agent places on {self.exporters} exporters; "
                            "give at least one place and one exporter")

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class Farm:
    coordinator: str                                  # HOST:PORT for --coordinator / LG_COORDINATOR
    workdir: Path
    places: dict = field(default_factory=dict)        # name -> {"kind", "exporter", "path"}
    procs: list = field(default_factory=list)         # (label, Popen), each the leader of its own group
    bridges: list = field(default_factory=list)

    def stop(self) -> None:
        """Kill every process group this farm started, newest first; close the pty bridges."""
        for _label, proc in reversed(self.procs):
            _kill_group(proc)
        self.procs.clear()
        for bridge in self.bridges:
            bridge.close()
        self.bridges.clear()

    def pids(self) -> list[int]:
        return [p.pid for _, p in self.procs]

    def __enter__(self) -> "Farm":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def farm_available() -> tuple[bool, str]:
    """(True, "") when labgrid and ser2net are installed, else (False, what to install)."""
    try:
        client_command()
    except UserError as exc:
        return False, str(exc)
    if not os.access(_SER2NET, os.X_OK):
        return False, f"{_SER2NET} missing (sudo apt-get install -y ser2net)"
    return True, ""


def start_farm(run_dir, cfg: FarmConfig = FarmConfig(), workdir=None, log=print) -> Farm:
    """Coordinator, devices, exporters and places on 127.0.0.1; the caller stops the farm (or uses `with`)."""
    ok, why = farm_available()
    if not ok:
        raise UserError(f"local farm: {why}")
    workdir = Path(workdir or Path(run_dir) / "farm").resolve()
    shutil.rmtree(workdir / "coordinator", ignore_errors=True)  # a fresh farm: no places from a previous one
    (workdir / "coordinator").mkdir(parents=True, exist_ok=True)
    (workdir / "bin").mkdir(exist_ok=True)
    port = _free_port()
    farm = Farm(f"{LOOPBACK}:{port}", workdir)
    try:
        _spawn(farm, "coordinator", [_bin("labgrid-coordinator"), "-l", farm.coordinator],
               workdir / "coordinator.log", cwd=workdir / "coordinator")
        _wait_listening(port, farm, "coordinator", workdir / "coordinator.log")
        for k in range(cfg.qemu):
            farm.places[f"qemu-{k}"] = {"kind": "qemu", "path": _start_qemu_pty(farm, run_dir, cfg.model, k)}
        for k in range(cfg.agents):
            farm.places[f"agent-{k}"] = {"kind": "agent", "path": _start_agent_pty(farm, run_dir, cfg, k)}
        _start_exporters(farm, cfg)
        _register_places(farm)
        log(f"farm: coordinator {farm.coordinator}, places {', '.join(farm.places)} (logs in {workdir})")
        return farm
    except BaseException:
        farm.stop()
        raise


# --- processes ------------------------------------------------------------------------------
def _bin(name: str) -> str:
    here = Path(sys.executable).parent / name  # the venv's labgrid scripts sit beside its python
    return str(here) if here.exists() else name


def _spawn(farm: Farm, label: str, cmd: list[str], log_path: Path, cwd=None, env=None) -> subprocess.Popen:
    # A new session per process: stop() kills the whole group (ser2net runs as an exporter's child).
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=cwd, env=env,
                                start_new_session=True)
    farm.procs.append((label, proc))
    return proc


def _kill_group(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait)
            # the leader is gone; children in its group (ser2net) get the same signal above
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            break
        except subprocess.TimeoutExpired:
            continue
    if proc.poll() is None:
        proc.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def _wait_listening(port: int, farm: Farm, label: str, log_path: Path, timeout: float = 20.0) -> None:
    proc = next(p for name, p in farm.procs if name == label)
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise UserError(f"farm: {label} exited with code {proc.returncode}; see {log_path}")
        try:
            with socket.create_connection((LOOPBACK, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise UserError(f"farm: {label} not listening on {LOOPBACK}:{port} after {timeout:.0f} s; see {log_path}")


def _start_qemu_pty(farm: Farm, run_dir, model: str, k: int) -> str:
    """QEMU with its UART on a pty; returns the pty path QEMU prints."""
    from tinyexit.firmware_bridge.harness.qemu import MACHINE, QEMU, check_qemu, firmware_for

    check_qemu()
    elf = firmware_for(Path(run_dir), model)
    log_path = farm.workdir / f"qemu-{k}.log"
    log_path.write_bytes(b"")
    cmd = [QEMU, "-M", MACHINE, "-display", "none", "-monitor", "none", "-kernel", str(elf),
           "-semihosting-config", "enable=on,target=native", "-icount", "shift=0", "-serial", "pty"]
    proc = _spawn(farm, f"qemu-{k}", cmd, log_path)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 20:
        found = _PTY_RE.search(log_path.read_text(errors="replace"))
        if found:
            return found.group(1)
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise UserError(f"farm: QEMU did not report its pty; see {log_path}")


def _start_agent_pty(farm: Farm, run_dir, cfg: FarmConfig, k: int) -> str:
    """`tinyexit agent` on one end of a pass-through pty bridge; returns the other end for the exporter."""
    from tinyexit.firmware_bridge.harness.bench import locate
    from tinyexit.firmware_bridge.harness.faults import PtyBridge

    bundle_dir, _ = locate(run_dir, cfg.model)
    bridge = PtyBridge()  # default FaultConfig: no faults, bytes pass unchanged
    farm.bridges.append(bridge)
    _spawn(farm, f"agent-{k}", [sys.executable, "-m", "tinyexit", "agent", "--port", bridge.device_path,
                                "--artifact", str(bundle_dir), "--runtime", cfg.runtime, "--name", f"agent-{k}"],
           farm.workdir / f"agent-{k}.log")
    return bridge.host_path


def _ser2net_wrapper(bin_dir: Path) -> None:
    """`ser2net` first on the exporters' PATH: labgrid's accepter `tcp,PORT` becomes
    `tcp(nodelay=true),127.0.0.1,PORT`.  Loopback only; and without nodelay, Nagle's algorithm on ser2net's
    socket meets the client's delayed ACK and every request-reply round trip takes ~40 ms more (measured:
    median 43.8 ms vs 8.4 ms per early-exit request on QEMU)."""
    path = bin_dir / "ser2net"
    path.write_text(f"#!{sys.executable}\n"
                    "# tinyexit local farm: ser2net on loopback, TCP_NODELAY (written by harness/farm_local.py)\n"
                    "import os, re, sys\n"
                    "args = [re.sub(r',tcp,(\\d+)$', r',tcp(nodelay=true),127.0.0.1,\\1', a) for a in sys.argv[1:]]\n"
                    f"os.execv({_SER2NET!r}, [{_SER2NET!r}] + args)\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def exporter_config(places: dict, speed: int) -> str:
    """The exporter YAML for some places: one group per place holding its RawSerialPort."""
    return "".join(f"{name}:\n  RawSerialPort:\n    port: {p['path']}\n    speed: {speed}\n"
                   for name, p in places.items())


def _start_exporters(farm: Farm, cfg: FarmConfig) -> None:
    _ser2net_wrapper(farm.workdir / "bin")
    env = {**os.environ, "PATH": f"{farm.workdir / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}
    names = list(farm.places)
    for e in range(min(cfg.exporters, len(names))):
        mine = {n: farm.places[n] for n in names[e::cfg.exporters]}
        for n in mine:
            farm.places[n]["exporter"] = f"exporter-{e}"
        conf = farm.workdir / f"exporter-{e}.yaml"
        conf.write_text(exporter_config(mine, cfg.speed))
        _spawn(farm, f"exporter-{e}", [_bin("labgrid-exporter"), "-c", farm.coordinator, "-n", f"exporter-{e}",
                                       "--hostname", LOOPBACK, str(conf)], farm.workdir / f"exporter-{e}.log",
               env=env)


def _register_places(farm: Farm, timeout: float = 30.0) -> None:
    """Create the places (matching their exporter's serial port) once every resource is published."""
    want = {f"{p['exporter']}/{n}/NetworkSerialPort" for n, p in farm.places.items()}
    t0 = time.monotonic()
    while True:
        out = labgrid_client(farm.coordinator, "resources").stdout
        if want <= set(out.split()):
            break
        dead = [label for label, p in farm.procs if p.poll() is not None]
        if dead or time.monotonic() - t0 > timeout:
            raise UserError(f"farm: exporters did not publish {sorted(want - set(out.split()))} "
                            f"({'exited: ' + ', '.join(dead) if dead else 'timeout'}); see {farm.workdir}/*.log")
        time.sleep(0.3)
    for name, p in farm.places.items():
        labgrid_client(farm.coordinator, "-p", name, "create")
        labgrid_client(farm.coordinator, "-p", name, "add-match", f"{p['exporter']}/{name}/NetworkSerialPort")
        labgrid_client(farm.coordinator, "-p", name, "set-tags", f"kind={p['kind']}", "farm=local")


def main(argv=None) -> int:
    """`python -m tinyexit.firmware_bridge.harness.farm_local RUN [--qemu N] [--agents N]`: run until Ctrl-C."""
    import argparse

    ap = argparse.ArgumentParser(prog="farm_local", description=main.__doc__)
    ap.add_argument("run_dir")
    ap.add_argument("--qemu", type=int, default=2)
    ap.add_argument("--agents", type=int, default=0)
    ap.add_argument("--exporters", type=int, default=2)
    ap.add_argument("--model", default="classifier")
    args = ap.parse_args(argv)
    farm = start_farm(args.run_dir, FarmConfig(args.qemu, args.agents, args.exporters, args.model))
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    print(f"export LG_COORDINATOR={farm.coordinator}", flush=True)
    try:
        while all(p.poll() is None for _, p in farm.procs):
            time.sleep(1)
        print("farm: a farm process exited; stopping", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        farm.stop()


if __name__ == "__main__":
    sys.exit(main())
