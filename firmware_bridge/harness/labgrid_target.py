"""labgrid places as bench targets: `--target labgrid:PLACE` (or `labgrid:GLOB`, `labgrid:TAG=VALUE`).

labgrid owns the lab: its coordinator knows the places, who holds them, and which exporter publishes
each board's serial port (ser2net, RFC 2217).  tinyexit only drives `labgrid-client` as a subprocess
(one short call per step; the CLI is labgrid's stable interface, and a worker thread never shares an
asyncio loop with another), acquires a place, opens its NetworkSerialPort as an `rfc2217://` URL and
releases the place on every exit path.

Acquisitions live in the coordinator until released: a client that dies leaves its place acquired.
tinyexit writes a lease file per (coordinator, place) while it holds one; a later run by the same
labgrid user and host that finds the place acquired under its own name and the lease's process gone
releases that stale acquisition itself (and says so).  A place held by anyone else is refused with one
line naming the holder, or waited for with `--wait`.
"""
from __future__ import annotations

import ast
import fnmatch
import getpass
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tinyexit.errors import UserError

PREFIX = "labgrid:"
DEFAULT_COORDINATOR = "127.0.0.1:20408"        # labgrid-client's own default
POWER_CLASSES = ("PowerPort", "PDUDaemonPort")  # resource classes `labgrid-client power` can drive (suffixes)
LEASE_DIR = Path.home() / ".cache" / "tinyexit" / "labgrid"
_POLL_S = 1.0

_HELD: dict = {}                                # (coordinator, place) -> Lease held by this process
_HELD_LOCK = threading.Lock()


def is_labgrid(spec: str) -> bool:
    return spec.startswith(PREFIX)


def client_command() -> str:
    """Path of `labgrid-client` (the venv's first), or a UserError saying how to install it."""
    here = Path(sys.executable).parent / "labgrid-client"
    found = str(here) if here.exists() else shutil.which("labgrid-client")
    if not found:
        raise UserError("labgrid-client not found: install the farm extra (pip install 'tinyexit[farm]')")
    return found


def labgrid_client(coordinator: str, *args: str, env: dict | None = None, check: bool = True,
                   timeout: float = 60.0) -> subprocess.CompletedProcess:
    """Run `labgrid-client -x COORDINATOR ARGS...`; a failure is a UserError with labgrid's own last line."""
    cmd = [client_command(), "-x", coordinator, *args]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **(env or {})})
    except subprocess.TimeoutExpired:
        raise UserError(f"labgrid coordinator {coordinator}: `labgrid-client {' '.join(args)}` did not answer in "
                        f"{timeout:.0f} s; check --coordinator / LG_COORDINATOR") from None
    if check and done.returncode != 0:
        raise UserError(f"labgrid coordinator {coordinator}: `labgrid-client {' '.join(args)}` failed: "
                        f"{_last_line(done.stderr or done.stdout)}")
    return done


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1][:300] if lines else "no output"


def coordinator_address(flag: str | None, environ: dict) -> str:
    """--coordinator, else labgrid's LG_COORDINATOR, else labgrid's default."""
    return flag or environ.get("LG_COORDINATOR") or DEFAULT_COORDINATOR


def identity(environ: dict = os.environ) -> str:
    """`host/user` as labgrid-client records its acquisitions (LG_HOSTNAME / LG_USERNAME override)."""
    return f"{environ.get('LG_HOSTNAME', socket.gethostname())}/{environ.get('LG_USERNAME', getpass.getuser())}"


# --- what the coordinator says ------------------------------------------------------------------
@dataclass(frozen=True)
class PlaceState:
    name: str
    acquired: str | None                            # "host/user" of the holder
    tags: dict = field(default_factory=dict)
    changed: str = ""
    resources: tuple = ()                           # ((path "exporter/group/cls/name", params dict), ...)

    def serial_url(self) -> str | None:
        for path, res in self.resources:
            if path.split("/")[2] == "NetworkSerialPort":
                p = res.get("params", {})
                if not p.get("port") or not res.get("avail", True):
                    return None
                scheme = "socket" if p.get("protocol") == "raw" else "rfc2217"
                return f"{scheme}://{p['host']}:{p['port']}"
        return None

    def power(self) -> bool:
        return any(path.split("/")[2].endswith(POWER_CLASSES) for path, _ in self.resources)


