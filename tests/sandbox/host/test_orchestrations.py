"""Orchestrations through the real SDK replay: the Durable behaviours (and limitations) the host reproduces."""

from __future__ import annotations

import time
from datetime import datetime

from sandbox.host import LocalHost
from sandbox.host.history import EventType, parse_timestamp

from .conftest import HostFactory, events_of, http


def _minutes_between(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds() / 60


def test_activity_chain_runs_one_episode_per_activity(host: LocalHost) -> None:
    instance_id = host.start_new("chain", {"start": 1})

    status = host.wait_for(instance_id)

    assert status["runtimeStatus"] == "Completed"
    assert status["output"] == 4
    assert status["input"] == '{"start": 1}', "a Python client's input is stored as a JSON string"
    history = host.history(instance_id)
    assert [e["EventType"] for e in history[:4]] == [
        EventType.ORCHESTRATOR_STARTED,
        EventType.EXECUTION_STARTED,
        EventType.TASK_SCHEDULED,
        EventType.ORCHESTRATOR_COMPLETED,
    ]
    assert [e["EventId"] for e in events_of(history, EventType.TASK_SCHEDULED)] == [0, 1, 2]
    assert history[-2]["EventType"] == EventType.EXECUTION_COMPLETED and history[-2]["Result"] == "4"
    stats = host.stats(instance_id)
    assert stats["episodes"] == 4 and stats["executions"] == 1
    assert stats["maxHistoryEvents"] == len(history) == 16
    assert stats["replayedEvents"] == 2 + 6 + 10 + 14  # each episode replays everything before it
    assert stats["orchestratorCpuSeconds"] > 0


def test_fan_out_schedules_every_activity_in_one_episode(host: LocalHost) -> None:
    instance_id = host.start_new("fan_out", {"count": 10})

    status = host.wait_for(instance_id)

    assert status["output"] == sum(n * n for n in range(10))
    first_episode = host.history(instance_id)[: 2 + 10 + 1]
    assert [e["EventId"] for e in events_of(first_episode, EventType.TASK_SCHEDULED)] == list(range(10))


def test_sub_orchestrations_with_given_and_generated_ids_and_a_failing_child(host: LocalHost) -> None:
    status = host.wait_for(host.start_new("parent", None, instance_id="family"))

    output = status["output"]
    assert output["named"] == 13 and output["generated"] == 23
    assert output["failure"].startswith("Orchestrator function 'always_fails' failed: child gave up")
    created = events_of(host.history("family"), EventType.SUB_ORCHESTRATION_INSTANCE_CREATED)
    assert created[0]["InstanceId"] == "family-named"
    # DTFx names an anonymous sub-orchestration "<parent execution ID>:<task ID>".
    assert created[1]["InstanceId"] == f"{status['executionId']}:1"
    child = host.history(created[1]["InstanceId"])
    started = events_of(child, EventType.EXECUTION_STARTED)[0]
    assert started["ParentInstance"]["OrchestrationInstance"]["InstanceId"] == "family"
    assert started["ParentInstance"]["TaskScheduleId"] == 1
    failed_child = host.instance(created[2]["InstanceId"])
    assert failed_child is not None and failed_child["runtimeStatus"] == "Failed"


def test_retry_that_succeeds_on_the_third_attempt(host: LocalHost) -> None:
    instance_id = host.start_new("flaky_with_retry", {"key": "third-time", "failures": 2, "attempts": 3})

    status = host.wait_for(instance_id)

    assert status["output"] == "third-time succeeded on attempt 3"
    history = host.history(instance_id)
    assert [e["EventId"] for e in events_of(history, EventType.TASK_SCHEDULED)] == [0, 2, 4]
    assert [e["EventId"] for e in events_of(history, EventType.TIMER_CREATED)] == [1, 3]
    failures = events_of(history, EventType.TASK_FAILED)
    assert failures[0]["Reason"] == "Activity function 'flaky' failed: RuntimeError: attempt 1 of third-time failed"
    # The retry delay is the first retry interval (60 s) after the failure was processed.
    episode_start = _episode_start_of(history, events_of(history, EventType.TIMER_CREATED)[0])
    assert parse_timestamp(events_of(history, EventType.TIMER_CREATED)[0]["FireAt"]) - episode_start == 60


def test_retry_exhausted_waits_for_the_dummy_timer_then_fails(host: LocalHost) -> None:
    instance_id = host.start_new("flaky_with_retry", {"key": "never", "failures": 9, "attempts": 3})

    status = host.wait_for(instance_id)

    assert status["runtimeStatus"] == "Failed"
    assert status["output"].startswith(
        "Orchestrator function 'flaky_with_retry' failed: Activity function 'flaky' failed: "
        "RuntimeError: attempt 3 of never failed"
    )
    history = host.history(instance_id)
    assert [e["EventId"] for e in events_of(history, EventType.TASK_SCHEDULED)] == [0, 2, 4]
    timers = events_of(history, EventType.TIMER_CREATED)
    assert [e["EventId"] for e in timers] == [1, 3, 5]
    # DTFx's back-compat timer after the last failure fires at once (the SDK waits for it before failing).
    assert parse_timestamp(timers[-1]["FireAt"]) == _episode_start_of(history, timers[-1])
    assert [e["TimerId"] for e in events_of(history, EventType.TIMER_FIRED)] == [1, 3, 5]


def _episode_start_of(history: list[dict[str, object]], event: dict[str, object]) -> float:
    index = history.index(event)
    started = next(e for e in reversed(history[:index]) if e["EventType"] == EventType.ORCHESTRATOR_STARTED)
    return parse_timestamp(str(started["Timestamp"]))


def test_an_hour_long_durable_timer_passes_in_a_fraction_of_a_second(host: LocalHost) -> None:
    began = time.monotonic()

    status = host.wait_for(host.start_new("sleeper", {"hours": 1}))

    assert time.monotonic() - began < 1.0
    assert _minutes_between(status["output"]["start"], status["output"]["end"]) >= 60


def test_event_raised_while_waiting_wins_over_the_timeout(host: LocalHost) -> None:
    instance_id = host.start_new("approval", {"timeout_hours": 1000})
    _wait_until(lambda: events_of(host.history(instance_id), EventType.TIMER_CREATED))

    host.raise_event(instance_id, "approve", {"by": "ops"})

    status = host.wait_for(instance_id)
    # The Python client sends the data JSON-encoded, and the extension stores the body as is: a JSON string.
    assert status["output"] == {"approved": '{"by": "ops"}'}


def test_event_raised_before_anyone_waits_is_kept_and_delivered(host: LocalHost) -> None:
    instance_id = host.start_new("late_listener", None)
    host.raise_event(instance_id, "note", "early")

    status = host.wait_for(instance_id)

    assert status["output"] == '"early"'
    history = host.history(instance_id)
    raised = history.index(events_of(history, EventType.EVENT_RAISED)[0])
    fired = history.index(events_of(history, EventType.TIMER_FIRED)[0])
    assert raised < fired, "the event arrived before the orchestrator listened for it"


def test_the_sdk_keeps_only_the_last_event_raised_before_a_wait(host: LocalHost) -> None:
    """Both events are in the history in order, but the SDK's deferred completions are keyed by event name."""
    instance_id = host.start_new("two_notes", None)
    host.raise_event(instance_id, "note", "first")
    host.raise_event(instance_id, "note", "second")

    status = host.wait_for(instance_id)

    assert status["output"] == ['"second"', '"second"']
    raised = events_of(host.history(instance_id), EventType.EVENT_RAISED)
    assert [event["Input"] for event in raised] == ['"\\"first\\""', '"\\"second\\""']


def test_a_cancelled_timer_still_fires_into_the_history_but_completes_nothing(host: LocalHost) -> None:
    instance_id = host.start_new("patient_approval", None)
    _wait_until(lambda: events_of(host.history(instance_id), EventType.TIMER_CREATED))
    host.raise_event(instance_id, "approve", True)

    status = host.wait_for(instance_id)

    assert status["output"] == "approved"
    history = host.history(instance_id)
    assert [e["EventId"] for e in events_of(history, EventType.TIMER_CREATED)] == [0, 1]
    # DTFx cannot recall a scheduled timer message: the cancelled timer 0 still fires (one more episode).
    assert sorted(e["TimerId"] for e in events_of(history, EventType.TIMER_FIRED)) == [0, 1]


def test_suspend_holds_events_until_resume(host: LocalHost) -> None:
    instance_id = host.start_new("reporter", None)
    _wait_until(lambda: (host.instance(instance_id) or {}).get("runtimeStatus") == "Running")
    base = f"{host.base_url}/runtime/webhooks/durabletask/instances/{instance_id}"

    assert http("POST", f"{base}/suspend?reason=maintenance").status == 202
    _wait_until(lambda: (host.instance(instance_id) or {}).get("runtimeStatus") == "Suspended")
    host.raise_event(instance_id, "go", "later")
    time.sleep(0.2)
    assert (host.instance(instance_id) or {})["runtimeStatus"] == "Suspended"
    assert not events_of(host.history(instance_id), EventType.EVENT_RAISED), "held while suspended"

    assert http("POST", f"{base}/resume?reason=done").status == 202

    assert host.wait_for(instance_id)["output"] == '"later"'


def test_timeout_wins_when_no_event_arrives(host: LocalHost) -> None:
    status = host.wait_for(host.start_new("approval", {"timeout_hours": 1}))

    assert status["output"] == {"approved": None, "timedOut": True}


def test_continue_as_new_keeps_history_bounded_across_generations(host: LocalHost) -> None:
    started = host.clock.now().timestamp()
    instance_id = host.start_new("counter", {"n": 0, "limit": 25})

    status = host.wait_for(instance_id)

    assert status["output"] == 25
    stats = host.stats(instance_id)
    assert stats["executions"] == 25
    assert stats["maxHistoryEvents"] <= 9, "every generation starts from a fresh history"
    assert len(host.executions(instance_id)) == 25
    # As in Azure, one generation's history is kept: the earlier ones are gone (durabletask PR #124).
    assert host.history(instance_id, 0) == []
    history = host.history(instance_id)
    assert events_of(history, EventType.EXECUTION_STARTED)[0]["Input"] == '"{\\"n\\": 24, \\"limit\\": 25}"'
    # As in Azure (azure-functions-durable-extension #2088), createdTime is the last generation's start: 24
    # one-minute timers after the instance was started.
    last_start = parse_timestamp(events_of(history, EventType.EXECUTION_STARTED)[0]["Timestamp"])
    assert abs(parse_timestamp(status["createdTime"]) - last_start) < 1, "the API shows whole seconds"
    assert last_start - started >= 24 * 60


def test_custom_status_is_visible_while_running_and_updated_at_the_end(host: LocalHost) -> None:
    instance_id = host.start_new("reporter", None)
    _wait_until(lambda: (host.instance(instance_id) or {}).get("runtimeStatus") == "Running")
    assert (host.instance(instance_id) or {})["customStatus"] == {"phase": "waiting", "step": 1}

    host.raise_event(instance_id, "go", 7)

    status = host.wait_for(instance_id)
    assert status["customStatus"] == {"phase": "done", "step": 2}
    assert status["output"] == "7"


def test_custom_status_over_16_kb_fails_the_orchestration(host: LocalHost) -> None:
    status = host.wait_for(host.start_new("oversized_status", None))

    assert status["runtimeStatus"] == "Failed"
    assert status["output"] == (
        "Orchestrator function 'oversized_status' failed: The UTF-16 size of the JSON-serialized payload must "
        "not exceed 16 KB. The current payload size is 18 KB."
    )
    assert status["customStatus"] is None
    assert not events_of(host.history(status["instanceId"]), EventType.TASK_SCHEDULED)


def test_terminate_and_purge(host: LocalHost) -> None:
    instance_id = host.start_new("reporter", None)
    _wait_until(lambda: (host.instance(instance_id) or {}).get("runtimeStatus") == "Running")

    assert host.terminate(instance_id, "no longer needed")

    status = host.wait_for(instance_id)
    assert status["runtimeStatus"] == "Terminated"
    assert status["output"] == "no longer needed"
    assert events_of(host.history(instance_id), EventType.EXECUTION_TERMINATED)[0]["Input"] == "no longer needed"


def test_task_all_waits_for_every_child_before_the_failure_is_recorded(host: LocalHost) -> None:
    status = host.wait_for(host.start_new("all_or_nothing", None))

    assert status["runtimeStatus"] == "Failed"
    assert "Activity function 'fail_now' failed: ValueError: boom" in status["output"]
    history = host.history(status["instanceId"])
    slow_done = events_of(history, EventType.TASK_COMPLETED)[0]
    completed = events_of(history, EventType.EXECUTION_COMPLETED)[0]
    assert history.index(slow_done) < history.index(completed), "Task.WhenAll waited for the slow activity"


def test_max_orchestration_actions_stops_progress_like_the_extension(start_host: HostFactory) -> None:
    host = start_host(settings={"AzureFunctionsJobHost__extensions__durableTask__maxOrchestrationActions": "5"})
    instance_id = host.start_new("many_steps", 8)

    _wait_until(lambda: (host.instance(instance_id) or {}).get("diagnostics"))
    episodes = host.stats(instance_id)["episodes"]
    time.sleep(0.3)

    status = host.instance(instance_id)
    assert status is not None and status["runtimeStatus"] == "Running"
    assert host.stats(instance_id)["episodes"] == episodes, "nothing is left to wake the orchestration up"
    assert "Maximum amount of orchestration actions (5) has been reached" in status["diagnostics"][0]
    assert len(events_of(host.history(instance_id), EventType.TASK_SCHEDULED)) == 5


def test_sliding_window_task_any_degrades_as_on_the_real_host(start_host: HostFactory) -> None:
    """docs/durable-protocol.md §2.5 finding 2: a refill waits for the previous refill, not for any free slot."""
    host = start_host(time_scale=240.0)  # one simulated minute per 0.25 s
    items = [
        {"name": "A", "minutes": 1},
        {"name": "B", "minutes": 4},
        {"name": "C", "minutes": 8},
        {"name": "D", "minutes": 2},
        {"name": "E", "minutes": 5},
    ]
    instance_id = host.start_new("sliding_window", {"window": 2, "items": items}, instance_id="window")

    status = host.wait_for(instance_id, timeout=30)

    t0 = status["output"]["started"]
    spans = {}
    for item in items:
        child = host.instance(f"window-{item['name']}")
        assert child is not None
        spans[item["name"]] = (
            _minutes_between(t0, child["output"]["start"]),
            _minutes_between(t0, child["output"]["end"]),
        )

    # A and B start together; C takes A's slot at +1. B frees a slot at +4, yet D waits for C (+9): the shim
    # awaits WhenAny[C] before it even schedules D. E then waits for D. Expected: A 0-1, B 0-4, C 1-9, D 9-11,
    # E 11-16 (an ideal window would run D 4-6 and E 6-11). Compared hop by hop, so latency does not accumulate.
    def near(a: float, b: float) -> bool:
        return abs(a - b) < 0.5

    # A and B start together, after the start-up latency of a loaded machine (under half a real second).
    assert near(spans["A"][0], spans["B"][0]) and spans["A"][0] < 2, spans
    assert near(spans["C"][0], spans["A"][1]), spans
    assert spans["D"][0] - spans["B"][1] > 4, f"D did not take B's free slot: {spans}"
    assert near(spans["D"][0], spans["C"][1]), spans
    assert near(spans["E"][0], spans["D"][1]), spans
    assert abs(_minutes_between(t0, status["output"]["finished"]) - spans["A"][0] - 16) < 1.5, spans


def _wait_until(condition: object, timeout: float = 10.0) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.01)
