"""The fault-injecting links themselves: seeded damage, exact counters, pty bridge and loopback TCP relay."""
import socket
import threading
import time

import pytest

from tinyexit.errors import UserError
from tinyexit.firmware_bridge.harness.fault_socket import SocketRelay
from tinyexit.firmware_bridge.harness.faults import FaultConfig, FaultInjector, PtyBridge, total_counts
from tinyexit.firmware_bridge.protocol.framing import Frame, FrameDecoder, ProtocolError, encode_frame
from tinyexit.firmware_bridge.harness.link import SerialLink

DATA = bytes((i * 37 + 11) % 255 + 1 for i in range(200_000))  # no 0x00: no frame boundaries


def _damage(cfg: FaultConfig) -> tuple[bytes, dict]:
    inj = FaultInjector(cfg)
    out = b"".join(b"".join(inj.apply(DATA[i:i + 4096])) for i in range(0, len(DATA), 4096))
    return out, dict(inj.counts)


def test_damage_is_seeded_counted_and_at_the_asked_rates():
    cfg = FaultConfig(corrupt=0.01, drop=0.005, duplicate=0.002, seed=5)
    out, counts = _damage(cfg)
    assert (out, counts) == _damage(cfg)                     # same seed, same damage
    assert _damage(FaultConfig(corrupt=0.01, drop=0.005, duplicate=0.002, seed=6))[0] != out
    n = len(DATA)
    for name, p in (("corrupted", 0.01 * 0.995), ("dropped", 0.005), ("duplicated", 0.002 * 0.995)):
        sigma = (n * p * (1 - p)) ** 0.5
        assert abs(counts[name] - n * p) < 5 * sigma, (name, counts[name])
    assert counts["bytes_in"] == n and len(out) == counts["bytes_out"] == n - counts["dropped"] + counts["duplicated"]
    to_device, to_host = cfg.directions()
    assert to_host.seed != to_device.seed and to_host.corrupt == to_device.corrupt


def _is_subsequence(short: bytes, long: bytes) -> bool:
    it = iter(long)
    return all(b in it for b in short)


def test_each_fault_kind_is_exactly_what_its_counter_says():
    """Per-byte faults, one kind at a time, checked against the bytes themselves (not against the rng)."""
    n = 20_000
    data = DATA[:n]
    flips, counts = _damage_bytes(FaultConfig(corrupt=0.03, seed=3), data)
    diff = [a ^ b for a, b in zip(data, flips)]
    assert len(flips) == n and sum(d != 0 for d in diff) == counts["corrupted"] > 0
    assert all(d & (d - 1) == 0 for d in diff)                  # exactly one bit per corrupted byte
    dropped, counts = _damage_bytes(FaultConfig(drop=0.01, seed=3), data)
    assert len(dropped) == n - counts["dropped"] and counts["dropped"] > 0 and _is_subsequence(dropped, data)
    doubled, counts = _damage_bytes(FaultConfig(duplicate=0.01, seed=3), data)
    assert len(doubled) == n + counts["duplicated"] and counts["duplicated"] > 0 and _is_subsequence(data, doubled)
    noisy, counts = _damage_bytes(FaultConfig(insert=0.01, seed=3), data)
    assert len(noisy) == n + counts["inserted"] and counts["inserted"] > 0 and _is_subsequence(data, noisy)
    total = total_counts({"to_device": counts})
    assert total["inserted"] == total["injected"] == counts["inserted"]


def test_damage_does_not_depend_on_how_the_bytes_are_chunked():
    """Independent per-byte faults: writing byte by byte or in 4 KiB blocks gives the same damage."""
    cfg = FaultConfig(corrupt=0.03, drop=0.01, duplicate=0.005, insert=0.005, seed=9)
    data = DATA[:30_000]
    whole, counts = _damage_bytes(cfg, data, step=4096)
    single, counts1 = _damage_bytes(cfg, data, step=1)
    assert whole == single and counts == counts1
    assert len(whole) == len(data) - counts["dropped"] + counts["duplicated"] + counts["inserted"]


def _damage_bytes(cfg: FaultConfig, data: bytes, step: int = 4096) -> tuple[bytes, dict]:
    inj = FaultInjector(cfg)
    out = b"".join(b"".join(inj.apply(data[i:i + step])) for i in range(0, len(data), step))
    return out, dict(inj.counts)


