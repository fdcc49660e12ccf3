"""The ``onnxtopo`` command: a thin layer over the public API.

One module per command, each with ``add_parser(subparsers)`` (its options and help) and
``run(args)`` (does the work, returns the exit code); ``main`` parses, dispatches through
``COMMANDS`` and turns errors into the exit codes of ``onnxtopo.errors.ExitCode``.
"""

from __future__ import annotations

import argparse
import sys
import traceback

from .. import __version__
from ..errors import ExitCode, OnnxtopoError
from . import analyze, check, experiment, inspect, plot, static, zoo

#: command name -> its module, in the order ``onnxtopo --help`` lists them
COMMANDS = {"inspect": inspect, "analyze": analyze, "static": static, "experiment": experiment, "plot": plot,
            "check": check, "zoo": zoo}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="onnxtopo",
        description="Persistent homology of the graph a neural network exported to ONNX induces on an input.",
    )
    parser.add_argument("--version", action="version", version=f"onnxtopo {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS.values():
        command.add_parser(subparsers)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command].run(args)
    except OnnxtopoError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"onnxtopo: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("onnxtopo: interrupted; results already written are complete", file=sys.stderr)
        return ExitCode.INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - a bug of ours: say so in one line, keep the traceback for --debug
        if args.debug:
            traceback.print_exc()
        print(f"onnxtopo: internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback, "
              "and please report it)", file=sys.stderr)
        return ExitCode.INTERNAL_ERROR
