"""A fault-injecting TCP relay on loopback, for devices reached as socket://127.0.0.1:PORT (QEMU).

    harness --socket://127.0.0.1:relay.port--> [SocketRelay + FaultInjector] --> 127.0.0.1:upstream (QEMU)

The relay accepts one harness connection at a time and opens its own
connection upstream.  When the device goes away (QEMU killed: a board reset
behind a USB-serial adapter that stays plugged in) the harness connection
stays open; `retarget(port)` points the relay at the restarted device and the
bytes flow again.  Loopback only: nothing here listens on or connects to
another host.
"""
from __future__ import annotations

import os
import select
import socket
import threading
import time

from tinyexit.errors import UserError
from tinyexit.firmware_bridge.harness.faults import FaultConfig, FaultInjector, _Relay, forward

LOOPBACK = "127.0.0.1"
_RECONNECT_S = 0.05


class SocketRelay(_Relay):
    def __init__(self, upstream_port: int, to_device: FaultConfig = FaultConfig(),
                 to_host: FaultConfig = FaultConfig(), upstream_host: str = LOOPBACK):
        if upstream_host not in (LOOPBACK, "localhost"):
            raise UserError(f"fault relay upstream {upstream_host}: only loopback ({LOOPBACK}) is allowed")
        self._upstream = (LOOPBACK, int(upstream_port))
        self.to_device, self.to_host = FaultInjector(to_device), FaultInjector(to_host)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((LOOPBACK, 0))
        self._listener.listen(1)
        self.port = self._listener.getsockname()[1]
        self.url = f"socket://{LOOPBACK}:{self.port}"
        self._client: socket.socket | None = None
        self._device: socket.socket | None = None
        self._lock = threading.Lock()
        self.connections = 0            # upstream connections made (1 + device restarts)
        self._stop_r, self._stop_w = os.pipe()
        self._thread = threading.Thread(target=self._relay, name="socket-relay", daemon=True)
        self._thread.start()

    # --- control ------------------------------------------------------------------
    def retarget(self, upstream_port: int) -> None:
        """Forward to a new device port from now on (the old device connection is dropped)."""
        with self._lock:
            self._upstream = (LOOPBACK, int(upstream_port))
            self._drop_device()

    def close(self) -> None:
        self._stop_thread()
        with self._lock:
            self._drop_device()
            if self._client is not None:
                self._client.close()
                self._client = None
        self._listener.close()

    # --- the relay thread ---------------------------------------------------------------
    def _relay(self) -> None:
        while True:
            with self._lock:
                if self._client is not None and self._device is None:
                    self._connect_device()
                socks = [s for s in (self._listener, self._client, self._device) if s is not None]
            ready, _, _ = select.select([*socks, self._stop_r], [], [], _RECONNECT_S)
            if self._stop_r in ready:
                return
            for sock in ready:
                self._service(sock)

    def _service(self, sock: socket.socket) -> None:
        if sock is self._listener:
            client, _ = self._listener.accept()
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                if self._client is not None:  # one harness at a time, like a serial port
                    client.close()
                    return
                self._client = client
            return
        try:
            data = sock.recv(4096)
        except OSError:
            data = b""
        with self._lock:
            client, device = self._client, self._device
        if sock is client:
            if not data:  # the harness left: drop the device connection too, so the device is free
                with self._lock:
                    self._client.close()
                    self._client = None
                    self._drop_device()
                return
            if device is not None:
                forward(self.to_device, data, device.sendall)
            else:
                self.to_device.counts["lost_writes"] += 1
        elif sock is device:
            if not data:  # the device went away (reset); the harness keeps its connection
                with self._lock:
                    self._drop_device()
                return
            if client is not None:
                forward(self.to_host, data, client.sendall)

    def _connect_device(self) -> None:
        try:
            dev = socket.create_connection(self._upstream, timeout=0.5)
        except OSError:
            time.sleep(_RECONNECT_S)
            return
        dev.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        dev.settimeout(None)
        self._device = dev
        self.connections += 1

    def _drop_device(self) -> None:
        if self._device is not None:
            try:
                self._device.close()
            except OSError:
                pass
            self._device = None
