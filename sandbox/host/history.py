"""Durable Task Framework history events as the Durable extension sends them to an out-of-process worker.

Events are Newtonsoft-serialized DTFx `HistoryEvent` objects: PascalCase properties, `EventType` as an int, a
`Timestamp` with .NET's seven fractional digits, `EventId` -1 unless the event is a scheduling decision. The
numbers match DTFx `History/EventType.cs` and the SDK's `HistoryEventType` (docs/durable-protocol.md §1.3).

Each stored event keeps a few columns the shim emulation needs (`HistoryRow`) next to its JSON text, so an episode
never re-parses history it only has to forward to the SDK.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import IntEnum
from typing import Any, NamedTuple


class EventType(IntEnum):
    EXECUTION_STARTED = 0
    EXECUTION_COMPLETED = 1
    EXECUTION_FAILED = 2
    EXECUTION_TERMINATED = 3
    TASK_SCHEDULED = 4
    TASK_COMPLETED = 5
    TASK_FAILED = 6
    SUB_ORCHESTRATION_INSTANCE_CREATED = 7
    SUB_ORCHESTRATION_INSTANCE_COMPLETED = 8
    SUB_ORCHESTRATION_INSTANCE_FAILED = 9
    TIMER_CREATED = 10
    TIMER_FIRED = 11
    ORCHESTRATOR_STARTED = 12
    ORCHESTRATOR_COMPLETED = 13
    EVENT_SENT = 14
    EVENT_RAISED = 15
    CONTINUE_AS_NEW = 16
    GENERIC_EVENT = 17
    HISTORY_STATE = 18
    EXECUTION_SUSPENDED = 19
    EXECUTION_RESUMED = 20
    EXECUTION_REWOUND = 21


class OrchestrationStatus(IntEnum):
    """DTFx `OrchestrationStatus`; its names are the `runtimeStatus` strings Durable reports."""

    Running = 0
    Completed = 1
    ContinuedAsNew = 2
    Failed = 3
    Canceled = 4
    Terminated = 5
    Pending = 6
    Suspended = 7


TERMINAL_STATUSES = frozenset(
    {
        OrchestrationStatus.Completed,
        OrchestrationStatus.Failed,
        OrchestrationStatus.Terminated,
        OrchestrationStatus.Canceled,
    }
)

# Events whose `TaskScheduledId`/`TimerId` completes an open task.
_REFERENCE_FIELD = {
    EventType.TASK_COMPLETED: "TaskScheduledId",
    EventType.TASK_FAILED: "TaskScheduledId",
    EventType.SUB_ORCHESTRATION_INSTANCE_COMPLETED: "TaskScheduledId",
    EventType.SUB_ORCHESTRATION_INSTANCE_FAILED: "TaskScheduledId",
    EventType.TIMER_FIRED: "TimerId",
}


def format_timestamp(epoch_seconds: float) -> str:
    """.NET round-trip format with seven fractional digits, as Newtonsoft writes a UTC DateTime."""
    moment = datetime.fromtimestamp(epoch_seconds, tz=UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond:06d}0Z"


def format_status_time(epoch_seconds: float) -> str:
    """`createdTime`/`lastUpdatedTime` of the HTTP API: `DateTime.ToString("s") + "Z"`."""
    return f"{datetime.fromtimestamp(epoch_seconds, tz=UTC):%Y-%m-%dT%H:%M:%S}Z"


@functools.lru_cache(maxsize=65_536)  # replays parse the same timer fire times on every episode
def parse_timestamp(text: str) -> float:
    """Parse the ISO forms the SDK and .NET write (`...Z`, 6 or 7 fractional digits) to epoch seconds."""
    value = text.strip()
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    date_part, sep, rest = value.partition(".")
    if sep:
        # Python's parser takes at most 6 fractional digits; .NET writes 7.
        digits = len(rest) - len(rest.lstrip("0123456789"))
        fraction, suffix = rest[:digits], rest[digits:]
        value = f"{date_part}.{fraction[:6].ljust(6, '0')}{suffix}"
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


class HistoryRow(NamedTuple):
    """The columns of a history event that the DTFx replay emulation reads."""

    event_type: int
    event_id: int
    reference_id: int  # TaskScheduledId / TimerId, -1 when the event completes nothing
    name: str | None
    timestamp: float


@dataclass
class HistoryEvent:
    """One DTFx history event with its type-specific PascalCase fields."""

    event_type: EventType
    timestamp: float
    event_id: int = -1
    fields: dict[str, Any] = field(default_factory=dict)
    _json_cache: dict[bool, str] | None = field(default=None, init=False, repr=False, compare=False)

    def row(self) -> HistoryRow:
        reference_field = _REFERENCE_FIELD.get(self.event_type)
        reference = int(self.fields[reference_field]) if reference_field else -1
        name = self.fields.get("Name")
        return HistoryRow(int(self.event_type), self.event_id, reference, name, self.timestamp)

    def to_dict(self, *, is_played: bool) -> dict[str, Any]:
        document: dict[str, Any] = {
            "EventType": int(self.event_type),
            "EventId": self.event_id,
            "IsPlayed": is_played,
            "Timestamp": format_timestamp(self.timestamp),
        }
        document.update(self.fields)
        return document

    def to_json(self, *, is_played: bool) -> str:
        # Each new event is serialized twice (unplayed for the SDK now, played for storage): memoize both.
        cache = self._json_cache
        if cache is None:
            cache = self._json_cache = {}
        text = cache.get(is_played)
        if text is None:
            text = json.dumps(self.to_dict(is_played=is_played), ensure_ascii=False, separators=(",", ":"))
            cache[is_played] = text
        return text

    def to_message(self) -> str:
        """Serialized form kept in the message and timer tables until the event joins a history."""
        return json.dumps(
            {"type": int(self.event_type), "id": self.event_id, "ts": self.timestamp, "fields": self.fields},
            ensure_ascii=False,
            separators=(",", ":"),
        )

    @classmethod
    def from_message(cls, text: str) -> HistoryEvent:
        document = json.loads(text)
        return cls(EventType(document["type"]), float(document["ts"]), int(document["id"]), document["fields"])


def orchestrator_started(now: float) -> HistoryEvent:
    return HistoryEvent(EventType.ORCHESTRATOR_STARTED, now)


def orchestrator_completed(now: float) -> HistoryEvent:
    return HistoryEvent(EventType.ORCHESTRATOR_COMPLETED, now)


def execution_started(
    now: float,
    *,
    name: str,
    instance_id: str,
    execution_id: str,
    raw_input: str | None,
    parent: dict[str, Any] | None,
) -> HistoryEvent:
    return HistoryEvent(
        EventType.EXECUTION_STARTED,
        now,
        fields={
            "OrchestrationInstance": {"InstanceId": instance_id, "ExecutionId": execution_id},
            "ParentInstance": parent,
            "Name": name,
            # The SDK requires Version (docs/durable-protocol.md pitfall 5); the extension's default version is "".
            "Version": "",
            "Input": raw_input,
            "Tags": None,
            "ScheduledStartTime": None,
        },
    )


def task_scheduled(now: float, task_id: int, name: str, input_text: str) -> HistoryEvent:
    # DTFx serializes the `params object[]` of ScheduleTask, so the single input is wrapped in an array.
    return HistoryEvent(
        EventType.TASK_SCHEDULED,
        now,
        task_id,
        {"Name": name, "Version": "", "Input": json.dumps([input_text], ensure_ascii=False)},
    )


def task_completed(now: float, task_id: int, result: str | None) -> HistoryEvent:
    return HistoryEvent(EventType.TASK_COMPLETED, now, fields={"TaskScheduledId": task_id, "Result": result})


def task_failed(now: float, task_id: int, reason: str, details: str | None) -> HistoryEvent:
    return HistoryEvent(
        EventType.TASK_FAILED,
        now,
        fields={"TaskScheduledId": task_id, "Reason": reason, "Details": details, "FailureDetails": None},
    )


def sub_orchestration_created(
    now: float, task_id: int, name: str, instance_id: str, raw_input: str | None
) -> HistoryEvent:
    return HistoryEvent(
        EventType.SUB_ORCHESTRATION_INSTANCE_CREATED,
        now,
        task_id,
        {"Name": name, "Version": "", "InstanceId": instance_id, "Input": raw_input},
    )


def sub_orchestration_completed(now: float, task_id: int, result: str | None) -> HistoryEvent:
    return HistoryEvent(
        EventType.SUB_ORCHESTRATION_INSTANCE_COMPLETED,
        now,
        fields={"TaskScheduledId": task_id, "Result": result},
    )


def sub_orchestration_failed(now: float, task_id: int, reason: str | None, details: str | None) -> HistoryEvent:
    return HistoryEvent(
        EventType.SUB_ORCHESTRATION_INSTANCE_FAILED,
        now,
        fields={"TaskScheduledId": task_id, "Reason": reason, "Details": details, "FailureDetails": None},
    )


def timer_created(now: float, timer_id: int, fire_at: float) -> HistoryEvent:
    return HistoryEvent(EventType.TIMER_CREATED, now, timer_id, {"FireAt": format_timestamp(fire_at)})


def timer_fired(now: float, timer_id: int, fire_at: float) -> HistoryEvent:
    # DTFx builds the TimerFired message when it processes the CreateTimer decision, so its Timestamp is the
    # creation time, not the fire time.
    return HistoryEvent(EventType.TIMER_FIRED, now, fields={"TimerId": timer_id, "FireAt": format_timestamp(fire_at)})


def event_raised(now: float, name: str, raw_input: str | None) -> HistoryEvent:
    return HistoryEvent(EventType.EVENT_RAISED, now, fields={"Name": name, "Input": raw_input})


def execution_terminated(now: float, reason: str | None) -> HistoryEvent:
    return HistoryEvent(EventType.EXECUTION_TERMINATED, now, fields={"Input": reason})


def execution_suspended(now: float, reason: str | None) -> HistoryEvent:
    return HistoryEvent(EventType.EXECUTION_SUSPENDED, now, fields={"Reason": reason})


def execution_resumed(now: float, reason: str | None) -> HistoryEvent:
    return HistoryEvent(EventType.EXECUTION_RESUMED, now, fields={"Reason": reason})


def execution_completed(now: float, event_id: int, status: OrchestrationStatus, result: str | None) -> HistoryEvent:
    fields: dict[str, Any] = {"OrchestrationStatus": int(status), "Result": result, "FailureDetails": None}
    return HistoryEvent(EventType.EXECUTION_COMPLETED, now, event_id, fields)


def continue_as_new(now: float, event_id: int, raw_input: str | None) -> HistoryEvent:
    return HistoryEvent(
        EventType.CONTINUE_AS_NEW,
        now,
        event_id,
        {"OrchestrationStatus": int(OrchestrationStatus.ContinuedAsNew), "Result": raw_input},
    )
