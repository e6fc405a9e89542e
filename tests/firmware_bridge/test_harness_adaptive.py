"""The session's pure controllers: chunk sizing from the frame error rate, RFC 6298 retransmission timeout."""
import random

import pytest

from tinyexit.firmware_bridge.harness.adaptive import (LOAD_OVERHEAD, MIN_CHUNK, ChunkController, RtoEstimator,
                                                         best_chunk)
from tinyexit.firmware_bridge.protocol import constants as pc


def _efficiency(n: int, p: float) -> float:
    return n / (n + LOAD_OVERHEAD) * (1 - p) ** (n + LOAD_OVERHEAD)


def test_best_chunk_is_the_brute_force_optimum():
    assert LOAD_OVERHEAD == 16 and best_chunk(0.0) == pc.MAX_PAYLOAD
    assert best_chunk(1 - 0.99 * 0.995) == 25       # 1 % corrupt + 0.5 % drop per byte
    assert best_chunk(1 - 0.97 * 0.99) == 13        # 3 % corrupt + 1 % drop
    assert best_chunk(0.4) == MIN_CHUNK
    for p in (0.001, 0.005, 0.015, 0.04, 0.1):
        brute = max(range(1, 2000), key=lambda n: _efficiency(n, p))
        assert best_chunk(p) in (max(MIN_CHUNK, brute - 1), max(MIN_CHUNK, brute)), p  # closed form, floored


def test_chunks_shrink_fast_and_grow_slowly():
    c = ChunkController(960)
    assert c.size == 960
    # Each failure halves while the chunk is above what the measured error rate makes best ...
    assert [c.record(False) for _ in range(7)] == [480, 240, 120, 60, 60, 30, 30]
    assert c.shrinks == 5 and c.failures == 7 and c.tries == 7
    # ... and each success grows it by an eighth, towards the best size for the error rate measured.
    assert [c.record(True) for _ in range(6)] == [33, 37, 41, 46, 51, 57]
    assert ChunkController(4).size == MIN_CHUNK      # never below the floor


def test_chunks_settle_near_the_best_size_for_a_line():
    """A simulated line with per-byte loss p: the controller ends within a few bytes of best_chunk(p)."""
    for p, expect in ((0.015, range(14, 40)), (0.04, range(MIN_CHUNK, 20)), (0.0, range(960, 961))):
        rng, c = random.Random(1), ChunkController(960)
        sizes = []
        for _ in range(3000):
            c.record(rng.random() < (1 - p) ** (c.size + LOAD_OVERHEAD))
            sizes.append(c.size)
        median = sorted(sizes[1000:])[1000]
        assert median in expect, (p, median)


def test_rto_follows_rfc6298():
    r = RtoEstimator(initial=2.0, hi=2.0)
    assert r.rto == 2.0 and r.srtt is None
    assert r.sample(0.5) == 1.5                      # SRTT 0.5, RTTVAR 0.25, RTO = SRTT + 4 RTTVAR
    assert (r.srtt, r.rttvar) == (0.5, 0.25)
    assert r.sample(0.5) == 1.25                     # RTTVAR 3/4 * 0.25
    assert (r.timeout(0), r.timeout(1), r.timeout(5)) == (1.25, 2.0, 2.0)  # doubled per silent try, capped
    assert r.rto == 1.25                                                  # the estimate itself stays
    assert r.sample(0.25) == 0.46875 + 4 * 0.203125 and r.samples == 3  # 7/8 SRTT + 1/8 R; 3/4 RTTVAR + 1/4 |SRTT-R|
    fast = RtoEstimator(initial=2.0, hi=2.0)
    for _ in range(200):
        fast.sample(0.001)
    assert fast.rto == 0.01                          # floor: a loopback round trip is about a millisecond
    assert [fast.timeout(k) for k in range(4)] == [0.01, 0.02, 0.04, 0.08]


def test_fec_probe_verdict_exact_numbers():
    """auto starts FEC; the replies' corrections decide: none in 256 bytes goes plain, one keeps FEC."""
    from tinyexit.firmware_bridge.harness.adaptive import PROBE_BYTES, fec_probe_verdict

    assert PROBE_BYTES == 256
    assert fec_probe_verdict(0, 255, 960) is None          # still measuring
    assert fec_probe_verdict(0, 256, 960) is False         # a clean line: plain
    assert fec_probe_verdict(1, 256, 960) is True          # 0.39 % per byte: FEC
    assert fec_probe_verdict(1, 2000, 960) is False        # 0.05 %: below the switch-over (~0.08 %)
    assert fec_probe_verdict(2, 2000, 960) is True         # 0.1 %


def test_line_meter_weighs_by_bytes_with_a_half_life():
    from tinyexit.firmware_bridge.harness.adaptive import LINE_HALF_LIFE, LineMeter

    m = LineMeter()
    m.observe(200, 3)
    assert m.byte_error() is None                          # fewer than PROBE_BYTES measured
    m.observe(100, 1)
    keep = 0.5 ** (100 / LINE_HALF_LIFE)
    assert (m.received, m.damaged) == (200 * keep + 100, 3 * keep + 1)
    assert round(m.byte_error(), 6) == 0.013324
    m.observe(LINE_HALF_LIFE, 0)                           # a clean half-life halves what was seen before
    assert round(m.damaged, 6) == round((3 * keep + 1) / 2, 6)


def test_fec_chunks_follow_the_measured_line_and_stay_on_block_boundaries():
    c = ChunkController(960)
    assert c.use_fec() == 178                              # 4 blocks of 48 raw bytes
    c.measured = 0.015                                     # 1 % + 0.5 %: 130 is best, 178 within 2 %: stays
    assert [c.record(False) for _ in range(3)] == [178, 178, 178] and (c.shrinks, c.failures) == (0, 3)
    c.measured = 0.04                                      # 3 % + 1 %
    assert c.record(True) == 58 and c.shrinks == 1
    c.measured = 0.0
    assert c.record(True) == 178
    assert c.use_plain(0.0) == 960 and not c.fec and c.error_rate == 0.0 and c.measured is None


def test_a_spurious_timeout_is_a_late_sample_after_all():
    from tinyexit.firmware_bridge.harness.adaptive import RtoEstimator

    rto = RtoEstimator(initial=0.1, lo=0.01, hi=2.0)
    for _ in range(8):
        rto.sample(0.002)
    assert rto.rto == pytest.approx(0.01)  # the floor: 2 ms round trips, no variance left to speak of
    srtt, rttvar = rto.srtt, rto.rttvar
    # the silent try's answer came after 30 ms: RFC 6298's update with that sample, nothing more
    assert rto.spurious_timeout(0.030) == pytest.approx(0.875 * srtt + 0.125 * 0.030
                                                        + 4 * (0.75 * rttvar + 0.25 * abs(srtt - 0.030)))
    assert rto.spurious == 1 and rto.samples == 9
    for _ in range(60):
        rto.sample(0.002)
    assert rto.rto == pytest.approx(0.01, abs=1e-4)  # and it comes down with the round trips
