"""Fixtures for the local host's tests: a toy app hosted in-process, and a small synchronous HTTP client."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sandbox.clock import SimClock
from sandbox.host import LocalHost

TOY_APP = Path(__file__).parent / "toy_app"
REPO_ROOT = Path(__file__).resolve().parents[3]
FAST = 36_000.0  # one simulated hour per 0.1 s


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode()


def http(
    method: str,
    url: str,
    *,
    json_body: Any = None,
    data: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> Reply:
    request_headers = dict(headers or {})
    if json_body is not None:
        data = json.dumps(json_body).encode()
        request_headers.setdefault("Content-Type", "application/json")
    request = urllib.request.Request(url, data=data, method=method, headers=request_headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return Reply(response.status, dict(response.headers.items()), response.read())
    except urllib.error.HTTPError as error:
        return Reply(error.code, dict(error.headers.items()), error.read())


HostFactory = Callable[..., LocalHost]


@pytest.fixture
def start_host(tmp_path: Path) -> Iterator[HostFactory]:
    """Starts the toy app; every host started here is stopped after the test."""
    hosts: list[LocalHost] = []

    def start(
        *,
        time_scale: float = FAST,
        state_dir: Path | None = None,
        settings: dict[str, str] | None = None,
        require_keys: bool = False,
    ) -> LocalHost:
        host = LocalHost(
            TOY_APP,
            clock=SimClock(time_scale),
            state_dir=state_dir or tmp_path / "state",
            settings=settings,
            require_keys=require_keys,
        )
        host.start()
        hosts.append(host)
        return host

    yield start
    for host in hosts:
        host.stop()


@pytest.fixture
def host(start_host: HostFactory) -> LocalHost:
    return start_host()


def events_of(history: list[dict[str, Any]], event_type: int) -> list[dict[str, Any]]:
    return [event for event in history if event["EventType"] == event_type]
