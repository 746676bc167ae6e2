"""The simulated cloud's state: resources, async operations, logs and event queue, on the simulated clock.

All state changes happen under one lock, synchronously, and are written through to the StateStore. Time never
drives state by itself: `settle()` applies every operation whose scheduled end has passed on the SimClock, and it
runs before each request and from a background ticker, so a test that advances the clock sees the result on its
next request, and a restarted process catches up with whatever finished while it was down.
"""

from __future__ import annotations

import random
import secrets
import threading
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from sandbox.azure.ids import (
    ACCOUNT_TYPE,
    KEY_TYPE,
    JsonDict,
    id_key,
    parse_resource_id,
    region_slug,
    resource_type_of,
)
from sandbox.azure.store import StateStore
from sandbox.azure.tokens import TokenClaims, derived_guid
from sandbox.azure.world import DEFAULT_BUSY_OPERATION, AccountData, SimulatorSettings, World, WorldError
from sandbox.clock import ClockAnchor, SimClock

# Created-at stamp for resources that come from the world file: long before the simulated "now", so role
# assignments present in the world are already effective.
WORLD_EPOCH = 0.0


def iso(epoch_seconds: float) -> str:
    """ARM-style UTC timestamp with 7 fractional digits, e.g. 2021-05-12T20:40:28.2398112Z."""
    moment = datetime.fromtimestamp(epoch_seconds, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}0Z"


@dataclass
class RequestContext:
    """What a handler needs to know about the request it serves."""

    method: str
    path: str
    query: dict[str, str]
    api_version: str
    claims: TokenClaims | None
    base_url: str
    body: Any
    url: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    authorization: Any = None  # the rbac.Decision once authorization has run (logged with the request)

    @property
    def principal_id(self) -> str:
        return self.claims.principal_id if self.claims is not None else ""


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    empty: bool = False  # no body at all (202 on operationResults), as opposed to a JSON null


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


OperationCompleter = Callable[["CloudState", Operation], None]
# A timer: {"id", "kind", "dueAt" (simulated epoch seconds), ...}; fired once by settle() when due.
TimerHandler = Callable[["CloudState", JsonDict], None]


