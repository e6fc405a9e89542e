"""Pure controllers that let a session adapt to the line it measures: chunk size and retransmission timeout.

Both are plain state machines (no clock, no I/O), so tests drive them with exact
numbers and the session feeds them what it observes.

* `ChunkController` sizes long frames (LOAD_INPUT chunks).  It keeps an
  exponentially weighted frame error rate, turns it into a per-byte error
  estimate and aims at the chunk size that maximises expected payload per wire
  byte, n/(n+h)·(1-p)^(n+h).  A failed try halves the size at once (shrink
  fast) while it is above the target; successes grow it by an eighth at a
  time towards the target (grow slowly).
* `RtoEstimator` is RFC 6298's smoothed round-trip time: SRTT, RTTVAR,
  RTO = SRTT + 4·RTTVAR, clamped, doubled per silent try of one request; only replies to
  first transmissions are sampled (Karn's rule, applied by the caller).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from tinyexit.firmware_bridge.protocol import constants as pc

# Wire bytes a LOAD_INPUT frame costs beyond its data: header, offset, CRC, COBS code byte, delimiter.
LOAD_OVERHEAD = pc.HEADER_SIZE + pc.LOAD_FIXED_SIZE + pc.CRC_SIZE + 2
# Wire bytes of the ACK that must come back for a try to count: header, valid-byte count, CRC, COBS, delimiter.
ACK_WIRE = pc.HEADER_SIZE + pc.ACK_SIZE + pc.CRC_SIZE + 2
MIN_CHUNK = 8            # bytes; the best size for a 3 % + 1 % per-byte line is about 13
ERROR_WEIGHT = 1 / 16    # weight of one try in the frame error rate (about the last 16 tries)
GROW_DIVISOR = 8         # a success grows the chunk by size/8 (at least one byte)


def best_chunk(byte_error: float, overhead: int = LOAD_OVERHEAD, lo: int = MIN_CHUNK, hi: int = pc.MAX_PAYLOAD) -> int:
    """The data size n maximising n/(n+h)·(1-p)^(n+h): zero of the derivative, n² + h·n − h/a = 0, a = −ln(1−p)."""
    if byte_error <= 0:
        return hi
    a = -math.log1p(-min(byte_error, 0.5))
    n = (-overhead + math.sqrt(overhead * overhead + 4 * overhead / a)) / 2
    return max(lo, min(hi, int(n)))


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

    def byte_error(self) -> float:
        """Per-byte error probability that explains the try error rate at the current size (request and ACK)."""
        survive = max(1e-6, 1.0 - self.error_rate)
        return 1.0 - survive ** (1.0 / (self.size + LOAD_OVERHEAD + ACK_WIRE))

    def target(self) -> int:
        return min(self.max_size, best_chunk(self.byte_error()))

    def record(self, ok: bool) -> int:
        """One try of a chunk of `size` bytes came back (ok) or not; returns the size for the next chunk."""
        self.tries += 1
        self.error_rate += ERROR_WEIGHT * ((0.0 if ok else 1.0) - self.error_rate)
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

    def sample(self, rtt: float) -> float:
        if self.srtt is None:
            self.srtt, self.rttvar = rtt, rtt / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - rtt)
            self.srtt = 0.875 * self.srtt + 0.125 * rtt
        self.samples += 1
        self.rto = min(self.hi, max(self.lo, self.srtt + 4 * self.rttvar))
        return self.rto

    def timeout(self, silent_tries: int = 0) -> float:
        """The wait for a try after `silent_tries` unanswered tries of the same request: doubled each time
        (the device may be slower than measured) but only within that request.  The estimate itself is
        not backed off: on a noisy line most replies come to retransmissions, which Karn's rule cannot
        sample, so a kept back-off would never come down again."""
        return min(self.hi, self.rto * 2 ** min(silent_tries, 16))
