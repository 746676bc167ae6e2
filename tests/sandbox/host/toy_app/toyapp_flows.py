# mypy: disallow-untyped-decorators=False
"""Toy orchestrators: one per Durable behaviour the host must reproduce."""

from collections.abc import Generator
from datetime import timedelta
from typing import Any

import azure.durable_functions as df

bp = df.Blueprint()

Orchestration = Generator[Any, Any, Any]


def _input(context: df.DurableOrchestrationContext) -> dict[str, Any]:
    value = context.get_input()
    assert isinstance(value, dict)
    return value


@bp.orchestration_trigger(context_name="context")
def chain(context: df.DurableOrchestrationContext) -> Orchestration:
    value = _input(context)["start"]
    for _ in range(3):
        value = yield context.call_activity("add_one", value)
    return value


@bp.orchestration_trigger(context_name="context")
def echo(context: df.DurableOrchestrationContext) -> Orchestration:
    return context.get_input()
    yield  # a generator that returns at once


@bp.orchestration_trigger(context_name="context")
def fan_out(context: df.DurableOrchestrationContext) -> Orchestration:
    count = _input(context)["count"]
    squares = yield context.task_all([context.call_activity("square", n) for n in range(count)])
    return sum(squares)


@bp.orchestration_trigger(context_name="context")
def parent(context: df.DurableOrchestrationContext) -> Orchestration:
    named = yield context.call_sub_orchestrator("chain", {"start": 10}, instance_id=f"{context.instance_id}-named")
    generated = yield context.call_sub_orchestrator("chain", {"start": 20})
    try:
        yield context.call_sub_orchestrator("always_fails", None)
        failure = None
    except Exception as error:
        failure = str(error)
    return {"named": named, "generated": generated, "failure": failure}


@bp.orchestration_trigger(context_name="context")
def always_fails(context: df.DurableOrchestrationContext) -> Orchestration:
    yield context.call_activity("add_one", 0)
    raise ValueError("child gave up")


@bp.orchestration_trigger(context_name="context")
def flaky_with_retry(context: df.DurableOrchestrationContext) -> Orchestration:
    params = _input(context)
    retry = df.RetryOptions(first_retry_interval_in_milliseconds=60_000, max_number_of_attempts=params["attempts"])
    result = yield context.call_activity_with_retry("flaky", retry, params)
    return result


@bp.orchestration_trigger(context_name="context")
def sleeper(context: df.DurableOrchestrationContext) -> Orchestration:
    start = context.current_utc_datetime
    yield context.create_timer(start + timedelta(hours=_input(context)["hours"]))
    return {"start": start.isoformat(), "end": context.current_utc_datetime.isoformat()}


@bp.orchestration_trigger(context_name="context")
def approval(context: df.DurableOrchestrationContext) -> Orchestration:
    deadline = context.current_utc_datetime + timedelta(hours=_input(context)["timeout_hours"])
    timeout: Any = context.create_timer(deadline)
    decision = context.wait_for_external_event("approve")
    winner = yield context.task_any([decision, timeout])
    if winner == decision:
        timeout.cancel()
        return {"approved": decision.result}
    return {"approved": None, "timedOut": True}


@bp.orchestration_trigger(context_name="context")
def late_listener(context: df.DurableOrchestrationContext) -> Orchestration:
    """Busy for an hour before it listens, so events raised at start arrive before anyone waits."""
    yield context.create_timer(context.current_utc_datetime + timedelta(hours=1))
    first = yield context.wait_for_external_event("note")
    return first


@bp.orchestration_trigger(context_name="context")
def two_notes(context: df.DurableOrchestrationContext) -> Orchestration:
    yield context.create_timer(context.current_utc_datetime + timedelta(hours=1))
    first = yield context.wait_for_external_event("note")
    second = yield context.wait_for_external_event("note")
    return [first, second]


