"""`python -m bench.dashboard [--accounts 1000] [--done 400]`: how fast the dashboard shows a large rollout.

Starts the local stack (discrete-event time, as the fleet benchmarks) with a world of N accounts, starts a rollout
of all of them (20 at a time), and once `--done` accounts have finished, measures in headless Chromium (Debian's, as
the browser tests use it), twice: "busy", while discrete-event time runs the rest of the rollout as fast as the CPU
allows (the worst case), and "steady", with the rollout going on in scaled real time (60x, as under `serve`):

- first view: from the navigation to ?rollout=<id> until the page has rendered the rollout's table and timeline
  (`window.__cmkDashboard.firstViewMs`, the page's own mark against `performance.timeOrigin`), with the server's
  caches cold for this rollout;
- refresh: the time of each automatic refresh, from its first request to its last DOM update (`lastRefreshMs`);
- the API alone: each of the two requests a refresh makes, timed from here.

Prints one JSON object. Each first view starts with the server's memory of earlier reads cleared.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from typing import Any

import requests

from bench.fleet import KEY, MAX_CONCURRENCY, SUBSCRIPTIONS, build_world
from sandbox.azure.testing import IDENTITY_ENV
from sandbox.clock import ClockAnchor
from sandbox.stack import LocalStack
from tests.dashboard.browser import require_browser, start_chromium
from triggers.dashboard_api import ASSETS, DASHBOARD_DIR


def _wait_done(url: str, rollout_id: str, done: int, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status: dict[str, Any] = requests.get(f"{url}/api/cmk/rollouts/{rollout_id}", timeout=60).json()
        custom = status.get("customStatus") or {}
        if int(custom.get("done") or 0) >= done or status["runtimeStatus"] not in ("Pending", "Running"):
            return status
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {custom.get('done')} done after {timeout:.0f} s")
        time.sleep(2)


def _browser(url: str, rollout_id: str, refreshes: int) -> dict[str, Any]:
    """First view and refresh times in Chromium (cold: the server has forgotten what it read)."""
    from coordination import fleet_status  # the app runs in this process: its memory is this module's

    fleet_status.reset_caches()
    driver = start_chromium(1280, 900)
    try:
        driver.get(f"{url}/api/cmk/dashboard?rollout={rollout_id}&refresh=2")
        deadline = time.monotonic() + 60
        while not driver.execute_script("return document.body.dataset.ready === '1'"):
            assert time.monotonic() < deadline, driver.execute_script("return document.body.innerText")[:2000]
            time.sleep(0.05)
        metrics = driver.execute_script("return window.__cmkDashboard")
        first_view = metrics["firstViewMs"]
        rows = driver.execute_script("return document.querySelectorAll('#accounts tbody tr[data-account]').length")
        total = json.loads(driver.execute_script("return document.body.dataset.rollout"))["total"]
        refresh_times: list[float] = []
        seen = metrics["refreshes"]
        while len(refresh_times) < refreshes:
            time.sleep(0.2)
            metrics = driver.execute_script("return window.__cmkDashboard")
            if metrics["refreshes"] > seen:
                seen = metrics["refreshes"]
                refresh_times.append(metrics["lastRefreshMs"])
        loaded = driver.execute_script(
            "return performance.getEntriesByType('navigation').concat(performance.getEntriesByType('resource'))"
            ".filter((e) => !e.name.includes('/api/cmk/rollouts/')).reduce((s, e) => s + e.decodedBodySize, 0)"
        )
    finally:
        driver.quit()
    return {
        "rowsShown": rows,
        "accountsInView": total,
        "firstViewMs": round(first_view),
        "refreshMs": {"median": statistics.median(refresh_times), "max": max(refresh_times), "all": refresh_times},
        "pageBytesLoaded": loaded,
    }


def _api(url: str, rollout_id: str, refreshes: int) -> dict[str, Any]:
    """Each request of a refresh, timed from here, past the server's one-second view cache every time."""
    api: dict[str, list[float]] = {"accounts": [], "timeline": []}
    size = 0
    for _ in range(refreshes):
        for name, path in (("accounts", "accounts?top=50"), ("timeline", "timeline")):
            started = time.perf_counter()
            response = requests.get(f"{url}/api/cmk/rollouts/{rollout_id}/{path}", timeout=60)
            response.raise_for_status()
            api[name].append(round((time.perf_counter() - started) * 1000, 1))
            size = len(response.content) if name == "timeline" else size
        time.sleep(1.1)
    return {
        "apiMs": {name: {"median": statistics.median(v), "max": max(v)} for name, v in api.items()},
        "timelineBytes": size,
    }


def measure(accounts: int, done: int, refreshes: int, timeout: float) -> dict[str, Any]:
    require_browser()
    world = build_world(accounts, sizes=[0.05, 0.2, 0.5])
    settings = {"CMK_KEY_VAULT_SUBSCRIPTIONS": json.dumps([SUBSCRIPTIONS[0]])}
    wall = time.perf_counter()
    with LocalStack(world, settings=settings, discrete=True) as stack:
        body: dict[str, Any] = {
            "scope": {"subscriptions": SUBSCRIPTIONS},
            "keyUri": KEY,
            "maxConcurrency": MAX_CONCURRENCY,
        }
        rollout_id = requests.post(f"{stack.host_url}/api/cmk/rollouts", json=body, timeout=60).json()["id"]
        status = _wait_done(stack.host_url, rollout_id, done, timeout)
        reached = (status.get("customStatus") or {}).get("done")
        # Busy: discrete-event time runs the rollout as fast as the CPU allows while the page is measured.
        busy = {**_browser(stack.host_url, rollout_id, refreshes), **_api(stack.host_url, rollout_id, refreshes)}
        # Steady: the rollout goes on in scaled real time (one real second is a simulated minute), as under serve.
        assert stack._driver is not None  # noqa: SLF001 - a benchmark switches the clock's mode
        stack._driver.stop()  # noqa: SLF001
        stack.clock._anchor = ClockAnchor(stack.clock.timestamp(), time.time(), 60.0)  # noqa: SLF001
        steady = {**_browser(stack.host_url, rollout_id, refreshes), **_api(stack.host_url, rollout_id, refreshes)}
    files = [DASHBOARD_DIR / "index.html", *(DASHBOARD_DIR / name for name in ASSETS)]
    return {
        "accounts": accounts,
        "doneWhenMeasured": reached,
        "busy": busy,
        "steady": steady,
        "pageBytes": sum(path.stat().st_size for path in files),
        "wallSeconds": round(time.perf_counter() - wall, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.dashboard", description=__doc__)
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--done", type=int, default=400, help="measure once this many accounts have finished")
    parser.add_argument("--refreshes", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=1800)
    arguments = parser.parse_args()
    for name in IDENTITY_ENV:
        os.environ.pop(name, None)
    print(json.dumps(measure(arguments.accounts, arguments.done, arguments.refreshes, arguments.timeout), indent=2))


if __name__ == "__main__":
    main()
