"""The orchestration engine: Durable Task semantics over the SQLite task hub.

An instance with pending messages gets an *episode*, exactly as DTFx builds one:
`[OrchestratorStarted, <new messages>, <decisions>, OrchestratorCompleted]`. The orchestrator function is called
once per episode through the real SDK entry point with the context JSON the extension sends; its OrchestratorState
is then replayed through the `OutOfProcOrchestrationShim` emulation (`orchestration_replay.py`) over the whole
history to find the episode's new decisions. The episode commits in one transaction: history, consumed messages,
status, activity work items, timers, child instances and the message for a parent.

Threads: the event loop runs the dispatchers; orchestrator episodes and sync functions run in the worker thread
pool (the Python worker's pool); every database call runs on one dedicated thread that owns the connection. With
FUNCTIONS_WORKER_PROCESS_COUNT above 1 the orchestrator functions and sync activities run in worker processes
(sandbox.host.worker_processes); the episode around the call (history, replay, commit) stays here.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import importlib
import json
import logging
import threading
import time
import traceback
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from sandbox.clock import SimClock
from sandbox.host import history as h
from sandbox.host import worker
from sandbox.host.app_loader import DURABLE_CLIENT, FunctionRegistry
from sandbox.host.config import HostConfig
from sandbox.host.history import TERMINAL_STATUSES, EventType, HistoryEvent, HistoryRow, OrchestrationStatus
from sandbox.host.invoker import FunctionFailedError, FunctionInvoker
from sandbox.host.orchestration_replay import (
    Completed,
    ContinuedAsNew,
    CreateSubOrchestrationDecision,
    CreateTimerDecision,
    Failed,
    OrchestrationReplay,
    OrchestratorResult,
    ReplayContext,
    ScheduleTaskDecision,
    ShimOutcome,
    serialize_json,
)
from sandbox.host.store import (
    ChildStart,
    CommitResult,
    DueTimer,
    EpisodeCommit,
    InstanceRecord,
    Message,
    NewExecution,
    NewTimer,
    NewWorkItem,
    OutgoingMessage,
    TaskHubStore,
    WorkItem,
)
from sandbox.host.worker_processes import ActivityOutcome, WorkerProcesses, WorkerProcessLostError

log = logging.getLogger("sandbox.host")

R = TypeVar("R")

OUT_OF_PROC_DATA_LABEL = "$OutOfProcData$:"
# Statuses an existing instance must not be in for a start with its ID to replace it (the extension's
# OverridableExistingInstanceStates default: only non-running instances may be overwritten).
BLOCKING_START_STATUSES = frozenset(
    {
        OrchestrationStatus.Pending,
        OrchestrationStatus.Running,
        OrchestrationStatus.Suspended,
        OrchestrationStatus.ContinuedAsNew,
    }
)
_CONTROL_EVENTS = frozenset({EventType.EXECUTION_SUSPENDED, EventType.EXECUTION_RESUMED})
HISTORY_CACHE_EVENTS = 500_000


_SDK_TIMESTAMPS_MEMOIZED = False
SDK_TIMESTAMP_CACHE_ENTRIES = 1 << 16


def memoize_sdk_timestamp_parsing() -> None:
    """The SDK parses every history event's Timestamp with dateutil (about 100 µs each) on every episode, and an
    episode replays the whole history: most of an orchestrator call's cost at fleet scale. The same strings parse
    to the same (immutable) datetimes, so the parse is memoized for this process. What the SDK sees is unchanged."""
    global _SDK_TIMESTAMPS_MEMOIZED
    if _SDK_TIMESTAMPS_MEMOIZED:
        return
    # The module (the package re-exports the class under the same name).
    module = importlib.import_module("azure.durable_functions.models.history.HistoryEvent")
    namespace = vars(module)
    namespace["dt_parse"] = functools.lru_cache(maxsize=SDK_TIMESTAMP_CACHE_ENTRIES)(namespace["dt_parse"])
    _SDK_TIMESTAMPS_MEMOIZED = True


class _HistoryCache:
    """Histories of recently active instances, so an episode does not re-read its history from SQLite.

    Bounded by a total number of events (least recently used instances are dropped); the store stays the source
    of truth: an entry is only used when its execution ID and length match the instance row.
    """

    def __init__(self, capacity_events: int) -> None:
        self._capacity = capacity_events
        self._entries: OrderedDict[str, tuple[str, list[HistoryRow], list[str]]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, instance_id: str) -> tuple[str, list[HistoryRow], list[str]] | None:
        with self._lock:
            entry = self._entries.get(instance_id)
            if entry is not None:
                self._entries.move_to_end(instance_id)
            return entry

    def put(self, instance_id: str, execution_id: str, rows: list[HistoryRow], fragments: list[str]) -> None:
        with self._lock:
            self._drop_locked(instance_id)
            self._entries[instance_id] = (execution_id, rows, fragments)
            self._size += len(rows)
            while self._size > self._capacity and len(self._entries) > 1:
                oldest = next(iter(self._entries))
                self._drop_locked(oldest)

    def extend(self, instance_id: str, rows: list[HistoryRow], fragments: list[str]) -> None:
        with self._lock:
            entry = self._entries.get(instance_id)
            if entry is not None:
                entry[1].extend(rows)
                entry[2].extend(fragments)
                self._size += len(rows)

    def drop(self, instance_id: str) -> None:
        with self._lock:
            self._drop_locked(instance_id)

    def _drop_locked(self, instance_id: str) -> None:
        entry = self._entries.pop(instance_id, None)
        if entry is not None:
            self._size -= len(entry[1])


class UnknownFunctionError(Exception):
    pass


class InstanceExistsError(Exception):
    def __init__(self, status: OrchestrationStatus) -> None:
        super().__init__(f"An Orchestration instance with the status {status.name} already exists.")
        self.status = status


class OrchestrationEngine:
    def __init__(
        self,
        *,
        registry: FunctionRegistry,
        config: HostConfig,
        clock: SimClock,
        database_path: Path | None,
        worker_pool: ThreadPoolExecutor,
        on_commit: Callable[[str], None] | None = None,
        worker_processes: WorkerProcesses | None = None,
        keep_history_generations: bool = False,
    ) -> None:
        self._registry = registry
        self._worker_processes = worker_processes
        self._config = config
        self._clock = clock
        self._pool = worker_pool
        self._on_commit = on_commit
        self._db_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="host-db")
        self._store: TaskHubStore = self._db_thread.submit(
            TaskHubStore, database_path, keep_history_generations=keep_history_generations
        ).result()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._invoker: FunctionInvoker | None = None
        self._ready: deque[str] = deque()
        self._queued: set[str] = set()
        self._running: set[str] = set()
        self._dirty: set[str] = set()
        self._ready_signal: asyncio.Event | None = None
        self._timer_signal: asyncio.Event | None = None
        self._timers: list[tuple[float, int, str]] = []
        self._activities: asyncio.Queue[WorkItem] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._episodes: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._reported_diagnostics: set[tuple[str, str]] = set()
        self._diagnostics_lock = threading.Lock()
        self._history_cache = _HistoryCache(HISTORY_CACHE_EVENTS)
        self._activity_names = registry.activity_names()
        # In-flight work the queues no longer show, so "idle" is exact (see schedule_state).
        self._busy_activities = 0
        self._firing_timers = 0
        self._orchestrator_names = registry.orchestrator_names()
        memoize_sdk_timestamp_parsing()

    # --- lifecycle (event loop) ----------------------------------------------------------------------------------

    async def start(self, invoker: FunctionInvoker) -> None:
        self._loop = asyncio.get_running_loop()
        self._invoker = invoker
        self._ready_signal = asyncio.Event()
        self._timer_signal = asyncio.Event()
        self._activities = asyncio.Queue()
        for timer in await self.db(self._store.pending_timers):
            heapq.heappush(self._timers, (timer.fire_at, timer.id, timer.instance_id))
        recovered = await self.db(self._store.pending_work_items)
        for item in recovered:
            self._activities.put_nowait(item)  # at-least-once: a result not committed before a crash runs again
        if recovered:
            log.info("Re-running %d activity work item(s) whose results were not recorded", len(recovered))
        for instance_id in await self.db(self._store.instances_with_messages):
            self.mark_ready(instance_id)
        self._tasks.append(asyncio.create_task(self._dispatch_orchestrations(), name="orchestrations"))
        self._tasks.append(asyncio.create_task(self._run_timers(), name="timers"))
        for index in range(self._config.activity_concurrency):
            self._tasks.append(asyncio.create_task(self._run_activities(), name=f"activities-{index}"))

    async def stop(self) -> None:
        """Stop dispatching. Episodes and sync activities already in worker threads finish and commit (the pool
        drains before the database closes); results that are not committed run again on the next start."""
        # Python 3.11's asyncio.wait_for can swallow a cancellation that arrives as the awaited event is set (a
        # timer signal at the moment of stopping; python/cpython#86296): the timer loop also ends on this flag, or
        # the gather below would wait for it forever (seen as a benchmark that hung in LocalAzureStack.stop).
        self._stopping = True
        tasks = [*self._tasks, *self._episodes]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()

    def close(self) -> None:
        """After the worker pool has drained: release the database."""
        self._db_thread.submit(self._store.close).result()
        self._db_thread.shutdown(wait=True)

    # --- database access ---------------------------------------------------------------------------------------

    async def db(self, function: Callable[..., R], *args: Any) -> R:
        assert self._loop is not None
        return await self._loop.run_in_executor(self._db_thread, function, *args)

    def db_sync(self, function: Callable[..., R], *args: Any) -> R:
        """From any thread but the event loop's."""
        return self._db_thread.submit(function, *args).result()

    @property
    def store(self) -> TaskHubStore:
        """Only for calls through `db`/`db_sync`."""
        return self._store

    # --- client operations (event loop) -------------------------------------------------------------------------

    async def start_orchestration(
        self, name: str, instance_id: str | None, raw_input: str | None, *, execution_id: str | None = None
    ) -> str:
        if name.casefold() not in self._registry.orchestrators:
            known = "', '".join(sorted(self._registry.orchestrator_names().values()))
            raise UnknownFunctionError(
                f"The function '{name}' doesn't exist, is disabled, or is not an orchestrator function. "
                f"Additional info: The following are the known orchestrator functions: '{known}'."
            )
        instance_id = instance_id or uuid.uuid4().hex
        execution_id = execution_id or str(uuid.uuid4())
        now = self._clock.timestamp()
        started = h.execution_started(
            now, name=name, instance_id=instance_id, execution_id=execution_id, raw_input=raw_input, parent=None
        )
        record = InstanceRecord(
            instance_id, name, execution_id, OrchestrationStatus.Pending, raw_input, None, None, now, now
        )
        existing = await self.db(self._store.start_instance, record, started, BLOCKING_START_STATUSES)
        if existing is not None:
            raise InstanceExistsError(existing.status)
        self.mark_ready(instance_id)
        return instance_id

    async def send(self, instance_id: str, event: HistoryEvent) -> bool:
        """Queue a client message (raise event, terminate, suspend, resume) for the instance's current execution."""
        delivered = await self.db(self._store.enqueue, instance_id, None, event)
        if delivered:
            self.mark_ready(instance_id)
        return delivered

    def now(self) -> float:
        return self._clock.timestamp()

    # --- orchestration dispatch (event loop) --------------------------------------------------------------------

    def mark_ready(self, instance_id: str) -> None:
        if instance_id in self._running:
            self._dirty.add(instance_id)
            return
        if instance_id in self._queued:
            return
        self._queued.add(instance_id)
        self._ready.append(instance_id)
        if self._ready_signal is not None:
            self._ready_signal.set()

    async def _dispatch_orchestrations(self) -> None:
        assert self._ready_signal is not None
        slots = asyncio.Semaphore(self._config.orchestration_concurrency)
        while True:
            await self._ready_signal.wait()
            self._ready_signal.clear()
            while self._ready:
                await slots.acquire()
                instance_id = self._ready.popleft()
                self._queued.discard(instance_id)
                self._running.add(instance_id)
                episode = asyncio.create_task(self._run_episode(instance_id, slots))
                self._episodes.add(episode)
                episode.add_done_callback(self._episodes.discard)

    async def _run_episode(self, instance_id: str, slots: asyncio.Semaphore) -> None:
        assert self._loop is not None
        effects: CommitResult | None = None
        try:
            effects = await self._loop.run_in_executor(self._pool, self._episode, instance_id)
        except WorkerProcessLostError as lost:
            # As DTFx abandons a work item whose worker died: nothing was committed, the episode runs again.
            log.warning("Orchestration %s: %s; the episode runs again", instance_id, lost)
            self._dirty.add(instance_id)
        except Exception:
            log.exception("Orchestration %s: the host failed to process an episode", instance_id)
        finally:
            self._running.discard(instance_id)
            slots.release()
        if effects is not None:
            self._apply(effects)
            if self._on_commit is not None:
                self._on_commit(instance_id)
        if instance_id in self._dirty:
            self._dirty.discard(instance_id)
            self.mark_ready(instance_id)

    def _apply(self, result: CommitResult) -> None:
        assert self._activities is not None and self._timer_signal is not None
        for item in result.work_items:
            self._activities.put_nowait(item)
        for timer in result.timers:
            heapq.heappush(self._timers, (timer.fire_at, timer.id, timer.instance_id))
        if result.timers:
            self._timer_signal.set()
        for instance_id in dict.fromkeys(result.ready_instances):
            self.mark_ready(instance_id)

    # --- one episode (worker thread) ----------------------------------------------------------------------------

    def _episode(self, instance_id: str) -> CommitResult | None:
        began = time.perf_counter()
        cached = self._history_cache.get(instance_id)
        known = (cached[0], len(cached[1])) if cached is not None else None
        work = self.db_sync(self._store.load_episode, instance_id, known)
        if work is None or not work.messages:
            return None
        instance = work.instance
        last_seq = work.messages[-1].seq
        if instance.is_terminal:
            # e.g. the timer of a finished orchestration firing: DTFx discards such messages.
            log.debug("Discarding %d message(s) for finished instance %s", len(work.messages), instance_id)
            self._history_cache.drop(instance_id)
            more = self.db_sync(self._store.discard_messages, instance_id, last_seq)
            return CommitResult(ready_instances=[instance_id] if more else [])
        if work.rows is None or work.fragments is None:
            assert cached is not None
            rows, fragments = cached[1], cached[2]
        else:
            rows, fragments = work.rows, work.fragments
            self._history_cache.put(instance_id, instance.execution_id, list(rows), list(fragments))
        history_length = len(rows)
        current = [m for m in work.messages if m.execution_id in (None, instance.execution_id)]
        consumed, consumed_seq = self._messages_for_episode(instance, current, last_seq)
        now = self._clock.timestamp()
        terminate = next((m for m in consumed if m.event.event_type == EventType.EXECUTION_TERMINATED), None)
        if terminate is not None:
            commit = self._terminate(instance, terminate, consumed, now, last_seq)
        elif not consumed:
            if consumed_seq < 0:
                return None  # suspended: messages wait for the resume
            more = self.db_sync(self._store.discard_messages, instance_id, consumed_seq)
            return CommitResult(ready_instances=[instance_id] if more else [])
        elif all(m.event.event_type in _CONTROL_EVENTS for m in consumed):
            commit = self._control_episode(instance, consumed, now, consumed_seq)
        else:
            commit = self._orchestrator_episode(instance, rows, fragments, consumed, now, consumed_seq)
            commit.host_seconds = time.perf_counter() - began - commit.cpu_seconds
        result = self.db_sync(self._store.commit_episode, commit)
        self._remember_history(commit, history_length)
        skipped = [f"sub-orchestration {child} is already running: not started" for child in result.skipped_children]
        self._report(instance_id, commit.diagnostics + skipped)
        return result

    def _remember_history(self, commit: EpisodeCommit, previous_length: int) -> None:
        """Keep the cached history in step with what the commit appended (or forget it)."""
        instance_id = commit.instance_id
        cached = self._history_cache.get(instance_id)
        if commit.status in TERMINAL_STATUSES or cached is None or len(cached[1]) != previous_length:
            self._history_cache.drop(instance_id)
            return
        if commit.continue_as_new is not None:
            self._history_cache.put(instance_id, commit.continue_as_new.execution_id, [], [])
            return
        self._history_cache.extend(
            instance_id,
            [event.row() for event in commit.events],
            [event.to_json(is_played=True) for event in commit.events],
        )

    def _messages_for_episode(
        self, instance: InstanceRecord, current: list[Message], last_seq: int
    ) -> tuple[list[Message], int]:
        """The messages this episode consumes, and the last sequence number it deletes (-1: consume nothing).

        A suspended instance processes nothing until a resume (or terminate) arrives; what arrived meanwhile is
        delivered after the resume. A suspend ends the batch: later messages wait for the resume.
        """
        suspended = instance.status == OrchestrationStatus.Suspended
        if suspended and not any(
            m.event.event_type in (EventType.EXECUTION_RESUMED, EventType.EXECUTION_TERMINATED) for m in current
        ):
            return [], -1
        consumed: list[Message] = []
        for message in current:
            consumed.append(message)
            if message.event.event_type == EventType.EXECUTION_SUSPENDED:
                return consumed, message.seq
        return consumed, last_seq

    def _terminate(
        self, instance: InstanceRecord, message: Message, consumed: list[Message], now: float, last_seq: int
    ) -> EpisodeCommit:
        reason = message.event.fields.get("Input")
        reason_text = None if reason is None else str(reason)
        # A pending instance terminated before it ran still records its ExecutionStarted.
        started = [m.event for m in consumed if m.event.event_type == EventType.EXECUTION_STARTED]
        events = [
            h.orchestrator_started(now),
            *started,
            message.event,
            h.execution_completed(now, -1, OrchestrationStatus.Terminated, reason_text),
            h.orchestrator_completed(now),
        ]
        commit = EpisodeCommit(
            instance.instance_id,
            instance.execution_id,
            last_seq,
            now,
            events=events,
            status=OrchestrationStatus.Terminated,
            output=serialize_json(reason_text),
            set_output=True,
        )
        self._notify_parent(commit, instance, failure=(reason_text or "Terminated", None))
        log.info("Orchestration %s was terminated: %s", instance.instance_id, reason_text)
        return commit

    def _control_episode(
        self, instance: InstanceRecord, consumed: list[Message], now: float, consumed_seq: int
    ) -> EpisodeCommit:
        last = consumed[-1].event.event_type
        status = OrchestrationStatus.Suspended if last == EventType.EXECUTION_SUSPENDED else OrchestrationStatus.Running
        events = [h.orchestrator_started(now), *(m.event for m in consumed), h.orchestrator_completed(now)]
        return EpisodeCommit(
            instance.instance_id, instance.execution_id, consumed_seq, now, events=events, status=status
        )

    def _orchestrator_episode(
        self,
        instance: InstanceRecord,
        past_rows: list[HistoryRow],
        past_fragments: list[str],
        consumed: list[Message],
        now: float,
        consumed_seq: int,
    ) -> EpisodeCommit:
        new_events = [h.orchestrator_started(now), *(m.event for m in consumed)]
        rows = past_rows + [event.row() for event in new_events]
        fragments = past_fragments + [event.to_json(is_played=False) for event in new_events]
        suspends = consumed[-1].event.event_type == EventType.EXECUTION_SUSPENDED
        info = self._registry.orchestrators.get(instance.name.casefold())
        cpu = 0.0
        if info is None:
            known = "', '".join(sorted(self._registry.orchestrator_names().values()))
            result = OrchestratorResult(
                None,
                error_text=f"The function '{instance.name}' doesn't exist, is disabled, or is not an orchestrator "
                f"function. Additional info: The following are the known orchestrator functions: '{known}'.",
            )
        else:
            context_json = _context_json(instance, fragments, is_replaying=bool(past_rows))
            result, cpu = self._call_orchestrator(info, context_json)
        replay = OrchestrationReplay(
            ReplayContext(
                instance_id=instance.instance_id,
                execution_id=instance.execution_id,
                parent_instance_id=instance.parent_instance_id,
                orchestrator_name=instance.name,
                known_activities=self._activity_names,
                known_orchestrators=self._orchestrator_names,
                max_orchestration_actions=self._config.max_orchestration_actions,
            ),
            result,
        )
        outcome = replay.replay(rows)
        commit = EpisodeCommit(
            instance.instance_id,
            instance.execution_id,
            consumed_seq,
            now,
            status=OrchestrationStatus.Suspended if suspends else OrchestrationStatus.Running,
            custom_status=outcome.custom_status,
            set_custom_status=True,
            episode_history_events=len(fragments),
            cpu_seconds=cpu,
            diagnostics=list(outcome.diagnostics),
        )
        commit.events.extend(new_events)
        self._record_decisions(commit, instance, outcome, now)
        self._record_completion(commit, instance, outcome, now)
        commit.events.append(h.orchestrator_completed(now))
        return commit

    def _call_orchestrator(self, info: Any, context_json: str) -> tuple[OrchestratorResult, float]:
        if self._worker_processes is not None:
            return self._worker_processes.call_orchestrator(info.durable_name.casefold(), context_json)
        assert self._invoker is not None
        return call_orchestrator(self._invoker, info, context_json)

    def _record_decisions(
        self, commit: EpisodeCommit, instance: InstanceRecord, outcome: ShimOutcome, now: float
    ) -> None:
        for decision in outcome.decisions:
            if isinstance(decision, ScheduleTaskDecision):
                commit.events.append(h.task_scheduled(now, decision.task_id, decision.name, decision.input_text))
                commit.work_items.append(NewWorkItem(decision.task_id, decision.name, decision.input_text))
            elif isinstance(decision, CreateTimerDecision):
                commit.events.append(h.timer_created(now, decision.task_id, decision.fire_at))
                commit.timers.append(NewTimer(decision.fire_at, h.timer_fired(now, decision.task_id, decision.fire_at)))
            elif isinstance(decision, CreateSubOrchestrationDecision):
                commit.events.append(
                    h.sub_orchestration_created(
                        now, decision.task_id, decision.name, decision.instance_id, decision.raw_input
                    )
                )
                child_execution = uuid.uuid4().hex
                parent = {
                    "Name": instance.name,
                    "Version": "",
                    "TaskScheduleId": decision.task_id,
                    "OrchestrationInstance": {
                        "InstanceId": instance.instance_id,
                        "ExecutionId": instance.execution_id,
                    },
                }
                started = h.execution_started(
                    now,
                    name=decision.name,
                    instance_id=decision.instance_id,
                    execution_id=child_execution,
                    raw_input=decision.raw_input,
                    parent=parent,
                )
                commit.children.append(
                    ChildStart(
                        decision.instance_id, decision.name, child_execution, decision.raw_input, parent, started
                    )
                )

    def _record_completion(
        self, commit: EpisodeCommit, instance: InstanceRecord, outcome: ShimOutcome, now: float
    ) -> None:
        completion = outcome.completion
        event_id = outcome.completion_event_id
        if isinstance(completion, Completed):
            commit.events.append(h.execution_completed(now, event_id, OrchestrationStatus.Completed, completion.output))
            commit.status = OrchestrationStatus.Completed
            commit.output, commit.set_output = completion.output, True
            self._notify_parent(commit, instance, output=completion.output)
        elif isinstance(completion, Failed):
            commit.events.append(h.execution_completed(now, event_id, OrchestrationStatus.Failed, completion.reason))
            commit.status = OrchestrationStatus.Failed
            # Durable shows the failure reason as the instance output (a JSON string).
            commit.output, commit.set_output = serialize_json(completion.reason), True
            self._notify_parent(commit, instance, failure=(completion.reason, completion.details))
            log.warning("Orchestration %s (%s) failed: %s", instance.instance_id, instance.name, completion.reason)
        elif isinstance(completion, ContinuedAsNew):
            commit.events.append(h.continue_as_new(now, event_id, completion.raw_input))
            execution_id = uuid.uuid4().hex
            started = h.execution_started(
                now,
                name=instance.name,
                instance_id=instance.instance_id,
                execution_id=execution_id,
                raw_input=completion.raw_input,
                parent=instance.parent,
            )
            commit.continue_as_new = NewExecution(execution_id, completion.raw_input, started)

    def _notify_parent(
        self,
        commit: EpisodeCommit,
        instance: InstanceRecord,
        *,
        output: str | None = None,
        failure: tuple[str, str | None] | None = None,
    ) -> None:
        parent = instance.parent
        if not parent:
            return
        task_id = int(parent["TaskScheduleId"])
        target = parent["OrchestrationInstance"]
        if failure is None:
            event = h.sub_orchestration_completed(commit.now, task_id, output)
        else:
            event = h.sub_orchestration_failed(commit.now, task_id, failure[0], failure[1])
        commit.outgoing.append(OutgoingMessage(str(target["InstanceId"]), str(target["ExecutionId"]), event))

    def _report(self, instance_id: str, diagnostics: list[str]) -> None:
        for note in diagnostics:
            key = (instance_id, note)
            with self._diagnostics_lock:
                if key in self._reported_diagnostics:
                    continue
                self._reported_diagnostics.add(key)
            log.error("Orchestration %s: %s", instance_id, note)

    # --- activities (event loop) --------------------------------------------------------------------------------

    async def _run_activities(self) -> None:
        assert self._activities is not None
        while True:
            item = await self._activities.get()
            self._busy_activities += 1
            try:
                await self._run_activity(item)
            except Exception:
                log.exception("Activity work item %s could not be processed", item.id)
            finally:
                self._busy_activities -= 1

    async def _run_activity(self, item: WorkItem) -> None:
        assert self._invoker is not None
        info = self._registry.activities.get(item.name.casefold())
        if info is None:
            # Only the built-in Durable HTTP activity reaches here: unknown activities are never scheduled.
            event = h.task_failed(
                self.now(),
                item.task_id,
                f"Activity function '{item.name}' failed: NotSupportedException: "
                "Durable HTTP (call_http) is not supported by the local host",
                None,
            )
        else:
            event = await self._execute_activity(info, item)
        if await self.db(self._store.complete_work_item, item, event):
            self.mark_ready(item.instance_id)

    async def _execute_activity(self, info: Any, item: WorkItem) -> HistoryEvent:
        assert self._invoker is not None
        if self._worker_processes is not None and runs_in_worker_process(info):
            try:
                outcome: ActivityOutcome = await asyncio.wrap_future(
                    self._worker_processes.call_activity(info.durable_name.casefold(), item.input_text or "null")
                )
            except WorkerProcessLostError as lost:
                # The Functions host fails an invocation whose language worker exited.
                message = f"{type(lost).__name__}: {lost}"
                return _activity_failure(self.now(), item.task_id, info.durable_name, message, "")
            if outcome.failure is not None:
                return _activity_failure(self.now(), item.task_id, info.durable_name, *outcome.failure)
            text = outcome.result if outcome.result is not None else "null"
            return h.task_completed(self.now(), item.task_id, text)
        try:
            returned = await self._invoker.invoke(info, worker.typed_string(item.input_text or "null"))
        except FunctionFailedError as failure:  # raised, or its input or output could not be converted
            return _activity_failure(self.now(), item.task_id, info.durable_name, str(failure), failure.stack)
        return h.task_completed(self.now(), item.task_id, activity_result_text(returned))

    # --- durable timers (event loop) ----------------------------------------------------------------------------

    async def _run_timers(self) -> None:
        assert self._timer_signal is not None
        while not self._stopping:
            now = self._clock.timestamp()
            due: list[int] = []
            while self._timers and self._timers[0][0] <= now:
                due.append(heapq.heappop(self._timers)[1])
            if due:
                self._firing_timers += 1
                try:
                    for instance_id in dict.fromkeys(await self.db(self._store.fire_timers, due)):
                        self.mark_ready(instance_id)
                finally:
                    self._firing_timers -= 1
                continue
            # Re-check at least every 0.25 s real time so SimClock.advance() is honoured promptly.
            timeout = min(self._clock.real_seconds_until(self._timers[0][0]), 0.25) if self._timers else None
            await _wait_for_signal(self._timer_signal, timeout)
            self._timer_signal.clear()

    async def schedule_state(self) -> tuple[bool, float | None]:
        """(nothing runs or waits to run, fire time of the next timer). On the loop, so it is one consistent view."""
        return not self.looks_busy(), (self._timers[0][0] if self._timers else None)

    def looks_busy(self) -> bool:
        """Something runs or waits to run. From any thread, a glimpse (not one consistent view: only schedule_state,
        on the loop, may tell that all is idle), which spares a clock driver a call into the loop while work goes on."""
        activities = self._activities
        return bool(
            self._ready
            or self._queued
            or self._running
            or self._episodes
            or (activities is not None and not activities.empty())
            or self._busy_activities
            or self._firing_timers
        )

    def wake_timers(self) -> None:
        """After the clock jumped: check the timers now rather than at the next periodic re-check."""
        if self._timer_signal is not None:
            self._timer_signal.set()

    def pending_timer_count(self) -> int:
        return len(self._timers)

    def due_timers(self) -> list[DueTimer]:
        return [DueTimer(row_id, instance_id, fire_at) for fire_at, row_id, instance_id in sorted(self._timers)]


