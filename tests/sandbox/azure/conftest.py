"""Fixtures for the Azure simulator tests: a running simulator with this process's Azure SDKs pointed at it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from sandbox.azure import AzureSimulator
from sandbox.azure.testing import IDENTITY_ENV, StandardWorld, standard_world


@pytest.fixture
def start_simulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., AzureSimulator]]:
    """Start simulators (stopped at teardown) and point this process's Azure SDKs at the last one started."""
    started: list[AzureSimulator] = []

    def start(world: Any = None, **kwargs: Any) -> AzureSimulator:
        simulator = AzureSimulator(world if world is not None else standard_world().world, **kwargs).start()
        started.append(simulator)
        for name in IDENTITY_ENV:
            monkeypatch.delenv(name, raising=False)
        for name, value in simulator.app_settings().items():
            monkeypatch.setenv(name, value)
        return simulator

    yield start
    for simulator in started:
        simulator.stop()


@pytest.fixture
def std() -> StandardWorld:
    return standard_world()


@pytest.fixture
def sim(start_simulator: Callable[..., AzureSimulator], std: StandardWorld) -> AzureSimulator:
    """The standard world; tests move time with sim.advance() rather than waiting."""
    return start_simulator(std.world)
