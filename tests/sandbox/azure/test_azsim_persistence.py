"""`python -m sandbox azure --state DIR`: killed with SIGKILL and started again, the cloud carries on."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from sandbox.azure import mint_token
from sandbox.azure.testing import API, SYSTEM, TENANT, standard_world

REPOSITORY = Path(__file__).resolve().parents[3]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class CliSimulator:
    def __init__(self, arguments: list[str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sandbox", "azure", *arguments],
            cwd=REPOSITORY,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPOSITORY)},
        )
        self._output: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        self.lines = [self._line() for _ in range(4)]

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._output.put(line.rstrip("\n"))

    def _line(self, timeout: float = 30.0) -> str:
        try:
            return self._output.get(timeout=timeout)
        except queue.Empty:
            self.process.kill()
            raise AssertionError("the simulator printed nothing in time") from None

    def value(self, prefix: str) -> str:
        return next(line.split("=", 1)[1] for line in self.lines if line.startswith(prefix + "="))

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def terminate(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=10)


@pytest.fixture
def processes() -> Iterator[list[CliSimulator]]:
    started: list[CliSimulator] = []
    yield started
    for simulator in started:
        if simulator.process.poll() is None:
            simulator.kill()
        for stream in (simulator.process.stdout, simulator.process.stderr):
            if stream is not None:
                stream.close()


def _request(base: str, ca: str, method: str, path: str, body: Any = None) -> requests.Response:
    headers = {}
    if not path.startswith("/_sandbox"):
        headers["Authorization"] = f"Bearer {mint_token(SYSTEM, tenant_id=TENANT)}"
        path += ("&" if "?" in path else "?") + f"api-version={API}"
    return requests.request(method, base + path, json=body, headers=headers, verify=ca, timeout=10)


def test_cli_prints_ready_then_addresses_and_stops_on_sigterm(tmp_path: Path, processes: list[CliSimulator]) -> None:
    world_file = tmp_path / "world.json"
    world_file.write_text(json.dumps(standard_world().world))
    simulator = CliSimulator(["--world", str(world_file)])
    processes.append(simulator)
    assert simulator.lines[0].startswith("READY azure=https://127.0.0.1:")
    assert Path(simulator.value("CA")).read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert simulator.value("IDENTITY_ENDPOINT").startswith("http://127.0.0.1:")
    assert simulator.terminate() == 0


def test_state_survives_sigkill_and_the_encryption_finishes_on_time(
    tmp_path: Path, processes: list[CliSimulator]
) -> None:
    std = standard_world()
    orders = std.account_id("cosmos-orders")
    world = dict(std.world, accountData={orders: {"dataSizeGiB": 2.0, "spareRuPerSecond": 1000}})
    world_file = tmp_path / "world.json"
    world_file.write_text(json.dumps(world))
    state = tmp_path / "state"
    port = _free_port()
    arguments = ["--world", str(world_file), "--state", str(state), "--port", str(port)]

    first = CliSimulator(arguments)
    processes.append(first)
    base = f"https://127.0.0.1:{port}"
    assert first.lines[0] == f"READY azure={base}"
    ca = first.value("CA")
    patch = _request(base, ca, "PATCH", orders, {"properties": {"keyVaultKeyUri": std.key_uri}})
    assert patch.status_code == 200
    status_path = patch.headers["Azure-AsyncOperation"].removeprefix(base).split("?")[0]
    duration = 2.0 * 1024 * 1024 * 6 / 1000  # the default encryption model: ~3.5 simulated hours
    _request(base, ca, "POST", "/_sandbox/clock/advance", {"seconds": duration / 2})
    before = _request(base, ca, "GET", "/_sandbox/operations").json()["value"]
    sequence = _request(base, ca, "GET", "/_sandbox/requests").json()["last"]
    first.kill()

    # The world file no longer matters: the state directory wins.
    (tmp_path / "empty.json").write_text(json.dumps({"resources": []}))
    second = CliSimulator(["--world", str(tmp_path / "empty.json"), "--state", str(state), "--port", str(port)])
    processes.append(second)
    assert second.value("CA") == ca  # same CA: clients keep trusting the restarted simulator
    assert second.value("IDENTITY_HEADER") == first.value("IDENTITY_HEADER")
    assert _request(base, ca, "GET", status_path).json() == {"status": "InProgress"}
    assert _request(base, ca, "GET", orders).json()["properties"]["provisioningState"] == "Updating"
    assert _request(base, ca, "GET", "/_sandbox/operations").json()["value"] == before
    assert _request(base, ca, "GET", "/_sandbox/requests").json()["value"][0]["sequence"] == 1
    assert _request(base, ca, "PATCH", orders, {"tags": {"a": "b"}}).status_code == 409  # still locked

    _request(base, ca, "POST", "/_sandbox/clock/advance", {"seconds": duration / 2 - 120})
    assert _request(base, ca, "GET", status_path).json() == {"status": "InProgress"}
    _request(base, ca, "POST", "/_sandbox/clock/advance", {"seconds": 180})
    assert _request(base, ca, "GET", status_path).json() == {"status": "Succeeded"}
    account = _request(base, ca, "GET", orders).json()
    assert account["properties"]["keyVaultKeyUri"] == std.key_uri
    log = _request(base, ca, "GET", f"/_sandbox/requests?since={sequence}").json()["value"]
    assert log[0]["sequence"] > sequence  # the request sequence continues across the restart
    assert second.terminate() == 0


def test_in_process_restart_resumes_the_timeline(tmp_path: Path) -> None:
    """The same with the Python API, and with time passing while the simulator is down."""
    from sandbox.azure import AzureSimulator

    std = standard_world()
    orders = std.account_id("cosmos-orders")
    with AzureSimulator(std.world, state_dir=tmp_path, time_scale=3600) as simulator:
        base, ca = simulator.base_url, simulator.ca_bundle_path
        patch = _request(base, ca, "PATCH", orders, {"properties": {"keyVaultKeyUri": std.key_uri}})
        assert patch.status_code == 200
    time.sleep(2.0)  # two real seconds = two simulated hours: longer than the default 1 GiB encryption
    with AzureSimulator({"resources": []}, state_dir=tmp_path, time_scale=3600) as restarted:
        (operation,) = restarted.operations()
        assert operation["status"] == "Succeeded"
        account = _request(restarted.base_url, restarted.ca_bundle_path, "GET", orders).json()
        assert account["properties"]["keyVaultKeyUri"] == std.key_uri