class CloudState:
    """Everything the simulated cloud knows. Use under `lock`; call `commit()` after each request."""

    def __init__(self, world: World, clock: SimClock, store: StateStore, settings: SimulatorSettings) -> None:
        self.lock = threading.RLock()
        self.clock = clock
        self.store = store
        self.resources: dict[str, JsonDict] = {}
        # Indexes that keep 1,000-account worlds fast: resources by type, subscriptions, running operations.
        self._by_type: dict[str, dict[str, JsonDict]] = {}
        self._subscriptions: dict[str, int] = {}
        self._running: dict[str, Operation] = {}
        self.created_at: dict[str, float] = {}
        self.account_data: dict[str, AccountData] = {}
        self.operations: dict[str, Operation] = {}
        self.requests_log: list[JsonDict] = []
        self.deliveries_log: list[JsonDict] = []
        self.pending_deliveries: dict[str, JsonDict] = {}
        self.faults: list[JsonDict] = []
        self.event_subscriptions: list[JsonDict] = []
        self.timers: dict[str, JsonDict] = {}
        self.operation_completer: OperationCompleter | None = None
        self.timer_handler: TimerHandler | None = None
        self.event_listener: Callable[[], None] | None = None
        self._last_anchor: ClockAnchor | None = None
        self.rng = random.Random(settings.random_seed)
        if store.persistent and store.get("meta", "initialized"):
            self._load_from_store(settings)
        else:
            self._load_from_world(world, settings)
        self.save_clock_anchor()
        self.commit()

    # ----------------------------------------------------------------- loading

    def _load_from_world(self, world: World, settings: SimulatorSettings) -> None:
        self.tenant_id = world.tenant_id
        self.settings = settings
        self.identity_header = secrets.token_urlsafe(24)
        self.request_sequence = 0
        self.delivery_sequence = 0
        for body in world.resources:
            self.put_resource(body, created_at=WORLD_EPOCH)
        self._synthesize_key_versions()
        for key, data in world.account_data.items():
            self.account_data[key] = data
            self.store.put("accountData", key, data.to_json())
        self._start_busy_operations()
        for rule in settings.faults:
            self.add_fault(dict(rule))
        for subscription in settings.event_subscriptions:
            self.add_event_subscription(dict(subscription))
        self.store.put("meta", "tenantId", self.tenant_id)
        self.store.put("meta", "settings", settings.to_json())
        self.store.put("meta", "identityHeader", self.identity_header)
        self.store.put("meta", "sequences", {"requests": 0, "deliveries": 0})
        self.store.put("meta", "initialized", True)

    def _load_from_store(self, overrides: SimulatorSettings) -> None:
        store = self.store
        self.tenant_id = str(store.get("meta", "tenantId"))
        # Settings come from the persisted world; explicit overrides (CLI flags) are re-applied by the caller.
        self.settings = overrides
        self.identity_header = str(store.get("meta", "identityHeader"))
        for key, body in store.items("resources"):
            self._index(key, body)
        for key, stamp in store.items("createdAt"):
            self.created_at[key] = float(stamp)
        for key, data in store.items("accountData"):
            self.account_data[key] = AccountData.from_json(data, f"stored accountData {key}")
        for _key, data in store.items("operations"):
            operation = Operation.from_json(data)
            self.operations[operation.id.lower()] = operation
            if operation.running:
                self._running[id_key(operation.account_id)] = operation
        for key, timer in store.items("timers"):
            self.timers[key] = timer
        self.faults = sorted((rule for _key, rule in store.items("faults")), key=lambda rule: str(rule["id"]))
        self.event_subscriptions = sorted(
            (subscription for _key, subscription in store.items("eventSubscriptions")),
            key=lambda subscription: str(subscription["name"]),
        )
        for key, delivery in store.items("pendingDeliveries"):
            self.pending_deliveries[key] = delivery
        self.requests_log = store.log_entries("requests")
        self.deliveries_log = store.log_entries("deliveries")
        self.request_sequence = self.requests_log[-1]["sequence"] if self.requests_log else 0
        self.delivery_sequence = self.deliveries_log[-1]["sequence"] if self.deliveries_log else 0

    def _start_busy_operations(self) -> None:
        """Accounts the world says are busy (`busyForSeconds`) run an operation of their own from the start."""
        now = self.now()
        for key, data in self.account_data.items():
            if not data.busy_for_seconds:
                continue
            account = self.resources.get(key) if resource_type_of(key) == ACCOUNT_TYPE else None
            parsed = parse_resource_id(key)
            if account is None or parsed is None:
                raise WorldError(f"accountData[{key!r}].busyForSeconds: the world has no such database account")
            # Someone else's operation (a scale-out, a failover...): its principal is nobody the app knows.
            principal = derived_guid("busy-operation", key)
            self.add_operation(
                Operation(
                    id=self.new_operation_id(),
                    account_id=str(account["id"]),
                    subscription_id=parsed.subscription_id,
                    region=region_slug(str(account.get("location", ""))),
                    kind=data.busy_operation or DEFAULT_BUSY_OPERATION,
                    changes={},
                    requested_by=principal,
                    requested_by_claims={"oid": principal, "tid": self.tenant_id},
                    request_url="",
                    request_method="",
                    api_version="",
                    start=now,
                    end=now + data.busy_for_seconds,
                    outcome="Succeeded",
                    error=None,
                )
            )

    @staticmethod
    def stored_settings(store: StateStore) -> JsonDict | None:
        """The settings persisted with an existing state directory, if any."""
        if not store.persistent or not store.get("meta", "initialized"):
            return None
        settings = store.get("meta", "settings")
        return settings if isinstance(settings, dict) else None

    @staticmethod
    def stored_clock_anchor(store: StateStore) -> ClockAnchor | None:
        data = store.get("meta", "clockAnchor") if store.persistent else None
        return ClockAnchor.from_json(data) if isinstance(data, dict) else None

    def _synthesize_key_versions(self) -> None:
        """A key without any version resource gets one built from its `keyUriWithVersion`."""
        keys = [body for key, body in self.resources.items() if resource_type_of(key) == KEY_TYPE]
        for key_body in keys:
            key_id = str(key_body["id"])
            prefix = id_key(key_id) + "/versions/"
            if any(existing.startswith(prefix) for existing in self.resources):
                continue
            properties = key_body.get("properties") or {}
            uri_with_version = properties.get("keyUriWithVersion")
            if not isinstance(uri_with_version, str) or "/" not in uri_with_version.rstrip("/"):
                continue
            version = uri_with_version.rstrip("/").rsplit("/", 1)[1]
            version_body = {
                "id": f"{key_id}/versions/{version}",
                "name": version,
                "type": "Microsoft.KeyVault/vaults/keys/versions",
                **({"location": key_body["location"]} if "location" in key_body else {}),
                **({"tags": key_body["tags"]} if "tags" in key_body else {}),
                "properties": properties,
            }
            self.put_resource(version_body, created_at=WORLD_EPOCH)

    # ----------------------------------------------------------------- time and persistence

    def now(self) -> float:
        return self.clock.timestamp()

    def save_clock_anchor(self) -> None:
        anchor = self.clock.anchor
        if anchor != self._last_anchor:
            self.store.put("meta", "clockAnchor", anchor.to_json())
            self._last_anchor = anchor

    def commit(self) -> None:
        self.save_clock_anchor()
        self.store.commit()

    # ----------------------------------------------------------------- resources

    def get(self, resource_id: str) -> JsonDict | None:
        return self.resources.get(id_key(resource_id))

    def _index(self, key: str, body: JsonDict) -> None:
        if key not in self.resources:
            parsed = parse_resource_id(key)
            if parsed is not None:
                self._subscriptions[parsed.subscription_id] = self._subscriptions.get(parsed.subscription_id, 0) + 1
        self.resources[key] = body
        self._by_type.setdefault(resource_type_of(key), {})[key] = body

    def put_resource(self, body: JsonDict, *, created_at: float | None = None) -> None:
        key = id_key(str(body["id"]))
        self._index(key, body)
        self.store.put("resources", key, body)
        if key not in self.created_at or created_at is not None:
            stamp = self.now() if created_at is None else created_at
            self.created_at[key] = stamp
            self.store.put("createdAt", key, stamp)

    def delete_resource(self, resource_id: str) -> None:
        key = id_key(resource_id)
        if self.resources.pop(key, None) is not None:
            self._by_type.get(resource_type_of(key), {}).pop(key, None)
            parsed = parse_resource_id(key)
            if parsed is not None:
                self._subscriptions[parsed.subscription_id] -= 1
                if not self._subscriptions[parsed.subscription_id]:
                    del self._subscriptions[parsed.subscription_id]
        self.created_at.pop(key, None)
        self.store.delete("resources", key)
        self.store.delete("createdAt", key)

    def of_type(self, type_key: str) -> list[JsonDict]:
        return list(self._by_type.get(type_key, {}).values())

    def keys_of_type(self, type_key: str) -> list[str]:
        return list(self._by_type.get(type_key, {}))

    def known_subscriptions(self) -> set[str]:
        """Lowercased ids of the subscriptions that hold at least one resource."""
        return set(self._subscriptions)

    def account_facts(self, account_id: str) -> AccountData:
        return self.account_data.get(id_key(account_id), AccountData())

    # ----------------------------------------------------------------- operations

    def in_flight(self, account_id: str) -> Operation | None:
        return self._running.get(id_key(account_id))

    def add_operation(self, operation: Operation) -> None:
        self.operations[operation.id.lower()] = operation
        if operation.running:
            self._running[id_key(operation.account_id)] = operation
        self.store.put("operations", operation.id.lower(), operation.to_json())

    def save_operation(self, operation: Operation) -> None:
        self.store.put("operations", operation.id.lower(), operation.to_json())

    def settle(self) -> None:
        """Complete every operation and fire every timer whose time has passed, in order of their times."""
        while True:
            now = self.now()
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
        # Off the running index first: the completer reads the account as it will be once unlocked.
        self._running.pop(id_key(operation.account_id), None)
        operation.status = operation.outcome
        operation.completed_at = operation.end
        if self.operation_completer is not None:
            self.operation_completer(self, operation)
        self.save_operation(operation)

    def add_timer(self, timer: JsonDict) -> None:
        """Schedule `timer_handler(state, timer)` at `timer["dueAt"]` (persisted, so it survives a restart)."""
        self.timers[str(timer["id"])] = timer
        self.store.put("timers", str(timer["id"]), timer)

    def _fire(self, timer: JsonDict) -> None:
        self.timers.pop(str(timer["id"]), None)
        self.store.delete("timers", str(timer["id"]))
        if self.timer_handler is not None:
            self.timer_handler(self, timer)

    def schedule_state(self) -> tuple[bool, float | None]:
        """(something is due now, simulated time of the next thing due): operation ends, timers, event deliveries."""
        now = self.now()
        times = [operation.end for operation in self._running.values()]
        times += [float(timer["dueAt"]) for timer in self.timers.values()]
        times += [float(delivery["dueAt"]) for delivery in self.pending_deliveries.values()]
        due_now = any(moment <= now for moment in times)
        upcoming = [moment for moment in times if moment > now]
        return due_now, (min(upcoming) if upcoming else None)

    @staticmethod
    def new_operation_id() -> str:
        # Not from the seeded RNG: a restarted process re-seeds it and must never reuse a persisted id.
        return str(uuid.uuid4())

    # ----------------------------------------------------------------- logs

    def log_request(self, entry: JsonDict) -> int:
        self.request_sequence += 1
        record = {"sequence": self.request_sequence, **entry}
        self.requests_log.append(record)
        self.store.append("requests", self.request_sequence, record)
        return self.request_sequence

    def requests_since(self, since: int) -> list[JsonDict]:
        # The log is ordered by sequence, so find the first newer entry by bisection-free scan from the end.
        index = len(self.requests_log)
        while index > 0 and self.requests_log[index - 1]["sequence"] > since:
            index -= 1
        return self.requests_log[index:]

    def log_delivery(self, entry: JsonDict) -> None:
        self.delivery_sequence += 1
        record = {"sequence": self.delivery_sequence, **entry}
        self.deliveries_log.append(record)
        self.store.append("deliveries", self.delivery_sequence, record)

    # ----------------------------------------------------------------- faults and event subscriptions

    def add_fault(self, rule: JsonDict) -> JsonDict:
        from sandbox.azure.faults import validate_fault_rule

        normalized = validate_fault_rule(rule, self.rng)
        self.faults.append(normalized)
        self.store.put("faults", str(normalized["id"]), normalized)
        return normalized

    def save_fault(self, rule: JsonDict) -> None:
        self.store.put("faults", str(rule["id"]), rule)

    def remove_faults(self, fault_id: str | None = None) -> int:
        kept = [rule for rule in self.faults if fault_id is not None and rule["id"] != fault_id]
        removed = len(self.faults) - len(kept)
        for rule in self.faults:
            if rule not in kept:
                self.store.delete("faults", str(rule["id"]))
        self.faults = kept
        return removed

    def add_event_subscription(self, subscription: JsonDict) -> JsonDict:
        from sandbox.azure.eventgrid import validate_event_subscription

        normalized = validate_event_subscription(subscription, len(self.event_subscriptions))
        self.event_subscriptions = [
            existing for existing in self.event_subscriptions if existing["name"] != normalized["name"]
        ]
        self.event_subscriptions.append(normalized)
        self.store.put("eventSubscriptions", str(normalized["name"]), normalized)
        return normalized

    def remove_event_subscriptions(self, name: str | None = None) -> int:
        kept = [existing for existing in self.event_subscriptions if name is not None and existing["name"] != name]
        removed = len(self.event_subscriptions) - len(kept)
        for existing in self.event_subscriptions:
            if existing not in kept:
                self.store.delete("eventSubscriptions", str(existing["name"]))
        self.event_subscriptions = kept
        return removed

    def queue_delivery(self, delivery: JsonDict) -> None:
        self.pending_deliveries[str(delivery["deliveryId"])] = delivery
        self.store.put("pendingDeliveries", str(delivery["deliveryId"]), delivery)
        if self.event_listener is not None:
            self.event_listener()

    def finish_delivery(self, delivery_id: str) -> None:
        self.pending_deliveries.pop(delivery_id, None)
        self.store.delete("pendingDeliveries", delivery_id)

    def update_delivery(self, delivery: JsonDict) -> None:
        self.pending_deliveries[str(delivery["deliveryId"])] = delivery
        self.store.put("pendingDeliveries", str(delivery["deliveryId"]), delivery)
