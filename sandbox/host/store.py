"""SQLite persistence of the task hub: instances, histories, pending messages, timers and activity work items.

Everything one orchestration step changes is written in one transaction, so a process killed at any point (even
with SIGKILL) restarts from a consistent state: messages an episode consumed disappear in the same commit that
appends the episode to the history; an activity's work item disappears in the same commit that queues its result.
WAL mode with `synchronous=NORMAL` survives process crashes (only an OS crash could lose the last commits).

The store is used from a single thread (the host's database thread); it does no locking of its own.
"""

from __future__ import annotations

import base64
import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox.host.history import (
    TERMINAL_STATUSES,
    HistoryEvent,
    HistoryRow,
    OrchestrationStatus,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS instances (
    instance_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    status INTEGER NOT NULL,
    input TEXT,
    output TEXT,
    custom_status TEXT,
    created_time REAL NOT NULL,
    last_updated_time REAL NOT NULL,
    parent TEXT,
    executions INTEGER NOT NULL DEFAULT 1,
    episodes INTEGER NOT NULL DEFAULT 0,
    history_events INTEGER NOT NULL DEFAULT 0,
    max_history_events INTEGER NOT NULL DEFAULT 0,
    replayed_events INTEGER NOT NULL DEFAULT 0,
    orchestrator_cpu REAL NOT NULL DEFAULT 0,
    diagnostics TEXT
);
CREATE INDEX IF NOT EXISTS instances_by_created ON instances (created_time);
CREATE TABLE IF NOT EXISTS executions (
    instance_id TEXT NOT NULL,
    ordinal INTEGER NOT NULL,
    execution_id TEXT NOT NULL,
    started REAL NOT NULL,
    PRIMARY KEY (instance_id, ordinal)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS history (
    instance_id TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    event_type INTEGER NOT NULL,
    event_id INTEGER NOT NULL,
    reference_id INTEGER NOT NULL,
    name TEXT,
    timestamp REAL NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (instance_id, execution_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id TEXT NOT NULL,
    execution_id TEXT,
    event TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_instance ON messages (instance_id, seq);
CREATE TABLE IF NOT EXISTS timers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    fire_at REAL NOT NULL,
    event TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS timers_by_instance ON timers (instance_id);
CREATE TABLE IF NOT EXISTS work_items (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    task_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    input TEXT
);
CREATE INDEX IF NOT EXISTS work_items_by_instance ON work_items (instance_id);
CREATE TABLE IF NOT EXISTS episodes (
    instance_id TEXT NOT NULL,
    ordinal INTEGER NOT NULL,
    execution_id TEXT NOT NULL,
    history_events INTEGER NOT NULL,
    cpu_seconds REAL NOT NULL,
    host_seconds REAL NOT NULL,
    started REAL NOT NULL,
    PRIMARY KEY (instance_id, ordinal)
) WITHOUT ROWID;
"""

_INSTANCE_COLUMNS = (
    "instance_id, name, execution_id, status, input, output, custom_status, created_time, last_updated_time, "
    "parent, executions, episodes, history_events, max_history_events, replayed_events, orchestrator_cpu, "
    "diagnostics"
)


@dataclass
class InstanceRecord:
    instance_id: str
    name: str
    execution_id: str
    status: OrchestrationStatus
    raw_input: str | None
    output: str | None
    custom_status: str | None
    created_time: float
    last_updated_time: float
    parent: dict[str, Any] | None = None
    executions: int = 1
    episodes: int = 0
    history_events: int = 0
    max_history_events: int = 0
    replayed_events: int = 0
    orchestrator_cpu: float = 0.0
    diagnostics: list[str] = field(default_factory=list)

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def parent_instance_id(self) -> str | None:
        if not self.parent:
            return None
        return str(self.parent["OrchestrationInstance"]["InstanceId"])


@dataclass(frozen=True)
class Message:
    seq: int
    execution_id: str | None
    event: HistoryEvent


@dataclass
class EpisodeInput:
    instance: InstanceRecord
    messages: list[Message]
    rows: list[HistoryRow] | None  # None: the caller's cached copy is current
    fragments: list[str] | None  # the stored history as JSON texts (IsPlayed true)


@dataclass(frozen=True)
class NewWorkItem:
    task_id: int
    name: str
    input_text: str | None


@dataclass(frozen=True)
class WorkItem:
    id: int
    instance_id: str
    execution_id: str
    task_id: int
    name: str
    input_text: str | None


@dataclass(frozen=True)
class NewTimer:
    fire_at: float
    event: HistoryEvent  # the TimerFired message it will deliver


@dataclass(frozen=True)
class DueTimer:
    id: int
    instance_id: str
    fire_at: float


@dataclass(frozen=True)
class ChildStart:
    instance_id: str
    name: str
    execution_id: str
    raw_input: str | None
    parent: dict[str, Any]
    started_event: HistoryEvent


@dataclass(frozen=True)
class OutgoingMessage:
    instance_id: str
    execution_id: str | None
    event: HistoryEvent


@dataclass(frozen=True)
class NewExecution:
    execution_id: str
    raw_input: str | None
    started_event: HistoryEvent


@dataclass
class EpisodeCommit:
    instance_id: str
    execution_id: str
    consumed_seq: int
    now: float
    events: list[HistoryEvent] = field(default_factory=list)
    status: OrchestrationStatus | None = None
    output: str | None = None
    set_output: bool = False
    custom_status: str | None = None
    set_custom_status: bool = False
    work_items: list[NewWorkItem] = field(default_factory=list)
    timers: list[NewTimer] = field(default_factory=list)
    children: list[ChildStart] = field(default_factory=list)
    outgoing: list[OutgoingMessage] = field(default_factory=list)
    continue_as_new: NewExecution | None = None
    episode_history_events: int | None = None  # set when the orchestrator ran
    cpu_seconds: float = 0.0  # thread CPU time of the SDK's orchestrator call
    host_seconds: float = 0.0  # wall time of the rest of the episode: loading, context JSON, shim emulation
    diagnostics: list[str] = field(default_factory=list)


@dataclass
class CommitResult:
    work_items: list[WorkItem] = field(default_factory=list)
    timers: list[DueTimer] = field(default_factory=list)
    ready_instances: list[str] = field(default_factory=list)
    skipped_children: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class InstanceQuery:
    created_from: float | None = None
    created_to: float | None = None
    statuses: frozenset[OrchestrationStatus] | None = None
    prefix: str | None = None


class TaskHubStore:
    def __init__(self, path: Path | None, *, keep_history_generations: bool = False) -> None:
        self._keep_history_generations = keep_history_generations
        self._db = sqlite3.connect(str(path) if path else ":memory:", isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=OFF")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    # --- instances -----------------------------------------------------------------------------------------------

    def get_instance(self, instance_id: str) -> InstanceRecord | None:
        row = self._db.execute(
            f"SELECT {_INSTANCE_COLUMNS} FROM instances WHERE instance_id = ?", (instance_id,)
        ).fetchone()
        return _instance_from_row(row) if row else None

    def start_instance(
        self, record: InstanceRecord, started_event: HistoryEvent, blocking_statuses: frozenset[OrchestrationStatus]
    ) -> InstanceRecord | None:
        """Create (or replace) an instance; returns the existing one instead when its status blocks the start."""
        with _Transaction(self._db):
            existing = self.get_instance(record.instance_id)
            if existing is not None and existing.status in blocking_statuses:
                return existing
            self._write_new_instance(record, started_event, existing)
        return None

    def _write_new_instance(
        self, record: InstanceRecord, started_event: HistoryEvent, existing: InstanceRecord | None
    ) -> None:
        self._db.execute(
            f"INSERT OR REPLACE INTO instances ({_INSTANCE_COLUMNS}) "
            "VALUES (?, ?, ?, ?, ?, NULL, NULL, ?, ?, ?, 1, 0, 0, 0, 0, 0, NULL)",
            (
                record.instance_id,
                record.name,
                record.execution_id,
                int(OrchestrationStatus.Pending),
                record.raw_input,
                record.created_time,
                record.created_time,
                json.dumps(record.parent) if record.parent else None,
            ),
        )
        if existing is not None:
            # Starting a finished instance ID again makes a new instance: its old runs are no longer visible.
            for table in ("history", "executions", "episodes", "timers", "work_items", "messages"):
                self._db.execute(f"DELETE FROM {table} WHERE instance_id = ?", (record.instance_id,))
        self._db.execute(
            "INSERT INTO executions (instance_id, ordinal, execution_id, started) VALUES (?, 0, ?, ?)",
            (record.instance_id, record.execution_id, record.created_time),
        )
        self._insert_message(record.instance_id, record.execution_id, started_event)

    def enqueue(self, instance_id: str, execution_id: str | None, event: HistoryEvent) -> bool:
        with _Transaction(self._db):
            if self.get_instance(instance_id) is None:
                return False
            self._insert_message(instance_id, execution_id, event)
        return True

    def _insert_message(self, instance_id: str, execution_id: str | None, event: HistoryEvent) -> None:
        self._db.execute(
            "INSERT INTO messages (instance_id, execution_id, event) VALUES (?, ?, ?)",
            (instance_id, execution_id, event.to_message()),
        )

    def set_status(self, instance_id: str, status: OrchestrationStatus, now: float) -> None:
        self._db.execute(
            "UPDATE instances SET status = ?, last_updated_time = ? WHERE instance_id = ?",
            (int(status), now, instance_id),
        )

    # --- episodes ------------------------------------------------------------------------------------------------

    def load_episode(self, instance_id: str, cached: tuple[str, int] | None = None) -> EpisodeInput | None:
        """The instance, its pending messages and its current history, unless the instance is finished or
        `cached` (execution ID, event count) shows the caller already holds that history."""
        instance = self.get_instance(instance_id)
        if instance is None:
            return None
        messages = [
            Message(seq, execution_id, HistoryEvent.from_message(event))
            for seq, execution_id, event in self._db.execute(
                "SELECT seq, execution_id, event FROM messages WHERE instance_id = ? ORDER BY seq", (instance_id,)
            )
        ]
        if instance.is_terminal or cached == (instance.execution_id, instance.history_events):
            return EpisodeInput(instance, messages, None, None)
        rows: list[HistoryRow] = []
        fragments: list[str] = []
        for event_type, event_id, reference_id, name, timestamp, body in self._db.execute(
            "SELECT event_type, event_id, reference_id, name, timestamp, body FROM history "
            "WHERE instance_id = ? AND execution_id = ? ORDER BY seq",
            (instance_id, instance.execution_id),
        ):
            rows.append(HistoryRow(event_type, event_id, reference_id, name, timestamp))
            fragments.append(body)
        return EpisodeInput(instance, messages, rows, fragments)

    def has_messages(self, instance_id: str) -> bool:
        row = self._db.execute("SELECT 1 FROM messages WHERE instance_id = ? LIMIT 1", (instance_id,)).fetchone()
        return row is not None

    def commit_episode(self, commit: EpisodeCommit) -> CommitResult:
        """Write one episode in one transaction: its messages consumed, its history appended, the instance updated
        (a continue-as-new starts the next execution), its activities, timers, children and messages queued."""
        result = CommitResult()
        with _Transaction(self._db):
            instance = self.get_instance(commit.instance_id)
            if instance is None:
                return result  # purged while the episode ran
            self._db.execute(
                "DELETE FROM messages WHERE instance_id = ? AND seq <= ?", (commit.instance_id, commit.consumed_seq)
            )
            history_length = self._append_history(commit, instance.history_events)
            if commit.episode_history_events is not None:
                self._record_episode(commit, instance.episodes, commit.episode_history_events)
            if commit.continue_as_new is not None:
                self._start_next_execution(commit, instance.executions, commit.continue_as_new)
            self._update_instance_after_episode(commit, instance, history_length)
            result.work_items.extend(self._queue_work_items(commit))
            result.timers.extend(self._queue_timers(commit))
            self._start_children(commit, result)
            result.ready_instances.extend(self._send_messages(commit.outgoing))
            if self.has_messages(commit.instance_id):
                result.ready_instances.append(commit.instance_id)
        return result

    def _append_history(self, commit: EpisodeCommit, first_seq: int) -> int:
        """Append the episode's events after the `first_seq` stored ones; returns the history's new length."""
        seq = first_seq
        for event in commit.events:
            row = event.row()
            self._db.execute(
                "INSERT INTO history (instance_id, execution_id, seq, event_type, event_id, reference_id, name, "
                "timestamp, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    commit.instance_id,
                    commit.execution_id,
                    seq,
                    row.event_type,
                    row.event_id,
                    row.reference_id,
                    row.name,
                    row.timestamp,
                    event.to_json(is_played=True),
                ),
            )
            seq += 1
        return seq

    def _record_episode(self, commit: EpisodeCommit, ordinal: int, history_events: int) -> None:
        """The statistics of an episode in which the orchestrator ran (`history_events` replayed)."""
        self._db.execute(
            "INSERT OR REPLACE INTO episodes (instance_id, ordinal, execution_id, history_events, "
            "cpu_seconds, host_seconds, started) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                commit.instance_id,
                ordinal,
                commit.execution_id,
                history_events,
                commit.cpu_seconds,
                commit.host_seconds,
                commit.now,
            ),
        )

    def _start_next_execution(self, commit: EpisodeCommit, ordinal: int, new: NewExecution) -> None:
        """Continue-as-new: list the instance's next execution, drop the history of the one that ended, and send
        the next its ExecutionStarted.

        Azure keeps one generation's history: the Azure Storage provider overwrites the rows of earlier
        generations (durabletask PR #124) and the history API shows the current execution only. Kept here, the
        earlier generations of a fleet's lanes were two thirds of the store's history (a 3,000-account dry run:
        58 MB of 86 MB of the task hub file). Tests that inspect an earlier generation keep them
        (`keep_history_generations`)."""
        self._db.execute(
            "INSERT INTO executions (instance_id, ordinal, execution_id, started) VALUES (?, ?, ?, ?)",
            (commit.instance_id, ordinal, new.execution_id, commit.now),
        )
        if not self._keep_history_generations:
            self._db.execute(
                "DELETE FROM history WHERE instance_id = ? AND execution_id = ?",
                (commit.instance_id, commit.execution_id),
            )
        self._insert_message(commit.instance_id, new.execution_id, new.started_event)

    def _update_instance_after_episode(
        self, commit: EpisodeCommit, instance: InstanceRecord, history_length: int
    ) -> None:
        """The instance's row after the episode; after a continue-as-new it runs the next execution, whose
        history is still empty."""
        new = commit.continue_as_new
        if new is None:
            execution_id, raw_input, executions, history_events, created_time = (
                commit.execution_id,
                instance.raw_input,
                instance.executions,
                history_length,
                instance.created_time,
            )
            status = commit.status if commit.status is not None else instance.status
        else:
            # Azure gives the next execution a createdTime of its own (azure-functions-durable-extension #2088):
            # the status and list queries show when the instance last continued as new, not when it was started.
            execution_id, raw_input, executions, history_events, created_time = (
                new.execution_id,
                new.raw_input,
                instance.executions + 1,
                0,
                commit.now,
            )
            status = OrchestrationStatus.Running
        episodes, replayed = instance.episodes, instance.replayed_events
        if commit.episode_history_events is not None:
            episodes += 1
            replayed += commit.episode_history_events
        diagnostics = instance.diagnostics + [d for d in commit.diagnostics if d not in instance.diagnostics]
        self._db.execute(
            "UPDATE instances SET execution_id = ?, status = ?, input = ?, output = ?, custom_status = ?, "
            "created_time = ?, last_updated_time = ?, executions = ?, episodes = ?, history_events = ?, "
            "max_history_events = MAX(max_history_events, ?), replayed_events = ?, "
            "orchestrator_cpu = orchestrator_cpu + ?, diagnostics = ? WHERE instance_id = ?",
            (
                execution_id,
                int(status),
                raw_input,
                commit.output if commit.set_output else instance.output,
                commit.custom_status if commit.set_custom_status else instance.custom_status,
                created_time,
                commit.now,
                executions,
                episodes,
                history_events,
                history_length,
                replayed,
                commit.cpu_seconds,
                json.dumps(diagnostics) if diagnostics else None,
                commit.instance_id,
            ),
        )

    def _queue_work_items(self, commit: EpisodeCommit) -> list[WorkItem]:
        queued: list[WorkItem] = []
        for item in commit.work_items:
            cursor = self._db.execute(
                "INSERT INTO work_items (instance_id, execution_id, task_id, name, input) VALUES (?, ?, ?, ?, ?)",
                (commit.instance_id, commit.execution_id, item.task_id, item.name, item.input_text),
            )
            queued.append(
                WorkItem(
                    int(cursor.lastrowid or 0),
                    commit.instance_id,
                    commit.execution_id,
                    item.task_id,
                    item.name,
                    item.input_text,
                )
            )
        return queued

    def _queue_timers(self, commit: EpisodeCommit) -> list[DueTimer]:
        queued: list[DueTimer] = []
        for timer in commit.timers:
            cursor = self._db.execute(
                "INSERT INTO timers (instance_id, execution_id, fire_at, event) VALUES (?, ?, ?, ?)",
                (commit.instance_id, commit.execution_id, timer.fire_at, timer.event.to_message()),
            )
            queued.append(DueTimer(int(cursor.lastrowid or 0), commit.instance_id, timer.fire_at))
        return queued

    def _start_children(self, commit: EpisodeCommit, result: CommitResult) -> None:
        """Create each sub-orchestration (ready to run); one whose instance ID is taken by a running instance is
        skipped."""
        for child in commit.children:
            existing = self.get_instance(child.instance_id)
            if existing is not None and not existing.is_terminal:
                result.skipped_children.append(child.instance_id)
                continue
            record = InstanceRecord(
                child.instance_id,
                child.name,
                child.execution_id,
                OrchestrationStatus.Pending,
                child.raw_input,
                None,
                None,
                commit.now,
                commit.now,
                child.parent,
            )
            self._write_new_instance(record, child.started_event, existing)
            result.ready_instances.append(child.instance_id)

    def _send_messages(self, outgoing: Sequence[OutgoingMessage]) -> list[str]:
        """Queue each message for its instance; returns the instances that got one (a purged instance gets none)."""
        receivers: list[str] = []
        for message in outgoing:
            if self.get_instance(message.instance_id) is not None:
                self._insert_message(message.instance_id, message.execution_id, message.event)
                receivers.append(message.instance_id)
        return receivers

    def discard_messages(self, instance_id: str, up_to_seq: int) -> bool:
        """Drop messages nobody will consume; returns whether newer ones are waiting."""
        with _Transaction(self._db):
            self._db.execute("DELETE FROM messages WHERE instance_id = ? AND seq <= ?", (instance_id, up_to_seq))
            return self.has_messages(instance_id)

    # --- timers and activities -----------------------------------------------------------------------------------

    def pending_timers(self) -> list[DueTimer]:
        return [
            DueTimer(row_id, instance_id, fire_at)
            for row_id, instance_id, fire_at in self._db.execute("SELECT id, instance_id, fire_at FROM timers")
        ]

    def fire_timers(self, timer_ids: Sequence[int]) -> list[str]:
        """Turn due timers into TimerFired messages; returns the instances that received one."""
        instances: list[str] = []
        with _Transaction(self._db):
            for timer_id in timer_ids:
                row = self._db.execute(
                    "SELECT instance_id, execution_id, event FROM timers WHERE id = ?", (timer_id,)
                ).fetchone()
                if row is None:
                    continue
                instance_id, execution_id, event = row
                self._db.execute("DELETE FROM timers WHERE id = ?", (timer_id,))
                self._insert_message(instance_id, execution_id, HistoryEvent.from_message(event))
                instances.append(instance_id)
        return instances

    def pending_work_items(self) -> list[WorkItem]:
        return [
            WorkItem(*row)
            for row in self._db.execute(
                "SELECT id, instance_id, execution_id, task_id, name, input FROM work_items ORDER BY id"
            )
        ]

    def complete_work_item(self, work_item: WorkItem, event: HistoryEvent) -> bool:
        """Record an activity result; False when the work item is gone (its instance was purged)."""
        with _Transaction(self._db):
            deleted = self._db.execute("DELETE FROM work_items WHERE id = ?", (work_item.id,)).rowcount
            if not deleted:
                return False
            self._insert_message(work_item.instance_id, work_item.execution_id, event)
        return True

    def instances_with_messages(self) -> list[str]:
        return [row[0] for row in self._db.execute("SELECT DISTINCT instance_id FROM messages")]

    # --- queries -------------------------------------------------------------------------------------------------

    def list_instances(
        self, query: InstanceQuery, page_size: int, continuation: str | None
    ) -> tuple[list[InstanceRecord], str | None]:
        clauses: list[str] = []
        params: list[Any] = []
        after = _decode_token(continuation)
        if after is not None:
            clauses.append("instance_id > ?")
            params.append(after)
        clauses.extend(_query_clauses(query, params))
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._db.execute(
            f"SELECT {_INSTANCE_COLUMNS} FROM instances {where} ORDER BY instance_id LIMIT ?",
            (*params, page_size + 1),
        ).fetchall()
        records = [_instance_from_row(row) for row in rows[:page_size]]
        token = _encode_token(records[-1].instance_id) if len(rows) > page_size and records else None
        return records, token

    def history(self, instance_id: str, execution: str | int | None) -> list[dict[str, Any]] | None:
        instance = self.get_instance(instance_id)
        if instance is None:
            return None
        execution_id = instance.execution_id
        if isinstance(execution, int):
            row = self._db.execute(
                "SELECT execution_id FROM executions WHERE instance_id = ? ORDER BY ordinal LIMIT 1 OFFSET ?",
                (instance_id, execution if execution >= 0 else instance.executions + execution),
            ).fetchone()
            if row is None:
                return []
            execution_id = row[0]
        elif isinstance(execution, str):
            execution_id = execution
        return [
            json.loads(body)
            for (body,) in self._db.execute(
                "SELECT body FROM history WHERE instance_id = ? AND execution_id = ? ORDER BY seq",
                (instance_id, execution_id),
            )
        ]

    def executions(self, instance_id: str) -> list[str]:
        return [
            row[0]
            for row in self._db.execute(
                "SELECT execution_id FROM executions WHERE instance_id = ? ORDER BY ordinal", (instance_id,)
            )
        ]

    def episode_stats(self, instance_id: str) -> list[dict[str, Any]]:
        return [
            {
                "episode": ordinal,
                "executionId": execution_id,
                "historyEvents": events,
                "orchestratorCpuSeconds": cpu,
                "hostSeconds": host,
                "at": at,
            }
            for ordinal, execution_id, events, cpu, host, at in self._db.execute(
                "SELECT ordinal, execution_id, history_events, cpu_seconds, host_seconds, started FROM episodes "
                "WHERE instance_id = ? ORDER BY ordinal",
                (instance_id,),
            )
        ]

    def purge(self, instance_ids: Iterable[str]) -> int:
        deleted = 0
        with _Transaction(self._db):
            for instance_id in instance_ids:
                for table in ("history", "executions", "messages", "timers", "work_items", "episodes"):
                    self._db.execute(f"DELETE FROM {table} WHERE instance_id = ?", (instance_id,))
                deleted += self._db.execute("DELETE FROM instances WHERE instance_id = ?", (instance_id,)).rowcount
        return deleted

    def matching_instance_ids(self, query: InstanceQuery) -> list[str]:
        params: list[Any] = []
        clauses = _query_clauses(query, params)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        return [row[0] for row in self._db.execute(f"SELECT instance_id FROM instances {where}", params)]


class _Transaction:
    """`BEGIN IMMEDIATE` ... `COMMIT`, rolled back on error."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, traceback: object) -> None:
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")


def _instance_from_row(row: Sequence[Any]) -> InstanceRecord:
    return InstanceRecord(
        instance_id=row[0],
        name=row[1],
        execution_id=row[2],
        status=OrchestrationStatus(row[3]),
        raw_input=row[4],
        output=row[5],
        custom_status=row[6],
        created_time=row[7],
        last_updated_time=row[8],
        parent=json.loads(row[9]) if row[9] else None,
        executions=row[10],
        episodes=row[11],
        history_events=row[12],
        max_history_events=row[13],
        replayed_events=row[14],
        orchestrator_cpu=row[15],
        diagnostics=json.loads(row[16]) if row[16] else [],
    )


def _query_clauses(query: InstanceQuery, params: list[Any]) -> list[str]:
    clauses: list[str] = []
    if query.created_from is not None:
        clauses.append("created_time >= ?")
        params.append(query.created_from)
    if query.created_to is not None:
        clauses.append("created_time <= ?")
        params.append(query.created_to)
    if query.statuses is not None:
        marks = ", ".join("?" for _ in query.statuses)
        clauses.append(f"status IN ({marks})")
        params.extend(int(status) for status in query.statuses)
    if query.prefix:
        clauses.append("substr(instance_id, 1, ?) = ?")
        params.extend((len(query.prefix), query.prefix))
    return clauses


def _encode_token(instance_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": instance_id}).encode()).decode()


class InvalidContinuationToken(ValueError):
    """A continuation token the store did not hand out; the management API answers 400."""


def _decode_token(token: str | None) -> str | None:
    if not token:
        return None
    try:
        decoded = json.loads(base64.urlsafe_b64decode(token.encode()))
        after = decoded["after"]
    except (ValueError, KeyError, TypeError, RecursionError) as error:
        raise InvalidContinuationToken(f"The continuation token {token[:40]!r} is not valid.") from error
    if not isinstance(after, str):
        raise InvalidContinuationToken(f"The continuation token {token[:40]!r} is not valid.")
    return after
