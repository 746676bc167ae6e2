"""An account orchestration a rollout lane starts ahead of its slot (input `hold`): it prepares, waits for the
lane's slot event before its key PATCH, and ends by itself, having changed nothing irreversible, when its lane is
gone. Driven by the generator harness; what each test asserts is what an operator would read."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from cmk.orchestration import SLOT_EVENT, AccountInput
from orchestrators.account import HOLD_CHECKS_PER_GENERATION, HOLD_RECHECK_SECONDS
from tests.orchestrators.harness import START, Run
from tests.orchestrators.test_account_branches import Azure, _input, _run

LANE = "cmk-rollout-1-lane-0"


def _held(**request: Any) -> AccountInput:
    data = _input(**request)
    data["hold"] = {"laneId": LANE, "rolloutId": "cmk-rollout-1"}
    return data


def _lane(status: str = "Running") -> Any:
    def read(payload: Any, now: datetime) -> Any:
        assert payload == {"instanceId": LANE}
        return {"exists": True, "runtimeStatus": status, "output": None, "phase": None, "nextPollAt": None}

    return read


def _at(run: Run, field: str) -> datetime:
    return datetime.fromisoformat(run.output["timings"][field].replace("Z", "+00:00"))


def _patched_at(azure: Azure) -> datetime:
    assert azure.patched_at is not None
    return azure.patched_at


def test_a_held_account_prepares_then_sends_its_key_patch_only_when_the_lane_gives_the_slot() -> None:
    azure = Azure(timedelta(minutes=10))
    slot_at = timedelta(minutes=40)
    run = _run(
        azure,
        _held(),
        activities=azure.activities(read_account_instance=_lane()),
        events={SLOT_EVENT: (slot_at, {"laneId": LANE})},
    )
    assert run.output["outcome"] == "Enabled"
    assert _patched_at(azure) == START + slot_at, "the key PATCH waits for the slot, and goes the moment it comes"
    assert run.count("ensure_identity") == 1 and run.count("grant_key_access") == 1
    calls = [name for name, _ in run.calls]
    assert calls.index("grant_key_access") < calls.index("read_account_instance") < calls.index("enable_cmk")
    waiting = [s for s in run.statuses if (s or {}).get("phase") == "waitingForSlot"]
    assert waiting and LANE in waiting[0]["detail"]
    assert _at(run, "slotGrantedAt") == START + slot_at
    assert run.count("preflight") == 1, "held under an hour: no second preflight"


def test_the_slot_given_before_the_account_waits_for_it_is_kept() -> None:
    # The lane's encryption ended while this account was still preparing: the event arrives first, and the SDK
    # keeps it for the wait that comes later.
    azure = Azure(timedelta(minutes=10))
    run = _run(azure, _held(), activities=azure.activities(), events={SLOT_EVENT: (timedelta(0), None)})
    assert run.output["outcome"] == "Enabled"
    assert _patched_at(azure) == START, "no wait at all"


def test_a_held_account_whose_lane_is_gone_ends_refused_saying_what_it_changed() -> None:
    azure = Azure(timedelta(minutes=10))
    run = _run(azure, _held(), activities=azure.activities(read_account_instance=_lane("Terminated")))
    assert run.output["outcome"] == "Refused"
    assert run.count("enable_cmk") == 0 and azure.patched_at is None
    reason = run.output["reason"]
    assert f"lane {LANE} ended Terminated" in reason and "no key PATCH was sent" in reason
    assert "SystemAssigned" in reason and "access policy" in reason, "says what was changed"
    assert run.now - START <= timedelta(minutes=10), "noticed at the first read of the lane"


def test_a_lane_that_no_longer_exists_cannot_give_the_slot_either() -> None:
    azure = Azure(timedelta(minutes=10))

    def gone(payload: Any, now: datetime) -> Any:
        return {"exists": False, "runtimeStatus": None, "output": None, "phase": None, "nextPollAt": None}

    run = _run(azure, _held(), activities=azure.activities(read_account_instance=gone))
    assert run.output["outcome"] == "Refused" and "no longer exists" in run.output["reason"]
    assert azure.patched_at is None


def test_a_failed_read_of_the_lane_is_not_a_verdict() -> None:
    azure = Azure(timedelta(minutes=10))

    def flaky(payload: Any, now: datetime) -> Any:
        raise RuntimeError("Activity function 'read_account_instance' failed: ClientConnectorError")

    run = _run(
        azure,
        _held(),
        activities=azure.activities(read_account_instance=flaky),
        events={SLOT_EVENT: (timedelta(hours=2), None)},
    )
    assert run.output["outcome"] == "Enabled" and _patched_at(azure) == START + timedelta(hours=2)


def test_a_long_hold_continues_as_new_and_checks_the_account_again_before_its_key_patch() -> None:
    azure = Azure(timedelta(minutes=10))
    slot_at = timedelta(days=3)
    run = _run(
        azure,
        _held(),
        activities=azure.activities(read_account_instance=_lane()),
        events={SLOT_EVENT: (slot_at, None)},
    )
    assert run.output["outcome"] == "Enabled" and _patched_at(azure) == START + slot_at
    reads = run.count("read_account_instance")
    assert reads >= HOLD_CHECKS_PER_GENERATION
    assert run.generations >= 1 + reads // HOLD_CHECKS_PER_GENERATION, "the wait continued as new"
    assert slot_at.total_seconds() > HOLD_RECHECK_SECONDS and run.count("preflight") == 2
    assert _at(run, "startedAt") == START, "the step times survive continue_as_new"


def test_a_long_hold_ends_refused_when_the_account_changed_meanwhile() -> None:
    azure = Azure(timedelta(minutes=10))
    preflights: list[datetime] = []

    def preflight(payload: Any, now: datetime) -> Any:
        preflights.append(now)
        if len(preflights) == 1:
            return azure.activities()["preflight"](payload, now)
        finding = {"code": "KEY_DISABLED", "severity": "blocking", "message": "the key was disabled"}
        return {"accountId": payload["request"]["accountId"], "findings": [finding], "blocked": True, "plan": None}

    run = _run(
        azure,
        _held(),
        activities=azure.activities(preflight=preflight, read_account_instance=_lane()),
        events={SLOT_EVENT: (timedelta(hours=5), None)},
    )
    assert run.output["outcome"] == "Refused" and "KEY_DISABLED" in run.output["reason"]
    assert azure.patched_at is None


def test_a_dry_run_never_holds() -> None:
    azure = Azure(timedelta(minutes=10))
    run = _run(azure, _held(dryRun=True), activities=azure.activities())
    assert run.output["outcome"] == "Planned" and run.now == START
    assert not any((s or {}).get("phase") == "waitingForSlot" for s in run.statuses)
