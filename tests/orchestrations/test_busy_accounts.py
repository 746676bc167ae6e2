"""Accounts busy with another operation (a scale or backup-policy change in flight): busy is a state, not a
verdict. The account is waited for, durably and up to CMK_BUSY_WAIT_HOURS, and refused as ACCOUNT_BUSY only when
that wait runs out; nothing is changed on a refused account. Each test has a stack of its own, since the account is
busy from the moment its world loads, in scaled time (1 s is 25 simulated minutes): discrete-event time would jump
to the busy operation's end before the test's request arrives."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sandbox.azure.testing import key_patches
from sandbox.stack import LocalAzureStack
from tests.orchestrations.test_true_outcomes import _hours, _id, _output, _stack, _start, _world

TIME_SCALE = 1500


@pytest.fixture
def busy_2h() -> Iterator[LocalAzureStack]:
    """An account busy with another operation for 2 h from the start (a fresh stack: time starts with it)."""
    yield from _stack(_world(["busy"], busy_hours=2), time_scale=TIME_SCALE)


@pytest.fixture
def busy_longer_than_the_wait() -> Iterator[LocalAzureStack]:
    """Busy for 3 h against a 1-hour CMK_BUSY_WAIT_HOURS."""
    yield from _stack(_world(["busy"], busy_hours=3), time_scale=TIME_SCALE, settings={"CMK_BUSY_WAIT_HOURS": "1"})


def test_an_account_busy_with_another_operation_is_waited_for_then_enabled(busy_2h: LocalAzureStack) -> None:
    stack = busy_2h
    output = _output(stack, _start(stack, "busy"))
    assert output["outcome"] == "Enabled", output["reason"]
    assert _hours(output["timings"]["startedAt"], output["timings"]["preflightDoneAt"]) >= 1.5
    assert len(key_patches(stack.simulator, _id("busy"))) == 1


def test_an_account_busy_past_the_busy_wait_is_refused_as_busy_and_left_untouched(
    busy_longer_than_the_wait: LocalAzureStack,
) -> None:
    stack = busy_longer_than_the_wait
    output = _output(stack, _start(stack, "busy"))
    assert output["outcome"] == "Refused"
    assert [f["code"] for f in output["findings"] if f["severity"] == "blocking"] == ["ACCOUNT_BUSY"]
    assert "CMK_BUSY_WAIT_HOURS" in output["reason"]
    assert key_patches(stack.simulator, _id("busy")) == []
