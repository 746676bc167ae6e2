"""`python -m sandbox azure`: run the simulator until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path

from sandbox.azure.ids import JsonDict
from sandbox.azure.simulator import AzureSimulator
from sandbox.azure.world import WorldError, load_worlds


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--world",
        type=Path,
        action="append",
        default=[],
        help="world file (repeatable: files are merged; Azure CLI exports are accepted)",
    )
    parser.add_argument("--port", type=int, default=0, help="HTTPS port (default: any free port)")
    parser.add_argument("--identity-port", type=int, default=0, help="managed-identity endpoint port (plain http)")
    parser.add_argument("--time-scale", type=float, default=1.0, help="simulated seconds per real second")
    parser.add_argument("--state", type=Path, default=None, help="state directory (persist and resume)")
    parser.add_argument("--rbac-propagation-seconds", type=float, help="override simulator.rbacPropagationSeconds")
    parser.add_argument("--identity-operation-seconds", type=float, help="override simulator.identityOperationSeconds")
    parser.add_argument("--no-throttling", action="store_true", help="disable ARM and Resource Graph throttling")
    parser.add_argument(
        "--no-authorization",
        action="store_true",
        help="log ARM authorization decisions, refuse nothing (simulator.authorization.enforce false)",
    )
    parser.add_argument("--read-bucket", type=float, help="ARM read bucket size per principal")
    parser.add_argument("--read-refill", type=float, help="ARM read refill per second")
    parser.add_argument("--write-bucket", type=float, help="ARM write bucket size per principal")
    parser.add_argument("--write-refill", type=float, help="ARM write refill per second")
    parser.add_argument("--seed", type=int, help="random seed for probabilistic faults and event delivery")


def overrides_from(arguments: argparse.Namespace) -> JsonDict:
    overrides: JsonDict = {}
    if arguments.rbac_propagation_seconds is not None:
        overrides["rbacPropagationSeconds"] = arguments.rbac_propagation_seconds
    if arguments.identity_operation_seconds is not None:
        overrides["identityOperationSeconds"] = arguments.identity_operation_seconds
    if arguments.seed is not None:
        overrides["randomSeed"] = arguments.seed
    if getattr(arguments, "no_authorization", False):
        overrides["authorization"] = {"enforce": False}
    throttling: JsonDict = {}
    if arguments.no_throttling:
        throttling["enabled"] = False
    for flag, setting in (
        ("read_bucket", "readBucket"),
        ("read_refill", "readRefillPerSecond"),
        ("write_bucket", "writeBucket"),
        ("write_refill", "writeRefillPerSecond"),
    ):
        value = getattr(arguments, flag)
        if value is not None:
            throttling[setting] = value
    if throttling:
        overrides["throttling"] = throttling
    return overrides


def run(arguments: argparse.Namespace) -> int:
    try:
        world = load_worlds(list(arguments.world))
        simulator = AzureSimulator(
            world,
            time_scale=arguments.time_scale,
            state_dir=arguments.state,
            port=arguments.port,
            identity_port=arguments.identity_port,
            settings_overrides=overrides_from(arguments) or None,
        )
    except (WorldError, OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return asyncio.run(_serve(simulator))


async def _serve(simulator: AzureSimulator) -> int:
    loop = asyncio.get_running_loop()
    task = loop.create_task(simulator.serve_forever())
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, task.cancel)
    while simulator.port == 0 and not task.done():
        await asyncio.sleep(0.01)
    if task.done():
        await task
        return 1
    print(f"READY azure={simulator.base_url}", flush=True)
    print(f"CA={simulator.ca_bundle_path}", flush=True)
    print(f"IDENTITY_ENDPOINT={simulator.identity_endpoint}", flush=True)
    print(f"IDENTITY_HEADER={simulator.identity_header}", flush=True)
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return 0
