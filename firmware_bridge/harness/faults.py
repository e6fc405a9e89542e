"""A man in the middle for link tests: a relay that damages the bytes it carries, seeded and counted.

    harness --(host_path, a pyserial URL)--> [relay + FaultInjector] --(device_path)--> agent / firmware

Two relays share one `FaultInjector` per direction: `PtyBridge` (two pty pairs,
for the host agent or any device on a tty) and `fault_socket.SocketRelay`
(loopback TCP, for QEMU's socket serial port).  The relay is real (file
descriptors, select, threads); the damage is seeded and counted: flipped bits,
dropped and duplicated bytes, writes split in two, delayed writes, stalls of
the whole direction, a link that goes dead on command, and named frames
corrupted on purpose (`corrupt_frames`, counted per direction from 0 by frame
delimiters) for deterministic tests.

A relay can also hold a direction on command (`hold(after_frames)`): it passes
that many frames, then nothing at all moves until `release()`.  A test that
needs a harness provably mid-run (a second harness on a busy port) uses it
instead of hoping the machine is slow enough.
"""
from __future__ import annotations

import os
import random
import select
import threading
import time
from collections import Counter
from dataclasses import dataclass, replace

from tinyexit.errors import UserError
from tinyexit.firmware_bridge.harness.link import PtyPair

_PROBABILITIES = ("corrupt", "drop", "duplicate", "insert", "split", "delay", "stall")
SPLIT_GAP_S = 0.001  # between the two halves of a split write, so the reader sees two reads
TO_HOST_SEED_OFFSET = 1_000_003  # the reply direction draws from its own stream


@dataclass(frozen=True)
class FaultConfig:
    corrupt: float = 0.0            # probability that a byte gets one bit flipped
    drop: float = 0.0               # probability that a byte is dropped
    duplicate: float = 0.0          # probability that a byte is sent twice
    insert: float = 0.0             # probability that a random noise byte (any value, 0x00 too) precedes a byte
    split: float = 0.0              # probability that a chunk is written in two parts
    delay: float = 0.0              # probability that a chunk waits delay_s before it is written
    stall: float = 0.0              # probability that the direction stops for stall_s before a chunk
    delay_s: float = 0.002
    stall_s: float = 0.25
    corrupt_frames: tuple[int, ...] = ()  # non-empty frames (0-based) whose third byte gets a bit flipped
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "corrupt_frames", tuple(int(v) for v in self.corrupt_frames))
        for name in _PROBABILITIES:
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise UserError(f"fault probability {name}={getattr(self, name)} must be in [0, 1]")
        for name in ("delay_s", "stall_s"):
            if not 0.0 <= getattr(self, name) <= 10.0:
                raise UserError(f"fault {name}={getattr(self, name)} must be in [0, 10] seconds")

    @property
    def active(self) -> bool:
        return any(getattr(self, name) for name in _PROBABILITIES) or bool(self.corrupt_frames)

    def directions(self) -> tuple["FaultConfig", "FaultConfig"]:
        """(to_device, to_host): the same rates, independent seeded streams; named frames only to the device."""
        return self, replace(self, seed=self.seed + TO_HOST_SEED_OFFSET, corrupt_frames=())

    def to_dict(self) -> dict:
        return {**self.__dict__, "corrupt_frames": list(self.corrupt_frames)}

    @classmethod
    def from_dict(cls, d: dict) -> "FaultConfig":
        return cls(**{**d, "corrupt_frames": tuple(d.get("corrupt_frames", ()))})


