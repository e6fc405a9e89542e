"""`tinyexit bench` end to end against the host agent on a real pty pair."""
import json

import numpy as np
import pytest

from tinyexit.firmware_bridge.harness.bench import BenchConfig, run_benchmark
from tinyexit.firmware_bridge.harness.results import read_results, record_key

MODES = ["early_exit", "full", "full:all_exits", "segment:0", "segment:1", "segment:2"]


def test_benchmark_matches_the_host_reference_and_writes_documented_files(fixture_run):
    cfg = BenchConfig(limit=60, repeats=2, warmup=1, progress=False)
    summary = run_benchmark(fixture_run, ["agent"], cfg, log=lambda msg: None)
    out = fixture_run / "bench" / "host-agent"
    records, torn = read_results(out / "results.jsonl")
    assert torn is None and len(records) == 60 * len(MODES) * 2
    assert len({record_key(r) for r in records}) == len(records)
    assert {r["mode"] for r in records} == set(MODES)
    for r in records:
        assert r["host_logits_equal"] and r["exit"] == r["host_exit"] and r["top1"] == int(np.argmax(r["logits"]))
        assert r["tick_hz"] == 10**9 and r["device"] == "host-agent" and r["runs"] == 1
        segments_run = 1 if r["mode"].startswith("full") else r["exit"] + 1
        assert len(r["ticks"]) == segments_run and (r["mode"] == "early_exit" or r["exit"] == r["host_exit"])
    early = [r for r in records if r["mode"] == "early_exit"]
    assert len({r["exit"] for r in early}) == 3  # the device took every exit somewhere
    assert all(r["decision_ticks"] > 0 for r in early)
    assert summary == json.loads((out / "summary.json").read_text())
    assert summary["simulated_or_real"] == "host-agent on this machine" and summary["target"] == "host-agent"
    assert "raspberry" not in json.dumps(summary).lower()
    assert summary["samples"] == 60 and summary["agreement_exit"] == summary["agreement_top1"] == 1.0
    assert all(a["logits_equal"] == 1.0 for a in summary["agreement"].values())
    # A clean link damages nothing; a retry is allowed only as a reply later than the adaptive timeout
    # (a loaded machine stalls the agent), never for a damaged frame or a NACK.
    link = summary["link"]
    assert link["crc_errors"] == link["resyncs"] == link["nacks"] == link["corrupt_frames"] == 0
    assert link["retries"] == link["timeouts"] and summary["payload_efficiency"] >= 0.9 * (
        1 if link["retries"] == 0 else 0.5)
    assert summary["energy"]["source"] == "modelled"
    assert [e["energy_source"] for e in summary["per_exit"]] == ["modelled"] * 3
    assert summary["per_exit"][2]["mac_ratio"] == pytest.approx(summary["per_exit"][2]["macs"] / 43680)
    detail = summary["segment_overhead_detail"]
    assert detail["baseline"] == "full:all_exits"
    assert summary["segment_overhead"] == detail["chain_vs_all_exits_ratio"] - 1
    assert summary["early_exit"]["exit_fraction"] == [np.mean([r["exit"] == k for r in early if r["repeat"] == 0])
                                                      for k in range(3)]
    assert (out / "bench_config.json").is_file() and (out / "agent-0.log").is_file()


def test_existing_results_need_resume_and_resume_repeats_nothing(fixture_run):
    cfg = BenchConfig(limit=8, modes=("early_exit",), warmup=0, progress=False)
    run_benchmark(fixture_run, ["agent"], cfg, log=lambda msg: None)
    path = fixture_run / "bench" / "host-agent" / "results.jsonl"
    before = path.read_bytes()
    with pytest.raises(Exception, match="holds 8 results from an earlier run; pass --resume"):
        run_benchmark(fixture_run, ["agent"], cfg, log=lambda msg: None)
    summary = run_benchmark(fixture_run, ["agent"], BenchConfig(**{**cfg.__dict__, "resume": True}),
                            log=lambda msg: None)
    assert path.read_bytes() == before and summary["resume"]["previous_results"] == 8


