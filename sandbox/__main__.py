"""`python -m sandbox <command>`: the local stand-ins for Azure used by tests, the demo and the benchmarks.

Each command lives in its own function registered in `COMMANDS`; add a command by writing an
`add_<name>_command(subparsers)` function and listing it there.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence


def add_azure_command(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`azure`: the Azure simulator (ARM, identity endpoint, Cosmos data plane, Event Grid) until SIGINT/SIGTERM."""
    from sandbox.azure.command import add_arguments, run

    parser = subparsers.add_parser(
        "azure",
        help="run the local Azure simulator",
        description="Prints 'READY azure=<base url>' then CA=, IDENTITY_ENDPOINT= and IDENTITY_HEADER= lines.",
    )
    add_arguments(parser)
    parser.set_defaults(handler=run)


def add_serve_command(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`serve`: the simulator and the local Functions host running function_app.py, until SIGINT/SIGTERM."""
    from sandbox.serve import add_arguments, run

    parser = subparsers.add_parser(
        "serve",
        help="run the app on the local host against the simulator",
        description="Prints 'READY host=<url> azure=<url> dashboard=<url> clock=<x scale|discrete>' when both listen.",
    )
    add_arguments(parser)
    parser.set_defaults(handler=run)


def add_host_command(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`host`: the local Functions host alone, for any function app directory."""
    from sandbox.host.cli import main as host_main

    parser = subparsers.add_parser("host", help="run a function app on the local host (no simulator)", add_help=False)
    parser.add_argument("arguments", nargs=argparse.REMAINDER)
    parser.set_defaults(handler=lambda arguments: host_main(arguments.arguments))


def add_demo_command(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`demo`: enable CMK on the shipped world's accounts through the HTTP API and check the outcomes."""
    from sandbox.demo import add_arguments, run

    parser = subparsers.add_parser("demo", help="the main job end to end on the simulator")
    add_arguments(parser)
    parser.set_defaults(handler=run)


COMMANDS: list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]] = [
    add_azure_command,
    add_serve_command,
    add_host_command,
    add_demo_command,
]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    for add_command in COMMANDS:
        add_command(subparsers)
    arguments = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = arguments.handler
    return handler(arguments)


if __name__ == "__main__":
    sys.exit(main())
