"""A benchmark, not a test: wall time of one bench sharded over 1, 2, 4 ... QEMU places of a local farm.

`python -m tinyexit.firmware_bridge.harness.farm_scaling RUN [--places 1,2,4] [--limit N]` starts a local
farm (farm_local.py) with the largest count of QEMU places, benchmarks early exit on the first k places
for each k (every run in the same farm, one after another), and a direct `--target qemu` run; prints and
writes RUN/bench/farm-scaling.json: wall seconds (whole run: acquisitions included; and the bench's own
worker phase), the ratio to one place, samples per second per place, whether every run equals the
direct one, and the RFC 2217 payload efficiency.  On a machine with fewer cores than places the QEMUs
share the cores: the ratio then measures the machine, not the farm.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

from tinyexit.firmware_bridge.harness import labgrid_target as lg
from tinyexit.firmware_bridge.harness.bench import BenchConfig, run_benchmark
from tinyexit.firmware_bridge.harness.farm_local import FarmConfig, start_farm
from tinyexit.firmware_bridge.harness.results import read_results

_FIELDS = ("exit", "top1", "logits")  # ticks agree up to the timer phase (+-2 ticks of 40 instructions)


def _outcome(path: Path) -> dict:
    recs, _ = read_results(path)
    return {(r["sample"], r["mode"]): [r[f] for f in _FIELDS] for r in recs}


def measure(run: Path, counts: list[int], limit: int | None, log=print) -> dict:
    quiet = dict(modes=("early_exit",), warmup=3, limit=limit, progress=False)
    for old in (run / "bench").glob("scaling-*"):  # this command's own directories from an earlier measurement
        shutil.rmtree(old)
    t0 = time.monotonic()
    direct = run_benchmark(run, ["qemu"], BenchConfig(name="scaling-direct", **quiet), log=lambda m: None)
    rows = {"direct_qemu": {"wall_s": round(time.monotonic() - t0, 3), "bench_wall_s": direct["wall_s"]}}
    want = _outcome(run / "bench" / "scaling-direct" / "results.jsonl")
    with start_farm(run, FarmConfig(qemu=max(counts), agents=0, exporters=2), log=log) as farm:
        for k in counts:
            places = [f"labgrid:qemu-{i}" for i in range(k)]
            cfg = BenchConfig(name=f"scaling-{k}", coordinator=farm.coordinator, **quiet)
            t0 = time.monotonic()
            s = lg.run_on_places(run_benchmark, run, places, cfg, log=lambda m: None)
            wall = time.monotonic() - t0
            by_place = s["places"]["by_place"]
            eff = [p["rfc2217"]["efficiency"] for p in by_place.values() if p.get("rfc2217")]
            rows[f"{k}_places"] = {
                "wall_s": round(wall, 3), "bench_wall_s": s["wall_s"], "samples": s["samples"],
                "samples_per_s": round(s["samples"] / s["wall_s"], 2),
                "samples_per_s_per_place": round(s["samples"] / s["wall_s"] / k, 2),
                "equal_to_direct": _outcome(run / "bench" / f"scaling-{k}" / "results.jsonl") == want,
                "rfc2217_efficiency": min(eff) if eff else None,
                "frame_payload_efficiency": s["payload_efficiency"]}
            log(f"farm-scaling: {k} place(s): {json.dumps(rows[f'{k}_places'])}")
    one = rows.get("1_places")
    if one:
        for k in counts:
            r = rows[f"{k}_places"]
            r["ratio_to_1"] = round(r["wall_s"] / one["wall_s"], 3)
            r["bench_ratio_to_1"] = round(r["bench_wall_s"] / one["bench_wall_s"], 3)
    rows["cpus"] = os.cpu_count()
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="farm_scaling", description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("--places", default="1,2,4")
    ap.add_argument("--limit", type=int, default=None, help="first N test inputs (default all)")
    args = ap.parse_args(argv)
    run = Path(args.run_dir)
    rows = measure(run, [int(k) for k in args.places.split(",")], args.limit)
    (run / "bench").mkdir(exist_ok=True)
    (run / "bench" / "farm-scaling.json").write_text(json.dumps(rows, indent=1))
    print(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
