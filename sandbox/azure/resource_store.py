"""The ARM resource table: every resource body by its id, as GET returns it, with the indexes that keep 1,000-account
worlds fast (by type, per subscription) and when each resource was created (role assignments count only once
propagated). Providers own the types they serve and reach their resources through here; ARM's generic reads
(resources.py) and Resource Graph read across all of them.
"""

from __future__ import annotations

from collections.abc import Callable

from sandbox.azure.ids import JsonDict, id_key, parse_resource_id, resource_type_of
from sandbox.azure.persistence import StateStore

# Created-at stamp for resources that come from the world file: long before the simulated "now", so role
# assignments present in the world are already effective.
WORLD_EPOCH = 0.0


class ResourceStore:
    def __init__(self, persistence: StateStore, now: Callable[[], float]) -> None:
        self._persistence = persistence
        self._now = now
        self._bodies: dict[str, JsonDict] = {}
        self._by_type: dict[str, dict[str, JsonDict]] = {}
        self._subscriptions: dict[str, int] = {}
        self._created_at: dict[str, float] = {}
        # Every ARM request's authorization reads its caller's role assignments, and every data-plane request looks
        # an account up by name and reads its SQL role assignments: scanning every assignment or account each time
        # made a 1,000-account rollout's cost grow with the square of the fleet.
        self._by_name: dict[tuple[str, str], dict[str, JsonDict]] = {}
        self._by_principal: dict[tuple[str, str], dict[str, JsonDict]] = {}
        self._attributes_of: dict[str, tuple[tuple[str, str], tuple[str, str]]] = {}
        self._by_parent: dict[tuple[str, str], dict[str, JsonDict]] = {}
        self._type_versions: dict[str, int] = {}

    def load(self) -> None:
        """Read back a persisted table."""
        for key, body in self._persistence.items("resources"):
            self._index(key, body)
        for key, stamp in self._persistence.items("createdAt"):
            self._created_at[key] = float(stamp)

    def get(self, resource_id: str) -> JsonDict | None:
        return self._bodies.get(id_key(resource_id))

    def all(self) -> list[JsonDict]:
        return list(self._bodies.values())

    def ids(self) -> list[str]:
        """Every resource's lookup key (`id_key`)."""
        return list(self._bodies)

    def of_type(self, type_key: str) -> list[JsonDict]:
        return list(self._by_type.get(type_key, {}).values())

    def named(self, type_key: str, name: str) -> JsonDict | None:
        """The first resource of a type (in the order they were created) whose body's name is `name`, any casing."""
        return next(iter(self._by_name.get((type_key, name.lower()), {}).values()), None)

    def of_principal(self, type_key: str, principal_id: str) -> list[JsonDict]:
        """The resources of a type (role assignments) whose `properties.principalId` is `principal_id`, in the
        order they were created."""
        return list(self._by_principal.get((type_key, principal_id.lower()), {}).values())

    def children(self, parent_id: str, type_key: str) -> list[JsonDict]:
        """The resources of a type directly under a resource (an account's `sqlRoleAssignments`, say)."""
        return list(self._by_parent.get((id_key(parent_id), type_key), {}).values())

    def type_version(self, type_key: str) -> int:
        """A number that changes whenever a resource of the type is written or deleted (for what is derived from
        them, like the custom roles every authorization reads)."""
        return self._type_versions.get(type_key, 0)

    def keys_of_type(self, type_key: str) -> list[str]:
        return list(self._by_type.get(type_key, {}))

    def known_subscriptions(self) -> set[str]:
        """Lowercased ids of the subscriptions that hold at least one resource."""
        return set(self._subscriptions)

    def created_at(self, resource_id: str) -> float:
        """Simulated time the resource was created (0 for resources from the world file, or unknown ones)."""
        return self._created_at.get(id_key(resource_id), 0.0)

    def put(self, body: JsonDict, *, created_at: float | None = None) -> None:
        key = id_key(str(body["id"]))
        self._index(key, body)
        self._persistence.put("resources", key, body)
        if key not in self._created_at or created_at is not None:
            stamp = self._now() if created_at is None else created_at
            self._created_at[key] = stamp
            self._persistence.put("createdAt", key, stamp)

    def delete(self, resource_id: str) -> None:
        key = id_key(resource_id)
        if self._bodies.pop(key, None) is not None:
            type_key = resource_type_of(key)
            self._by_type.get(type_key, {}).pop(key, None)
            self._type_versions[type_key] = self._type_versions.get(type_key, 0) + 1
            name, principal = self._attributes_of.pop(key, (("", ""), ("", "")))
            self._by_name.get(name, {}).pop(key, None)
            self._by_principal.get(principal, {}).pop(key, None)
            self._by_parent.get((key.rsplit("/", 2)[0], type_key), {}).pop(key, None)
            parsed = parse_resource_id(key)
            if parsed is not None:
                self._subscriptions[parsed.subscription_id] -= 1
                if not self._subscriptions[parsed.subscription_id]:
                    del self._subscriptions[parsed.subscription_id]
        self._created_at.pop(key, None)
        self._persistence.delete("resources", key)
        self._persistence.delete("createdAt", key)

    def _index(self, key: str, body: JsonDict) -> None:
        if key not in self._bodies:
            parsed = parse_resource_id(key)
            if parsed is not None:
                self._subscriptions[parsed.subscription_id] = self._subscriptions.get(parsed.subscription_id, 0) + 1
        self._bodies[key] = body
        type_key = resource_type_of(key)
        self._by_type.setdefault(type_key, {})[key] = body
        self._type_versions[type_key] = self._type_versions.get(type_key, 0) + 1
        self._by_parent.setdefault((key.rsplit("/", 2)[0], type_key), {})[key] = body
        name = (type_key, str(body.get("name", "")).lower())
        principal = (type_key, str((body.get("properties") or {}).get("principalId", "")).lower())
        previous = self._attributes_of.get(key)
        if previous is not None and previous[0] != name:
            self._by_name[previous[0]].pop(key, None)
        if previous is not None and previous[1] != principal:
            self._by_principal[previous[1]].pop(key, None)
        self._attributes_of[key] = (name, principal)
        self._by_name.setdefault(name, {})[key] = body
        self._by_principal.setdefault(principal, {})[key] = body
