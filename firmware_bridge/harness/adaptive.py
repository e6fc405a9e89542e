"""Pure controllers that let a session adapt to the line it measures: chunk size and retransmission timeout.

Both are plain state machines (no clock, no I/O), so tests drive them with exact
numbers and the session feeds them what it observes.

* `ChunkController` sizes long frames (LOAD_INPUT chunks).  It keeps an
  exponentially weighted frame error rate, turns it into a per-byte error
  estimate and aims at the chunk size that maximises expected payload per wire
  byte, n/(n+h)·(1-p)^(n+h).  A failed try halves the size at once (shrink
  fast) while it is above the target; successes grow it by an eighth at a
  time towards the target (grow slowly).
* `prefer_fec` decides plain against FEC frames (protocol/fec.py) from the same
  per-byte error estimate: the best expected payload per wire byte of each
  (`plain_efficiency`, `fec_efficiency`, each at its best chunk size).  FEC frames
  cost ~25 % more bytes but survive lines that kill every long plain frame.  With
  FEC frames the controller always sends the model's best FEC chunk for the
  line, measured by a `LineMeter` from the bytes that received FEC frames
  corrected (`fec_probe_verdict` is the auto mode's first decision: FEC from the
  start, plain once a few hundred reply bytes show a clean enough line).
* `RtoEstimator` is RFC 6298's smoothed round-trip time: SRTT, RTTVAR,
  RTO = SRTT + 4·RTTVAR, clamped, doubled per silent try of one request; only replies to
  first transmissions are sampled (Karn's rule, applied by the caller).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from tinyexit.firmware_bridge.protocol import constants as pc
from tinyexit.firmware_bridge.protocol import fec

# Wire bytes a LOAD_INPUT frame costs beyond its data: header, offset, CRC, COBS code byte, delimiter.
LOAD_OVERHEAD = pc.HEADER_SIZE + pc.LOAD_FIXED_SIZE + pc.CRC_SIZE + 2
# Wire bytes of the ACK that must come back for a try to count: header, valid-byte count, CRC, COBS, delimiter.
ACK_WIRE = pc.HEADER_SIZE + pc.ACK_SIZE + pc.CRC_SIZE + 2
MIN_CHUNK = 8            # bytes; the best size for a 3 % + 1 % per-byte line is about 13
ERROR_WEIGHT = 1 / 16    # weight of one try in the frame error rate (about the last 16 tries)
GROW_DIVISOR = 8         # a success grows the chunk by size/8 (at least one byte)
# Raw bytes of a LOAD_INPUT frame beyond its data (header, offset, CRC), and of an ACK: what FEC encodes.
LOAD_RAW_OVERHEAD = pc.HEADER_SIZE + pc.LOAD_FIXED_SIZE + pc.CRC_SIZE
ACK_RAW = pc.HEADER_SIZE + pc.ACK_SIZE + pc.CRC_SIZE
FEC_MAX_CHUNK = fec.MAX_FEC_RAW - LOAD_RAW_OVERHEAD   # 200 data bytes: the longest chunk an FEC frame carries
# The FEC model's line: of the damaged bytes, this share shifts the frame (a drop or an insert), the rest are
# corrupted in place.  The lines: 1 % corrupt + 0.5 % drop (1/3), 3 % + 1 % (1/4).
SHIFT_SHARE = 1 / 3


def best_chunk(byte_error: float, overhead: int = LOAD_OVERHEAD, lo: int = MIN_CHUNK, hi: int = pc.MAX_PAYLOAD) -> int:
    """The data size n maximising n/(n+h)·(1-p)^(n+h): zero of the derivative, n² + h·n − h/a = 0, a = −ln(1−p)."""
    if byte_error <= 0:
        return hi
    a = -math.log1p(-min(byte_error, 0.5))
    n = (-overhead + math.sqrt(overhead * overhead + 4 * overhead / a)) / 2
    return max(lo, min(hi, int(n)))


def plain_efficiency(n: int, byte_error: float) -> float:
    """Expected LOAD_INPUT data per wire byte with plain frames of n data bytes: the request and its ACK whole."""
    wire = n + LOAD_OVERHEAD
    return n / wire * (1 - byte_error) ** (wire + ACK_WIRE)


def _poisson_cdf(k: int, lam: float) -> float:
    term = total = math.exp(-lam)
    for i in range(1, k + 1):
        term *= lam / i
        total += term
    return total


def fec_survival(raw_len: int, byte_error: float) -> float:
    """Probability that an FEC frame of raw_len bytes decodes: per block no shift and <= np/2 corrupted bytes,
    or one shift and <= (np-1)/2 corrupted (Poisson counts), and its delimiter intact."""
    if byte_error <= 0:
        return 1.0
    p = min(byte_error, 0.5)
    shift, corrupt = p * SHIFT_SHARE, p * (1 - SHIFT_SHARE)
    ok = 1.0 - p
    for k in fec.block_sizes(raw_len):
        nsym = fec.parity_size(k)
        n = k + nsym
        ls = n * shift
        ok *= math.exp(-ls) * (_poisson_cdf(nsym // 2, n * corrupt) + ls * _poisson_cdf((nsym - 1) // 2, n * corrupt))
    return ok


def fec_efficiency(n: int, byte_error: float) -> float:
    """Expected LOAD_INPUT data per wire byte with FEC frames of n data bytes (request and ACK both FEC)."""
    raw = n + LOAD_RAW_OVERHEAD
    return n / fec.wire_size(raw) * fec_survival(raw, byte_error) * fec_survival(ACK_RAW, byte_error)


@lru_cache(maxsize=4096)
def _best_fec(byte_error: float, hi: int) -> int:
    return max(range(MIN_CHUNK, hi + 1), key=lambda n: (fec_efficiency(n, byte_error), -n))


def best_fec_chunk(byte_error: float, hi: int = FEC_MAX_CHUNK) -> int:
    """The FEC chunk (data bytes, <= 200) with the most expected payload per wire byte (brute force; cached
    on the estimate rounded to 4 significant digits)."""
    hi = max(MIN_CHUNK, min(hi, FEC_MAX_CHUNK))
    return _best_fec(float(f"{byte_error:.4g}"), hi)


def prefer_fec(byte_error: float, max_chunk: int) -> bool:
    """FEC frames are better than plain ones on a line with this per-byte error estimate: compares the best
    expected payload per wire byte of each, at each one's best chunk size (at most `max_chunk` data bytes)."""
    if byte_error <= 0:
        return False
    plain = plain_efficiency(min(max_chunk, best_chunk(byte_error)), byte_error)
    return fec_efficiency(best_fec_chunk(byte_error, max_chunk), byte_error) > plain


