"""Cosmos DB's own facts about its accounts (the world's `accountData`: data size, spare RU/s, documents, a busy
account's operation), beside the account bodies in the resource table."""

from __future__ import annotations

from sandbox.azure.ids import ACCOUNT_TYPE, id_key, parse_resource_id, region_slug, resource_type_of
from sandbox.azure.operation_store import Operation, new_operation_id
from sandbox.azure.persistence import StateStore
from sandbox.azure.resource_store import ResourceStore
from sandbox.azure.tokens import derived_guid
from sandbox.azure.world import DEFAULT_BUSY_OPERATION, AccountData, WorldError


class AccountDataStore:
    def __init__(self, persistence: StateStore) -> None:
        self._persistence = persistence
        self._data: dict[str, AccountData] = {}

    def load(self) -> None:
        for key, data in self._persistence.items("accountData"):
            self._data[key] = AccountData.from_json(data, f"stored accountData {key}")

    def put(self, account_id: str, data: AccountData) -> None:
        self._data[id_key(account_id)] = data
        self._persistence.put("accountData", id_key(account_id), data.to_json())

    def facts(self, account_id: str) -> AccountData:
        return self._data.get(id_key(account_id), AccountData())

    def items(self) -> list[tuple[str, AccountData]]:
        return list(self._data.items())


def busy_operations(
    accounts: AccountDataStore, resources: ResourceStore, tenant_id: str, now: float
) -> list[Operation]:
    """Accounts the world says are busy (`busyForSeconds`) run an operation of their own from the start:
    someone else's (a scale-out, a failover...), by a principal the app does not know."""
    operations = []
    for key, data in accounts.items():
        if not data.busy_for_seconds:
            continue
        account = resources.get(key) if resource_type_of(key) == ACCOUNT_TYPE else None
        parsed = parse_resource_id(key)
        if account is None or parsed is None:
            raise WorldError(f"accountData[{key!r}].busyForSeconds: the world has no such database account")
        principal = derived_guid("busy-operation", key)
        operations.append(
            Operation(
                id=new_operation_id(),
                account_id=str(account["id"]),
                subscription_id=parsed.subscription_id,
                region=region_slug(str(account.get("location", ""))),
                kind=data.busy_operation or DEFAULT_BUSY_OPERATION,
                changes={},
                requested_by=principal,
                requested_by_claims={"oid": principal, "tid": tenant_id},
                request_url="",
                request_method="",
                api_version="",
                start=now,
                end=now + data.busy_for_seconds,
                outcome="Succeeded",
                error=None,
            )
        )
    return operations
