"""The fault runs' key-by-key comparison: QEMU ticks compared exactly (the port restarts the timer's phase)."""
import json

from tinyexit.firmware_bridge.reliability.fault_runs import DETERMINISTIC_TICKS, compare_runs


def _write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _rec(sample, ticks, decision=0, runs=1):
    return {"model": "classifier", "sample": sample, "mode": "early_exit", "repeat": 0, "exit": 1,
            "logits": [1, 2], "ticks": ticks, "decision_ticks": decision, "runs": runs}


def test_qemu_ticks_must_be_exact(tmp_path):
    assert DETERMINISTIC_TICKS == {"qemu": 0}
    clean = _write(tmp_path / "clean.jsonl", [_rec(0, [100, 200]), _rec(1, [300]), _rec(2, [40, 50], 7, runs=3)])
    same = _write(tmp_path / "same.jsonl", [_rec(0, [100, 200]), _rec(1, [300]), _rec(2, [40, 50], 7, runs=3)])
    r = compare_runs(clean, same, DETERMINISTIC_TICKS["qemu"])
    assert (r["mismatches"]["ticks"], r["max_tick_difference"], r["ticks_identical"], r["tick_tolerance"]) == \
        (0, 0, 3, 0)
    # one tick off in one interval of three runs (a third of a tick per run) is a difference all the same
    off = _write(tmp_path / "off.jsonl", [_rec(0, [100, 201]), _rec(1, [300]), _rec(2, [40, 51], 7, runs=3)])
    r = compare_runs(clean, off, 0)
    assert (r["mismatches"]["ticks"], r["max_tick_difference"], r["ticks_identical"]) == (2, 1, 1)
    decision = _write(tmp_path / "dec.jsonl", [_rec(0, [100, 200]), _rec(1, [300], 1), _rec(2, [40, 50], 7, runs=3)])
    assert compare_runs(clean, decision, 0)["mismatches"]["ticks"] == 1
    assert compare_runs(clean, off, None)["ticks_compared"] is False  # wall-clock targets: not compared
