"""An ARM call the pacing holds back (orchestrators.steps.call_arm): its orchestration sleeps to the next whole
second after its turn, so the turns of one second wake together, and its next attempt names the turn it waited for,
which any worker process honours; a 429's Retry-After gives no turn and is never shortened."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, cast

from cmk.orchestration import orchestration_config
from orchestrators.steps import MAX_PACED_WAITS, MAX_THROTTLED_WAITS, ArmCallFailed, call_arm
from tests.orchestrators.harness import START, FakeContext, FakeTask

TURN = "00000001-bbbb-4ccc-8ddd-eeeeeeeeeeee|reads"


def _sent(task: FakeTask) -> dict[str, object]:
    assert task.kind == "activity"
    pacing: dict[str, object] = task.details["payload"]["armPacing"]
    return pacing


def test_a_paced_call_wakes_on_the_next_whole_second_and_names_its_turn_and_a_429_gives_none() -> None:
    started = START + timedelta(milliseconds=300)
    context = FakeContext(None, started, "rollout-lane-3")
    steps = call_arm(cast(Any, context), "preflight", {"accountId": "a"}, orchestration_config())
    first = next(steps)
    assert "turn" not in _sent(first)

    paced = steps.send({"throttled": {"retryAfterSeconds": 0.2, "message": "paced", "turn": TURN}})
    assert paced.kind == "timer" and paced.details["fire_at"] == START + timedelta(seconds=1)
    context.current_utc_datetime = paced.details["fire_at"]
    second = steps.send(None)
    assert _sent(second)["turn"] == TURN

    throttled = steps.send({"throttled": {"retryAfterSeconds": 7, "message": "429"}})
    assert throttled.details["fire_at"] == START + timedelta(seconds=8)  # 7 s after 1 s: on the grid already
    context.current_utc_datetime = throttled.details["fire_at"]
    third = steps.send(None)
    assert "turn" not in _sent(third)

    try:
        steps.send({"ok": True})
    except StopIteration as finished:
        assert finished.value == {"ok": True}
    else:
        raise AssertionError("the call did not return its result")


def _drive(answers: list[dict[str, Any]]) -> Any:
    """Run call_arm through `answers`, one per attempt (timers fire at once); what it returned, or raised."""
    context = FakeContext(None, START, "cmk-a-000000000000.x")
    steps = call_arm(cast(Any, context), "ensure_identity", {"accountId": "a"}, orchestration_config())
    task = next(steps)
    for answer in answers:
        assert task.kind == "activity"
        task = steps.send(answer)
        if task.kind == "timer":
            context.current_utc_datetime = task.details["fire_at"]
            task = steps.send(None)
    raise AssertionError(f"call_arm still running after {len(answers)} answers")


def _outcome(answers: list[dict[str, Any]]) -> Any:
    try:
        return _drive(answers)
    except StopIteration as finished:
        return finished.value
    except ArmCallFailed as failed:
        return failed


def test_the_apps_own_pacing_does_not_count_as_azures_throttling() -> None:
    """A call held back by the app's pacing sent nothing: a crowd of such waits (a restarted stack's callers coming
    back late for their turns) as many as Azure's 429s still ends in the call's result."""
    paced = {"throttled": {"retryAfterSeconds": 1, "message": "paced", "turn": TURN}}
    throttled = {"throttled": {"retryAfterSeconds": 2, "message": "429"}}
    answers = [paced, throttled] * MAX_THROTTLED_WAITS + [{"ok": True}]
    assert _outcome(answers) == {"ok": True}


def test_each_limit_says_what_held_the_call_back() -> None:
    throttled = {"throttled": {"retryAfterSeconds": 2, "message": "429 from ARM"}}
    failed = _outcome([throttled] * (MAX_THROTTLED_WAITS + 1))
    assert isinstance(failed, ArmCallFailed) and failed.kind == "throttled"
    assert str(failed).startswith(f"Azure throttled an identity change through {MAX_THROTTLED_WAITS} waits")
    paced = {"throttled": {"retryAfterSeconds": 1, "message": "paced: at the budget", "turn": ""}}
    failed = _outcome([paced] * (MAX_PACED_WAITS + 1))
    assert isinstance(failed, ArmCallFailed) and failed.kind == "paced"
    assert "nothing was sent" in str(failed) and "Azure" not in str(failed).split("(")[0]
