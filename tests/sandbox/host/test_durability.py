"""A `host` process killed with SIGKILL resumes every orchestration from its state directory."""

from __future__ import annotations

import asyncio
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from sandbox.clock import SimClock
from sandbox.host import engine
from sandbox.host.host import LocalHost

from .conftest import REPO_ROOT, TOY_APP, http

TIME_SCALE = 600  # a simulated minute per 0.1 s


@contextmanager
def host_process(state: Path, marks: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """`python -c` running the CLI entry point, as `python -m sandbox host` will; yields it with its base URL."""
    command = (
        "import sys; from sandbox.host.cli import main; "
        f"sys.exit(main(['host', '--app', {str(TOY_APP)!r}, '--port', '0', "
        f"'--time-scale', '{TIME_SCALE}', '--state', {str(state)!r}]))"
    )
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TOY_MARKS_DIR": str(marks)}
    process = subprocess.Popen(
        [sys.executable, "-c", command],
        cwd=REPO_ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    stdout = process.stdout

    def pump() -> None:
        for line in stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    try:
        line = lines.get(timeout=30)
        assert line.startswith("Host listening on "), line
        yield process, line.split()[-1]
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


def _steps_marked(marks: Path, run: str) -> dict[int, int]:
    counts: dict[int, int] = {}
    for mark in marks.glob(f"{run}-*"):
        step = int(mark.name.split("-")[1])
        counts[step] = counts.get(step, 0) + 1
    return counts


def _wait_for(condition: object, timeout: float = 30.0) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_sigkill_mid_orchestration_then_restart_completes_without_losing_work(tmp_path: Path) -> None:
    state, marks = tmp_path / "state", tmp_path / "marks"
    marks.mkdir()
    params = {"run": "r", "steps": 8, "timer_after": 4, "timer_minutes": 30}
    with host_process(state, marks) as (process, base_url):
        started = http("POST", f"{base_url}/api/orchestrators/durable_steps?instanceId=steady", json_body=params)
        assert started.status == 202
        status_url = started.json()["statusQueryGetUri"]
        _wait_for(lambda: 1 in _steps_marked(marks, "r"))
        os.kill(process.pid, signal.SIGKILL)  # very likely while step 2 runs: its result is never recorded

    with host_process(state, marks) as (process, base_url):
        _wait_for(lambda: 3 in _steps_marked(marks, "r"))
        time.sleep(0.8)  # inside the 30-minute durable timer (3 s real)
        os.kill(process.pid, signal.SIGKILL)

    with host_process(state, marks) as (_, base_url):
        status_url = status_url.replace(status_url.split("/runtime/")[0], base_url)
        _wait_for(lambda: http("GET", status_url).status == 200)
        status = http("GET", status_url).json()

    assert status["runtimeStatus"] == "Completed"
    assert status["output"]["steps"] == list(range(8))
    assert sorted(_steps_marked(marks, "r")) == list(range(8)), "every activity ran at least once"
    # The timer kept its place on the persisted simulated timeline: a fresh clock would have added ~45 minutes. At
    # 600x, each real second a loaded machine spends restarting and replaying adds 10 simulated minutes on top of the
    # 30 (37-40 seen at a load average of 15), so the bound sits between that and the fresh clock's 75.
    assert 30 <= status["output"]["waitedMinutes"] < 60


def test_the_host_stops_even_when_asyncio_swallows_the_timer_loops_cancellation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Python 3.11's asyncio.wait_for can swallow a cancellation that arrives as the awaited event is set
    # (python/cpython#86296): a benchmark's stack once hung in stop(), its timer loop waiting on. Here every wait of
    # that loop swallows its cancellation; the host must still stop.
    async def swallowing(signal_event: asyncio.Event, timeout: float | None) -> None:
        try:
            await asyncio.wait_for(signal_event.wait(), timeout=timeout)
        except (TimeoutError, asyncio.CancelledError):
            return

    monkeypatch.setattr(engine, "_wait_for_signal", swallowing)
    host = LocalHost(TOY_APP, clock=SimClock(600), state_dir=tmp_path / "state")
    host.start()
    stopper = threading.Thread(target=host.stop, daemon=True)
    stopper.start()
    stopper.join(timeout=10)
    assert not stopper.is_alive(), "the host did not stop"
