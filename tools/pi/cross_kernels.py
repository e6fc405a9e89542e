"""How far a device's int8 logits are from this host's, for BOTH host kernel sets, per mode.

The bench compares a device with the host running the device's own kernel set; this script re-reads
results.jsonl of one or more benches and compares every record with the host's optimized AND reference
kernels, with the optimized kernels' tolerance (one side runs them), so "arm64 optimized vs x86 reference" or "x86 optimized vs x86 reference" can be read off.

usage: .venv/bin/python tools/pi/cross_kernels.py BUNDLE BENCH_NAME [BENCH_NAME ...]
"""
from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from tinyexit.bundle import load_bundle, load_test_inputs
from tinyexit.firmware_bridge.harness import figures as fig
from tinyexit.firmware_bridge.harness.reference import TOLERANCE_LSB, compare, compute_reference
from tinyexit.firmware_bridge.harness.results import read_results


def cross(bundle: Path, names: list[str]) -> list[dict]:
    art = load_bundle(bundle)
    x, _ = load_test_inputs(art)
    # optimized kernels on one side: the optimized tolerance applies whichever side has them
    refs = {k: compute_reference(art, x, art.policy, f"litert:{k}", tolerance_lsb=TOLERANCE_LSB["optimized"])
            for k in ("optimized", "reference")}
    rows = []
    for name in names:
        records, _ = read_results(bundle / "bench" / name / "results.jsonl")
        for kernels, ref in refs.items():
            by_mode = defaultdict(list)
            for r in records:
                if r.get("repeat", 0) == 0:
                    by_mode[r["mode"]].append({**r, **compare(ref, r["mode"], r["sample"], r["exit"],
                                                              np.asarray(r["logits"]))})
            per_mode = {m: fig.agreement_detail(rs) for m, rs in by_mode.items()}
            rows.append({"bench": name, "host_kernels": kernels,
                         "per_mode": {m: {"n": len(by_mode[m]), **d} for m, d in per_mode.items()}})
    return rows


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    bundle, names = Path(argv[0]), argv[1:]
    rows = cross(bundle, names)
    for row in rows:
        print(f"{row['bench']} vs host {row['host_kernels']} kernels:")
        for mode, d in row["per_mode"].items():
            print(f"  {mode:16s} n={d['n']:4d} max|Δ| LSB histogram {d['logit_lsb_histogram']}  "
                  f"exit disagreements {d['exit_disagree']} ({d['exit_disagree_borderline']} borderline), "
                  f"top-1 {d['top1_disagree']} ({d['top1_disagree_borderline']} borderline)")
    out = bundle / "bench" / f"cross_kernels-{'-'.join(names)}.json"
    out.write_text(json.dumps(rows, indent=1) + "\n")
    print(f"-> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
