"""Byte links to a device: any pyserial URL, or the host end of a pseudo-terminal pair.

Both ends use it: the agent serves its port through SerialLink, the harness
talks to devices through it (so it lives with the protocol, which both may import).
A link only moves bytes (`write`, `read(timeout)`, `close`); framing and retries
live in session.py.  `open_link` locks the port first, so a second harness on the
same port stops with a clear message instead of stealing half the bytes.
"""
from __future__ import annotations

import fcntl
import os
import re
import select
import tempfile
import tty
from pathlib import Path

from tinyexit.errors import UserError
from tinyexit.firmware_bridge.protocol import constants as pc

_POLL_S = 0.05  # pyserial read granularity; a byte that arrives returns at once


class LinkClosed(Exception):
    """The other end went away (pty closed, socket reset)."""


class PortLock:
    """An exclusive advisory lock named after a port URL, held for the life of a link.

    Device paths are additionally opened with pyserial's `exclusive=True`; URLs
    such as socket:// and rfc2217:// have no file to lock, hence the lock file.
    """

    def __init__(self, url: str, role: str = "host"):
        self.url = url
        self.path = lock_path(url, role)
        self._fd: int | None = None

    def acquire(self) -> "PortLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise UserError(f"port {self.url} is in use by another tinyexit process (pid {holder}, lock {self.path}); "
                            "wait for it to finish or stop it, then retry") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock; the file stays (removing it would race)
            self._fd = None


def lock_path(url: str, role: str = "host") -> Path:
    key = os.path.realpath(url) if url.startswith("/") else url
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", key).strip("_")
    return Path(tempfile.gettempdir()) / "tinyexit-locks" / f"{role}-{safe}.lock"


class SerialLink:
    """A pyserial URL: /dev/tty*, socket://host:port, rfc2217://host:port, loop://."""

    def __init__(self, url: str, baud: int = pc.DEFAULT_BAUD, role: str = "host"):
        import serial  # pyserial is a base dependency; imported here to keep module import cheap

        self.name = url
        self._lock = PortLock(url, role).acquire()
        try:
            kwargs = {"exclusive": True} if url.startswith("/") else {}
            self._ser = serial.serial_for_url(url, baudrate=baud, timeout=_POLL_S, write_timeout=10, **kwargs)
        except (serial.SerialException, OSError, ValueError) as exc:
            self._lock.release()
            raise UserError(f"cannot open port {url}: {_reason(exc)}; check the device is connected and the "
                            "path or URL (ls /dev/tty*; socket://HOST:PORT; rfc2217://HOST:PORT)") from None
        self._serial_exception = serial.SerialException
        self._timeout = _POLL_S

    def write(self, data: bytes) -> None:
        try:
            self._ser.write(data)
        except (self._serial_exception, OSError) as exc:
            raise LinkClosed(f"{self.name}: write failed ({_reason(exc)})") from None

    def read(self, timeout: float) -> bytes:
        """Bytes available within `timeout` seconds (possibly none)."""
        import time

        deadline = time.monotonic() + timeout
        try:
            while True:
                # Never wait past the caller's deadline: a 10 ms grace must not become a 50 ms poll.
                self._set_timeout(max(0.0, min(deadline - time.monotonic(), _POLL_S)))
                data = self._ser.read(max(1, self._ser.in_waiting))
                if data:
                    waiting = self._ser.in_waiting
                    return data + (self._ser.read(waiting) if waiting else b"")
                if time.monotonic() >= deadline:
                    return b""
        except (self._serial_exception, OSError) as exc:
            raise LinkClosed(f"{self.name}: read failed ({_reason(exc)})") from None

    def _set_timeout(self, seconds: float) -> None:
        seconds = round(seconds, 3)
        if seconds != self._timeout:  # pyserial reconfigures the port on every change
            self._ser.timeout = self._timeout = seconds

    def close(self) -> None:
        try:
            self._ser.close()
        finally:
            self._lock.release()


class PtyMasterLink:
    """The host end of a pseudo-terminal pair; the device opens the slave path as a pyserial URL."""

    def __init__(self, master_fd: int, name: str):
        self._fd = master_fd
        self.name = name

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                n = os.write(self._fd, view)
            except BlockingIOError:
                select.select([], [self._fd], [], 1.0)
                continue
            except OSError as exc:
                raise LinkClosed(f"{self.name}: write failed ({_reason(exc)})") from None
            view = view[n:]

    def read(self, timeout: float) -> bytes:
        ready, _, _ = select.select([self._fd], [], [], max(0.0, timeout))
        if not ready:
            return b""
        try:
            return os.read(self._fd, 65536)
        except BlockingIOError:
            return b""
        except OSError as exc:  # EIO once every slave descriptor is closed
            raise LinkClosed(f"{self.name}: the device end closed ({_reason(exc)})") from None

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class PtyPair:
    """A real pseudo-terminal pair in raw mode: `link` for the host, `slave_path` for the device."""

    def __init__(self):
        master, slave = os.openpty()
        # Raw before anyone writes: a cooked tty would eat 0x03, 0x11, 0x13 and turn CR into LF.
        tty.setraw(slave)
        self.slave_path = os.ttyname(slave)
        # The host keeps a slave descriptor open so the pty survives a device restart.
        self._slave_fd = slave
        self.link = PtyMasterLink(master, f"pty {self.slave_path}")

    def close(self) -> None:
        self.link.close()
        if self._slave_fd >= 0:
            os.close(self._slave_fd)
            self._slave_fd = -1


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
