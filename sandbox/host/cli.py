"""`host --app DIR [--port 7071] [--time-scale N] [--state DIR] [--settings FILE] [--require-keys]`."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from sandbox.clock import SimClock
from sandbox.host import allocator
from sandbox.host.clock_anchor import load_clock
from sandbox.host.host import LocalHost


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="host", description="Run a Python function app locally with Durable Functions."
    )
    parser.add_argument("--app", type=Path, required=True, help="directory containing function_app.py and host.json")
    parser.add_argument("--port", type=int, default=7071, help="port on 127.0.0.1 (0 picks a free one)")
    parser.add_argument("--time-scale", type=float, default=1.0, help="simulated seconds per real second")
    parser.add_argument("--state", type=Path, help="state directory (task hub and clock); temporary when omitted")
    parser.add_argument("--settings", type=Path, help="local.settings.json-format file of app settings")
    parser.add_argument("--require-keys", action="store_true", help="enforce function keys like Azure does")
    return parser


def main(argv: list[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments and arguments[0] == "host":
        arguments = arguments[1:]
    options = _parser().parse_args(arguments)
    allocator.tune_this_process()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    clock = load_clock(options.state, options.time_scale) if options.state else SimClock(options.time_scale)
    host = LocalHost(
        options.app,
        clock=clock,
        state_dir=options.state,
        port=options.port,
        require_keys=options.require_keys,
        settings_file=options.settings,
    )
    stopping = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    host.start()
    try:
        _announce(host)
        while not stopping.wait(0.5):
            pass
    finally:
        host.stop()
    return 0


def _announce(host: LocalHost) -> None:
    assert host.registry is not None and host.config is not None
    lines = [f"Host listening on {host.base_url}", "Functions:"]
    prefix = f"/{host.config.route_prefix}" if host.config.route_prefix else ""
    for info in sorted(host.registry.functions.values(), key=lambda f: f.name.lower()):
        trigger = info.trigger_type
        if trigger == "httpTrigger":
            methods = ",".join(info.trigger.get("methods") or ["GET", "POST", "..."])
            lines.append(f"  {info.name}: [{methods}] {host.base_url}{prefix}/{info.trigger.get('route')}")
        elif trigger == "eventGridTrigger":
            lines.append(
                f"  {info.name}: eventGridTrigger {host.base_url}/runtime/webhooks/eventgrid?functionName={info.name}"
            )
        else:
            lines.append(f"  {info.name}: {trigger}")
    if host.keys is not None:
        lines.append(f"Master key: {host.keys.master}")
        lines.append(f"Default function key: {host.keys.default_function}")
        lines.append(f"durabletask_extension key: {host.keys.durabletask_extension}")
        lines.append(f"eventgrid_extension key: {host.keys.eventgrid_extension}")
    print("\n".join(lines), flush=True)