def parse_places(text: str) -> dict[str, PlaceState]:
    """Places from `labgrid-client places -v` or `show` (Place.show's text, with resource dicts after it)."""
    places: dict[str, dict] = {}
    cur, res_path, res_lines = None, None, []

    def flush_resource():
        if cur is not None and res_path is not None:
            cur["resources"].append((res_path, ast.literal_eval("\n".join(res_lines).strip() or "{}")))

    for line in text.splitlines():
        m = re.match(r"^Place '(.+)':$", line)
        r = re.match(r"^(?:Acquired|Matching) resource '.*' \((.+)\):$", line)
        if m or r:
            flush_resource()
            res_path, res_lines = (r.group(1), []) if r else (None, [])
            if m:
                cur = places.setdefault(m.group(1), {"name": m.group(1), "acquired": None, "tags": {},
                                                     "changed": "", "resources": []})
            continue
        if res_path is not None:
            res_lines.append(line)
            continue
        if cur is None:
            continue
        key, _, value = line.strip().partition(": ")
        if line.startswith("  ") and not line.startswith("    "):
            if key == "acquired":
                cur["acquired"] = None if value == "None" else value
            elif key == "tags":
                cur["tags"] = dict(t.split("=", 1) for t in value.split(", ") if "=" in t)
            elif key == "changed":
                cur["changed"] = value
    flush_resource()
    return {n: PlaceState(d["name"], d["acquired"], d["tags"], d["changed"], tuple(d["resources"]))
            for n, d in places.items()}


def show_place(coordinator: str, name: str) -> PlaceState:
    done = labgrid_client(coordinator, "-p", name, "show", check=False)
    if done.returncode != 0:
        raise UserError(f"labgrid place '{name}' at {coordinator}: {_last_line(done.stderr)}; list the places "
                        f"with `labgrid-client -x {coordinator} places`")
    found = parse_places(done.stdout)
    if name not in found:
        raise UserError(f"labgrid place '{name}' at {coordinator}: not in `labgrid-client show` output")
    return found[name]


def expand_places(specs: list[str], coordinator: str) -> list[str]:
    """Every `labgrid:GLOB` / `labgrid:TAG=VALUE` replaced by `labgrid:NAME` of each matching place, sorted;
    `labgrid:NAME` and other targets pass through."""
    out, listing = [], None
    for spec in specs:
        pattern = spec[len(PREFIX):] if is_labgrid(spec) else None
        if pattern is None or not (set(pattern) & set("*?[=")):
            if pattern == "":
                raise UserError("--target labgrid: names no place; use labgrid:PLACE, labgrid:GLOB or "
                                "labgrid:TAG=VALUE")
            out.append(spec)
            continue
        if listing is None:
            listing = parse_places(labgrid_client(coordinator, "-v", "places").stdout)
        if "=" in pattern:
            key, _, value = pattern.partition("=")
            names = [n for n, p in listing.items() if fnmatch.fnmatchcase(p.tags.get(key, "\0"), value)]
        else:
            names = [n for n in listing if fnmatch.fnmatchcase(n, pattern)]
        if not names:
            raise UserError(f"--target {spec}: no labgrid place at {coordinator} matches; places there: "
                            f"{', '.join(sorted(listing)) or 'none'}")
        out += [PREFIX + n for n in sorted(names) if PREFIX + n not in out]
    return out


# --- holding a place ------------------------------------------------------------------------------
def _lease_path(coordinator: str, place: str) -> Path:
    return LEASE_DIR / (re.sub(r"[^A-Za-z0-9._-]+", "_", f"{coordinator}__{place}") + ".json")


