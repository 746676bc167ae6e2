"""A rollout's discovery only reads, so one that fails past its activity's retries (Resource Graph resetting the
connection of a query, which the SDK does not send again) is tried again on a durable timer before the rollout gives
up; Azure's refusal is final. Driven by the generator harness."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from orchestrators.rollout import DISCOVERY_ROUNDS, FIRST_DISCOVERY_RETRY_SECONDS, run_rollout
from tests.orchestrators.harness import START, Run, drive
from tests.orchestrators.test_rollout_generations import MISSING, ROLLOUT_ID, Fleet, _id, _input

RESET = ConnectionResetError("('Connection aborted.', RemoteDisconnected('Remote end closed connection'))")


def _drive(fleet: Fleet, discover: Any) -> Run:
    return drive(
        run_rollout,
        _input(3),
        {**fleet.activities(), "discover_accounts": discover},
        instance_id=ROLLOUT_ID,
        sub_orchestrations=fleet.sub_orchestrations,
    )


def test_a_discovery_that_fails_twice_is_tried_again_and_every_account_is_reported() -> None:
    fleet = Fleet(lasting=timedelta(hours=1))
    found = fleet.activities()["discover_accounts"]
    attempts: list[datetime] = []

    def discover(payload: Any, now: datetime) -> Any:
        attempts.append(now)
        if len(attempts) <= 2:
            raise RESET
        return found(payload, now)

    run = _drive(fleet, discover)
    assert run.output["error"] is None
    assert run.output["totals"] == {"Enabled": 3, "Refused": 1}
    assert {row["accountId"] for row in run.output["accounts"]} == {_id(i) for i in range(3)} | {MISSING}
    waits = [later - earlier for earlier, later in zip(attempts, attempts[1:], strict=False)]
    assert waits == [
        timedelta(seconds=FIRST_DISCOVERY_RETRY_SECONDS),
        timedelta(seconds=2 * FIRST_DISCOVERY_RETRY_SECONDS),
    ]


def test_a_discovery_that_keeps_failing_ends_the_rollout_with_its_reason_after_every_round() -> None:
    fleet = Fleet(lasting=timedelta(hours=1))

    def discover(payload: Any, now: datetime) -> Any:
        raise RESET

    run = _drive(fleet, discover)
    assert run.count("discover_accounts") == DISCOVERY_ROUNDS
    assert run.output["error"].startswith("Discovery failed:")
    # Every account the request named still has a row, Failed with that reason; nothing was started.
    assert {row["accountId"] for row in run.output["accounts"]} == {_id(i) for i in range(3)} | {MISSING}
    assert set(run.output["totals"]) == {"Failed"} and not fleet.lanes
    assert run.now - START >= timedelta(seconds=FIRST_DISCOVERY_RETRY_SECONDS * (2 ** (DISCOVERY_ROUNDS - 1) - 1))


def test_azures_refusal_of_discovery_is_final() -> None:
    fleet = Fleet(lasting=timedelta(hours=1))

    def discover(payload: Any, now: datetime) -> Any:
        return {"refused": {"httpStatus": 403, "code": "AuthorizationFailed", "message": "no read on the scope"}}

    run = _drive(fleet, discover)
    assert run.count("discover_accounts") == 1
    assert "AuthorizationFailed" in run.output["error"] and run.now == START
