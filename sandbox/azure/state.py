"""The simulated cloud's state: one store per concern, each owned by the provider that serves it, on one lock.

| store | what it holds | owner |
|---|---|---|
| `resources` (`ResourceStore`) | every ARM resource body, by id and type | each provider for its types |
| `accounts` (`AccountDataStore`) | Cosmos DB's facts about accounts (size, spare RU/s, documents) | Cosmos DB |
| `operations` (`OperationStore`) | asynchronous account operations and timers | Cosmos DB, through its hooks |
| `request_units` (`RequestUnitLedger`) | data-plane RU charges per account | the Cosmos DB data plane |
| `events` (`EventStore`) | Event Grid subscriptions, pending deliveries, delivery log | Event Grid |
| `faults` (`FaultStore`) | fault rules | the server |
| `requests` (`RequestLog`) | every request answered | the server |

Providers change other services' state only through `hooks` (a resource write raising an Event Grid event) or the
stores' own hooks (an operation completing), which the simulator wires; so no store or provider imports another
service's provider. All changes happen under `lock`, synchronously, and are written through to the persistence
(sandbox/azure/persistence.py); `commit()` ends each request's transaction.
"""

from __future__ import annotations

import random
import secrets
import threading
from dataclasses import dataclass
from typing import Any, Protocol

from sandbox.azure.account_store import AccountDataStore, busy_operations
from sandbox.azure.event_store import EventStore
from sandbox.azure.fault_store import FaultStore
from sandbox.azure.ids import JsonDict
from sandbox.azure.messages import RequestContext
from sandbox.azure.operation_store import OperationStore
from sandbox.azure.persistence import StateStore
from sandbox.azure.request_log import RequestLog
from sandbox.azure.request_units import RequestUnitLedger
from sandbox.azure.resource_store import WORLD_EPOCH, ResourceStore
from sandbox.azure.vault_store import synthesize_key_versions
from sandbox.azure.world import SimulatorSettings, World
from sandbox.clock import ClockAnchor, SimClock


class ResourceWritten(Protocol):
    """A resource write finished (`status` Succeeded or Failed): ARM's resource event (Event Grid publishes it)."""

    def __call__(
        self,
        context: RequestContext | None,
        resource_id: str,
        action: str,
        status: str,
        *,
        claims: JsonDict | None = None,
        http_method: str | None = None,
        http_url: str | None = None,
    ) -> None: ...


def _nobody_listens(*args: Any, **kwargs: Any) -> None:
    """The hook before the simulator wires Event Grid in: nothing listens."""


@dataclass
class Hooks:
    """Cross-service effects, wired by the simulator (sandbox/azure/simulator.py)."""

    resource_written: ResourceWritten = _nobody_listens


class CloudState:
    """Everything the simulated cloud knows. Use under `lock`; call `commit()` after each request."""

    def __init__(self, world: World, clock: SimClock, store: StateStore, settings: SimulatorSettings) -> None:
        self.lock = threading.RLock()
        self.clock = clock
        self.store = store
        self.rng = random.Random(settings.random_seed)
        self.hooks = Hooks()
        self.resources = ResourceStore(store, self.now)
        self.accounts = AccountDataStore(store)
        self.operations = OperationStore(store, self.now)
        self.request_units = RequestUnitLedger()
        self.events = EventStore(store)
        self.faults = FaultStore(store, self.rng)
        self.requests = RequestLog(store)
        self._last_anchor: ClockAnchor | None = None
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
        for body in world.resources:
            self.resources.put(body, created_at=WORLD_EPOCH)
        synthesize_key_versions(self.resources)
        for key, data in world.account_data.items():
            self.accounts.put(key, data)
        for operation in busy_operations(self.accounts, self.resources, self.tenant_id, self.now()):
            self.operations.add(operation)
        for rule in settings.faults:
            self.faults.add(dict(rule))
        for subscription in settings.event_subscriptions:
            self.events.add_subscription(dict(subscription))
        self.store.put("meta", "tenantId", self.tenant_id)
        self.store.put("meta", "settings", settings.to_json())
        self.store.put("meta", "identityHeader", self.identity_header)
        self.store.put("meta", "sequences", {"requests": 0, "deliveries": 0})
        self.store.put("meta", "initialized", True)

    def _load_from_store(self, overrides: SimulatorSettings) -> None:
        self.tenant_id = str(self.store.get("meta", "tenantId"))
        # Settings come from the persisted world; explicit overrides (CLI flags) are re-applied by the caller.
        self.settings = overrides
        self.identity_header = str(self.store.get("meta", "identityHeader"))
        for loadable in (self.resources, self.accounts, self.operations, self.faults, self.events, self.requests):
            loadable.load()

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

    # ----------------------------------------------------------------- time and persistence

    def now(self) -> float:
        return self.clock.timestamp()

    def settle(self) -> None:
        """Apply every operation end and timer whose simulated time has passed."""
        self.operations.settle()

    def schedule_state(self) -> tuple[bool, float | None]:
        """(something is due now, simulated time of the next thing due): operation ends, timers, event deliveries."""
        now = self.now()
        times = self.operations.due_times() + [float(delivery["dueAt"]) for delivery in self.events.pending.values()]
        due_now = any(moment <= now for moment in times)
        upcoming = [moment for moment in times if moment > now]
        return due_now, (min(upcoming) if upcoming else None)

    def save_clock_anchor(self) -> None:
        anchor = self.clock.anchor
        if anchor != self._last_anchor:
            self.store.put("meta", "clockAnchor", anchor.to_json())
            self._last_anchor = anchor

    def commit(self) -> None:
        self.save_clock_anchor()
        self.store.commit()