async def _wait_for_signal(signal: asyncio.Event, timeout: float | None) -> None:
    """Until the signal is set or `timeout` real seconds pass."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(signal.wait(), timeout=timeout)


def _context_json(instance: InstanceRecord, fragments: list[str], *, is_replaying: bool) -> str:
    """The orchestration trigger payload (extension `OrchestrationContextToString`), assembled from stored JSON in
    one join: concatenating with `+` copied a rollout's multi-megabyte history once per part."""
    raw_input = instance.raw_input if instance.raw_input is not None else "null"
    parent = instance.parent_instance_id
    return "".join(
        (
            '{"history":[',
            ",".join(fragments),
            '],"input":',
            raw_input,
            ',"instanceId":',
            json.dumps(instance.instance_id),
            ',"isReplaying":',
            "true" if is_replaying else "false",
            ',"parentInstanceId":',
            json.dumps(parent),
            ',"upperSchemaVersion":1,"upperSchemaVersionNew":2',
            ',"longRunningTimerIntervalDuration":"3.00:00:00","maximumShortTimerDuration":"6.00:00:00"',
            ',"defaultHttpAsyncRequestSleepTimeMillseconds":30000}',
        )
    )


def call_orchestrator(invoker: FunctionInvoker, info: Any, context_json: str) -> tuple[OrchestratorResult, float]:
    """Call an orchestrator function with the extension's context JSON, on this thread: what it returned (or
    raised), and the CPU seconds it took."""
    started = time.thread_time()
    try:
        returned = invoker.invoke_in_worker_thread(info, worker.typed_string(context_json))
    except Exception as error:
        cpu = time.thread_time() - started
        return _result_of_exception(error), cpu
    cpu = time.thread_time() - started
    value = returned.value if returned is not None else None
    state = json.loads(value) if isinstance(value, str | bytes) else value
    return OrchestratorResult(state if isinstance(state, dict) else None), cpu


