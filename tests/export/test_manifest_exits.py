"""export/manifest.exits_record: cumulative MACs and ratios, including a model without MACs."""
from tinyexit.export.manifest import exits_record


def test_exit_ratios_are_cumulative_macs_over_full_depth():
    rows = exits_record([100, 300, 600], 1000)
    assert [r["cumulative_macs"] for r in rows] == [100, 400, 1000]
    assert [r["mac_ratio"] for r in rows] == [0.1, 0.4, 1.0]


def test_a_model_without_macs_has_ratio_one_not_a_division_by_zero():
    rows = exits_record([0, 0], 0)
    assert [(r["index"], r["cumulative_macs"], r["mac_ratio"]) for r in rows] == [(0, 0, 1.0), (1, 0, 1.0)]
