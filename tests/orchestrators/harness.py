"""A generator driver for orchestrator branches, in milliseconds and without a host.

The recipe of azure-functions-durable-python's samples (drive the orchestrator generator with a stand-in context),
made to follow time: a timer moves the context's clock to its fire time, `task_any` over an external event and a
timer lets whichever comes first win, and `continue_as_new` starts the next generation with the new input.
Sub-orchestrations (rollouts and their lanes) are answered by a `sub_orchestrations` callable: given a child and
the moment, when it finishes and with what output (None: not as things stand). The
local host (sandbox/host) runs the same orchestrators through the real SDK and its replay; this is for the many
branches (deadlines, timeouts, retries) that are slow or awkward to reach end to end.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from azure.durable_functions.models.Task import TaskState

Activity = Callable[[Any, datetime], Any]  # (payload, now) -> result; raise to fail the activity (after its retries)
START = datetime(2026, 11, 30, 9, 0, 0).astimezone()


class FakeTask:
    def __init__(self, kind: str, **details: Any) -> None:
        self.kind = kind
        self.details = details
        self.result: Any = None
        self.cancelled = False
        self.state = TaskState.RUNNING

    def cancel(self) -> None:
        self.cancelled = True

    @property
    def is_completed(self) -> bool:
        return self.state is not TaskState.RUNNING

    def done(self, result: Any) -> None:
        if isinstance(result, BaseException):  # a sub-orchestration that failed: the SDK keeps its message
            self.result = str(result)
            self.state = TaskState.FAILED
            return
        self.result = result
        self.state = TaskState.SUCCEEDED


# (a sub-orchestration task: details name, input, instance_id, started_at; now) -> (finish time, output), or None;
# an exception as the output makes the child fail with its message
SubOrchestrations = Callable[[FakeTask, datetime], tuple[datetime, Any] | None]


class FakeContext:
    """The parts of DurableOrchestrationContext the orchestrators use."""

    def __init__(self, orchestration_input: Any, now: datetime, instance_id: str) -> None:
        self._input = orchestration_input
        self.current_utc_datetime = now
        self.instance_id = instance_id
        self.is_replaying = False
        self.custom_status: Any = None
        self.continued_with: Any = None

    def get_input(self) -> Any:
        return self._input

    def call_activity_with_retry(self, name: str, retry_options: Any, payload: Any) -> FakeTask:
        return FakeTask("activity", name=name, payload=payload)

    def call_activity(self, name: str, payload: Any) -> FakeTask:
        return FakeTask("activity", name=name, payload=payload)

    def create_timer(self, fire_at: datetime) -> FakeTask:
        return FakeTask("timer", fire_at=fire_at)

    def wait_for_external_event(self, name: str) -> FakeTask:
        return FakeTask("event", name=name)

    def call_sub_orchestrator(self, name: str, input_: Any = None, instance_id: str | None = None) -> FakeTask:
        return FakeTask("sub", name=name, input=input_, instance_id=instance_id, started_at=None)

    def task_any(self, tasks: list[FakeTask]) -> FakeTask:
        return FakeTask("any", tasks=tasks)

    def task_all(self, tasks: list[FakeTask]) -> FakeTask:
        return FakeTask("all", tasks=tasks)

    def set_custom_status(self, status: Any) -> None:
        self.custom_status = status

    def continue_as_new(self, orchestration_input: Any) -> None:
        self.continued_with = orchestration_input


@dataclass
class Run:
    output: Any
    now: datetime
    generations: int
    calls: list[tuple[str, Any]] = field(default_factory=list)
    statuses: list[Any] = field(default_factory=list)
    inputs: list[Any] = field(default_factory=list)  # each generation's input, the first one's included

    def count(self, activity: str) -> int:
        return sum(1 for name, _ in self.calls if name == activity)


def drive(
    orchestrator: Callable[[Any], Generator[Any, Any, Any]],
    orchestration_input: Any,
    activities: dict[str, Activity],
    *,
    events: dict[str, tuple[timedelta, Any]] | None = None,
    instance_id: str = "cmk-test-000000000000.harness",
    max_generations: int = 10_000,
    sub_orchestrations: SubOrchestrations | None = None,
) -> Run:
    """Run the orchestration to its end. `events[name] = (after, payload)`: the external event arrives `after` the
    start; an event not listed never arrives."""
    now = START
    run = Run(output=None, now=now, generations=0)
    for _ in range(max_generations):
        run.inputs.append(orchestration_input)
        context = FakeContext(orchestration_input, now, instance_id)
        generator = orchestrator(context)
        sent: Any = None
        thrown: BaseException | None = None
        try:
            while True:
                task = generator.throw(thrown) if thrown else generator.send(sent)
                thrown = None
                try:
                    sent = _resolve(task, context, activities, events or {}, run, sub_orchestrations)
                except Exception as error:  # noqa: BLE001 - an activity failure goes back into the orchestrator
                    thrown = error
                run.statuses.append(context.custom_status)
        except StopIteration as stop:
            run.output = stop.value
            run.statuses.append(context.custom_status)  # as the orchestration ended: its last custom status
        now = context.current_utc_datetime
        run.now = now
        run.generations += 1
        if context.continued_with is None:
            return run
        orchestration_input = context.continued_with
    raise AssertionError(f"still running after {max_generations} generations")


def _resolve(
    task: FakeTask,
    context: FakeContext,
    activities: dict[str, Activity],
    events: dict[str, tuple[timedelta, Any]],
    run: Run,
    sub_orchestrations: SubOrchestrations | None = None,
) -> Any:
    if task.kind == "activity":
        name, payload = task.details["name"], task.details["payload"]
        run.calls.append((name, payload))
        if name not in activities:
            raise AssertionError(f"unexpected activity {name}")
        task.done(activities[name](payload, context.current_utc_datetime))
        return task.result
    if task.kind == "timer":
        context.current_utc_datetime = max(context.current_utc_datetime, task.details["fire_at"])
        task.done(None)
        return None
    if task.kind in ("any", "all"):
        candidates: list[tuple[datetime, FakeTask, Any]] = []
        for inner in task.details["tasks"]:
            if inner.kind == "timer":
                candidates.append((inner.details["fire_at"], inner, None))
            elif inner.kind == "event" and inner.details["name"] in events:
                after, payload = events[inner.details["name"]]
                candidates.append((START + after, inner, payload))
            elif inner.kind == "sub":
                finish = _finish_of(inner, context, sub_orchestrations)
                if finish is not None:
                    candidates.append((finish[0], inner, finish[1]))
            elif inner.kind == "all":
                finishes = [_finish_of(child, context, sub_orchestrations) for child in inner.details["tasks"]]
                if all(finishes):
                    known = [finish for finish in finishes if finish is not None]
                    candidates.append((max(at for at, _ in known), inner, known))
        if task.kind == "all":
            raise AssertionError("the harness resolves task_all only inside task_any")
        moment, winner, payload = min(candidates, key=lambda candidate: candidate[0])
        context.current_utc_datetime = max(context.current_utc_datetime, moment)
        if winner.kind == "all":
            for child, (_, output) in zip(winner.details["tasks"], payload, strict=True):
                child.done(output)
            payload = [output for _, output in payload]
        winner.done(payload)
        return winner
    raise AssertionError(f"the harness does not resolve {task.kind} tasks")


def _finish_of(
    task: FakeTask, context: FakeContext, sub_orchestrations: SubOrchestrations | None
) -> tuple[datetime, Any] | None:
    """When a sub-orchestration finishes: started when first yielded, answered by the test's callable."""
    if task.details["started_at"] is None:
        task.details["started_at"] = context.current_utc_datetime
    if sub_orchestrations is None:
        raise AssertionError("sub-orchestrations need a sub_orchestrations callable")
    return sub_orchestrations(task, context.current_utc_datetime)
