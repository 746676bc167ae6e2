"""`python -m bench.dashboard [--accounts 1000] [--done 400] [--time-scale 60]`: how fast the dashboard shows a
large rollout.

Once (kept under --state): the local stack with a world of N accounts runs a rollout of all of them, 20 at a time,
in discrete-event time until `--done` have finished. Then, on a copy of that state, the stack goes on in scaled real
time (`--time-scale`, as `serve` runs it: the rest of the rollout keeps moving) while headless Chromium (Debian's,
as the browser tests use it) opens the rollout's view and this script times:

- first view: from the navigation to ?rollout=<id> until the page has rendered the rollout's table and timeline
  (`window.__cmkDashboard.firstViewMs`, the page's own mark against `performance.timeOrigin`), the server having
  read nothing of the rollout before;
- refresh: each automatic refresh, from its first request to its last DOM update (`lastRefreshMs`);
- the API alone: each of the two requests a refresh makes, timed from here.

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

from bench.fleet import KEY, MAX_CONCURRENCY, SUBSCRIPTIONS, build_world
from sandbox.azure.testing import IDENTITY_ENV
from sandbox.stack import LocalAzureStack
from tests.dashboard.browser import require_browser, start_chromium
from triggers.dashboard_api import ASSETS, DASHBOARD_DIR

SETTLE_SECONDS = 15
SETTINGS = {"CMK_KEY_VAULT_SUBSCRIPTIONS": json.dumps([SUBSCRIPTIONS[0]])}


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
        first_parts = {"requestsMs": metrics["lastFetchMs"], "renderMs": metrics["lastRenderMs"]}
        page_loaded = driver.execute_script(
            "const n = performance.getEntriesByType('navigation')[0]; return Math.round(n.domContentLoadedEventEnd)"
        )
        rows = driver.execute_script("return document.querySelectorAll('#accounts tbody tr[data-account]').length")
        total = json.loads(driver.execute_script("return document.body.dataset.rollout"))["total"]
        refresh_times: list[float] = []
        refresh_parts: list[tuple[float, float]] = []
        seen = metrics["refreshes"]
        while len(refresh_times) < refreshes:
            time.sleep(0.2)
            metrics = driver.execute_script("return window.__cmkDashboard")
            if metrics["refreshes"] > seen:
                seen = metrics["refreshes"]
                refresh_times.append(metrics["lastRefreshMs"])
                refresh_parts.append((metrics["lastFetchMs"], metrics["lastRenderMs"]))
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
        "firstView": {"pageLoadedMs": page_loaded, **first_parts},
        "refreshMs": {
            "median": statistics.median(refresh_times),
            "max": max(refresh_times),
            "all": refresh_times,
            "requestsAndRenderMs": refresh_parts,
        },
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


def prepare(state: Path, accounts: int, done: int, timeout: float) -> str:
    """A task hub and simulator state in `state` with a rollout of `accounts` accounts `done` of them finished
    (discrete-event time: as fast as the CPU allows); its id. Made once, reused by later runs."""
    marker = state / "rollout.json"
    if marker.exists():
        return str(json.loads(marker.read_text())["id"])
    with LocalAzureStack(_world(accounts), settings=SETTINGS, discrete=True, state_dir=state) as stack:
        body: dict[str, Any] = {
            "scope": {"subscriptions": SUBSCRIPTIONS},
            "keyUri": KEY,
            "maxConcurrency": MAX_CONCURRENCY,
        }
        rollout_id = str(requests.post(f"{stack.host_url}/api/cmk/rollouts", json=body, timeout=60).json()["id"])
        _wait_done(stack.host_url, rollout_id, done, timeout)
    marker.write_text(json.dumps({"id": rollout_id, "accounts": accounts, "done": done}))
    return rollout_id


def measure(state: Path, accounts: int, done: int, refreshes: int, timeout: float, scale: float) -> dict[str, Any]:
    """The rollout in `state` (made by `prepare`) going on at `scale` simulated seconds per second, as `serve`
    runs it, while the page and the API are timed."""
    require_browser()
    rollout_id = prepare(state, accounts, done, timeout)
    wall = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cmk-dashboard-bench-") as scratch:
        copy = Path(scratch) / "state"
        shutil.copytree(state, copy)
        with LocalAzureStack(_world(accounts), settings=SETTINGS, time_scale=scale, state_dir=copy) as stack:
            time.sleep(SETTLE_SECONDS)  # the restarted host first catches up with the timers that fell due
            status = requests.get(f"{stack.host_url}/api/cmk/rollouts/{rollout_id}", timeout=60).json()
            figures = {
                **_browser(stack.host_url, rollout_id, refreshes),
                **_api(stack.host_url, rollout_id, refreshes),
            }
    files = [DASHBOARD_DIR / "index.html", *(DASHBOARD_DIR / name for name in ASSETS)]
    return {
        "accounts": accounts,
        "doneWhenMeasured": (status.get("customStatus") or {}).get("done"),
        "timeScale": scale,
        **figures,
        "pageBytes": sum(path.stat().st_size for path in files),
        "wallSeconds": round(time.perf_counter() - wall, 1),
    }


def _world(accounts: int) -> dict[str, Any]:
    return build_world(accounts, sizes=[0.05, 0.2, 0.5])


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.dashboard", description=__doc__)
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--done", type=int, default=400, help="measure once this many accounts have finished")
    parser.add_argument("--refreshes", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--time-scale", type=float, default=60.0, help="simulated seconds per second while measured")
    parser.add_argument(
        "--state", type=Path, default=Path(".state/bench-dashboard"), help="where the prepared rollout is kept"
    )
    arguments = parser.parse_args()
    for name in IDENTITY_ENV:
        os.environ.pop(name, None)
    state = arguments.state / f"{arguments.accounts}-{arguments.done}"
    state.mkdir(parents=True, exist_ok=True)
    figures = measure(
        state, arguments.accounts, arguments.done, arguments.refreshes, arguments.timeout, arguments.time_scale
    )
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
