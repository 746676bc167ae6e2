"""Event Grid's state: the webhook subscriptions, the deliveries waiting for their (simulated) time, and the record
of every delivery attempt (GET /_sandbox/events). sandbox/azure/eventgrid.py raises the events and delivers them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sandbox.azure.ids import JsonDict
from sandbox.azure.persistence import StateStore

SCHEMAS = ("EventGridSchema", "CloudEventSchemaV1_0")
_SUBSCRIPTION_FIELDS = {
    "name",
    "endpoint",
    "schema",
    "subjectBeginsWith",
    "subjectEndsWith",
    "includedEventTypes",
    "azureSubscriptionId",
}


def validate_event_subscription(subscription: Any, index: int) -> JsonDict:
    if not isinstance(subscription, dict):
        raise ValueError("an event subscription must be an object")
    unknown = sorted(set(subscription) - _SUBSCRIPTION_FIELDS)
    if unknown:
        raise ValueError(f"event subscription: unknown field(s) {unknown}; known: {sorted(_SUBSCRIPTION_FIELDS)}")
    endpoint = subscription.get("endpoint")
    if not isinstance(endpoint, str) or not endpoint.startswith(("http://", "https://")):
        raise ValueError("event subscription: 'endpoint' must be an http(s) URL")
    schema = subscription.get("schema", "EventGridSchema")
    if schema not in SCHEMAS:
        raise ValueError(f"event subscription: 'schema' must be one of {list(SCHEMAS)}")
    included = subscription.get("includedEventTypes")
    if included is not None and (not isinstance(included, list) or not all(isinstance(t, str) for t in included)):
        raise ValueError("event subscription: 'includedEventTypes' must be a list of strings")
    normalized: JsonDict = {"name": str(subscription.get("name") or f"subscription-{index + 1}"), "endpoint": endpoint}
    normalized["schema"] = schema
    for optional in ("subjectBeginsWith", "subjectEndsWith", "azureSubscriptionId"):
        if subscription.get(optional) is not None:
            normalized[optional] = str(subscription[optional])
    if included is not None:
        normalized["includedEventTypes"] = included
    return normalized


class EventStore:
    def __init__(self, persistence: StateStore) -> None:
        self._persistence = persistence
        self.subscriptions: list[JsonDict] = []
        self.pending: dict[str, JsonDict] = {}  # deliveries by deliveryId, each with its `dueAt`
        self.log: list[JsonDict] = []
        self.last = 0  # the sequence number of the newest delivery record
        self.listener: Callable[[], None] | None = None  # told when a delivery is queued (wakes the dispatcher)

    def load(self) -> None:
        self.subscriptions = sorted(
            (subscription for _key, subscription in self._persistence.items("eventSubscriptions")),
            key=lambda subscription: str(subscription["name"]),
        )
        for key, delivery in self._persistence.items("pendingDeliveries"):
            self.pending[key] = delivery
        self.log = self._persistence.log_entries("deliveries")
        self.last = self.log[-1]["sequence"] if self.log else 0

    def add_subscription(self, subscription: JsonDict) -> JsonDict:
        normalized = validate_event_subscription(subscription, len(self.subscriptions))
        self.subscriptions = [existing for existing in self.subscriptions if existing["name"] != normalized["name"]]
        self.subscriptions.append(normalized)
        self._persistence.put("eventSubscriptions", str(normalized["name"]), normalized)
        return normalized

    def remove_subscriptions(self, name: str | None = None) -> int:
        kept = [existing for existing in self.subscriptions if name is not None and existing["name"] != name]
        removed = len(self.subscriptions) - len(kept)
        for existing in self.subscriptions:
            if existing not in kept:
                self._persistence.delete("eventSubscriptions", str(existing["name"]))
        self.subscriptions = kept
        return removed

    def queue(self, delivery: JsonDict) -> None:
        self.update(delivery)
        if self.listener is not None:
            self.listener()

    def update(self, delivery: JsonDict) -> None:
        self.pending[str(delivery["deliveryId"])] = delivery
        self._persistence.put("pendingDeliveries", str(delivery["deliveryId"]), delivery)

    def finish(self, delivery_id: str) -> None:
        self.pending.pop(delivery_id, None)
        self._persistence.delete("pendingDeliveries", delivery_id)

    def record(self, entry: JsonDict) -> None:
        """Log one delivery attempt."""
        self.last += 1
        record = {"sequence": self.last, **entry}
        self.log.append(record)
        self._persistence.append("deliveries", self.last, record)

    def since(self, sequence: int) -> list[JsonDict]:
        return [entry for entry in self.log if entry["sequence"] > sequence]
