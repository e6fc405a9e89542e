"""The host end of the protocol: numbered requests, retries, resynchronization, link statistics.

One request is in flight at a time.  A request is retransmitted (with a leading
0x00 that flushes whatever the device half-received) when its reply is late,
when a corrupted frame arrives instead, or when the device NACKs a frame it
could not decode.  The device answers a retransmitted request from its cache
of the last reply, so nothing runs twice; replies to older sequence numbers are
dropped.  An unsolicited INFO means the device rebooted: `DeviceReset`.
"""
from __future__ import annotations

import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Callable

from tinyexit.errors import UserError
from tinyexit.firmware_bridge.protocol import messages as m
from tinyexit.firmware_bridge.protocol import constants as pc
from tinyexit.firmware_bridge.protocol.framing import Frame, FrameDecoder, ProtocolError, encode_frame
from tinyexit.firmware_bridge.protocol.link import LinkClosed

MIN_LOAD_CHUNK = 64  # bytes; LOAD_INPUT chunks are never halved below this


class DeviceError(UserError):
    """The device refused a request with an ERROR reply."""

    def __init__(self, port: str, request: str, error: m.Error):
        self.error = error
        super().__init__(f"device at {port} refused {request}: {error.describe()}")


class NoReply(UserError):
    """A request went unanswered through every retry."""


class DeviceGone(UserError):
    """The device end went away: its process exited, or the link closed under us."""


class DeviceReset(Exception):
    """The device announced a new session (it rebooted or was restarted)."""

    def __init__(self, info: m.Info):
        self.info = info
        super().__init__(f"device restarted (session {info.session:08x})")


@dataclass(frozen=True)
class SessionConfig:
    reply_timeout_s: float = pc.REPLY_TIMEOUT_S
    max_retries: int = pc.MAX_RETRIES
    boot_timeout_s: float = pc.BOOT_TIMEOUT_S
    grace_s: float = 0.05       # after a damaged frame or a NACK: wait this long for the real reply, then resend

    def __post_init__(self):
        if not (self.reply_timeout_s > 0 and self.boot_timeout_s > 0):
            raise UserError(f"--timeout {self.reply_timeout_s} (boot {self.boot_timeout_s}): timeouts must be > 0 s")
        if not 0 <= self.max_retries <= 1000:
            raise UserError(f"--retries {self.max_retries}: use a value in [0, 1000]")
        if not 0 < self.grace_s <= 10:
            raise UserError(f"grace_s {self.grace_s}: use a value in (0, 10] seconds")

    def to_dict(self) -> dict:
        return {"reply_timeout_s": self.reply_timeout_s, "max_retries": self.max_retries,
                "boot_timeout_s": self.boot_timeout_s, "grace_s": self.grace_s}

    @classmethod
    def from_dict(cls, d: dict) -> "SessionConfig":
        return cls(**d)


@dataclass
class LinkStats:
    """Counters of one link; `to_dict` is what summary.json records under "link"."""

    frames_sent: int = 0
    bytes_sent: int = 0
    payload_bytes_sent: int = 0
    input_bytes: int = 0             # tensor bytes carried by LOAD_INPUT (first transmissions)
    input_wire_bytes: int = 0        # wire bytes of LOAD_INPUT frames, retransmissions included
    retries: int = 0
    timeouts: int = 0
    nacks: int = 0
    stale_replies: int = 0
    resets: int = 0                  # device restarts noticed (boot INFO, lost session state, device gone)
    restarts: int = 0                # of those, devices the harness restarted itself (agent, QEMU)
    load_shrinks: int = 0            # LOAD_INPUT chunks halved after failing on a noisy line
    payload_bytes_received: int = 0
    decoder: Counter = field(default_factory=Counter)

    def to_dict(self) -> dict:
        d = self.decoder
        frame_errors = {name: d[name] for name in pc.ERROR_NAMES.values() if name.startswith("FRAME_") and d[name]}
        received = d["bytes"]
        wire = self.bytes_sent + received
        payload = self.payload_bytes_sent + self.payload_bytes_received
        return {"frames": self.frames_sent + d["frames"], "frames_sent": self.frames_sent,
                "frames_received": d["frames"], "bytes_sent": self.bytes_sent, "bytes_received": received,
                "bytes_on_wire": wire, "payload_bytes": payload,
                "payload_efficiency": _ratio(self.input_bytes, self.input_wire_bytes),
                "payload_efficiency_all_frames": _ratio(payload, wire),
                "input_bytes": self.input_bytes, "input_wire_bytes": self.input_wire_bytes,
                "retries": self.retries, "crc_errors": d["FRAME_CRC"], "corrupt_frames": sum(frame_errors.values()),
                "frame_errors": frame_errors, "resyncs": d["resyncs"], "discarded_bytes": d["discarded_bytes"],
                "timeouts": self.timeouts, "nacks": self.nacks, "stale_replies": self.stale_replies,
                "resets": self.resets, "restarts": self.restarts, "load_shrinks": self.load_shrinks}

    def merge(self, other: "LinkStats") -> None:
        for name in ("frames_sent", "bytes_sent", "payload_bytes_sent", "input_bytes", "input_wire_bytes", "retries",
                     "timeouts", "nacks", "stale_replies", "resets", "restarts", "load_shrinks",
                     "payload_bytes_received"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.decoder.update(other.decoder)


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 6) if b else None


