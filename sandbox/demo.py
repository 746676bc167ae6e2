"""`python -m sandbox demo`: enable CMK on every account of a shipped world through the app's HTTP API, on the
local simulator, with live progress and a final table; exit 0 when every account reached the predicted outcome."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import requests

from sandbox.azure.clouds import as_cloud
from sandbox.serve import dashboard_url
from sandbox.stack import REPO_ROOT, LocalAzureStack

DEFAULT_WORLD = REPO_ROOT / "sandbox" / "worlds" / "demo.json"
DEFAULT_TIME_SCALE = 1500.0
FINAL = {"Completed", "Failed", "Terminated"}


@dataclass
class Tracked:
    account_id: str
    expectation: dict[str, Any]
    instance_id: str = ""
    phase: str = ""
    status: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.account_id.rsplit("/", 1)[-1]

    @property
    def output(self) -> dict[str, Any]:
        output = self.status.get("output")
        return output if isinstance(output, dict) else {}

    def matches(self) -> bool:
        output = self.output
        if output.get("outcome") != self.expectation["outcome"]:
            return False
        wanted = self.expectation.get("finding")
        return wanted is None or wanted in {f["code"] for f in output.get("findings") or []}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--world", type=Path, default=DEFAULT_WORLD, help="world file with an 'expectations' map")
    parser.add_argument("--time-scale", type=float, default=DEFAULT_TIME_SCALE, help="simulated seconds per second")
    parser.add_argument("--state", type=Path, help="keep the simulator and host state here (default: temporary)")
    parser.add_argument("--timeout", type=float, default=600.0, help="real seconds to wait for every account")
    parser.add_argument(
        "--keep",
        action="store_true",
        help="leave the stack running after the final table (open the dashboard on the finished demo; Ctrl-C stops)",
    )
    parser.add_argument(
        "--cloud",
        choices=("AzureCloud", "AzureUSGovernment", "AzureChinaCloud"),
        default="AzureCloud",
        help="the cloud the simulator answers as (its token audience, key and Cosmos DB domains); the app follows",
    )


def run(arguments: argparse.Namespace) -> int:
    world = json.loads(arguments.world.read_text(encoding="utf-8"))
    if arguments.cloud != "AzureCloud":
        world = as_cloud(world, arguments.cloud)
    expectations: dict[str, dict[str, Any]] = world.get("expectations") or {}
    if not expectations:
        print(f"{arguments.world} has no 'expectations' to run", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="cmk-demo-") as scratch:
        state = arguments.state or Path(scratch)
        with LocalAzureStack(world, time_scale=arguments.time_scale, state_dir=state) as stack:
            code = run_demo(stack, expectations, arguments.timeout, sys.stdout)
            if arguments.keep:
                print(f"\nStill running (--keep). Dashboard: {dashboard_url(stack)}  Ctrl-C stops.", flush=True)
                _wait_for_stop()
            return code


def _wait_for_stop() -> None:
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda number, frame: stopping.set())
    while not stopping.wait(0.5):
        pass


def run_demo(stack: LocalAzureStack, expectations: dict[str, dict[str, Any]], timeout: float, out: TextIO) -> int:
    started = stack.clock.now()
    out.write(
        f"Simulated Azure: {stack.azure_url}\nFunction app:    {stack.host_url} (function_app.py, unchanged)\n"
        f"Dashboard:       {dashboard_url(stack)}\n"
        f"Time runs {stack.clock.time_scale:g}x: one real second is {stack.clock.time_scale / 60:g} simulated minutes."
        f"\nEnabling customer-managed keys on {len(expectations)} accounts through POST /api/cmk/accounts\n\n"
    )
    tracked = [Tracked(account_id, expectation) for account_id, expectation in expectations.items()]
    session = requests.Session()
    for item in tracked:
        response = session.post(
            f"{stack.host_url}/api/cmk/accounts",
            json={"accountId": item.account_id, "keyUri": item.expectation["keyUri"]},
            timeout=30,
        )
        response.raise_for_status()
        item.instance_id = response.json()["id"]
    deadline = time.monotonic() + timeout
    while True:
        for item in tracked:
            if item.status.get("runtimeStatus") in FINAL:
                continue
            item.status = session.get(f"{stack.host_url}/api/cmk/instances/{item.instance_id}", timeout=30).json()
            _show_progress(item, started, stack.clock.now(), out)
        if all(item.status.get("runtimeStatus") in FINAL for item in tracked) or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    out.write("\n" + render_table(tracked) + "\n")
    matched = sum(item.matches() for item in tracked)
    elapsed = _elapsed(started, stack.clock.now())
    out.write(f"\n{matched}/{len(tracked)} accounts reached the predicted outcome in {elapsed} of simulated time.\n")
    return 0 if matched == len(tracked) else 1


def _show_progress(item: Tracked, started: datetime, now: datetime, out: TextIO) -> None:
    custom = item.status.get("customStatus") or {}
    phase = str(custom.get("phase") or item.status.get("runtimeStatus") or "")
    if phase == item.phase:
        return
    item.phase = phase
    clock = _elapsed(started, now)
    detail = ""
    if phase == "encrypting":
        detail = f"operation {custom.get('operationStatus')}, next poll {custom.get('nextPollAt')}"
    elif phase == "done":
        detail = f"{item.output.get('outcome', '')}"
    out.write(f"[+{clock:>8} simulated] {item.name:<28} {phase:<17} {detail}\n")
    out.flush()


def _elapsed(started: datetime, now: datetime) -> str:
    return str(now - started).split(".")[0]


def render_table(tracked: list[Tracked]) -> str:
    rows = [("account", "outcome", "expected", "", "reason")]
    for item in tracked:
        output = item.output
        outcome = output.get("outcome") or item.status.get("runtimeStatus") or "?"
        reason = _short_reason(output)
        rows.append((item.name, outcome, item.expectation["outcome"], "ok" if item.matches() else "MISMATCH", reason))
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    lines = []
    for index, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(widths[column]) for column, cell in enumerate(row[:4])) + "  " + row[4])
        if index == 0:
            lines.append("  ".join("-" * width for width in widths) + "  " + "-" * 40)
    return "\n".join(lines)


def _short_reason(output: dict[str, Any]) -> str:
    blocking = [f["code"] for f in output.get("findings") or [] if f.get("severity") == "blocking"]
    if output.get("outcome") in ("Refused", "AlreadyEnabled") and blocking:
        return ", ".join(blocking)
    reason = str(output.get("reason") or "")
    return reason if len(reason) <= 110 else reason[:107] + "..."