def fec_byte_error(error_rate: float, size: int) -> float:
    """The per-byte error at which an FEC chunk of `size` data bytes and its ACK fail at `error_rate` (bisection)."""
    want = max(1e-6, 1.0 - error_rate)
    lo, hi = 0.0, 0.5
    for _ in range(40):
        mid = (lo + hi) / 2
        if fec_survival(size + LOAD_RAW_OVERHEAD, mid) * fec_survival(ACK_RAW, mid) > want:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


# --- the line measured from FEC frames ---------------------------------------------------------------------------
PROBE_BYTES = 256        # received bytes of FEC replies before the auto probe decides (about 12 ACKs)
FAILED_FRAME_DAMAGE = 2  # damaged bytes counted for a received frame nothing could decode (measured: with 2
                         # the meter reads 1.51 % on a 1 % + 0.5 % line, the survivors alone 1.17 %)
RESIZE_GAIN = 1.02       # with FEC, the chunk moves only to a size the model rates 2 % better (no flapping)
LINE_HALF_LIFE = 8192    # received bytes after which an observation weighs half in the measured error


def fec_probe_verdict(damaged: float, received: float, max_chunk: int) -> bool | None:
    """The auto probe (FEC from the first request to a CAP_FEC device): None while fewer than PROBE_BYTES reply
    bytes have been measured; then True (stay FEC) if the measured per-byte error damaged/received makes FEC
    frames carry more payload per wire byte than plain ones (`prefer_fec`), False (go plain).  With 256 bytes
    measured, one damaged byte (0.39 %) keeps FEC and none goes plain; the switch-over is at ~0.08 %."""
    if received < PROBE_BYTES:
        return None
    return prefer_fec(damaged / received, max_chunk)


@dataclass
class LineMeter:
    """Per-byte error of the line measured from received FEC frames: each one says exactly how many bytes it
    corrected, restored or removed (a frame no decoding could save counts FAILED_FRAME_DAMAGE), far more
    than a count of failed tries tells.  Exponentially weighted by bytes (half-life LINE_HALF_LIFE)."""

    received: float = 0.0
    damaged: float = 0.0

    def observe(self, received: int, damaged: int) -> None:
        keep = 0.5 ** (received / LINE_HALF_LIFE)
        self.received = self.received * keep + received
        self.damaged = self.damaged * keep + damaged

    def byte_error(self) -> float | None:
        """damaged / received, or None until PROBE_BYTES have been measured."""
        return self.damaged / self.received if self.received >= PROBE_BYTES else None