class DeviceSession:
    """Request/response over one link.  `alive()` may return a reason the device is gone (process exited)."""

    def __init__(self, link, cfg: SessionConfig = SessionConfig(), alive: Callable[[], str | None] | None = None,
                 stats: LinkStats | None = None):
        self.link = link
        self.cfg = cfg
        self.alive = alive or (lambda: None)
        self.stats = stats or LinkStats()
        self._decoder = FrameDecoder(pc.MAX_PAYLOAD)
        self.stats.decoder = self._decoder.counts
        self._events: deque = deque()
        self._seq = 0
        self._load_limit: int | None = None   # LOAD_INPUT chunk cap after failures on a noisy line
        self._load_ok = 0
        self.grace_s = cfg.grace_s             # wait for the real reply after seeing damage, then resend
        self.info: m.Info | None = None

    # --- the three requests a benchmark needs ---------------------------------------
    def handshake(self, timeout_s: float | None = None) -> m.Info:
        """HELLO until the device answers (it may still be booting); HELLO is never answered from a cache."""
        budget = timeout_s or self.cfg.boot_timeout_s
        deadline = time.monotonic() + budget
        seq = self._next_seq()
        tries = 0
        while True:
            self._send(Frame(pc.MSG_HELLO, seq), lead=True)
            tries += 1
            wait = min(self.cfg.reply_timeout_s, max(0.05, deadline - time.monotonic()))
            frame = self._await(seq, pc.MSG_HELLO, wait, boot_ok=True)
            if frame is not None:
                self.info = m.Info.unpack(frame.payload)
                return self.info
            if time.monotonic() >= deadline:
                self._dead("HELLO", tries, budget)

    def load(self, offset: int, data: bytes, chunk: int) -> int:
        """Write `data` into the device's input buffer at `offset`; returns the device's valid byte count.

        On a noisy line a long frame rarely arrives whole: a chunk that fails a few
        tries is halved (down to MIN_LOAD_CHUNK), and the size creeps back up after
        a run of successes.
        """
        valid, pos = 0, 0
        while pos < len(data):
            size = min(chunk, self._load_limit or chunk)
            part = data[pos:pos + size]
            wire_before = self.stats.bytes_sent
            small = size <= MIN_LOAD_CHUNK
            try:
                reply = self.request(pc.MSG_LOAD_INPUT, m.LoadInput(offset + pos, part).pack(),
                                     tries=None if small else min(3, self.cfg.max_retries + 1))
            except NoReply:
                if small:
                    raise
                self._load_limit, self._load_ok = max(MIN_LOAD_CHUNK, size // 2), 0
                self.stats.load_shrinks += 1
                continue
            finally:
                self.stats.input_wire_bytes += self.stats.bytes_sent - wire_before
            self.stats.input_bytes += len(part)
            valid = m.Ack.unpack(reply.payload).valid_bytes
            pos += len(part)
            self._load_ok += 1
            if self._load_limit and self._load_ok >= 8:
                self._load_limit, self._load_ok = (None if self._load_limit * 2 >= chunk else self._load_limit * 2), 0
        return valid

    def run(self, run: m.Run, expected_s: float = 0.0) -> m.Result:
        reply = self.request(pc.MSG_RUN, run.pack(), extra_timeout_s=2 * expected_s * run.repeat)
        return m.Result.unpack(reply.payload)

    def reset(self) -> m.Info:
        reply = self.request(pc.MSG_RESET, b"")
        self.info = m.Info.unpack(reply.payload)
        return self.info

    # --- the machinery ---------------------------------------------------------------
    def request(self, msg_type: int, payload: bytes, extra_timeout_s: float = 0.0, tries: int | None = None) -> Frame:
        seq = self._next_seq()
        frame = Frame(msg_type, seq, payload)
        name = pc.MESSAGE_NAMES.get(msg_type, f"type 0x{msg_type:02X}")
        timeout = self.cfg.reply_timeout_s + extra_timeout_s
        tries = tries or self.cfg.max_retries + 1
        for attempt in range(tries):
            if attempt:
                self.stats.retries += 1
            self._send(frame, lead=attempt > 0)
            reply = self._await(seq, msg_type, timeout, grace_s=self.grace_s + extra_timeout_s / 2)
            if reply is not None:
                return reply
        self._dead(name, tries, timeout * tries)

    def _await(self, seq: int, msg_type: int, timeout: float, boot_ok: bool = False,
               grace_s: float | None = None) -> Frame | None:
        """The reply to `seq`, or None when the request should be retransmitted.

        A damaged frame or a NACK probably means our request or its reply was hit:
        the wait is cut to a short grace period (the real reply may still come, if
        the damage was stray noise), then the request goes out again.  A burst of
        noise therefore costs one retransmission, not one per damaged frame.
        """
        expected = pc.EXPECTED_REPLY.get(msg_type)  # None: a type the protocol does not define (tests)
        deadline = time.monotonic() + timeout
        hit = False
        while True:
            while self._events:
                event = self._events.popleft()
                if isinstance(event, ProtocolError) or (event.seq == pc.SEQ_UNSOLICITED and
                                                        event.type == pc.MSG_ERROR):
                    self.stats.nacks += 0 if isinstance(event, ProtocolError) else 1
                    hit = True
                    deadline = min(deadline, time.monotonic() + (grace_s or self.grace_s))
                    continue
                if event.seq == pc.SEQ_UNSOLICITED:
                    if event.type == pc.MSG_INFO:
                        if boot_ok:  # the boot announcement of a device we are greeting anyway
                            return None
                        self.stats.resets += 1
                        raise DeviceReset(m.Info.unpack(event.payload))
                    continue
                if event.seq != seq:
                    self.stats.stale_replies += 1
                    continue
                if event.type == pc.MSG_ERROR:
                    request = pc.MESSAGE_NAMES.get(msg_type, f"type 0x{msg_type:02X}")
                    raise DeviceError(self.link.name, request, m.Error.unpack(event.payload))
                if event.type != expected:
                    self._decoder.counts["wrong_type"] += 1
                    return None
                self.stats.payload_bytes_received += len(event.payload)
                return event
            left = deadline - time.monotonic()
            if left <= 0:
                # A booting device is not a link fault, and a cut-short wait is not a timeout.
                self.stats.timeouts += 0 if boot_ok or hit else 1
                return None
            try:
                data = self.link.read(min(left, 0.25))
            except LinkClosed as exc:
                raise DeviceGone(f"{exc}; {self.alive() or 'the device disconnected'}") from None
            if data:
                self._events.extend(self._decoder.feed(data))
            elif (reason := self.alive()) is not None:
                raise DeviceGone(f"device at {self.link.name} is gone: {reason}")

    def _send(self, frame: Frame, lead: bool) -> None:
        wire = encode_frame(frame, lead=lead)
        try:
            self.link.write(wire)
        except LinkClosed as exc:
            raise DeviceGone(f"{exc}; {self.alive() or 'the device disconnected'}") from None
        self.stats.frames_sent += 1
        self.stats.bytes_sent += len(wire)
        self.stats.payload_bytes_sent += len(frame.payload)

    def relink(self, link) -> None:
        """Continue on a new link (a restarted device); bytes half-received on the old one are dropped."""
        counts = self._decoder.counts
        self.link = link
        self._decoder = FrameDecoder(pc.MAX_PAYLOAD)
        self._decoder.counts = counts  # the link statistics carry on across the restart
        self._events.clear()

    def _next_seq(self) -> int:
        seq = self._seq
        self._seq = (self._seq + 1) % pc.SEQ_MODULO
        return seq

    def _dead(self, request: str, tries: int, seconds: float):
        raise NoReply(f"no answer from the device at {self.link.name} to {request} after {tries} tries "
                        f"({seconds:.1f} s); check that it runs the tinyexit agent or firmware, the port, "
                        "and the baud rate (--baud)")
