"""The microbenchmark sweep and the kernel features: exact trip counts of the firmware's loops."""
import pytest

from tinyexit.errors import UserError
from tinyexit.export import microbench as mb


def test_inside_taps_counts_taps_over_real_input():
    # 3x3 SAME on 4x4: per axis 2 + 3 + 3 + 2 = 10 taps inside
    assert mb._inside_taps(4, 4, 4, 4, 3, 3, (1, 1), (1, 1), (1, 1)) == 100
    # VALID: every tap inside
    assert mb._inside_taps(6, 6, 4, 4, 3, 3, (1, 1), (0, 0), (1, 1)) == 16 * 9


def test_ring_widens_each_input_row_once():
    assert mb._ring_widens(8, 3, 1, 1) == 10     # rows -1..8 of a SAME 3x3 over 8 rows
    assert mb._ring_widens(4, 3, 2, 0) == 9      # stride 2, VALID: rows 0..8
    assert mb._ring_widens(4, 1, 1, 0) == 4


def test_sweep_is_seeded_and_valid():
    a, b = mb.default_sweep(), mb.default_sweep()
    assert a == b and len(a) > 100
    assert {p.kind for p in a} == set(mb.SWEEP_KINDS) >= {"conv", "dwconv", "fc", "add", "mean", "avgpool", "pad", "softmax"}
    assert all(p.padding == "SAME" or p.k <= min(p.h, p.w) for p in a)
    assert [p.kind for p in mb.default_sweep(("fc",))] == ["fc"] * 16


def test_unknown_kind_is_refused():
    with pytest.raises(UserError, match="sweep kind 'lstm'"):
        mb.SweepPoint("lstm")
