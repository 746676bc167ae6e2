"""What the Durable extension does with the actions a Python orchestrator returns, emulated step by step.

On every episode the extension invokes the Python orchestrator once, then replays the returned actions through its
in-process .NET API inside a DTFx orchestration (`OutOfProcOrchestrationShim.ProcessAsyncActionsV2`):

    foreach (action in actions) { task = InvokeAPIFromAction(action); try { await task; } catch { } }

while DTFx feeds the history to that .NET code event by event. An action only turns into a new decision once every
earlier action's task has completed in the history; `TaskScheduled`/`TimerCreated`/`SubOrchestrationInstanceCreated`
events confirm decisions by sequence id; whatever is left unconfirmed after the last event is this episode's new
work. This module reproduces that on the tiny deterministic task model of `dotnet_tasks.py` (`DtTask`, completions
run their continuations synchronously like DTFx's synchronous task scheduler) with Python coroutines standing in for
the C# async methods, keeping C#'s rule that an `async` method never throws synchronously: its exceptions land in
its task, and the shim swallows them (sources: extension `Listener/OutOfProcOrchestrationShim.cs`,
`ContextImplementations/DurableOrchestrationContext.cs`, `Listener/TaskOrchestrationShim.cs`; DTFx
`TaskOrchestrationContext.cs`, `RetryInterceptor.cs`).

Consequences this reproduces on purpose (they are the real host's limitations):
* a `task_any` sliding window degrades: after the first `task_any`, the SDK lists only the unscheduled child, so
  the shim awaits that particular child before it schedules anything newer (docs/durable-protocol.md §2.5 finding 2);
* `WhenAll` waits for every child even if one failed (the Python `task_all` fails fast);
* an activity or sub-orchestrator that does not exist, and `maxOrchestrationActions`, raise inside async methods:
  the exception is swallowed, nothing is scheduled, and the orchestration waits forever (reported as diagnostics);
* custom status over 16 KB of UTF-16 JSON fails the orchestration (`SetCustomStatus` runs before the replay);
* a cancelled timer still gets its `TimerCreated` decision (and later its `TimerFired` message); cancelling only
  completes the .NET task, so the shim moves on.
(A compound action with no children would make `Task.WhenAny` throw synchronously and fail the orchestration; SDK
1.7.0 never sends one, because a `task_any`/`task_all` of already-scheduled tasks is not added to the actions.)
"""

from __future__ import annotations

import contextlib
import json
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sandbox.host.dotnet_tasks import (
    ArgumentError,
    CancellationSource,
    DtTask,
    InvalidOperationError,
    NonDeterminismError,
    OrchestrationFailure,
    ShimError,
    TaskCanceledError,
    TaskFailedError,
    completed,
    start,
    when_all,
    when_any,
)
from sandbox.host.history import EventType, HistoryRow, parse_timestamp

MAX_CUSTOM_STATUS_BYTES = 16 * 1024
# The azure-functions-durable release whose out-of-process behaviour this module reproduces (docs/durable-protocol.md
# was read from its sources). tests/sandbox/host/test_sdk_contract.py fails when another release is installed, so an
# upgrade is a deliberate act: re-read the SDK, re-check the shim, then move this pin and requirements-dev.txt's.
REPRODUCED_SDK_VERSION = "1.7.0"

# Azure Storage provider: MaximumDelayTime and LongRunningTimerIntervalLength (docs/durable-protocol.md §1.2).
MAXIMUM_SHORT_TIMER_SECONDS = 6 * 24 * 3600.0
LONG_TIMER_INTERVAL_SECONDS = 3 * 24 * 3600.0

SCHEMA_V2 = 1  # OutOfProcOrchestrationShim.SchemaVersion.V2
SCHEMA_V3 = 2


class ActionType:
    CALL_ACTIVITY = 0
    CALL_ACTIVITY_WITH_RETRY = 1
    CALL_SUB_ORCHESTRATOR = 2
    CALL_SUB_ORCHESTRATOR_WITH_RETRY = 3
    CONTINUE_AS_NEW = 4
    CREATE_TIMER = 5
    WAIT_FOR_EXTERNAL_EVENT = 6
    CALL_ENTITY = 7
    CALL_HTTP = 8
    SIGNAL_ENTITY = 9
    SCHEDULED_SIGNAL_ENTITY = 10
    WHEN_ANY = 11
    WHEN_ALL = 12


