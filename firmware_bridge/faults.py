"""A man in the middle for link tests: two pty pairs and a relay that can damage the bytes it carries.

    harness --(host_path, a pyserial URL)--> [relay + FaultInjector] --(device_path)--> agent / firmware

The relay is real (file descriptors, select, threads); the damage is seeded and
counted: flipped bits, dropped and duplicated bytes, writes split in two, and
named frames corrupted on purpose (`corrupt_frames`, counted per direction from
0 by frame delimiters) for deterministic tests.
"""
from __future__ import annotations

import os
import random
import select
import threading
from collections import Counter
from dataclasses import dataclass

from tinyexit.errors import UserError
from tinyexit.firmware_bridge.link import PtyPair


@dataclass(frozen=True)
class FaultConfig:
    corrupt: float = 0.0            # probability that a byte gets one bit flipped
    drop: float = 0.0               # probability that a byte is dropped
    duplicate: float = 0.0          # probability that a byte is sent twice
    split: float = 0.0              # probability that a chunk is written in two parts
    corrupt_frames: tuple[int, ...] = ()  # non-empty frames (0-based) whose third byte gets a bit flipped
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "corrupt_frames", tuple(int(v) for v in self.corrupt_frames))
        for name in ("corrupt", "drop", "duplicate", "split"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise UserError(f"fault probability {name}={getattr(self, name)} must be in [0, 1]")

    def to_dict(self) -> dict:
        return {**self.__dict__, "corrupt_frames": list(self.corrupt_frames)}

    @classmethod
    def from_dict(cls, d: dict) -> "FaultConfig":
        return cls(**{**d, "corrupt_frames": tuple(d.get("corrupt_frames", ()))})


class FaultInjector:
    """Damages one direction of a byte stream; `counts` says what it did."""

    def __init__(self, cfg: FaultConfig):
        self.cfg = cfg
        self._rng = random.Random(cfg.seed)
        self._frame = 0        # non-empty frames seen so far (lone delimiters do not count)
        self._in_frame = 0     # bytes of the current frame
        self.counts: Counter = Counter()

    def apply(self, data: bytes) -> list[bytes]:
        """The chunks to write instead of `data` (more than one when a write is split)."""
        out = bytearray()
        for byte in data:
            out += self._one(byte)
        self.counts["bytes_in"] += len(data)
        self.counts["bytes_out"] += len(out)
        if len(out) > 1 and self.cfg.split and self._rng.random() < self.cfg.split:
            cut = self._rng.randrange(1, len(out))
            self.counts["splits"] += 1
            return [bytes(out[:cut]), bytes(out[cut:])]
        return [bytes(out)] if out else []

    def _one(self, byte: int) -> bytes:
        if byte == 0:
            self._frame += 1 if self._in_frame else 0
            self._in_frame = 0
        else:
            self._in_frame += 1
            if self._in_frame == 3 and self._frame in self.cfg.corrupt_frames:  # inside the frame, never a delimiter
                self.counts["frames_corrupted"] += 1
                byte ^= 0x10
        rng, cfg = self._rng, self.cfg
        if cfg.drop and rng.random() < cfg.drop:
            self.counts["dropped"] += 1
            return b""
        if cfg.corrupt and rng.random() < cfg.corrupt:
            self.counts["corrupted"] += 1
            byte ^= 1 << rng.randrange(8)
        if cfg.duplicate and rng.random() < cfg.duplicate:
            self.counts["duplicated"] += 1
            return bytes([byte, byte])
        return bytes([byte])


class PtyBridge:
    """Relay between a host-side pty (`host_path`) and a device-side pty (`device_path`)."""

    def __init__(self, to_device: FaultConfig = FaultConfig(), to_host: FaultConfig = FaultConfig()):
        self._host, self._device = PtyPair(), PtyPair()
        self.host_path, self.device_path = self._host.slave_path, self._device.slave_path
        self.to_device, self.to_host = FaultInjector(to_device), FaultInjector(to_host)
        self._stop_r, self._stop_w = os.pipe()
        self._thread = threading.Thread(target=self._relay, name="pty-bridge", daemon=True)
        self._thread.start()

    def _relay(self) -> None:
        a, b = self._host.link, self._device.link
        routes = {a._fd: (b, self.to_device), b._fd: (a, self.to_host)}
        while True:
            ready, _, _ = select.select([*routes, self._stop_r], [], [])
            if self._stop_r in ready:
                return
            for fd in ready:
                try:
                    data = os.read(fd, 4096)
                except OSError:  # an end with no reader yet or gone: wait for it
                    data = b""
                if not data:
                    continue
                dest, injector = routes[fd]
                for chunk in injector.apply(data):
                    try:
                        dest.write(chunk)
                    except Exception:
                        injector.counts["lost_writes"] += 1

    def counts(self) -> dict:
        return {"to_device": dict(self.to_device.counts), "to_host": dict(self.to_host.counts)}

    def close(self) -> None:
        os.write(self._stop_w, b"x")
        self._thread.join(5)
        for fd in (self._stop_r, self._stop_w):
            os.close(fd)
        self._host.close()
        self._device.close()