def test_named_frames_are_corrupted_and_nothing_else():
    frames = [Frame(0x03, seq, bytes(range(1, 30))) for seq in range(4)]
    inj = FaultInjector(FaultConfig(corrupt_frames=(1, 3)))
    wire = b"".join(inj.apply(b"".join(encode_frame(f, lead=True) for f in frames)))
    events = FrameDecoder().feed(wire)
    assert [e.seq for e in events if isinstance(e, Frame)] == [0, 2]
    assert [e.name for e in events if isinstance(e, ProtocolError)] == ["FRAME_CRC", "FRAME_CRC"]
    assert inj.counts["frames_corrupted"] == 2


def _read_for(link, seconds: float) -> list[bytes]:
    reads, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        chunk = link.read(0.05)
        if chunk:
            reads.append(chunk)
    return reads


def test_pty_bridge_splits_stalls_and_goes_dead_on_command():
    bridge = PtyBridge(to_device=FaultConfig(split=1.0, stall=1.0, stall_s=0.3, seed=2))
    host, dev = SerialLink(bridge.host_path), SerialLink(bridge.device_path, role="device")
    try:
        t0 = time.monotonic()
        host.write(bytes(range(1, 101)))
        reads = _read_for(dev, 0.8)
        # split, nothing lost (how many reads it takes depends on the reader's timing, so the split is
        # checked on the bridge's counter, not on the number of reads)
        assert b"".join(reads) == bytes(range(1, 101))
        assert time.monotonic() - t0 >= 0.3                                  # held for the stall
        counts = bridge.counts()["to_device"]
        assert counts["splits"] >= 1 and counts["stalls"] >= 1 and counts["bytes_out"] == 100
        bridge.set_dead()
        dev.write(b"\x01\x02\x03")
        assert _read_for(host, 0.3) == [] and bridge.counts()["to_host"]["dead_dropped"] == 3
        bridge.set_dead(False)
        dev.write(b"\x04")
        assert b"".join(_read_for(host, 0.3)) == b"\x04"
    finally:
        host.close()
        dev.close()
        bridge.close()
    total = total_counts(bridge.counts())
    assert total["splits"] == counts["splits"] and total["injected"] >= 2


class _Server:
    """A loopback TCP device stand-in: answers every chunk with tag + chunk."""

    def __init__(self, tag: bytes):
        self.tag = tag
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.conns = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    def _echo(self, conn):
        while True:
            try:
                data = conn.recv(4096)
            except OSError:
                return
            if not data:
                return
            conn.sendall(self.tag + data)

    def close(self):
        self.sock.close()
        for c in self.conns:
            c.close()


def test_socket_relay_carries_damages_and_retargets_a_restarted_device():
    first, second = _Server(b"A"), _Server(b"B")
    relay = SocketRelay(first.port, to_host=FaultConfig(duplicate=1.0, seed=1))
    link = SerialLink(relay.url)
    try:
        assert relay.url.startswith("socket://127.0.0.1:")
        link.write(b"xy")
        assert b"".join(_read_for(link, 0.4)) == b"AAxxyy"   # every byte back doubled
        first.close()                                        # the device resets: its end closes
        time.sleep(0.2)
        relay.retarget(second.port)                          # ... and comes back on another port
        deadline = time.monotonic() + 3
        while relay.connections < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        link.write(b"z")
        assert b"".join(_read_for(link, 0.4)) == b"BBzz"      # the harness kept its connection
        relay.set_dead()
        link.write(b"q")
        assert _read_for(link, 0.3) == [] and relay.counts()["to_device"]["dead_dropped"] == 1
        assert relay.counts()["to_host"]["duplicated"] == 5 and relay.connections == 2
    finally:
        link.close()
        relay.close()
        second.close()


def test_socket_relay_is_loopback_only():
    with pytest.raises(UserError, match="only loopback"):
        SocketRelay(9, upstream_host="192.0.2.1")
    relay = SocketRelay(9)
    try:
        assert relay._listener.getsockname()[0] == "127.0.0.1"
    finally:
        relay.close()
