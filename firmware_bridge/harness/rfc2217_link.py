"""A byte link over RFC 2217 (telnet COM-port control), as labgrid's exporters publish serial ports via ser2net.

pyserial's rfc2217 client renegotiates every port setting (and sleeps >= 50 ms) each time its read
timeout changes, and refuses a write timeout, so the ordinary SerialLink (which adapts its timeout on
every read) cannot drive it.  Here the port is configured once with a short fixed read timeout; the
client's reader thread queues incoming bytes, so a reply is returned as soon as it arrives and an idle
wait overshoots its deadline by at most one poll.

It also compares the serial bytes it carried with what crossed the TCP connection (the kernel's
TCP_INFO byte counters: telnet option negotiation, 0xFF escapes and modem-state notifications
included): `counts()` gives the RFC 2217 payload efficiency.
"""
from __future__ import annotations

import socket
import struct
import time

from tinyexit.errors import UserError
from tinyexit.firmware_bridge.protocol.link import LinkClosed

_POLL_S = 0.01


def _tcp_bytes(sock) -> tuple[int, int] | None:
    """(bytes sent and acknowledged, bytes received) of a TCP socket, from Linux's TCP_INFO; the whole
    connection's telnet stream, its option negotiation at open included."""
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    except (OSError, AttributeError):
        return None
    if len(info) < 136:  # kernels before 4.1 lack tcpi_bytes_acked / tcpi_bytes_received
        return None
    return struct.unpack_from("<QQ", info, 120)


class Rfc2217Link:
    def __init__(self, url: str, baud: int):
        import serial

        self.name = url
        # ser2net refuses flow-control changes on ports without them (ptys, many USB adapters); labgrid's own
        # serial driver ignores that answer the same way
        full = url if "?" in url else url + "?ign_set_control"
        try:
            self._ser = serial.serial_for_url(full, baudrate=baud, timeout=_POLL_S)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise UserError(f"cannot open port {url}: {exc}; check the place's exporter and ser2net") from None
        self._wire: tuple[int, int] | None = None
        self._serial_exception = serial.SerialException
        self.serial_tx = self.serial_rx = 0

    def write(self, data: bytes) -> None:
        try:
            self._ser.write(data)
        except (self._serial_exception, OSError) as exc:
            raise LinkClosed(f"{self.name}: write failed ({exc})") from None
        self.serial_tx += len(data)

    def read(self, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        try:
            while True:
                data = self._ser.read(max(1, self._ser.in_waiting))
                if data:
                    waiting = self._ser.in_waiting
                    data += self._ser.read(waiting) if waiting else b""
                    self.serial_rx += len(data)
                    return data
                if not self._ser.is_open:
                    raise LinkClosed(f"{self.name}: connection closed")
                if time.monotonic() >= deadline:
                    return b""
        except (self._serial_exception, OSError) as exc:
            raise LinkClosed(f"{self.name}: read failed ({exc})") from None

    def counts(self) -> dict:
        """Serial bytes carried vs bytes on the TCP connection, each direction and overall."""
        wire = self._wire or self._wire_now()
        out = {"serial_to_device": self.serial_tx, "serial_to_host": self.serial_rx,
               "wire_to_device": wire[0] if wire else None, "wire_to_host": wire[1] if wire else None}
        total = sum(wire) if wire else 0
        out["efficiency"] = round((self.serial_tx + self.serial_rx) / total, 6) if total else None
        return out

    def _wire_now(self) -> tuple[int, int] | None:
        sock = getattr(self._ser, "_socket", None)
        return _tcp_bytes(sock) if sock is not None else None

    def close(self) -> None:
        self._wire = self._wire_now() or self._wire  # the counters die with the socket
        try:
            self._ser.close()
        except Exception:  # closing a dead connection must not mask why it died
            pass
