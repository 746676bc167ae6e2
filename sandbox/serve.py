"""`python -m sandbox serve --world FILE [--port 7071] [--azure-port N] [--time-scale N | --discrete] [--state DIR]
[--settings FILE] [--require-keys] [--auth functionKey|entra]`: the product running whole on this machine.

`--discrete` runs it on discrete-event time (sandbox.stack.DiscreteEventDriver), as the benchmarks do: simulated
time stands still while anything computes and jumps to the next timer or operation end once all is idle, so a
rollout's makespan, read from outside (its output's timings, the simulator's /_sandbox/operations), measures the
waits Azure and the product impose and nothing of this machine's speed."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from pathlib import Path
from types import FrameType

from sandbox.azure.world import load_worlds
from sandbox.host import easy_auth
from sandbox.stack import LocalAzureStack

# The admin dashboard the app serves (triggers/dashboard_api.py).
DASHBOARD_PATH = "/api/cmk/dashboard"


def dashboard_url(stack: LocalAzureStack) -> str:
    return f"{stack.host_url}{DASHBOARD_PATH}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--world",
        type=Path,
        action="append",
        required=True,
        help="world file for the simulator (repeatable: files are merged; Azure CLI exports are accepted)",
    )
    parser.add_argument("--port", type=int, default=7071, help="host port on 127.0.0.1 (0 picks a free one)")
    parser.add_argument("--azure-port", type=int, default=0, help="simulator port (0 picks a free one)")
    clock = parser.add_mutually_exclusive_group()
    clock.add_argument("--time-scale", type=float, default=1.0, help="simulated seconds per real second")
    clock.add_argument(
        "--discrete",
        action="store_true",
        help="discrete-event time: the clock stands still while anything runs and jumps to the next thing due "
        "once all is idle (for measuring makespans in simulated time)",
    )
    parser.add_argument("--state", type=Path, help="state directory shared by host and simulator (SIGKILL-safe)")
    parser.add_argument("--settings", type=Path, help="local.settings.json-format file of app settings")
    parser.add_argument("--require-keys", action="store_true", help="enforce function keys as Azure does")
    parser.add_argument(
        "--auth",
        choices=("functionKey", "entra"),
        default="functionKey",
        help="entra: emulate App Service Authentication with Entra ID (local unsigned tokens carrying roles; "
        "cmk-admin --as-role mints them) and run the app with CMK_AUTH_MODE=entra; system endpoints keep keys",
    )


def run(arguments: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stopping = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    stack = LocalAzureStack(
        load_worlds(list(arguments.world)),
        time_scale=arguments.time_scale,
        state_dir=arguments.state,
        host_port=arguments.port,
        azure_port=arguments.azure_port,
        settings_file=arguments.settings,
        require_keys=arguments.require_keys,
        auth=arguments.auth,
        discrete=arguments.discrete,
    )
    with stack:
        clock = "discrete" if arguments.discrete else f"x{arguments.time_scale:g}"
        print(
            f"READY host={stack.host_url} azure={stack.azure_url} dashboard={dashboard_url(stack)} clock={clock}",
            flush=True,
        )
        print(f"CA={stack.simulator.ca_bundle_path}", flush=True)
        assert stack.host is not None
        if stack.host.keys is not None:
            print(f"Function key: {stack.host.keys.default_function}", flush=True)
        if arguments.auth == "entra":
            print(f"Token audience: {easy_auth.DEFAULT_AUDIENCE} (cmk-admin --as-role CMK.Operator ...)", flush=True)
        while not stopping.wait(0.5):
            pass
    return 0