@dataclass
class ChunkController:
    """Chunk size for long frames, from the frame error rate measured so far."""

    max_size: int
    size: int = 0                 # current chunk size; 0: start at max_size
    error_rate: float = 0.0       # EWMA of failed tries (any try whose reply did not come back whole)
    tries: int = 0
    failures: int = 0
    shrinks: int = 0

    def __post_init__(self):
        self.max_size = max(MIN_CHUNK, self.max_size)
        self.size = self.size or self.max_size

    fec: bool = False             # sizing FEC frames (fec_survival) instead of plain ones
    measured: float | None = None  # with FEC: the per-byte error a LineMeter measured (None: not yet)

    def byte_error(self) -> float:
        """Per-byte error probability: with FEC the measured one when there is one, else the one that explains the
        try error rate at the current size (request and ACK)."""
        if self.fec:
            if self.measured is not None:
                return self.measured
            return fec_byte_error(self.error_rate, self.size) if self.error_rate > 0 else 0.0
        survive = max(1e-6, 1.0 - self.error_rate)
        return 1.0 - survive ** (1.0 / (self.size + LOAD_OVERHEAD + ACK_WIRE))

    def target(self) -> int:
        if self.fec:
            return best_fec_chunk(self.byte_error(), self.max_size)
        return min(self.max_size, best_chunk(self.byte_error()))

    def use_fec(self) -> int:
        """Size FEC frames from now on: start at the best FEC chunk for the per-byte error measured so far, with
        the error rate that estimate predicts at that size (so the estimate carries over); returns the size."""
        if not self.fec:
            p = self.byte_error()
            self.fec = True
            self.size = best_fec_chunk(p, self.max_size)
            self.error_rate = 1.0 - fec_survival(self.size + LOAD_RAW_OVERHEAD, p) * fec_survival(ACK_RAW, p)
        return self.size

    def use_plain(self, byte_error: float) -> int:
        """Size plain frames from now on, for a line measured at `byte_error` per byte; returns the size."""
        self.fec, self.measured = False, None
        self.size = min(self.max_size, best_chunk(byte_error))
        self.error_rate = 1.0 - (1.0 - byte_error) ** (self.size + LOAD_OVERHEAD + ACK_WIRE)
        return self.size

    def record(self, ok: bool) -> int:
        """One try of a chunk of `size` bytes came back (ok) or not; returns the size for the next chunk."""
        self.tries += 1
        self.error_rate += ERROR_WEIGHT * ((0.0 if ok else 1.0) - self.error_rate)
        if self.fec:
            # FEC frames: always the model's best size for the line (sizes between block boundaries carry
            # less per byte, and the curve is flat near its top, so one failure is no reason to move).
            self.failures += not ok
            new, p = self.target(), self.byte_error()
            if fec_efficiency(new, p) < RESIZE_GAIN * fec_efficiency(min(self.size, FEC_MAX_CHUNK), p):
                new = min(self.size, FEC_MAX_CHUNK)
            self.shrinks += new < self.size
            self.size = new
            return self.size
        if ok:
            self.size = min(self.target(), self.size + max(1, self.size // GROW_DIVISOR)) \
                if self.size < self.target() else min(self.size, self.max_size)
        else:
            self.failures += 1
            target = self.target()
            # A failure at or below the best size is the line's expected loss, not a reason to shrink.
            new = max(MIN_CHUNK, min(self.size // 2, target)) if self.size > target else self.size
            self.shrinks += new < self.size
            self.size = new
        return self.size


@dataclass
class RtoEstimator:
    """RFC 6298 retransmission timeout from measured round trips (seconds)."""

    initial: float                # before any sample: the configured reply timeout
    lo: float = 0.01              # floor: a loopback reply takes about a millisecond, a scheduler hiccup more
    hi: float = 2.0               # ceiling (the configured reply timeout)
    srtt: float | None = None
    rttvar: float = 0.0
    rto: float = 0.0
    samples: int = 0

    def __post_init__(self):
        self.rto = self.rto or min(max(self.initial, self.lo), max(self.hi, self.initial))

    spurious: int = 0             # timeouts found spurious (a late first answer, then the resent one's)

    def sample(self, rtt: float) -> float:
        if self.srtt is None:
            self.srtt, self.rttvar = rtt, rtt / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - rtt)
            self.srtt = 0.875 * self.srtt + 0.125 * rtt
        self.samples += 1
        self.rto = min(self.hi, max(self.lo, self.srtt + 4 * self.rttvar))
        return self.rto

    def spurious_timeout(self, rtt: float) -> float:
        """A try answered after its timeout (the resent request drew a second answer, so the first answer was
        this try's): Karn's rule had to skip the sample; now it is known, so it counts (Eifel detection, RFC
        3522), and a device or host that got slower (a descheduled emulator, a busy machine) raises the
        timeout by the measured amount instead of costing one retransmitted frame per reply."""
        self.spurious += 1
        return self.sample(rtt)

    def timeout(self, silent_tries: int = 0) -> float:
        """The wait for a try after `silent_tries` unanswered tries of the same request: doubled each time
        (the device may be slower than measured) but only within that request.  The estimate itself is
        not backed off: on a noisy line most replies come to retransmissions, which Karn's rule cannot
        sample, so a kept back-off would never come down again."""
        return min(self.hi, self.rto * 2 ** min(silent_tries, 16))