def activity_result_text(returned: Any) -> str:
    """An activity's encoded return value (a Datum, or None) as the TaskCompleted result: JSON text."""
    result = returned.value if returned is not None else None
    return result if isinstance(result, str) else json.dumps(result)


def runs_in_worker_process(info: Any) -> bool:
    """Sync functions without a durable client binding; the others need the host's event loop and client."""
    return not info.is_async and not info.input_bindings(DURABLE_CLIENT)


def _result_of_exception(error: Exception) -> OrchestratorResult:
    """The SDK raises `Exception(f"{exc}\\n\\n$OutOfProcData$:{state}")`; the extension extracts the state."""
    message = str(error)
    index = message.find(OUT_OF_PROC_DATA_LABEL)
    cause = error.__cause__ if isinstance(error.__cause__, BaseException) else error
    stack = "".join(traceback.format_exception(cause))
    if index >= 0:
        try:
            state, _ = json.JSONDecoder().raw_decode(message[index + len(OUT_OF_PROC_DATA_LABEL) :].lstrip())
        except ValueError:
            state = None
        if isinstance(state, dict):
            return OrchestratorResult(state, raised=True, stack=stack)
    return OrchestratorResult(None, raised=True, error_text=f"{type(error).__name__}: {error}", stack=stack)


def _activity_failure(now: float, task_id: int, name: str, message: str, stack: str) -> HistoryEvent:
    """TaskActivityShim: `Activity function 'X' failed: <Type>: <message>`, the cause serialized as Details."""
    details = serialize_json(
        {
            "ClassName": "Microsoft.Azure.WebJobs.Script.Workers.Rpc.RpcException",
            "Message": f"Result: Failure\nException: {message}\nStack: {stack}",
            "Data": None,
            "InnerException": None,
            "HelpURL": None,
            "StackTraceString": None,
            "RemoteStackTraceString": None,
            "RemoteStackIndex": 0,
            "ExceptionMethod": None,
            "HResult": -2146233088,
            "Source": None,
        }
    )
    return h.task_failed(now, task_id, f"Activity function '{name}' failed: {message}", details)
