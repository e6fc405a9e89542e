"""`tinyexit reliability faults|fuzz-decoder`: the long fault-injection and fuzzing runs (docs/reliability.md).

These are benchmarks of the harness's robustness, not tests: the suite runs
short versions of both; these commands run the long ones and print the figures.
"""
from __future__ import annotations

import argparse
import json

from tinyexit.firmware_bridge.protocol import constants as pc


def register(sub) -> None:
    """Add this stage's subcommands to the `tinyexit` parser."""
    p = sub.add_parser("reliability", help="long fault-injection benchmarks and decoder fuzzing (docs/reliability.md)",
                       description="Prove the harness survives a bad link, device resets and hostile bytes.")
    acts = p.add_subparsers(dest="action", metavar="ACTION")
    acts.required = True

    f = acts.add_parser("faults", help="benchmark on a clean and on a fault-injecting link; results must be identical",
                        description="Benchmark RUN_DIR's export on each --target twice, clean and through a seeded "
                                    "fault-injecting relay, and compare: exit, int8 logits (and QEMU ticks) identical, "
                                    "every sample exactly once. Writes RUN/bench/<name>-<target>-faults/"
                                    "reliability.json; exits 1 if anything differs.")
    f.add_argument("run_dir", metavar="RUN_DIR")
    f.add_argument("--target", action="append", choices=["agent", "qemu"], required=True,
                   help="agent or qemu; repeat for both")
    f.add_argument("--model", default="classifier", help="exported model (default classifier)")
    for name, default, what in (("corrupt", 0.01, "probability a byte gets a bit flipped"),
                                ("drop", 0.005, "probability a byte is dropped"),
                                ("duplicate", 0.0, "probability a byte is doubled"),
                                ("insert", 0.0, "probability a random noise byte is inserted before a byte"),
                                ("split", 0.0, "probability a write is split in two"),
                                ("delay", 0.0, "probability a write is delayed 2 ms"),
                                ("stall", 0.0, "probability the link stalls 0.25 s before a write")):
        f.add_argument(f"--{name}", type=float, default=default, help=f"{what}, each direction (default {default})")
    f.add_argument("--seed", type=int, default=1, help="seed of the fault generator (default 1)")
    f.add_argument("--resets", type=int, default=0, help="kill the device this many times mid-run (default 0)")
    f.add_argument("--modes", default="early_exit", help="bench modes (default early_exit)")
    f.add_argument("--limit", type=int, default=None, help="first N test samples (default: the whole split)")
    f.add_argument("--timeout", type=float, default=pc.REPLY_TIMEOUT_S,
                   help=f"first reply timeout, s; the session adapts it (default {pc.REPLY_TIMEOUT_S})")
    f.add_argument("--retries", type=int, default=pc.MAX_RETRIES,
                   help=f"silence budget = timeout x (retries + 1) (default {pc.MAX_RETRIES})")
    f.add_argument("--fec", default="auto",
                   help="forward error correction: auto (when the measured line calls for it), on, off (default "
                        "auto); with --sweep a comma list runs each, e.g. off,auto")
    f.add_argument("--name", default=None,
                   help="bench directory prefix (default: reliability, or reliability-2, ... when taken)")
    f.add_argument("--sweep", action="store_true",
                   help="instead of one line: every mode, the session's defaults, at 1 %% corrupt + 0.5 %% drop and "
                        "at 3 %% + 1 %% on each --target; prints the table (and writes it into --doc)")
    f.add_argument("--doc", default=None, help="with --sweep: the docs/reliability.md whose sweep table to replace")
    f.set_defaults(handler=_faults)

    z = acts.add_parser("fuzz-decoder", help="hypothesis fuzzing of the Python frame decoder and message parsers",
                        description="Feed hypothesis-built and mutated byte streams to the frame decoder; stops at "
                                    "the first violation (unexpected exception, unbounded buffer, hang, phantom "
                                    "frame, lost resynchronization).")
    z.add_argument("--inputs", type=int, default=1_000_000, help="inputs to feed (default 1000000)")
    z.add_argument("--variants", type=int, default=10, help="inputs per hypothesis example (default 10)")
    z.add_argument("--seed", type=int, default=0, help="hypothesis seed (default 0)")
    z.add_argument("--out", default=None, help="also write the figures to this JSON file")
    z.set_defaults(handler=_fuzz)
    _register_fuzz_c(acts)


def _register_fuzz_c(acts) -> None:
    """`fuzz-c` (libFuzzer on the firmware's C protocol code) lives in reliability_c, when installed."""
    import importlib.util

    if importlib.util.find_spec("tinyexit.firmware_bridge.reliability.fuzz_c") is None:
        return
    from tinyexit.firmware_bridge.reliability.fuzz_c import register_fuzz_c

    register_fuzz_c(acts)


def _faults(args: argparse.Namespace) -> int:
    from tinyexit.firmware_bridge.reliability.fault_runs import FaultRunConfig, run_fault_benchmark

    modes = tuple(m.strip() for m in args.modes.split(",") if m.strip())
    if args.sweep:
        return _sweep(args)
    ok = True
    for target in args.target:
        cfg = FaultRunConfig(target=target, model=args.model, corrupt=args.corrupt, drop=args.drop,
                             duplicate=args.duplicate, insert=args.insert, split=args.split, delay=args.delay, stall=args.stall,
                             seed=args.seed, modes=modes, limit=args.limit, resets=args.resets,
                             reply_timeout_s=args.timeout, max_retries=args.retries, name=args.name,
                             fec=args.fec)
        ok &= run_fault_benchmark(args.run_dir, cfg)["ok"]
    return 0 if ok else 1


def _sweep(args: argparse.Namespace) -> int:
    import sys

    from tinyexit.firmware_bridge.reliability.sweep import SweepConfig, run_sweep, table, write_doc

    from tinyexit.firmware_bridge.harness.session import SessionConfig

    fec = tuple(f.strip() for f in args.fec.split(",") if f.strip())
    for mode in fec:
        SessionConfig(fec=mode)  # one clear line for a bad mode, before anything runs
    cfg = SweepConfig(targets=tuple(args.target), limit=args.limit, seed=args.seed,
                      name=args.name or "sweep", fec=fec)
    rows = run_sweep(args.run_dir, cfg)
    print(table(rows), end="")
    if args.doc:
        write_doc(args.doc, rows, "tinyexit reliability faults RUN " + " ".join(f"--target {t}" for t in cfg.targets)
                  + " --sweep" + (f" --fec {args.fec}" if args.fec != "auto" else ""))
    return 0 if all(r["ok"] for r in rows) else 1


def _fuzz(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tinyexit.errors import UserError
    from tinyexit.firmware_bridge.reliability.fuzz_decoder import FuzzConfig, fuzz_decoder

    cfg = FuzzConfig(inputs=args.inputs, variants=args.variants, seed=args.seed)
    if args.out and Path(args.out).exists():
        raise UserError(f"{args.out}: exists; choose another --out (nothing is overwritten)")
    stats = fuzz_decoder(cfg)
    if args.out:
        Path(args.out).write_text(json.dumps(stats, indent=2) + "\n")
    return 0
