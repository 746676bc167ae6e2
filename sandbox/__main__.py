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
    from sandbox.azure.cli import add_arguments, run

    parser = subparsers.add_parser(
        "azure",
        help="run the local Azure simulator",
        description="Prints 'READY azure=<base url>' then CA=, IDENTITY_ENDPOINT= and IDENTITY_HEADER= lines.",
    )
    add_arguments(parser)
    parser.set_defaults(handler=run)


COMMANDS: list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]] = [add_azure_command]


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
