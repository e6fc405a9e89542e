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
    a.add_argument("--runtime", choices=["litert", "onnxruntime"], default="litert",
                   help="inference runtime on the device (default litert)")
    a.add_argument("--baud", type=int, default=pc.DEFAULT_BAUD, help=f"baud rate (default {pc.DEFAULT_BAUD})")
    a.add_argument("--threads", type=int, default=1, help="inference threads (default 1)")
    a.add_argument("--name", default="", help="device name reported to the host (default agent@HOSTNAME)")
    a.set_defaults(handler=_agent)


def _agent(args: argparse.Namespace) -> int:
    from tinyexit.firmware_bridge.agent.server import AgentConfig, run_agent

    return run_agent(AgentConfig(port=args.port, artifact=args.artifact, runtime=args.runtime, baud=args.baud,
                                 threads=args.threads, name=args.name))
