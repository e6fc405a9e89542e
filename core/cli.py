"""The `tinyexit` command line.  It only parses arguments and composes stages.

Each subpackage registers its own subcommands through `register(subparsers)`
in its `cli.py`, so a stage's options live beside the stage.  Handlers import
heavy libraries lazily: `tinyexit agent` must start on a device without torch.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from tinyexit import __version__
from tinyexit.errors import UserError

_COMMAND_MODULES = (
    "tinyexit.models.cli",
    "tinyexit.export.cli",
    "tinyexit.firmware_bridge.agent.cli",
    "tinyexit.firmware_bridge.harness.cli",
    "tinyexit.firmware_bridge.firmware.cli",
    "tinyexit.firmware_bridge.reliability.cli",
    "tinyexit.eval.cli",
    "tinyexit.eval.check_cli",
    "tinyexit.pipeline_cli",
    "tinyexit.profile_cli",
)


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's default prints usage; keep it to one line plus a hint
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tinyexit", description=__doc__.splitlines()[0].strip(". ") if __doc__ else None)
    parser.description = ("Train early-exit networks, export them to int8 TFLite/ONNX/C with one subgraph "
                          "per exit, benchmark them on a device over serial, and report measured vs modelled cost.")
    parser.add_argument("--version", action="version", version=f"tinyexit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.handler(args)
    except UserError as exc:
        print(f"tinyexit: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tinyexit: interrupted; results written so far are kept", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    raise SystemExit(main())
