"""The host end of the protocol: numbered requests, adaptive retries, resynchronization, link statistics.

One request is in flight at a time.  A request is retransmitted (with a leading
0x00 that flushes whatever the device half-received) when its reply is late,
when a corrupted frame arrives instead, or when the device NACKs a frame it
could not decode.  The device answers a retransmitted request from its cache
of the last reply, so nothing runs twice; replies to older sequence numbers are
dropped.  An unsolicited INFO means the device rebooted: `DeviceReset`.

The session adapts to the line it measures (adaptive.py): the retransmission
timeout follows the measured round trip (RFC 6298), LOAD_INPUT chunks follow
the measured frame error rate, and the retry budget is time, not a count: a
request is abandoned only when the device has been silent for the silence
budget (`reply_timeout_s × (max_retries + 1)`, 12 s by default), or when it
keeps answering (NACKs, damaged frames) but no request has got through for
`stall_s`.  A device that answers is alive; the message then says what it
answered.

Forward error correction (protocol/fec.py) is chosen per session by
`SessionConfig.fec`: "off" never, "on" every request to a device with CAP_FEC,
"auto" (the default) FEC from the first request to a CAP_FEC device, as a probe:
each FEC reply says exactly how many bytes it corrected, so once PROBE_BYTES
reply bytes are in, `adaptive.fec_probe_verdict` either keeps FEC for the run or
(a clean line) goes plain.  On plain frames, the chunk controller's per-byte
error estimate switches to FEC for the rest of the run when FEC frames carry
more payload per wire byte (`adaptive.prefer_fec`).  With FEC, a `LineMeter`
measures the line from the corrections and the chunk follows it.  The device
answers in kind.
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Callable

from tinyexit.errors import UserError
from tinyexit.firmware_bridge.protocol import messages as m
from tinyexit.firmware_bridge.protocol import constants as pc
from tinyexit.firmware_bridge.protocol.framing import Frame, FrameDecoder, ProtocolError, encode_frame
from tinyexit.firmware_bridge.protocol.link import LinkClosed
from tinyexit.firmware_bridge.harness.adaptive import (FAILED_FRAME_DAMAGE, MIN_CHUNK, ChunkController, LineMeter,
                                                         RtoEstimator, fec_probe_verdict, prefer_fec)
from tinyexit.firmware_bridge.protocol import fec as fec_code
from tinyexit.firmware_bridge.harness.linkstats import LinkStats  # noqa: F401  (re-exported: bench, summary)

MIN_LOAD_CHUNK = MIN_CHUNK  # bytes; the adaptive LOAD_INPUT chunk never goes below this
MIN_GRACE_S = 0.001         # after damage, wait at least this long for a reply already on its way
HELLO_GRACE_S = 0.01        # a damaged INFO (about 100 bytes, the longest reply) is re-asked for at once
FIRST_RTO_FACTOR = 8        # a request type not yet measured: RTO = this x the HELLO round trip (>= 0.1 s)
FEC_MODES = ("auto", "on", "off")
FEC_MIN_TRIES = 4           # auto, on plain frames: LOAD_INPUT tries measured before the estimate may switch to FEC


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
    reply_timeout_s: float = pc.REPLY_TIMEOUT_S  # first retransmission timeout, and the adaptive one's ceiling
    max_retries: int = pc.MAX_RETRIES            # with reply_timeout_s: the silence budget (see silence_s)
    boot_timeout_s: float = pc.BOOT_TIMEOUT_S
    grace_s: float = 0.05       # after a damaged frame or a NACK: wait at most this long for the real reply
    stall_s: float = 120.0      # a device that answers but lets no request through for this long: give up
    fec: str = "auto"           # forward error correction: auto (when the measured line calls for it), on, off

    def __post_init__(self):
        if self.fec not in FEC_MODES:
            raise UserError(f"--fec {self.fec}: choose one of {', '.join(FEC_MODES)}")
        if not (self.reply_timeout_s > 0 and self.boot_timeout_s > 0):
            raise UserError(f"--timeout {self.reply_timeout_s} (boot {self.boot_timeout_s}): timeouts must be > 0 s")
        if not 0 <= self.max_retries <= 1000:
            raise UserError(f"--retries {self.max_retries}: use a value in [0, 1000]")
        if not 0 < self.grace_s <= 10:
            raise UserError(f"grace_s {self.grace_s}: use a value in (0, 10] seconds")
        if not 0 < self.stall_s <= 86400:
            raise UserError(f"stall_s {self.stall_s}: use a value in (0, 86400] seconds")

    @property
    def silence_s(self) -> float:
        """How long a device may say nothing at all before it is declared dead (12 s by default)."""
        return self.reply_timeout_s * (self.max_retries + 1)

    def to_dict(self) -> dict:
        return {"reply_timeout_s": self.reply_timeout_s, "max_retries": self.max_retries,
                "boot_timeout_s": self.boot_timeout_s, "grace_s": self.grace_s, "stall_s": self.stall_s,
                "fec": self.fec}

    @classmethod
    def from_dict(cls, d: dict) -> "SessionConfig":
        return cls(**d)


class _Try:
    """What one exchange (a request and its retransmissions) saw: for the budget and for the message."""

    def __init__(self, name: str, started: float):
        self.name, self.started = name, started
        self.tries = self.nacks = self.damaged = self.silent = 0
        self.streak = 0  # consecutive silent tries: each doubles the next wait
        self.frame_silent = 0  # silent tries of the frame now being sent: its reply may still be on its way
        self.first_silent_sent = None  # when the first of those went out
        self.heard_bytes = 0


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
        self._rto: dict[int, RtoEstimator] = {}   # per request type: a RUN's round trip includes its compute
        self._ambiguous: tuple | None = None       # (seq, first silent send, answered at, estimator): see _try
        self._chunks: ChunkController | None = None
        self._last_heard = time.monotonic()        # when the device last sent a byte
        self.grace_s = cfg.grace_s                 # ceiling of the wait for the real reply after damage
        self.info: m.Info | None = None
        self._hello_rtt: float | None = None       # round trip of an unanswered-before HELLO: seeds new RTOs
        self._fec = False                          # requests go FEC-encoded (the device has CAP_FEC)
        self._probing = False                      # auto: FEC as a probe of the line, not yet decided
        self._probed = False                       # auto: the probe has decided (once per session)
        self._meter = LineMeter()                  # the line measured from received FEC frames
        self._metered = (0, 0)                     # decoder (bytes, damage) already given to the meter
        self._started = time.monotonic()
        self.stats.fec_mode = cfg.fec

    # --- the three requests a benchmark needs ---------------------------------------
    def handshake(self, timeout_s: float | None = None) -> m.Info:
        """HELLO until the device answers (it may still be booting); HELLO is never answered from a cache."""
        budget = timeout_s or self.cfg.boot_timeout_s
        t = _Try("HELLO", time.monotonic())
        deadline = t.started + budget
        seq = self._next_seq()
        base = self._line_counts()
        while True:
            # Every 4th try plain: a device restarted without FEC support still hears one.  Before any INFO
            # (FEC not yet known to work) the other tries go FEC-encoded anyway unless --fec off: a device
            # with CAP_FEC answers in kind, and on a 3 % line a plain INFO (~130 wire bytes) gets through
            # about once in a hundred tries, an FEC one most of the time.
            speculate = self.cfg.fec != "off" and self.info is None
            self._send(Frame(pc.MSG_HELLO, seq), lead=True, plain=t.tries % 4 == 3, fec=speculate)
            t.tries += 1
            sent = time.monotonic()
            wait = min(self.cfg.reply_timeout_s, max(0.05, deadline - time.monotonic()))
            frame, _ = self._await(seq, pc.MSG_HELLO, wait, t, boot_ok=True, grace_s=HELLO_GRACE_S)
            if frame is not None:
                # HELLO is never cached: this reply answers the last try (or an earlier one, sooner).
                self._hello_rtt = time.monotonic() - sent
                self.info = m.Info.unpack(frame.payload)
                if frame.fec and self.cfg.fec == "auto" and not self._probed and self.info.capabilities & pc.CAP_FEC:
                    self._probe_with_hellos(base, deadline)
                self._after_info()
                return self.info
            if time.monotonic() >= deadline:
                self._give_up(t, silent_s=time.monotonic() - max(self._last_heard, t.started))

    def load(self, offset: int, data: bytes, chunk: int, progress: Callable[[int], None] | None = None) -> int:
        """Write `data` into the device's input buffer at `offset`; returns the device's valid byte count.

        Chunks are at most `chunk` bytes; on a noisy line the ChunkController cuts
        them after every failed try (a new, smaller frame goes out) and lets them
        grow back slowly.  `progress(bytes_done)` is called after each chunk.
        """
        if self._chunks is None or self._chunks.max_size != max(MIN_CHUNK, chunk):
            self._chunks = ChunkController(chunk)
        ctl = self._chunks
        if self._fec:
            ctl.measured = self._meter.byte_error()
            ctl.use_fec()
        valid, pos = 0, 0
        t = _Try("LOAD_INPUT", time.monotonic())
        while pos < len(data):
            size = ctl.size
            part = data[pos:pos + size]
            frame = Frame(pc.MSG_LOAD_INPUT, self._next_seq(), m.LoadInput(offset + pos, part).pack())
            wire_before = self.stats.bytes_sent
            t.frame_silent = 0
            try:
                while True:
                    reply = self._try(frame, t)
                    ctl.measured = self._meter.byte_error() if self._fec else None
                    ctl.record(reply is not None)
                    self._consider_fec(ctl)
                    if reply is not None or ctl.size < len(part):
                        break
            finally:
                self.stats.input_wire_bytes += self.stats.bytes_sent - wire_before
                self.stats.load_shrinks = ctl.shrinks
                self.stats.load_chunk_last = ctl.size
                self.stats.load_chunk_min = min(self.stats.load_chunk_min or ctl.size, ctl.size)
            if reply is None:
                continue  # re-chunk: the smaller frame is a new request (rewriting bytes is idempotent)
            self.stats.input_bytes += len(part)
            valid = m.Ack.unpack(reply.payload).valid_bytes
            pos += len(part)
            t = _Try("LOAD_INPUT", time.monotonic())  # progress: the budget starts again
            if progress is not None:
                progress(pos)
        return valid

    def run(self, run: m.Run, expected_s: float = 0.0) -> m.Result:
        reply = self.request(pc.MSG_RUN, run.pack(), extra_timeout_s=2 * expected_s * run.repeat)
        return m.Result.unpack(reply.payload)

    def reset(self) -> m.Info:
        reply = self.request(pc.MSG_RESET, b"")
        self.info = m.Info.unpack(reply.payload)
        self._after_info()
        return self.info

    # --- forward error correction ------------------------------------------------------
    def _after_info(self) -> None:
        supported = bool(self.info.capabilities & pc.CAP_FEC)
        self.stats.fec_supported = supported
        if self.cfg.fec == "on" and supported and not self._fec:
            self._switch_fec("on")
        elif self.cfg.fec == "auto" and supported and not self._fec and not self._probed:
            self._probing = True
            self._switch_fec("auto: probing the line with FEC frames")

    def _probe_with_hellos(self, base: tuple[int, int], deadline: float, most: int = 4) -> None:
        """auto: decide FEC or plain before the first LOAD_INPUT, from FEC-encoded INFOs (~150 wire bytes each):
        a few more HELLOs (never cached, harmless before any input is loaded) until PROBE_BYTES reply bytes
        are measured.  A clean line then loads its inputs in plain frames from the first byte.  Undecided
        (the line lost too many): the probe goes on with the first requests (`_after_info`)."""
        for _ in range(most):
            now = self._line_counts()
            verdict = fec_probe_verdict(now[1] - base[1], now[0] - base[0], self.info.max_payload)
            if verdict is not None:
                self._probed = True
                p = (now[1] - base[1]) / (now[0] - base[0])
                self.stats.fec_probe_bytes, self.stats.fec_probe_damaged = now[0] - base[0], now[1] - base[1]
                reason = (f"auto: {now[1] - base[1]} damaged bytes in {now[0] - base[0]} reply bytes of the "
                          f"handshake ({p:.4f} per byte): " + ("FEC" if verdict else "plain"))
                if verdict:
                    self._switch_fec(reason)
                else:
                    self.stats.fec_reason, self.stats.fec_plain_after_tries = reason, self.stats.request_tries
                return
            if time.monotonic() >= deadline:
                return
            seq = self._next_seq()
            self._send(Frame(pc.MSG_HELLO, seq), lead=True, fec=True)
            frame, _ = self._await(seq, pc.MSG_HELLO, min(self.cfg.reply_timeout_s, 4 * (self._hello_rtt or 0.05)),
                                   _Try("HELLO", time.monotonic()), boot_ok=True, grace_s=HELLO_GRACE_S)
            if frame is not None:
                self.info = m.Info.unpack(frame.payload)

    def _consider_fec(self, ctl: ChunkController) -> None:
        """auto: the probe's verdict; on plain frames, switch to FEC once the per-byte error estimate says FEC
        frames carry more payload per byte."""
        if self._probing:
            verdict = fec_probe_verdict(self._meter.damaged, self._meter.received, ctl.max_size)
            if verdict is None:
                return
            p = self._meter.damaged / self._meter.received
            self._probing, self._probed = False, True
            self.stats.fec_probe_bytes = round(self._meter.received)
            self.stats.fec_probe_damaged = round(self._meter.damaged)
            self.stats.fec_reason = (f"auto: {self.stats.fec_probe_damaged} damaged bytes in "
                                     f"{self.stats.fec_probe_bytes} reply bytes ({p:.4f} per byte): "
                                     + ("FEC" if verdict else "plain"))
            if not verdict:
                self._fec = False
                self.stats.fec_switched_s = self.stats.fec_switched_after_tries = None
                self.stats.fec_plain_after_tries = self.stats.request_tries
                ctl.use_plain(p)
            return
        if (self.cfg.fec != "auto" or self._fec or self.info is None or not self.info.capabilities & pc.CAP_FEC
                or ctl.tries < FEC_MIN_TRIES):
            return
        if prefer_fec(ctl.byte_error(), ctl.max_size):
            self._switch_fec(f"auto at a per-byte error estimate of {ctl.byte_error():.4f}")
            ctl.use_fec()

    def _switch_fec(self, why: str) -> None:
        self._fec = True
        self._meter = LineMeter()  # measured afresh, from the replies to FEC requests only
        self._metered = self._line_counts()
        self.stats.fec_switched_s = round(time.monotonic() - self._started, 3)
        self.stats.fec_switched_after_tries = self.stats.request_tries
        self.stats.fec_reason = why

    def _measure_line(self) -> None:
        """Give the meter what the decoder saw since last time, while requests go FEC (replies come in kind)."""
        now = self._line_counts()
        if self._fec and now[0] >= self._metered[0]:
            self._meter.observe(now[0] - self._metered[0], now[1] - self._metered[1])
        self._metered = now

    def _line_counts(self) -> tuple[int, int]:
        """(bytes received, damaged bytes seen: repaired by FEC, or FAILED_FRAME_DAMAGE per undecodable frame)."""
        c = self._decoder.counts
        return (c["bytes"], c["fec_corrected_bytes"] + c["fec_recovered_drops"] + c["fec_removed_inserts"]
                + FAILED_FRAME_DAMAGE * c["resyncs"])

    def _fits_fec(self, raw_len: int) -> bool:
        """An FEC frame of raw_len bytes exists and the device's receive buffer (from its max payload) holds it
        (spec v1.1, sender rule); else the frame goes plain."""
        wire = fec_code.wire_size(raw_len)
        # before INFO: the smallest receive buffer a device may have (MIN_DEVICE_PAYLOAD)
        limit = (self.info.max_payload if self.info else pc.MIN_DEVICE_PAYLOAD) + pc.HEADER_SIZE + pc.CRC_SIZE
        return wire is not None and wire - 1 <= limit + limit // 254 + 1

    # --- the machinery ---------------------------------------------------------------
    def request(self, msg_type: int, payload: bytes, extra_timeout_s: float = 0.0, tries: int | None = None) -> Frame:
        """Send until the reply comes, within the time budget; `tries` caps the count too (tests)."""
        frame = Frame(msg_type, self._next_seq(), payload)
        t = _Try(pc.MESSAGE_NAMES.get(msg_type, f"type 0x{msg_type:02X}"), time.monotonic())
        while True:
            reply = self._try(frame, t, extra_timeout_s=extra_timeout_s)
            if reply is not None:
                return reply
            if tries is not None and t.tries >= tries:
                self._give_up(t, silent_s=time.monotonic() - max(self._last_heard, t.started))

    def _try(self, frame: Frame, t: _Try, extra_timeout_s: float = 0.0) -> Frame | None:
        """One transmission and its wait; None: retransmit.  Raises NoReply when the time budget is spent."""
        rto = self._rto.get(frame.type)
        if rto is None:
            rto = self._rto[frame.type] = RtoEstimator(self._first_rto(), hi=self.cfg.reply_timeout_s)
        if t.tries:
            self.stats.retries += 1
        t.tries += 1  # of the exchange: a re-chunked LOAD_INPUT continues its predecessor's budget
        self.stats.request_tries += 1
        sent = time.monotonic()
        self._send(frame, lead=t.tries > 1)  # after a failed try: flush what the device half-received
        # Damage seen (a NACK, a broken frame) almost always means this try is lost: resend soon, after a
        # quarter of a round trip in case it was stray noise and the real reply is on its way.
        rtt = rto.srtt if rto.srtt is not None else self._hello_rtt
        grace = min(self.grace_s, max(MIN_GRACE_S, rtt / 4 if rtt is not None else self.grace_s)) + extra_timeout_s / 2
        reply, cause = self._await(frame.seq, frame.type, rto.timeout(t.streak) + extra_timeout_s, t, grace_s=grace)
        self._measure_line()
        if reply is not None:
            # Karn's rule, refined: the reply answers this try unless an earlier one went unanswered (then it
            # may answer that one).  A try that drew a NACK or a damaged reply has had its one answer.
            if t.frame_silent == 0:
                rto.sample(time.monotonic() - sent)
                self.stats.srtt_s, self.stats.rto_s = rto.srtt, rto.rto
            elif t.first_silent_sent is not None:
                # Ambiguous (Karn): the answer of the first silent try, late, or of a later one.  A second answer
                # arriving after this request (a stale reply with this seq) will settle it (`_await`).
                self._ambiguous = (frame.seq, t.first_silent_sent, time.monotonic(), rto)
            return reply
        self.stats.failed_tries += 1
        if cause == "timeout" and t.frame_silent == 0:
            t.first_silent_sent = sent
        t.streak = t.streak + 1 if cause == "timeout" else 0
        t.frame_silent += cause == "timeout"
        now = time.monotonic()
        silent = now - max(self._last_heard, t.started)
        if silent >= self.cfg.silence_s or now - t.started >= self.cfg.stall_s:
            self._give_up(t, silent)
        return None

    def _first_rto(self) -> float:
        """Before a request type's first round trip: a multiple of the handshake's, else the configured timeout."""
        if self._hello_rtt is None:
            return self.cfg.reply_timeout_s
        return min(self.cfg.reply_timeout_s, max(0.1, FIRST_RTO_FACTOR * self._hello_rtt))

    def _await(self, seq: int, msg_type: int, timeout: float, t: _Try, boot_ok: bool = False,
               grace_s: float | None = None) -> tuple[Frame | None, str]:
        """(the reply to `seq`, "") or (None, why: "timeout", "nack", "damaged", "wrong_type", "boot").

        A damaged frame or a NACK probably means our request or its reply was hit:
        the wait is cut to a short grace period (the real reply may still come, if
        the damage was stray noise), then the request goes out again.  A burst of
        noise therefore costs one retransmission, not one per damaged frame.
        """
        expected = pc.EXPECTED_REPLY.get(msg_type)  # None: a type the protocol does not define (tests)
        deadline = time.monotonic() + timeout
        cause = ""
        while True:
            while self._events:
                event = self._events.popleft()
                if isinstance(event, ProtocolError) or (event.seq == pc.SEQ_UNSOLICITED and
                                                        event.type == pc.MSG_ERROR):
                    nack = not isinstance(event, ProtocolError)
                    self.stats.nacks += nack
                    t.nacks += nack
                    t.damaged += not nack
                    cause = cause or ("nack" if nack else "damaged")
                    deadline = min(deadline, time.monotonic() + (grace_s or self.grace_s))
                    continue
                if event.seq == pc.SEQ_UNSOLICITED:
                    if event.type == pc.MSG_INFO:
                        if boot_ok:  # the boot announcement of a device we are greeting anyway
                            return None, "boot"
                        self.stats.resets += 1
                        raise DeviceReset(m.Info.unpack(event.payload))
                    continue
                if event.seq != seq:
                    self.stats.stale_replies += 1
                    if self._ambiguous is not None and event.seq == self._ambiguous[0]:
                        # Two answers to one request resent on a timeout: the first was the silent try's, late
                        # (Eifel, RFC 3522): its round trip is a sample after all, and the timeout was spurious.
                        _, first_sent, answered, est = self._ambiguous
                        est.spurious_timeout(answered - first_sent)
                        self.stats.srtt_s, self.stats.rto_s = est.srtt, est.rto
                        self._ambiguous = None
                    continue
                if event.type == pc.MSG_ERROR:
                    request = pc.MESSAGE_NAMES.get(msg_type, f"type 0x{msg_type:02X}")
                    raise DeviceError(self.link.name, request, m.Error.unpack(event.payload))
                if event.type != expected:
                    self._decoder.counts["wrong_type"] += 1
                    return None, "wrong_type"
                self.stats.payload_bytes_received += len(event.payload)
                return event, ""
            left = deadline - time.monotonic()
            if left <= 0:
                # A booting device is not a link fault, and a cut-short wait is not a timeout.
                if not cause:
                    t.silent += 1
                    self.stats.timeouts += 0 if boot_ok else 1
                return None, cause or "timeout"
            try:
                data = self.link.read(min(left, 0.25))
            except LinkClosed as exc:
                raise DeviceGone(f"{exc}; {self.alive() or 'the device disconnected'}") from None
            if data:
                self._last_heard = time.monotonic()
                t.heard_bytes += len(data)
                self._events.extend(self._decoder.feed(data))
            elif (reason := self.alive()) is not None:
                raise DeviceGone(f"device at {self.link.name} is gone: {reason}")

    def _send(self, frame: Frame, lead: bool, plain: bool = False, fec: bool = False) -> None:
        coded = (self._fec or fec) and not plain and self._fits_fec(len(frame.payload) + pc.HEADER_SIZE + pc.CRC_SIZE)
        wire = encode_frame(frame, lead=lead, fec=coded)
        try:
            self.link.write(wire)
        except LinkClosed as exc:
            raise DeviceGone(f"{exc}; {self.alive() or 'the device disconnected'}") from None
        self.stats.frames_sent += 1
        self.stats.fec_frames_sent += coded
        self.stats.bytes_sent += len(wire)
        self.stats.payload_bytes_sent += len(frame.payload)

    def relink(self, link) -> None:
        """Continue on a new link (a restarted device); bytes half-received on the old one are dropped."""
        counts = self._decoder.counts
        self.link = link
        self._decoder = FrameDecoder(pc.MAX_PAYLOAD)
        self._decoder.counts = counts  # the link statistics carry on across the restart (and so does the meter)
        self._events.clear()
        self._last_heard = time.monotonic()

    def _next_seq(self) -> int:
        seq = self._seq
        self._seq = (self._seq + 1) % pc.SEQ_MODULO
        return seq

    def _give_up(self, t: _Try, silent_s: float):
        raise NoReply(describe_failure(self.link.name, t, time.monotonic() - t.started, silent_s,
                                       self.stats.decoder["frames"]))


def describe_failure(port: str, t: _Try, spent_s: float, silent_s: float, frames_ever: int) -> str:
    """One truthful line: the time actually spent, and what the device did answer (NACKs, damage, silence)."""
    answered = []
    if t.nacks:
        answered.append(f"{t.nacks} NACK{'s' * (t.nacks != 1)}")
    if t.damaged:
        answered.append(f"{t.damaged} damaged frame{'s' * (t.damaged != 1)}")
    if t.silent:
        answered.append(f"{t.silent} silent wait{'s' * (t.silent != 1)}")
    what = ", ".join(answered) or "nothing"
    if not t.heard_bytes:
        hint = ("check that it runs the tinyexit agent or firmware, the port, and the baud rate (--baud)"
                if not frames_ever else "it answered earlier in this run, then went silent: check the cable and "
                "that the device is still running")
        return (f"no answer from the device at {port} to {t.name} after {t.tries} tries ({spent_s:.1f} s, nothing "
                f"received for {silent_s:.1f} s); {hint}")
    return (f"the device at {port} is answering but no {t.name} got through in {spent_s:.1f} s ({t.tries} tries; "
            f"it answered with {what}; {t.heard_bytes} bytes received); the line damages too many bytes: check the "
            "cable, its length and shielding, and the baud rate (--baud)")
