"""`tinyexit bench` (host side), registered by tinyexit.cli; handlers import lazily."""
from __future__ import annotations

import argparse

from tinyexit.firmware_bridge.protocol import constants as pc


def register(sub) -> None:
    """Add this stage's subcommands to the `tinyexit` parser."""
    b = sub.add_parser("bench", help="benchmark an exported model on one or more devices over the serial protocol",
                       description="Stream the bundle's test inputs through each --target, early exit decided on "
                                   "the device, plus full-depth and per-segment runs; writes "
                                   "RUN/bench/<target>/results.jsonl and summary.json. PATH is a run directory "
                                   "(benchmarks RUN/export/<model>) or a bundle directory (a folder holding "
                                   "manifest.json, e.g. a copy of RUN/export/classifier; results then go to "
                                   "PATH/bench/<target>/). Needs only the 'agent' extra (numpy, pyserial, "
                                   "ai-edge-litert); a bundle without test inputs is benchmarked on seeded "
                                   "synthetic inputs, without accuracy.")
    b.add_argument("run_dir", metavar="PATH", help="run directory, or a bundle directory holding manifest.json")
    b.add_argument("--target", action="append", required=True, metavar="TARGET",
                   help="agent (spawn the host agent on a pty pair), qemu, or a pyserial URL "
                        "(/dev/ttyUSB0, socket://HOST:PORT, rfc2217://HOST:PORT); repeat to shard across devices, "
                        "or @FILE for a devices file (one target per line, # comments)")
    b.add_argument("--model", default=None,
                   help="exported model of a run directory to benchmark (default classifier, or the run's only "
                        "bundle, e.g. an imported model; a bundle directory names its own)")
    b.add_argument("--modes", default="early_exit,full,segments",
                   help="comma list of early_exit, full, segments (default all three)")
    b.add_argument("--resume", action="store_true",
                   help="continue an interrupted run, skipping results already written")
    b.add_argument("--repeats", type=int, default=1, help="timed runs per sample and mode (default 1)")
    b.add_argument("--warmup", type=int, default=3, help="untimed runs per mode before measuring (default 3)")
    b.add_argument("--limit", type=int, default=None, help="only the first N test inputs")
    b.add_argument("--power", default=None, metavar="SPEC",
                   help="power monitor: ppk2:/dev/ttyACM1 | ina219:BUS:ADDR[:SHUNT_OHM] | ina226:BUS:ADDR[:SHUNT_OHM]; "
                        "without it energy is modelled and labelled so")
    b.add_argument("--energy-repeats", type=int, default=200,
                   help="inferences inside each measured energy window (with --power; default 200)")
    b.add_argument("--name", default=None, help="bench directory name (default derived from the targets)")
    b.add_argument("--runtime", choices=["litert", "tflite_runtime", "onnxruntime", "auto"], default="litert",
                   help="runtime of a spawned host agent (default litert; auto: litert, else tflite_runtime, "
                        "else onnxruntime)")
    b.add_argument("--baud", type=int, default=pc.DEFAULT_BAUD, help=f"baud rate for serial targets "
                                                                       f"(default {pc.DEFAULT_BAUD})")
    b.add_argument("--timeout", type=float, default=pc.REPLY_TIMEOUT_S,
                   help=f"first reply timeout in seconds; the session adapts it to the measured round trip "
                        f"(default {pc.REPLY_TIMEOUT_S})")
    b.add_argument("--retries", type=int, default=pc.MAX_RETRIES,
                   help=f"with --timeout, the silence budget: a device that sends nothing for timeout x "
                        f"(retries + 1) seconds is given up (default {pc.MAX_RETRIES}); NACKs and damaged "
                        "frames count as an answer")
    b.add_argument("--fec", choices=["auto", "on", "off"], default="auto",
                   help="forward error correction (Reed-Solomon frames, to devices with CAP_FEC): auto switches to "
                        "it when the measured line makes it carry more payload per byte than plain frames; on: "
                        "always; off: never (default auto)")
    b.add_argument("--max-resets", type=int, default=10,
                   help="device restarts survived per target before giving up (default 10)")
    b.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                   help="labgrid coordinator of labgrid:PLACE targets (default: $LG_COORDINATOR, else "
                        "127.0.0.1:20408); --target labgrid:PLACE, labgrid:GLOB or labgrid:TAG=VALUE acquires "
                        "the places, benchmarks over their RFC 2217 serial ports and releases them (docs/farm.md)")
    b.add_argument("--wait", nargs="?", type=float, const=86400.0, default=None, metavar="SECONDS",
                   help="wait for labgrid places someone else holds (default: refuse at once; without SECONDS: "
                        "up to a day)")
    b.set_defaults(handler=_bench)


def _bench(args: argparse.Namespace) -> int:
    from tinyexit.bundle import default_model
    from tinyexit.firmware_bridge.harness.bench import BenchConfig, run_benchmark
    from tinyexit.firmware_bridge.harness.session import SessionConfig

    modes = tuple(m.strip() for m in args.modes.split(",") if m.strip())
    cfg = BenchConfig(model=default_model(args.run_dir, args.model), modes=modes,
                      repeats=args.repeats, warmup=args.warmup, limit=args.limit, resume=args.resume,
                      power=args.power, energy_repeats=args.energy_repeats, name=args.name, runtime=args.runtime,
                      baud=args.baud, session=SessionConfig(reply_timeout_s=args.timeout, max_retries=args.retries,
                                            fec=args.fec),
                      max_resets=args.max_resets, wait_s=args.wait)
    targets = expand_targets(args.target)
    if any(t.startswith("labgrid:") for t in targets):
        import os
        from dataclasses import replace

        from tinyexit.firmware_bridge.harness.labgrid_target import coordinator_address, run_on_places

        cfg = replace(cfg, coordinator=coordinator_address(args.coordinator, os.environ))
        summary = run_on_places(run_benchmark, args.run_dir, targets, cfg)
    else:
        summary = run_benchmark(args.run_dir, targets, cfg)
    print(_one_line(summary))
    return 0


def expand_targets(specs: list[str]) -> list[str]:
    """--target values with every @FILE replaced by the targets listed in it."""
    from pathlib import Path

    from tinyexit.errors import UserError

    out = []
    for spec in specs:
        if not spec.startswith("@"):
            out.append(spec)
            continue
        path = Path(spec[1:])
        try:
            lines = path.read_text().splitlines()
        except OSError as exc:
            raise UserError(f"{path}: cannot read the devices file ({exc.strerror}); give one target per line") \
                from None
        found = [line.split("#", 1)[0].strip() for line in lines]
        found = [t for t in found if t]
        if not found:
            raise UserError(f"{path}: no targets in the devices file; give one target per line")
        out += found
    return out


def _one_line(s: dict) -> str:
    link = s["link"]
    parts = [f"bench {s['target']}: {s['samples']} samples", f"{s['wall_s']:.1f} s"]
    if s.get("accuracy", {}).get("early_exit") is not None:
        parts.append(f"early-exit accuracy {s['accuracy']['early_exit']:.4f}")
    if s.get("agreement_exit") is not None:
        parts.append(f"device=host exit {s['agreement_exit']:.4f} top1 {s['agreement_top1']:.4f}")
    if s.get("segment_overhead") is not None:
        parts.append(f"segment overhead {100 * s['segment_overhead']:+.1f} %")
    if link.get("payload_efficiency") is not None:
        parts.append(f"payload efficiency {100 * link['payload_efficiency']:.1f} %")
    parts.append(f"retries {link['retries']}")
    return ", ".join(parts) + f" -> {s['results']}"