def _process_start(pid: int) -> str | None:
    """A process's start time (jiffies since boot), so a reused pid is not mistaken for the old one."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _lease_alive(lease: dict) -> bool:
    same_host = lease.get("hostname") == socket.gethostname()
    return not same_host or _process_start(int(lease.get("pid", 0))) == lease.get("start")


class Lease:
    """One acquired place; `release()` is idempotent and never raises (it runs on every exit path)."""

    def __init__(self, coordinator: str, place: str):
        self.coordinator, self.place = coordinator, place
        self.path = _lease_path(coordinator, place)
        self.released = False

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        with _HELD_LOCK:
            _HELD.pop((self.coordinator, self.place), None)
        try:
            done = labgrid_client(self.coordinator, "-p", self.place, "release", check=False, timeout=30)
            ok = done.returncode == 0
        except UserError:
            ok = False
        if ok:
            self.path.unlink(missing_ok=True)
        else:  # the lease file stays: the next run releases the place as a stale acquisition of ours
            print(f"bench: could not release labgrid place {self.place} at {self.coordinator}; the next tinyexit "
                  f"run releases it, or: labgrid-client -x {self.coordinator} -p {self.place} release",
                  file=sys.stderr)


def acquire(coordinator: str, place: str, wait_s: float | None = None, log=print) -> Lease:
    """Acquire a place for this process (refuse or wait when someone else holds it)."""
    me = identity()
    deadline = None if wait_s is None else time.monotonic() + wait_s
    said = False
    while True:
        # acquire first, ask who holds it only when refused: each labgrid-client call costs a process start
        done = labgrid_client(coordinator, "-p", place, "acquire", check=False)
        if done.returncode == 0:
            lease = Lease(coordinator, place)
            lease.path.parent.mkdir(parents=True, exist_ok=True)
            lease.path.write_text(json.dumps({"coordinator": coordinator, "place": place, "pid": os.getpid(),
                                              "start": _process_start(os.getpid()),
                                              "hostname": socket.gethostname(), "holder": me}))
            with _HELD_LOCK:
                _HELD[(coordinator, place)] = lease
            return lease
        state = show_place(coordinator, place)
        holder = state.acquired
        if holder is None:
            if "already acquired" in done.stderr:  # released between the two calls: try again
                continue
            # refused for another reason (no matching resource, a broken export)
            raise UserError(f"labgrid place {place} at {coordinator}: acquire failed: {_last_line(done.stderr)}")
        if holder == me:
            holder = _own_holder(coordinator, place, state, log)
            if holder is None:  # a stale acquisition of ours, just released
                continue
        if deadline is None:
            raise UserError(f"labgrid place {place} at {coordinator} is acquired by {holder}"
                            f"{' since ' + state.changed if state.changed else ''}; re-run with --wait to wait "
                            "for it")
        if time.monotonic() > deadline:
            raise UserError(f"labgrid place {place} at {coordinator} is still acquired by {holder} after "
                            f"--wait {wait_s:g} s")
        if not said:
            log(f"bench: labgrid place {place} is acquired by {holder}; waiting (--wait)")
            said = True
        time.sleep(_POLL_S)


def _own_holder(coordinator: str, place: str, state: PlaceState, log) -> str | None:
    """The place is acquired under our own labgrid name: free it when our lease says its process is dead."""
    path = _lease_path(coordinator, place)
    try:
        lease = json.loads(path.read_text())
    except (OSError, ValueError):
        return f"{state.acquired} (you, outside tinyexit: labgrid-client -x {coordinator} -p {place} release)"
    if _lease_alive(lease):
        return f"{state.acquired} (another tinyexit run, pid {lease.get('pid')})"
    log(f"bench: labgrid place {place} was left acquired by tinyexit pid {lease.get('pid')}, which is gone; "
        "releasing that stale acquisition")
    # release-from: atomic, so a place someone took meanwhile is left alone
    labgrid_client(coordinator, "-p", place, "release-from", state.acquired)
    path.unlink(missing_ok=True)
    return None


def held(coordinator: str, place: str) -> Lease | None:
    with _HELD_LOCK:
        return _HELD.get((coordinator, place))


def hold_places(specs: list[str], coordinator: str, wait_s: float | None, log=print) -> list[Lease]:
    """Acquire every `labgrid:NAME` before the bench starts (all or none: a refusal releases the rest)."""
    from concurrent.futures import ThreadPoolExecutor

    names = [spec[len(PREFIX):] for spec in specs if is_labgrid(spec)]
    if not names:
        return []
    # concurrently: each acquisition is a few labgrid-client round trips, and a farm may have many places
    with ThreadPoolExecutor(max_workers=min(8, len(names))) as pool:
        futures = [pool.submit(acquire, coordinator, name, wait_s, log) for name in names]
        done = [f.exception() for f in futures]  # waits for all, so none is left half-acquired
    leases = [f.result() for f, exc in zip(futures, done) if exc is None]
    failed = [exc for exc in done if exc is not None]
    if failed:
        release_all(leases)
        raise failed[0]
    return leases


def release_all(leases: list[Lease]) -> None:
    if len(leases) < 2:
        for lease in leases:
            lease.release()
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(8, len(leases))) as pool:
        list(pool.map(Lease.release, leases))


# --- the bench target ----------------------------------------------------------------------------
def open_place(spec: str, cfg, log=print):
    """A targets.Target for `labgrid:NAME`: the place held (by the CLI, or acquired here and released at
    close) and its serial port open over RFC 2217."""
    from tinyexit.firmware_bridge.harness.targets import Target

    place = spec[len(PREFIX):]
    coordinator = getattr(cfg, "coordinator", None) or DEFAULT_COORDINATOR
    lease = held(coordinator, place)
    own = lease is None
    if own:
        lease = acquire(coordinator, place, getattr(cfg, "wait_s", None), log)
    try:
        state, url = _serial_ready(coordinator, place)
        link = _open_link(url, cfg.baud)
    except BaseException:
        if own:
            lease.release()
        raise
    kind = state.tags.get("kind", "")
    label = (f"simulated: QEMU mps2-an386 (Cortex-M4F) behind labgrid place {place} at {url}" if kind == "qemu"
             else f"{kind or 'device'} behind labgrid place {place} at {url}")
    target = Target(spec, "url", f"labgrid-{place}", url, label, link, place=place)
    # closed in reverse: the link (whichever a power cycle left), then the place
    target.closers += ([lease.release] if own else []) + [lambda: target.link.close()]
    if state.power():
        target.restarter = lambda: _power_cycle(target, coordinator, place, cfg.baud)
    return target


def _serial_ready(coordinator: str, place: str, timeout: float = 20.0) -> tuple[PlaceState, str]:
    """The exporter starts ser2net when the place is acquired and then publishes its port: wait for it."""
    t0 = time.monotonic()
    while True:
        state = show_place(coordinator, place)
        url = state.serial_url()
        if url:
            return state, url
        if not any(p.split("/")[2] == "NetworkSerialPort" for p, _ in state.resources):
            raise UserError(f"labgrid place {place} at {coordinator} has no serial port; add one with "
                            f"`labgrid-client -p {place} add-match EXPORTER/GROUP/NetworkSerialPort`")
        if time.monotonic() - t0 > timeout:
            raise UserError(f"labgrid place {place}: its exporter published no serial port in {timeout:.0f} s "
                            "(is the device plugged in and the exporter running?)")
        time.sleep(0.2)


def _open_link(url: str, baud: int, timeout: float = 10.0):
    """ser2net may still be starting right after the acquisition: retry the connection for a while."""
    from tinyexit.firmware_bridge.harness.rfc2217_link import Rfc2217Link
    from tinyexit.firmware_bridge.protocol.link import SerialLink

    t0 = time.monotonic()
    while True:
        try:
            return Rfc2217Link(url, baud) if url.startswith("rfc2217://") else SerialLink(url, baud)
        except UserError:
            if time.monotonic() - t0 > timeout:
                raise
            time.sleep(0.2)


def _power_cycle(target, coordinator: str, place: str, baud: int) -> None:
    """Recover a hung board through the place's power resource, then reconnect to its serial port."""
    target.link.close()
    labgrid_client(coordinator, "-p", place, "power", "cycle")
    _, url = _serial_ready(coordinator, place)
    target.link, target.url = _open_link(url, baud), url


