"""Asynchronous operations and timers on the simulated clock.

Time never drives state by itself: `settle()` completes every operation and fires every timer whose time has
passed on the SimClock, in order of their times; the server runs it before each request and from a ticker, so a
test that advances the clock sees the result on its next request, and a restarted process catches up with
whatever finished while it was down. What completing an operation or firing a timer does is the owning
provider's, through the hooks `on_complete` and `on_timer` (the simulator wires Cosmos DB's).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass

from sandbox.azure.ids import JsonDict, id_key
from sandbox.azure.messages import iso
from sandbox.azure.persistence import StateStore


@dataclass
class Operation:
    """One asynchronous account operation (a PATCH/PUT that answered 200 + Azure-AsyncOperation)."""

    id: str
    account_id: str
    subscription_id: str
    region: str
    kind: str
    changes: JsonDict
    requested_by: str
    requested_by_claims: JsonDict
    request_url: str
    request_method: str
    api_version: str
    start: float
    end: float
    outcome: str
    error: JsonDict | None
    status: str = "InProgress"
    completed_at: float | None = None

    @property
    def running(self) -> bool:
        return self.status == "InProgress"

    def to_json(self) -> JsonDict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: JsonDict) -> Operation:
        return cls(**data)

    def public_json(self) -> JsonDict:
        """The record served at /_sandbox/operations."""
        return {
            "id": self.id,
            "accountId": self.account_id,
            "kind": self.kind,
            "changes": self.changes,
            "requestedBy": self.requested_by,
            "startTime": iso(self.start),
            "scheduledEndTime": iso(self.end),
            "endTime": iso(self.completed_at) if self.completed_at is not None else None,
            "status": self.status,
            "plannedOutcome": self.outcome,
            "error": self.error if self.status == "Failed" else None,
        }


def new_operation_id() -> str:
    # Not from the seeded RNG: a restarted process re-seeds it and must never reuse a persisted id.
    return str(uuid.uuid4())


class OperationStore:
    def __init__(self, persistence: StateStore, now: Callable[[], float]) -> None:
        self._persistence = persistence
        self._now = now
        self.by_id: dict[str, Operation] = {}  # lowercased operation id
        self._running: dict[str, Operation] = {}  # by the account's id_key: one operation at a time per account
        # A timer: {"id", "kind", "dueAt" (simulated epoch seconds), ...}; fired once by settle() when due.
        self.timers: dict[str, JsonDict] = {}
        self.on_complete: Callable[[Operation], None] | None = None
        self.on_timer: Callable[[JsonDict], None] | None = None

    def load(self) -> None:
        for _key, data in self._persistence.items("operations"):
            operation = Operation.from_json(data)
            self.by_id[operation.id.lower()] = operation
            if operation.running:
                self._running[id_key(operation.account_id)] = operation
        for key, timer in self._persistence.items("timers"):
            self.timers[key] = timer

    def get(self, operation_id: str) -> Operation | None:
        return self.by_id.get(operation_id.lower())

    def all(self) -> list[Operation]:
        return list(self.by_id.values())

    def in_flight(self, account_id: str) -> Operation | None:
        return self._running.get(id_key(account_id))

    def add(self, operation: Operation) -> None:
        self.by_id[operation.id.lower()] = operation
        if operation.running:
            self._running[id_key(operation.account_id)] = operation
        self._save(operation)

    def _save(self, operation: Operation) -> None:
        self._persistence.put("operations", operation.id.lower(), operation.to_json())

    def add_timer(self, timer: JsonDict) -> None:
        """Schedule `on_timer(timer)` at `timer["dueAt"]` (persisted, so it survives a restart)."""
        self.timers[str(timer["id"])] = timer
        self._persistence.put("timers", str(timer["id"]), timer)

    def settle(self) -> None:
        """Complete every operation and fire every timer whose time has passed, in order of their times."""
        while True:
            now = self._now()
            due: list[tuple[float, float, Operation | None, JsonDict | None]] = [
                (operation.end, operation.start, operation, None)
                for operation in self._running.values()
                if operation.end <= now
            ]
            due += [
                (float(timer["dueAt"]), float(timer["dueAt"]), None, timer)
                for timer in self.timers.values()
                if float(timer["dueAt"]) <= now
            ]
            if not due:
                return
            due.sort(key=lambda item: (item[0], item[1], item[2] is None))
            for _moment, _start, operation, timer in due:
                if operation is not None:
                    self._complete(operation)
                elif timer is not None:
                    self._fire(timer)

    def _complete(self, operation: Operation) -> None:
        # Off the running index first: the hook reads the account as it will be once unlocked.
        self._running.pop(id_key(operation.account_id), None)
        operation.status = operation.outcome
        operation.completed_at = operation.end
        if self.on_complete is not None:
            self.on_complete(operation)
        self._save(operation)

    def _fire(self, timer: JsonDict) -> None:
        self.timers.pop(str(timer["id"]), None)
        self._persistence.delete("timers", str(timer["id"]))
        if self.on_timer is not None:
            self.on_timer(timer)

    def due_times(self) -> list[float]:
        """When each running operation ends and each timer fires."""
        return [operation.end for operation in self._running.values()] + [
            float(timer["dueAt"]) for timer in self.timers.values()
        ]