def test_resume_discards_a_torn_last_line_and_completes_every_key_once(fixture_run):
    cfg = BenchConfig(limit=20, modes=("early_exit", "segments"), warmup=0, progress=False)
    run_benchmark(fixture_run, ["agent"], cfg, log=lambda msg: None)
    path = fixture_run / "bench" / "host-agent" / "results.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    kept = b"".join(lines[:37])
    path.write_bytes(kept + lines[37][:25])  # an interrupted write: half a line, no newline
    messages = []
    summary = run_benchmark(fixture_run, ["agent"], BenchConfig(**{**cfg.__dict__, "resume": True}),
                            log=messages.append)
    records, torn = read_results(path)
    assert torn is None and path.read_bytes().startswith(kept)
    assert len(records) == 20 * 4 and len({record_key(r) for r in records}) == 80
    assert any("discarded a torn last line (25 bytes" in msg for msg in messages)
    assert summary["resume"]["torn_line"]["bytes"] == 25
    assert (path.parent / "results.jsonl.torn").read_bytes() == lines[37][:25] + b"\n"


def test_two_devices_share_the_test_split(fixture_run):
    cfg = BenchConfig(limit=30, modes=("early_exit", "full"), warmup=0, progress=False)
    summary = run_benchmark(fixture_run, ["agent", "agent"], cfg, log=lambda msg: None)
    records, _ = read_results(fixture_run / "bench" / "host-agent" / "results.jsonl")
    assert len(records) == 90 and len({record_key(r) for r in records}) == 90
    by_device = {d: sorted({r["sample"] for r in records if r["device"] == d})
                 for d in ("host-agent#0", "host-agent#1")}
    assert by_device["host-agent#0"] == list(range(0, 30, 2)) and by_device["host-agent#1"] == list(range(1, 30, 2))
    assert [d["samples"] for d in summary["devices"]] == [15, 15]
    assert summary["agreement_exit"] == 1.0 and summary["link"]["frames_sent"] == sum(
        d["link"]["frames_sent"] for d in summary["devices"])


def test_a_bundle_without_inputs_gets_seeded_synthetic_inputs_and_no_labels(fixture_run):
    from tinyexit.bundle import load_bundle
    from tinyexit.firmware_bridge.harness.bench import bench_inputs

    art_dir = fixture_run / "export" / "classifier"
    (art_dir / "inputs.npz").unlink()
    man = json.loads((art_dir / "manifest.json").read_text())
    del man["inputs"]
    man.update(policy=None, float_input_range=[-1.0, 1.0],
               input={**man["input"], "shape": [1, 8, 8, 2], "scale": 2 / 255, "zero_point": -1})
    (art_dir / "manifest.json").write_text(json.dumps(man))
    art = load_bundle(art_dir)
    notes = []
    got = bench_inputs(art, 20, notes.append)
    assert got.source.startswith("synthetic") and got.x.shape == (20, 8, 8, 2) and got.x.dtype == np.int8
    assert (got.labels == -1).all() and got.t is None and "20 seeded synthetic inputs" in notes[0]
    assert got.detail() == {"source": got.source, "n": 20, "labels": False, "timesteps": False}
    assert np.array_equal(got.x, bench_inputs(art, 20, notes.append).x)  # seeded: the same every run


def test_the_bundle_inputs_are_streamed_labels_only_for_a_classifier_and_t_for_a_denoiser(fixture_run):
    from tinyexit.bundle import load_bundle
    from tinyexit.firmware_bridge.harness.bench import bench_inputs
    from tinyexit.rundir import sha256_file

    art_dir = fixture_run / "export" / "classifier"
    with np.load(art_dir / "inputs.npz") as f:
        x, y = f["x"], f["y"]
    got = bench_inputs(load_bundle(art_dir), 7, None)
    assert np.array_equal(got.x, x[:7]) and np.array_equal(got.labels, y[:7]) and got.t is None
    assert got.source == "test split of digits" and got.detail()["labels"] is True
    # A denoiser-like bundle: y are targets (not labels), t the step of each input.
    targets, t = np.where(x[:, ..., 0] > 0, 1, -1).astype(np.int64), np.arange(len(x), dtype=np.int64) % 5 + 1
    np.savez(art_dir / "inputs.npz", x=x, y=targets, t=t)
    man = json.loads((art_dir / "manifest.json").read_text())
    man["inputs"].update(sha256=sha256_file(art_dir / "inputs.npz"), labels=False, timesteps=True,
                         source="noised test split")
    (art_dir / "manifest.json").write_text(json.dumps(man))
    got = bench_inputs(load_bundle(art_dir), 7, None)
    assert (got.labels == -1).all() and got.t.tolist() == [1, 2, 3, 4, 5, 1, 2]
    assert got.detail() == {"source": "noised test split", "n": 7, "labels": False, "timesteps": True}