HTTP_ACTIVITY_NAME = "BuiltIn::HttpActivity"


# --- Decisions and outcome -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScheduleTaskDecision:
    task_id: int
    name: str
    input_text: str  # what the activity's converter receives (the SDK's df_dumps text)


@dataclass(frozen=True)
class CreateTimerDecision:
    task_id: int
    fire_at: float


@dataclass(frozen=True)
class CreateSubOrchestrationDecision:
    task_id: int
    name: str
    instance_id: str
    raw_input: str | None  # the child's ExecutionStarted Input (JSON text)


Decision = ScheduleTaskDecision | CreateTimerDecision | CreateSubOrchestrationDecision


@dataclass(frozen=True)
class Completed:
    output: str | None  # serialized output (JSON text)


@dataclass(frozen=True)
class Failed:
    reason: str
    details: str | None


@dataclass(frozen=True)
class ContinuedAsNew:
    raw_input: str | None


Completion = Completed | Failed | ContinuedAsNew


@dataclass
class ShimOutcome:
    decisions: list[Decision]
    completion: Completion | None
    completion_event_id: int
    custom_status: str | None  # serialized JSON, None when the orchestrator set none this episode
    actions_replayed: int
    diagnostics: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class OrchestratorResult:
    """What the Python orchestrator returned: its OrchestratorState, and whether it came from a raised exception."""

    state: dict[str, Any] | None
    raised: bool = False
    error_text: str | None = None  # `<Type>: <message>` when the orchestrator failed without a state
    stack: str = ""


@dataclass(frozen=True)
class ReplayContext:
    instance_id: str
    execution_id: str
    parent_instance_id: str | None
    orchestrator_name: str
    known_activities: Mapping[str, str]  # case-folded name -> declared name (function names ignore case)
    known_orchestrators: Mapping[str, str]
    max_orchestration_actions: int = 100_000


