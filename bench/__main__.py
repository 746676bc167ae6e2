"""`python -m bench [--quick] [--only monitor,fleet]`: run the benchmarks, print a table, and write
bench/results.json (each suite's figures measured in this run, beside their references). A --quick run only prints."""

from __future__ import annotations

import argparse
import json
import logging
import platform
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sandbox.azure.testing import IDENTITY_ENV

RESULTS = Path(__file__).with_name("results.json")


def _suites() -> dict[str, Callable[[bool], dict[str, Any]]]:
    from bench import fleet, monitor

    return {"monitor": monitor.run, "fleet": fleet.run}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a fast look")
    parser.add_argument("--only", help="comma-separated suites to run")
    arguments = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    import os

    for name in IDENTITY_ENV:
        os.environ.pop(name, None)
    suites = _suites()
    chosen = arguments.only.split(",") if arguments.only else list(suites)
    results: dict[str, Any] = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    for name in chosen:
        started = time.perf_counter()
        figures = suites[name](arguments.quick)
        figures["measuredAt"] = datetime.now(UTC).isoformat(timespec="seconds")
        figures["benchSeconds"] = round(time.perf_counter() - started, 1)
        results.update(figures)
        print(render(name, figures), flush=True)
    if arguments.quick:
        # Quick figures are for a look, not the record: the committed results stay those of a full run.
        print(f"\nquick run: {RESULTS} left unchanged")
        return 0
    results["machine"] = {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()}
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {RESULTS}")
    return 0


def render(name: str, figures: dict[str, Any]) -> str:
    if name == "monitor":
        lines = [
            f"\nmonitor (continue_as_new every {figures['pollsPerGeneration']} polls) vs naive (never)",
            f"{'loop':<8} {'polls':>7} {'max history':>12} {'replay CPU ms/poll':>19} {'episodes':>9} {'wall s':>7}",
        ]
        for kind in ("monitor", "naive"):
            for row in figures[kind]:
                lines.append(
                    f"{kind:<8} {row['polls']:>7} {row['maxHistoryEvents']:>12} {row['replayCpuMsPerPoll']:>19} "
                    f"{row['episodes']:>9} {row['wallSeconds']:>7}"
                )
        return "\n".join(lines)
    return render_fleet(figures)


def render_fleet(figures: dict[str, Any]) -> str:
    fleet, scale = figures["fleet"], figures["scale"]
    sequential = fleet["sequentialScript"]
    hours = 3600
    lines: list[str] = []
    fleets = [("mixed encryption lengths (10 min to 7 h)", fleet["rollout"])]
    if "shortFleet" in figures:
        fleets.append(("10-minute encryptions, RBAC vault", figures["shortFleet"]["rollout"]))
    for title, rollout in fleets:
        lines += [
            f"\nfleet: {rollout['accounts']:,} accounts, {title}, maxConcurrency {fleet['maxConcurrency']} "
            "(simulated hours)",
            f"  rollout makespan          {rollout['makespanSeconds'] / hours:8.2f} h",
            f"  lower bound max(maxT, sumT/c) {rollout['lowerBoundSeconds'] / hours:4.2f} h"
            f"   (makespan / bound = {rollout['makespanOverLowerBound']})",
            f"  ARM requests per account  {rollout['armRequestsPerAccount']:8}",
            f"  status reads / acct-hour  {rollout['statusReadsPerAccountHour']:8}",
            f"  429 share (real buckets)  {rollout['throttledShare']:8.2%}",
        ]
        noticed = rollout.get("noticedAfterAzureSeconds")
        if noticed:
            lines.append(
                f"  end noticed after Azure   median {noticed['median']:.0f} s, max {noticed['max']:.0f} s "
                f"(under an hour: max {noticed['maxUnderAnHour']} s; longer: max {noticed['maxAnHourOrMore']} s)"
            )
        if rollout is fleet["rollout"]:
            lines.append(
                f"  sequential SDK script     {sequential['makespanSeconds'] / hours:8.2f} h"
                f"   ({fleet['speedupOverSequential']}x slower than the rollout, {sequential['accounts']:,} accounts)"
            )
    lines.append("scale (wall time on this machine; makespans in simulated time):")
    rows = [("dry run", scale["dryRun"]), ("rollout, 10-min encryptions", scale["rollout"])]
    if "largeDryRun" in scale:
        rows.append(("dry run", scale["largeDryRun"]))
    for kind, row in rows:
        label = f"{row['accounts']:,}-account {kind}"
        lines.append(
            f"  {label:<42} wall {row['wallSeconds']:7.1f} s   peak RSS {row['peakRssMiB']:7.1f} MiB host, "
            f"{row.get('stackPeakRssMiB', '?')} MiB with the worker processes   "
            f"CPU {row.get('hostCpuSeconds', '?')} s host + {row.get('workerCpuSeconds', '?')} s in "
            f"{row.get('workerProcesses', 1)} worker processes   "
            f"429 share {row['throttledShare']:.2%}   makespan {row['makespanSeconds']:.0f} s "
            f"(ARM's buckets allow {row.get('armBucketBoundSeconds', '?')} s)   {row['totals']}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