def run_on_places(run_benchmark, run_dir, targets: list[str], cfg, log=print) -> dict:
    """`tinyexit bench` with labgrid targets: expand patterns, hold every place for the whole run (refused
    or waited for before anything is measured), release them on success, error, Ctrl-C and SIGTERM."""
    import signal
    from dataclasses import replace

    from tinyexit.firmware_bridge.harness.targets import bench_name

    places = expand_places(targets, cfg.coordinator)
    if cfg.name is None and places != targets:
        # named after the patterns, not the places they matched today: --resume finds the run again
        cfg = replace(cfg, name=bench_name(targets))
    main = threading.current_thread() is threading.main_thread()
    previous = {}
    if main:  # SIGTERM / SIGHUP (a CI job cancelled) unwind like Ctrl-C, so the finally below runs

        def interrupt(signum, frame):
            raise KeyboardInterrupt(f"signal {signum}")

        for sig in (signal.SIGTERM, signal.SIGHUP):
            previous[sig] = signal.signal(sig, interrupt)
    leases: list[Lease] = []
    try:
        leases = hold_places(places, cfg.coordinator, cfg.wait_s, log)
        return run_benchmark(run_dir, places, cfg, log=log)
    finally:
        with _HELD_LOCK:  # also one acquired the instant a signal arrived, before hold_places returned it
            stray = [lease for lease in _HELD.values() if lease not in leases]
        release_all(leases + stray)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