def serialize_json(value: Any) -> str:
    """Compact JSON the way Newtonsoft writes a JToken (no spaces, non-ASCII kept)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def custom_status_size_error(serialized: str) -> str | None:
    size = len(serialized.encode("utf-16-le"))
    if size <= MAX_CUSTOM_STATUS_BYTES:
        return None
    return (
        "The UTF-16 size of the JSON-serialized payload must not exceed 16 KB. "
        f"The current payload size is {size / 1024:,.0f} KB."
    )


# --- The replay ------------------------------------------------------------------------------------------------


class OrchestrationReplay:
    """One DTFx execution of the out-of-process shim over the full history of the current generation."""

    def __init__(self, context: ReplayContext, result: OrchestratorResult) -> None:
        self._context = context
        self._result = result
        self.current_time = 0.0
        self._id_counter = 0
        self._action_count = 0
        self._pending_decisions: dict[int, Decision] = {}
        self._open_tasks: dict[int, DtTask] = {}
        self._pending_events: dict[str, list[DtTask]] = {}
        self._buffered_events: dict[str, deque[str | None]] = {}
        self._continue_as_new: tuple[str | None] | None = None
        self._output: Any = None
        self._custom_status: str | None = None
        self._actions_replayed = 0
        self.diagnostics: list[str] = []

    # DTFx TaskOrchestrationExecutor: feed every event, then turn the orchestration's state into decisions.
    def replay(self, rows: Sequence[HistoryRow]) -> ShimOutcome:
        run: DtTask | None = None
        completion: Completion | None = None
        try:
            for row in rows:
                event_type = row.event_type
                if event_type == EventType.ORCHESTRATOR_STARTED:
                    self.current_time = row.timestamp
                elif event_type == EventType.EXECUTION_STARTED:
                    if run is None:
                        run = start(self._run())
                elif event_type in _CONFIRMATIONS:
                    self._confirm_decision(row)
                elif event_type in _SUCCESSES:
                    self._resolve(row.reference_id, None)
                elif event_type in _FAILURES:
                    self._resolve(row.reference_id, TaskFailedError(f"task {row.reference_id} failed"))
                elif event_type == EventType.EVENT_RAISED:
                    self._raise_event(row.name or "", None)
        except NonDeterminismError as error:
            completion = Failed(str(error), f"{type(error).__name__}: {error}")
        if completion is None and run is not None and run.done:
            completion = self._completion_of(run)
        completion_event_id = self._id_counter
        if completion is not None:
            self._id_counter += 1
        return ShimOutcome(
            decisions=list(self._pending_decisions.values()),
            completion=completion,
            completion_event_id=completion_event_id,
            custom_status=self._custom_status,
            actions_replayed=self._actions_replayed,
            diagnostics=self.diagnostics,
        )

    def _completion_of(self, run: DtTask) -> Completion:
        if run.faulted:
            error = run.error
            if isinstance(error, OrchestrationFailure):
                return Failed(error.reason, error.details)
            return Failed(str(error), f"Unhandled exception while executing orchestration: {error!r}")
        if self._continue_as_new is not None:
            return ContinuedAsNew(self._continue_as_new[0])
        return Completed(None if self._output is None else serialize_json(self._output))

    # TaskOrchestrationShim.InvokeUserCodeAndHandleResults
    async def _run(self) -> bool:
        name = self._context.orchestrator_name
        result = self._result
        if result.state is None:
            error = result.error_text or "the orchestrator returned no state"
            raise OrchestrationFailure(f"Orchestrator function '{name}' failed: {error}", result.stack or error)
        if result.raised:
            # The exception path: OrchestrationFailureException is rethrown, anything else fails DTFx raw.
            return await self._schedule_durable_task_events(result.state)
        try:
            return await self._schedule_durable_task_events(result.state)
        except OrchestrationFailure:
            raise
        except ShimError as error:
            raise OrchestrationFailure(
                f"Orchestrator function '{name}' failed: {error}", f"{type(error).__name__}: {error}"
            ) from error

    # OutOfProcOrchestrationShim.ScheduleDurableTaskEvents + HandleDurableTaskReplay
    async def _schedule_durable_task_events(self, state: dict[str, Any]) -> bool:
        custom_status = state.get("customStatus")
        if custom_status is not None:
            serialized = serialize_json(custom_status)
            size_error = custom_status_size_error(serialized)
            if size_error is not None:
                raise ArgumentError(size_error)
            self._custom_status = serialized
        await self._replay_actions(state.get("actions") or [], int(state.get("schemaVersion") or 0))
        error = state.get("error")
        if error:
            name = self._context.orchestrator_name
            raise OrchestrationFailure(
                f"Orchestrator function '{name}' failed: {error}",
                f"Message: {error}, StackTrace: {self._result.stack}",
            )
        if state.get("isDone"):
            self._output = state.get("output")
            return True
        # `await Task.Delay(Timeout.Infinite)`: more work to do, the orchestration must not complete.
        await DtTask()
        return False

    async def _replay_actions(self, actions: list[Any], schema: int) -> None:
        if schema in (SCHEMA_V2, SCHEMA_V3):
            if len(actions) != 1:
                raise ArgumentError(
                    f"With OOProc schema {schema}, expected actions array to be of length 1 in outer layer "
                    f"but got size: {len(actions)}"
                )
            for action in actions[0]:
                # Exceptions while invoking the API surface; awaiting swallows the task's own failure.
                task = self._invoke(action, schema)
                self._actions_replayed += 1
                with contextlib.suppress(ShimError):
                    await task
            return
        # Schema V1 (one inner list per yield, each awaited with WhenAny) is not what SDK 1.7.0 sends.
        for action_set in actions:
            tasks = [self._invoke(action, schema) for action in action_set]
            if tasks:
                await when_any(tasks)

    # OutOfProcOrchestrationShim.InvokeAPIFromAction
    def _invoke(self, action: dict[str, Any], schema: int) -> DtTask:
        action_type = int(action.get("actionType", -1))
        if action_type == ActionType.CALL_ACTIVITY:
            return start(self._call_function("activity", action["functionName"], None, None, action.get("input")))
        if action_type == ActionType.CALL_ACTIVITY_WITH_RETRY:
            return start(
                self._call_function(
                    "activity", action["functionName"], None, action.get("retryOptions"), action.get("input")
                )
            )
        if action_type == ActionType.CALL_SUB_ORCHESTRATOR:
            return start(
                self._call_function(
                    "orchestrator", action["functionName"], action.get("instanceId"), None, action.get("input")
                )
            )
        if action_type == ActionType.CALL_SUB_ORCHESTRATOR_WITH_RETRY:
            return start(
                self._call_function(
                    "orchestrator",
                    action["functionName"],
                    action.get("instanceId"),
                    action.get("retryOptions"),
                    action.get("input"),
                )
            )
        if action_type == ActionType.CREATE_TIMER:
            fire_at = parse_timestamp(str(action["fireAt"]))
            if schema < SCHEMA_V3 and fire_at - self.current_time > MAXIMUM_SHORT_TIMER_SECONDS:
                raise ArgumentError(
                    "The Azure Storage provider supports a maximum of 6 days for time-based delays (Parameter 'fireAt')"
                )
            cancellation = CancellationSource()
            task = start(self._create_timer(fire_at, cancellation))
            if action.get("isCanceled"):
                cancellation.cancel()
            return task
        if action_type == ActionType.WAIT_FOR_EXTERNAL_EVENT:
            return self._wait_for_external_event(str(action["externalEventName"]))
        if action_type == ActionType.CONTINUE_AS_NEW:
            self._continue_as_new = (_child_raw_input(action.get("input")),)
            return completed()
        if action_type == ActionType.CALL_HTTP:
            self.diagnostics.append("call_http is not supported by the local host: the HTTP activity will fail")
            return start(self._call_function("activity", HTTP_ACTIVITY_NAME, None, None, action.get("httpRequest")))
        if action_type == ActionType.CALL_ENTITY:
            self.diagnostics.append("Durable entities are not supported by the local host")
            return start(self._entity_not_supported(str(action.get("instanceId"))))
        if action_type in (ActionType.SIGNAL_ENTITY, ActionType.SCHEDULED_SIGNAL_ENTITY):
            self.diagnostics.append("Durable entities are not supported by the local host")
            # SignalEntity waits on its (already faulted) task, so the exception surfaces synchronously.
            raise ArgumentError(_unknown_function_message(str(action.get("instanceId")), "entity", {}))
        if action_type == ActionType.WHEN_ALL:
            return when_all([self._invoke(child, schema) for child in action.get("compoundActions") or []])
        if action_type == ActionType.WHEN_ANY:
            return when_any([self._invoke(child, schema) for child in action.get("compoundActions") or []])
        raise ShimError(f"Received an unexpected action type from the out-of-proc function: '${action_type}'.")

    async def _entity_not_supported(self, entity: str) -> None:
        raise ArgumentError(_unknown_function_message(entity, "entity", {}))

    # DurableOrchestrationContext.CallDurableTaskFunctionAsync (an async method: nothing here throws synchronously)
    async def _call_function(
        self,
        kind: str,
        name: str,
        instance_id: str | None,
        retry_options: dict[str, Any] | None,
        action_input: Any,
    ) -> Any:
        known = self._context.known_activities if kind == "activity" else self._context.known_orchestrators
        if name.casefold() not in known and name != HTTP_ACTIVITY_NAME:
            message = _unknown_function_message(name, kind, known)
            self.diagnostics.append(
                f"{message} The extension swallows this exception (OutOfProcOrchestrationShim), so nothing is "
                "scheduled and the orchestration waits for a task that will never complete."
            )
            raise ArgumentError(message)
        call: Callable[[], DtTask]
        if kind == "activity":
            input_text = action_input if isinstance(action_input, str) else serialize_json(action_input)
            self._increment_actions()

            def call() -> DtTask:
                return self._schedule_task(name, input_text)

        else:
            if instance_id is not None and (
                instance_id.casefold() == self._context.instance_id.casefold()
                or (
                    self._context.parent_instance_id is not None
                    and instance_id.casefold() == self._context.parent_instance_id.casefold()
                )
            ):
                raise ArgumentError(
                    "The instance ID of a sub-orchestration must be different than the instance ID of a parent "
                    "orchestration."
                )
            if instance_id is not None and instance_id.startswith("@"):
                raise ArgumentError("Orchestration instance ids must not start with @ (Parameter 'instanceId')")
            raw_input = _child_raw_input(action_input)
            self._increment_actions()

            def call() -> DtTask:
                return self._create_sub_orchestration(name, instance_id, raw_input)

        if retry_options is None:
            return await call()
        return await start(self._retry(retry_options, call))

    def _increment_actions(self) -> None:
        limit = self._context.max_orchestration_actions
        if self._action_count >= limit:
            message = (
                f"Maximum amount of orchestration actions ({limit}) has been reached. This value can be "
                "configured in host.json file as MaxOrchestrationActions."
            )
            if not any(message in note for note in self.diagnostics):
                self.diagnostics.append(
                    f"{message} The exception is raised inside an async .NET method and swallowed by "
                    "OutOfProcOrchestrationShim, so the action is never scheduled and the orchestration stops "
                    "making progress."
                )
            raise InvalidOperationError(message)
        self._action_count += 1

    # DTFx RetryInterceptor (with the back-compat dummy timer after the last failed attempt)
    async def _retry(self, options: dict[str, Any], call: Callable[[], DtTask]) -> Any:
        first_interval = float(options.get("firstRetryIntervalInMilliseconds", 0)) / 1000.0
        backoff = float(options.get("backoffCoefficient", 1.0))
        max_interval_ms = options.get("maxRetryIntervalInMilliseconds")
        max_attempts = int(options.get("maxNumberOfAttempts", 1))
        last_error: BaseException | None = None
        for retry_count in range(max_attempts):
            try:
                return await call()
            except ShimError as error:
                last_error = error
            if retry_count + 1 == max_attempts:
                await self._create_timer_core(self.current_time, None)
                break
            delay = first_interval * backoff**retry_count
            if max_interval_ms is not None:
                delay = min(delay, float(max_interval_ms) / 1000.0)
            if delay <= 0:
                break
            await self._create_timer_core(self.current_time + delay, None)
        if last_error is not None:
            raise last_error
        return None

    # IDurableOrchestrationContext.CreateTimer<T> (async; splits timers longer than the provider's maximum)
    async def _create_timer(self, fire_at: float, cancellation: CancellationSource) -> None:
        if fire_at - self.current_time <= MAXIMUM_SHORT_TIMER_SECONDS:
            self._increment_actions()
            await self._create_timer_core(fire_at, cancellation)
            return
        interval_fire_at = self.current_time + LONG_TIMER_INTERVAL_SECONDS
        while self.current_time < fire_at and not cancellation.cancelled:
            self._increment_actions()
            await self._create_timer_core(interval_fire_at, cancellation)
            remaining = fire_at - self.current_time
            if remaining <= 0:
                break
            interval_fire_at = self.current_time + min(remaining, LONG_TIMER_INTERVAL_SECONDS)

    # DTFx TaskOrchestrationContext primitives: each takes the next sequence id and records a decision.
    def _next_id(self) -> int:
        task_id = self._id_counter
        self._id_counter += 1
        return task_id

    def _schedule_task(self, name: str, input_text: str) -> DtTask:
        task_id = self._next_id()
        self._pending_decisions[task_id] = ScheduleTaskDecision(task_id, name, input_text)
        task = DtTask()
        self._open_tasks[task_id] = task
        return task

    def _create_timer_core(self, fire_at: float, cancellation: CancellationSource | None) -> DtTask:
        task_id = self._next_id()
        self._pending_decisions[task_id] = CreateTimerDecision(task_id, fire_at)
        task = DtTask()
        self._open_tasks[task_id] = task
        if cancellation is not None:

            def cancel() -> None:
                if task.try_set_exception(TaskCanceledError("A task was canceled.")):
                    self._open_tasks.pop(task_id, None)

            cancellation.register(cancel)
        return task

    def _create_sub_orchestration(self, name: str, instance_id: str | None, raw_input: str | None) -> DtTask:
        task_id = self._next_id()
        actual_id = instance_id if instance_id and instance_id.strip() else f"{self._context.execution_id}:{task_id}"
        self._pending_decisions[task_id] = CreateSubOrchestrationDecision(task_id, name, actual_id, raw_input)
        task = DtTask()
        self._open_tasks[task_id] = task
        return task

    # DurableOrchestrationContext.WaitForExternalEvent / RaiseEvent: a stack of waiters and a FIFO buffer per name.
    def _wait_for_external_event(self, name: str) -> DtTask:
        key = name.casefold()
        task = DtTask()
        self._pending_events.setdefault(key, []).append(task)
        buffered = self._buffered_events.get(key)
        if buffered:
            payload = buffered.popleft()
            if not buffered:
                del self._buffered_events[key]
            self._raise_event(name, payload)
        return task

    def _raise_event(self, name: str, payload: str | None) -> None:
        key = name.casefold()
        waiters = self._pending_events.get(key)
        if waiters:
            waiter = waiters.pop()
            if not waiters:
                del self._pending_events[key]
            waiter.try_set_result(payload)
        else:
            self._buffered_events.setdefault(key, deque()).append(payload)

    def _confirm_decision(self, row: HistoryRow) -> None:
        decision = self._pending_decisions.get(row.event_id)
        expected = _CONFIRMATIONS[row.event_type]
        kind = _DECISION_NOUN[row.event_type]
        if decision is None:
            raise NonDeterminismError(
                f"A previous execution of this orchestration scheduled {kind} with sequence ID {row.event_id} "
                f"and name '{row.name or ''}', but the current replay execution hasn't (yet?) scheduled this "
                "task. Was a change made to the orchestrator code after this instance had already started running?"
            )
        if not isinstance(decision, expected):
            raise NonDeterminismError(
                f"A previous execution of this orchestration scheduled {kind} with sequence ID {row.event_id}, "
                f"but the current replay execution scheduled a {type(decision).__name__} instead."
            )
        if isinstance(decision, ScheduleTaskDecision | CreateSubOrchestrationDecision) and (
            (row.name or "").casefold() != decision.name.casefold()
        ):
            raise NonDeterminismError(
                f"A previous execution of this orchestration scheduled {kind} with sequence number "
                f"{row.event_id} named '{row.name}', but the current orchestrator replay instead scheduled one "
                f"named '{decision.name}'."
            )
        del self._pending_decisions[row.event_id]

    def _resolve(self, task_id: int, error: BaseException | None) -> None:
        task = self._open_tasks.pop(task_id, None)
        if task is None:
            return  # DTFx logs a duplicate/late event (e.g. a cancelled timer firing) and ignores it
        if error is None:
            task.try_set_result(None)
        else:
            task.try_set_exception(error)


_CONFIRMATIONS: dict[int, type] = {
    EventType.TASK_SCHEDULED: ScheduleTaskDecision,
    EventType.TIMER_CREATED: CreateTimerDecision,
    EventType.SUB_ORCHESTRATION_INSTANCE_CREATED: CreateSubOrchestrationDecision,
}
_DECISION_NOUN: dict[int, str] = {
    EventType.TASK_SCHEDULED: "an activity task",
    EventType.TIMER_CREATED: "a timer",
    EventType.SUB_ORCHESTRATION_INSTANCE_CREATED: "a sub-orchestration",
}
_SUCCESSES = frozenset(
    {EventType.TASK_COMPLETED, EventType.SUB_ORCHESTRATION_INSTANCE_COMPLETED, EventType.TIMER_FIRED}
)
_FAILURES = frozenset({EventType.TASK_FAILED, EventType.SUB_ORCHESTRATION_INSTANCE_FAILED})


def _child_raw_input(action_input: Any) -> str | None:
    """Serialize an action's `input` as DTFx stores an orchestration input: the JSON of the .NET object."""
    if action_input is None:
        return None
    return serialize_json(action_input)


def _unknown_function_message(name: str, kind: str, known: Mapping[str, str]) -> str:
    message = f"The function '{name}' doesn't exist, is disabled, or is not an {kind} function. Additional info: "
    if known:
        listed = "', '".join(sorted(known.values()))
        return message + f"The following are the known {kind} functions: '{listed}'."
    return message + f"No {kind} functions are currently registered!"
