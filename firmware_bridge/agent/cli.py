"""`tinyexit agent` (device side), registered by tinyexit.cli.

The handler imports lazily: `tinyexit agent` must start on a Raspberry Pi with
only numpy, pyserial and one interpreter runtime installed.
"""
from __future__ import annotations

import argparse

from tinyexit.firmware_bridge.protocol import constants as pc


def register(sub) -> None:
    """Add `tinyexit agent` to the `tinyexit` parser."""
    a = sub.add_parser("agent", help="serve an exported model over a serial link (run this on the device)",
                       description="Serve RUN/export/<model> over the tinyexit serial protocol on PORT: run segments, "
                                   "decide the exit on the device, time each segment (docs/raspberry-pi.md).")
    a.add_argument("--port", required=True, help="pyserial URL: /dev/ttyGS0, /dev/serial0, /dev/pts/N, socket://...")
    a.add_argument("--artifact", required=True, metavar="BUNDLE_DIR",
                   help="bundle directory holding manifest.json (RUN/export/classifier, or a copy of it anywhere)")
    a.add_argument("--runtime", choices=["auto", "litert", "tflite_runtime", "onnxruntime"], default="auto",
                   help="inference runtime on the device; auto (default): ai-edge-litert, else tflite_runtime, "
                        "else onnxruntime when the bundle has int8 ONNX files")
    a.add_argument("--kernels", choices=["optimized", "reference"], default="optimized",
                   help="TFLite kernels: optimized (default; measure latency with these) or reference "
                        "(portable, bit-identical across CPUs; check agreement with these)")
    a.add_argument("--baud", type=int, default=pc.DEFAULT_BAUD, help=f"baud rate (default {pc.DEFAULT_BAUD})")
    a.add_argument("--threads", type=int, default=1, help="inference threads (default 1)")
    a.add_argument("--name", default="", help="device name reported to the host (default agent@HOSTNAME)")
    a.set_defaults(handler=_agent)

    p = sub.add_parser("agent-bundle", help="write what a Raspberry Pi needs to run the agent: a tinyexit wheel, "
                                            "the bundle(s) and install.sh",
                       description="Write OUT/ with a pure-Python tinyexit wheel, RUN/export/<model>/ (or BUNDLE_DIR) "
                                   "and install.sh, which makes a venv on the Pi and installs the runtime its CPU can "
                                   "get (ai-edge-litert on aarch64, tflite-runtime on armv7l); docs/raspberry-pi.md.")
    p.add_argument("source", metavar="RUN_or_BUNDLE", help="run directory (every export/<model>/) or one bundle directory")
    p.add_argument("--out", required=True, metavar="DIR", help="directory to write (copy it to the Pi)")
    p.add_argument("--model", action="append", default=[], help="only this bundle of the run (repeatable)")
    p.add_argument("--wheels", action="append", default=[], choices=["aarch64", "armv7l", "x86_64"],
                   help="also download the runtime's wheels for this CPU into OUT/wheels, for "
                        "'install.sh --offline' (repeatable; armv7l takes numpy from the distro)")
    p.add_argument("--python-version", default="3.11", help="the Pi's Python for --wheels (default 3.11, bookworm)")
    p.set_defaults(handler=_agent_bundle)


def _agent(args: argparse.Namespace) -> int:
    from tinyexit.firmware_bridge.agent.server import AgentConfig, run_agent

    return run_agent(AgentConfig(port=args.port, artifact=args.artifact, runtime=args.runtime, baud=args.baud,
                                 threads=args.threads, name=args.name, kernels=args.kernels))


def _agent_bundle(args: argparse.Namespace) -> int:
    from tinyexit.firmware_bridge.agent.bundle_pack import AgentBundleConfig, pack_agent_bundle

    pack_agent_bundle(args.source, AgentBundleConfig(out=args.out, models=tuple(args.model),
                                                       wheels_for=tuple(args.wheels),
                                                       python_version=args.python_version))
    return 0