class FaultInjector:
    """Damages one direction of a byte stream; `counts` says what it did.  Thread-safe."""

    def __init__(self, cfg: FaultConfig):
        self.cfg = cfg
        self._rng = random.Random(cfg.seed)
        self._frame = 0        # non-empty frames seen so far (lone delimiters do not count)
        self._in_frame = 0     # bytes of the current frame
        self._lock = threading.Lock()
        self.dead = False      # a dead link swallows every byte (set_dead on the relay)
        self.counts: Counter = Counter()
        self._hold_at: int | None = None   # frames to pass before holding (None: never hold)
        self._gate_frames = 0              # complete non-empty frames passed since hold() was armed
        self._gate_in_frame = False
        self.held = threading.Event()      # set once the direction holds
        self._released = threading.Event()
        self._released.set()

    # --- hold / release: a gate that stops the direction after a given frame ---------------------
    def hold(self, after_frames: int) -> None:
        """Pass `after_frames` more complete frames, then hold everything until `release()`."""
        if after_frames < 0:
            raise ValueError(f"hold after {after_frames} frames: must be >= 0")
        with self._lock:
            self._hold_at, self._gate_frames, self._gate_in_frame = after_frames, 0, False
            self.held.clear()
            self._released.clear()
            if after_frames == 0:
                self.held.set()

    def release(self) -> None:
        """Let the held bytes (and everything after them) through."""
        with self._lock:
            self._hold_at = None
            self._released.set()

    def cut(self, data: bytes) -> tuple[bytes, bytes]:
        """(bytes to pass now, bytes that must wait for release()): the cut falls right after the
        delimiter that ends the frame the hold waits for."""
        with self._lock:
            if self._released.is_set():
                return data, b""
            if self.held.is_set():
                return b"", data
            for i, byte in enumerate(data):
                if byte:
                    self._gate_in_frame = True
                elif self._gate_in_frame:
                    self._gate_in_frame = False
                    self._gate_frames += 1
                    if self._gate_frames >= self._hold_at:
                        self.held.set()
                        return data[:i + 1], data[i + 1:]
            return data, b""

    def wait_released(self) -> None:
        self._released.wait()

    def apply(self, data: bytes) -> list[bytes]:
        """The chunks to write instead of `data` (more than one when a write is split)."""
        with self._lock:
            self.counts["bytes_in"] += len(data)
            if self.dead:
                self.counts["dead_dropped"] += len(data)
                return []
            out = bytearray()
            for byte in data:
                out += self._one(byte)
            self.counts["bytes_out"] += len(out)
            if len(out) > 1 and self.cfg.split and self._rng.random() < self.cfg.split:
                cut = self._rng.randrange(1, len(out))
                self.counts["splits"] += 1
                return [bytes(out[:cut]), bytes(out[cut:])]
            return [bytes(out)] if out else []

    def pause_s(self) -> float:
        """Seconds to hold the next chunk: a stall (the whole direction stops) or a short delay."""
        with self._lock:
            cfg, rng = self.cfg, self._rng
            if cfg.stall and rng.random() < cfg.stall:
                self.counts["stalls"] += 1
                return cfg.stall_s
            if cfg.delay and rng.random() < cfg.delay:
                self.counts["delayed"] += 1
                return cfg.delay_s
            return 0.0

    def _one(self, byte: int) -> bytes:
        if byte == 0:
            self._frame += 1 if self._in_frame else 0
            self._in_frame = 0
        else:
            self._in_frame += 1
            if self._in_frame == 3 and self._frame in self.cfg.corrupt_frames:  # inside the frame, never a delimiter
                self.counts["frames_corrupted"] += 1
                byte ^= 0x10
        # Every byte is damaged independently of every other (a noisy UART: EMI, a long cable, an isolator):
        # each fault draws its own number from this direction's stream, in a fixed order, so a seed
        # reproduces the damage exactly and the counters add up: out = in - dropped + duplicated + inserted.
        rng, cfg = self._rng, self.cfg
        noise = b""
        if cfg.insert and rng.random() < cfg.insert:
            self.counts["inserted"] += 1
            noise = bytes([rng.randrange(256)])
        if cfg.drop and rng.random() < cfg.drop:
            self.counts["dropped"] += 1
            return noise
        if cfg.corrupt and rng.random() < cfg.corrupt:
            self.counts["corrupted"] += 1
            byte ^= 1 << rng.randrange(8)
        if cfg.duplicate and rng.random() < cfg.duplicate:
            self.counts["duplicated"] += 1
            return noise + bytes([byte, byte])
        return noise + bytes([byte])


def forward(injector: FaultInjector, data: bytes, write) -> None:
    """Pass `data` through `injector` to `write`, honouring its hold, pauses and split writes.

    Bytes past a hold block the relay thread until release: the whole link stalls, as a device
    that stopped answering would, and nothing is lost or reordered."""
    now, later = injector.cut(data)
    if now:
        _pass(injector, now, write)
    if later:
        injector.wait_released()
        _pass(injector, later, write)


def _pass(injector: FaultInjector, data: bytes, write) -> None:
    wait = injector.pause_s()
    if wait:
        time.sleep(wait)
    for i, chunk in enumerate(injector.apply(data)):
        if i:
            time.sleep(SPLIT_GAP_S)
        try:
            write(chunk)
        except Exception:  # the far end is gone (a device restarting); the bytes are lost like on a wire
            injector.counts["lost_writes"] += 1


def total_counts(directions: dict) -> dict:
    """Sum of the per-direction counters: what a report calls 'faults injected'."""
    total: Counter = Counter()
    for counts in directions.values():
        total.update(counts)
    keys = ("corrupted", "dropped", "duplicated", "inserted", "splits", "delayed", "stalls", "frames_corrupted",
            "dead_dropped")
    return {**{k: total[k] for k in keys}, "injected": sum(total[k] for k in keys if k != "dead_dropped"),
            "bytes_in": total["bytes_in"]}


class _Relay:
    """What both relays (pty bridge, TCP relay) share: a fault injector per direction and a
    relay thread stopped through a pipe."""

    def set_dead(self, dead: bool = True) -> None:
        """Make the link swallow every byte in both directions (a pulled cable), or revive it."""
        self.to_device.dead = self.to_host.dead = dead

    def counts(self) -> dict:
        return {"to_device": dict(self.to_device.counts), "to_host": dict(self.to_host.counts)}

    def hold(self, after_frames: int, direction: str = "to_device") -> None:
        """Pass `after_frames` more frames in `direction` ("to_device" or "to_host"), then stall the
        link until `release()`.  `wait_held` says when the hold has begun."""
        self._injector(direction).hold(after_frames)

    def wait_held(self, timeout: float, direction: str = "to_device") -> bool:
        return self._injector(direction).held.wait(timeout)

    def release(self) -> None:
        self.to_device.release()
        self.to_host.release()

    def _injector(self, direction: str) -> FaultInjector:
        if direction not in ("to_device", "to_host"):
            raise ValueError(f"direction {direction!r}: use 'to_device' or 'to_host'")
        return getattr(self, direction)

    def _stop_thread(self) -> None:
        self.release()  # a relay thread blocked on a hold must be able to see the stop
        os.write(self._stop_w, b"x")
        self._thread.join(5)
        for fd in (self._stop_r, self._stop_w):
            os.close(fd)


class PtyBridge(_Relay):
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
                    time.sleep(0.01)
                if data:
                    dest, injector = routes[fd]
                    forward(injector, data, dest.write)

    def close(self) -> None:
        self._stop_thread()
        self._host.close()
        self._device.close()