@bp.orchestration_trigger(context_name="context")
def patient_approval(context: df.DurableOrchestrationContext) -> Orchestration:
    """Approval with a cancelled timeout, then three more hours of work."""
    timeout: Any = context.create_timer(context.current_utc_datetime + timedelta(hours=1))
    decision = context.wait_for_external_event("approve")
    winner = yield context.task_any([decision, timeout])
    if winner == decision:
        timeout.cancel()
    yield context.create_timer(context.current_utc_datetime + timedelta(hours=3))
    return "approved" if winner == decision else "timed out"


@bp.orchestration_trigger(context_name="context")
def counter(context: df.DurableOrchestrationContext) -> Orchestration:
    state = _input(context)
    count = state["n"] + 1
    yield context.create_timer(context.current_utc_datetime + timedelta(minutes=1))
    if count < state["limit"]:
        context.continue_as_new({"n": count, "limit": state["limit"]})
        return None
    return count


@bp.orchestration_trigger(context_name="context")
def reporter(context: df.DurableOrchestrationContext) -> Orchestration:
    context.set_custom_status({"phase": "waiting", "step": 1})
    payload = yield context.wait_for_external_event("go")
    context.set_custom_status({"phase": "done", "step": 2})
    return payload


@bp.orchestration_trigger(context_name="context")
def oversized_status(context: df.DurableOrchestrationContext) -> Orchestration:
    context.set_custom_status("x" * 9000)  # 9,002 JSON characters: 18,004 bytes of UTF-16, over 16 KB
    yield context.call_activity("add_one", 1)
    return "unreachable"


@bp.orchestration_trigger(context_name="context")
def many_steps(context: df.DurableOrchestrationContext) -> Orchestration:
    total = 0
    for step in range(int(context.get_input() or 0)):
        total += yield context.call_activity("add_one", step)
    return total


@bp.orchestration_trigger(context_name="context")
def all_or_nothing(context: df.DurableOrchestrationContext) -> Orchestration:
    """task_all fails fast in Python, but the extension's Task.WhenAll waits for every child."""
    results = yield context.task_all(
        [context.call_activity("fail_now", "boom"), context.call_activity("slow_echo", {"seconds": 0.6})]
    )
    return results


@bp.orchestration_trigger(context_name="context")
def sliding_window(context: df.DurableOrchestrationContext) -> Orchestration:
    """Keep `window` items in flight, starting the next one as soon as any finishes (or so the code says)."""
    params = _input(context)
    started = context.current_utc_datetime
    pending: list[Any] = []
    for item in params["items"]:
        if len(pending) >= params["window"]:
            finished = yield context.task_any(pending)
            pending.remove(finished)
        child_id = f"{context.instance_id}-{item['name']}"
        pending.append(context.call_sub_orchestrator("timed_work", item, instance_id=child_id))
    yield context.task_all(pending)
    return {"started": started.isoformat(), "finished": context.current_utc_datetime.isoformat()}


@bp.orchestration_trigger(context_name="context")
def timed_work(context: df.DurableOrchestrationContext) -> Orchestration:
    item = _input(context)
    start = context.current_utc_datetime
    yield context.create_timer(start + timedelta(minutes=item["minutes"]))
    return {"name": item["name"], "start": start.isoformat(), "end": context.current_utc_datetime.isoformat()}


@bp.orchestration_trigger(context_name="context")
def durable_steps(context: df.DurableOrchestrationContext) -> Orchestration:
    """Activities with a durable timer in the middle: the SIGKILL/restart scenario."""
    params = _input(context)
    done = []
    for step in range(params["steps"]):
        if step == params["timer_after"]:
            before = context.current_utc_datetime
            yield context.create_timer(before + timedelta(minutes=params["timer_minutes"]))
            waited = (context.current_utc_datetime - before).total_seconds() / 60
        done.append((yield context.call_activity("mark_step", {"run": params["run"], "step": step})))
    return {"steps": done, "waitedMinutes": waited}
