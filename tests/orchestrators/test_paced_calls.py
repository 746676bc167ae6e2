"""An ARM call the pacing holds back (orchestrators.steps.call_arm): its orchestration sleeps to the next whole
second after its turn, so the turns of one second wake together, and its next attempt names the turn it waited for,
which any worker process honours; a 429's Retry-After gives no turn and is never shortened."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, cast

from cmk.orchestration import orchestration_config
from orchestrators.steps import call_arm
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
