"""World files: the resources, data-plane facts and simulator settings a simulated cloud starts from.

The format is documented in sandbox/worlds/README.md. `load_world()` accepts a world object, or what the Azure
CLI prints for real resources (`az rest`/`az resource show`: one body, a JSON list of bodies, `{"value": [...]}`),
so a user can rehearse on an export of their own accounts.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from sandbox.azure.clouds import cloud_named
from sandbox.azure.conditions import check_condition
from sandbox.azure.ids import (
    ACCOUNT_TYPE,
    ROLE_ASSIGNMENT_TYPE,
    ROLE_DEFINITION_TYPE,
    JsonDict,
    id_key,
    normalize_id,
    resource_type_of,
)
from sandbox.azure.rbac import role_from_body

DEFAULT_TENANT_ID = "72f988bf-86f1-41af-91ab-2d7cd011db47"
DEFAULT_SYSTEM_PRINCIPAL_ID = "5b3f6c2e-8d1a-4f7b-9c2e-1a4d6e8f0b13"
DEFAULT_SYSTEM_CLIENT_ID = "9e2d4c6a-1b3f-4e5d-8a7c-2f4e6a8c0d21"
# The object id of the "Azure Cosmos DB" first-party service principal is tenant specific; this is a stand-in.
DEFAULT_FIRST_PARTY_PRINCIPAL_ID = "f2a0c4e6-3b5d-4a7f-9e1c-6d8b0a2c4e35"
MAX_DOCUMENT_ID_BYTES = 1023  # Cosmos DB's own limit; CMK lowers it to 990


class WorldError(ValueError):
    """The world file is malformed; the message says where."""


@dataclass(frozen=True)
class EncryptionModel:
    """How long enabling CMK on an existing account takes, and when a doomed attempt fails.

    duration = max(minSeconds, dataSizeKiB * ruPerKiB / spareRuPerSecond): every KiB is read and rewritten with
    the spare throughput; a failing precondition is detected `failureAfterSeconds` in (or at the end if sooner).
    """

    min_seconds: float = 600.0
    ru_per_kib: float = 6.0
    default_data_size_gib: float = 1.0
    default_spare_ru_per_second: float = 1000.0
    failure_after_seconds: float = 120.0
    scan_min_spare_ru_per_second: float = 50.0
    # After a successful encryption, customerManagedKeyStatus stays absent this long before it confirms the key.
    key_status_lag_seconds: float = 0.0

    def duration_seconds(self, data_size_gib: float, spare_ru_per_second: float) -> float:
        data_kib = data_size_gib * 1024 * 1024
        return max(self.min_seconds, data_kib * self.ru_per_kib / max(spare_ru_per_second, 1.0))


@dataclass(frozen=True)
class ThrottleSettings:
    """ARM token buckets per (subscription, principal, operation kind); the global bucket is `globalMultiplier`×."""

    enabled: bool = True
    read_bucket: float = 250.0
    read_refill_per_second: float = 25.0
    write_bucket: float = 200.0
    write_refill_per_second: float = 10.0
    delete_bucket: float = 200.0
    delete_refill_per_second: float = 10.0
    global_multiplier: float = 15.0
    resource_graph_queries_per_window: int = 15
    resource_graph_window_seconds: float = 5.0


@dataclass(frozen=True)
class EventDeliverySettings:
    """Event Grid push delivery: retry schedule (simulated seconds), duplicates and reordering."""

    retry_schedule_seconds: tuple[float, ...] = (10.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0)
    max_attempts: int = 30
    duplicate_probability: float = 0.0
    max_delay_seconds: float = 0.0  # random extra delay per event (simulated), which reorders deliveries
    timeout_seconds: float = 30.0  # real seconds per HTTP attempt


@dataclass(frozen=True)
class AuthorizationSettings:
    """ARM authorization (sandbox/azure/authorizer.py): `enforce` false logs every decision and refuses nothing."""

    enforce: bool = True


@dataclass(frozen=True)
class SimulatorSettings:
    system_principal_id: str = DEFAULT_SYSTEM_PRINCIPAL_ID
    system_client_id: str = DEFAULT_SYSTEM_CLIENT_ID
    first_party_principal_id: str = DEFAULT_FIRST_PARTY_PRINCIPAL_ID
    rbac_propagation_seconds: float = 300.0
    identity_operation_seconds: float = 30.0
    update_operation_seconds: float = 30.0
    key_rotation_seconds: float = 60.0
    unchanged_operation_seconds: float = 5.0
    dequeued_seconds: float = 60.0
    async_retry_after_seconds: int | None = None
    operation_status_detail: bool = False
    enforce_data_plane_rbac: bool = True
    random_seed: int = 0
    # The Azure cloud the simulator answers as (sandbox/azure/clouds.py): its ARM token audiences.
    cloud: str = "AzureCloud"
    encryption: EncryptionModel = field(default_factory=EncryptionModel)
    throttling: ThrottleSettings = field(default_factory=ThrottleSettings)
    event_delivery: EventDeliverySettings = field(default_factory=EventDeliverySettings)
    authorization: AuthorizationSettings = field(default_factory=AuthorizationSettings)
    faults: tuple[JsonDict, ...] = ()
    event_subscriptions: tuple[JsonDict, ...] = ()

    def to_json(self) -> JsonDict:
        return _dataclass_to_json(self)

    @classmethod
    def from_json(cls, data: JsonDict) -> SimulatorSettings:
        settings: SimulatorSettings = _dataclass_from_json(cls, data, "simulator")
        try:
            cloud_named(settings.cloud)
        except ValueError as error:
            raise WorldError(f"simulator.cloud: {error}") from error
        return settings

    def with_overrides(self, overrides: JsonDict) -> SimulatorSettings:
        """Apply camelCase overrides (CLI flags) on top of these settings; nested objects merge."""
        merged = self.to_json()
        for key, value in overrides.items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = {**merged[key], **value}
            else:
                merged[key] = value
        return SimulatorSettings.from_json(merged)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    camel = head + "".join(part[:1].upper() + part[1:] for part in rest)
    return camel.replace("Gib", "GiB").replace("Kib", "KiB")


def _dataclass_to_json(instance: Any) -> JsonDict:
    result: JsonDict = {}
    for item in fields(instance):
        value = getattr(instance, item.name)
        if hasattr(value, "__dataclass_fields__"):
            value = _dataclass_to_json(value)
        elif isinstance(value, tuple):
            value = list(value)
        result[_camel(item.name)] = value
    return result


def _dataclass_from_json(cls: Any, data: JsonDict, where: str) -> Any:
    if not isinstance(data, dict):
        raise WorldError(f"{where} must be an object")
    by_camel = {_camel(item.name): item for item in fields(cls)}
    unknown = sorted(set(data) - set(by_camel))
    if unknown:
        raise WorldError(f"{where}: unknown setting(s) {unknown}; known: {sorted(by_camel)}")
    values: dict[str, Any] = {}
    defaults = cls()
    for camel, item in by_camel.items():
        if camel not in data:
            continue
        raw = data[camel]
        default = getattr(defaults, item.name)
        if hasattr(default, "__dataclass_fields__"):
            values[item.name] = _dataclass_from_json(type(default), raw, f"{where}.{camel}")
        elif isinstance(default, tuple):
            if not isinstance(raw, list):
                raise WorldError(f"{where}.{camel} must be a list")
            values[item.name] = tuple(raw)
        elif isinstance(default, bool):
            if not isinstance(raw, bool):
                raise WorldError(f"{where}.{camel} must be true or false")
            values[item.name] = raw
        elif isinstance(default, float | int):
            if not isinstance(raw, int | float) or isinstance(raw, bool):
                raise WorldError(f"{where}.{camel} must be a number")
            values[item.name] = int(raw) if isinstance(default, int) else float(raw)
        elif default is None:
            if raw is not None and (not isinstance(raw, int | float) or isinstance(raw, bool)):
                raise WorldError(f"{where}.{camel} must be a number or null")
            values[item.name] = None if raw is None else int(raw)
        else:
            if not isinstance(raw, str):
                raise WorldError(f"{where}.{camel} must be a string")
            values[item.name] = raw
    return replace(defaults, **values)


# Operation kinds with their own meaning in the simulator, which a world's busy account cannot claim.
RESERVED_OPERATION_KINDS = frozenset(
    {"enablecustomermanagedkey", "rotatecustomermanagedkey", "sqlroleassignment", "unchanged"}
)
DEFAULT_BUSY_OPERATION = "update"


@dataclass(frozen=True)
class AccountData:
    """Data-plane facts of one account, and the state it starts in (see README: accountData)."""

    data_size_gib: float | None = None
    spare_ru_per_second: float | None = None
    largest_document_id_bytes: int | None = None
    databases: dict[str, dict[str, list[JsonDict]]] | None = None
    key_status_lag_seconds: float | None = None
    busy_for_seconds: float | None = None
    busy_operation: str | None = None
    document_count: int | None = None
    provisioned_ru_per_second: float | None = None

    def to_json(self) -> JsonDict:
        result: JsonDict = {}
        if self.data_size_gib is not None:
            result["dataSizeGiB"] = self.data_size_gib
        if self.spare_ru_per_second is not None:
            result["spareRuPerSecond"] = self.spare_ru_per_second
        if self.largest_document_id_bytes is not None:
            result["largestDocumentIdBytes"] = self.largest_document_id_bytes
        if self.databases is not None:
            result["databases"] = self.databases
        if self.key_status_lag_seconds is not None:
            result["keyStatusLagSeconds"] = self.key_status_lag_seconds
        if self.busy_for_seconds is not None:
            result["busyForSeconds"] = self.busy_for_seconds
        if self.busy_operation is not None:
            result["busyOperation"] = self.busy_operation
        if self.document_count is not None:
            result["documentCount"] = self.document_count
        if self.provisioned_ru_per_second is not None:
            result["provisionedRuPerSecond"] = self.provisioned_ru_per_second
        return result

    @classmethod
    def from_json(cls, data: JsonDict, where: str) -> AccountData:
        if not isinstance(data, dict):
            raise WorldError(f"{where} must be an object")
        known = {
            "dataSizeGiB",
            "spareRuPerSecond",
            "largestDocumentIdBytes",
            "databases",
            "keyStatusLagSeconds",
            "busyForSeconds",
            "busyOperation",
            "documentCount",
            "provisionedRuPerSecond",
        }
        unknown = sorted(set(data) - known)
        if unknown:
            raise WorldError(f"{where}: unknown field(s) {unknown}; known: {sorted(known)}")
        largest = data.get("largestDocumentIdBytes")
        if largest is not None and (not isinstance(largest, int) or not 1 <= largest <= MAX_DOCUMENT_ID_BYTES):
            raise WorldError(f"{where}.largestDocumentIdBytes must be an integer from 1 to {MAX_DOCUMENT_ID_BYTES}")
        databases = data.get("databases")
        if databases is not None:
            _check_databases(databases, f"{where}.databases")
        count = data.get("documentCount")
        if count is not None:
            if not isinstance(count, int) or isinstance(count, bool) or count < 1:
                raise WorldError(f"{where}.documentCount must be a positive integer")
            if databases is not None:
                raise WorldError(f"{where}: documentCount sizes the synthesized container; give it or databases")
        numbers = {}
        for name in (
            "dataSizeGiB",
            "spareRuPerSecond",
            "keyStatusLagSeconds",
            "busyForSeconds",
            "provisionedRuPerSecond",
        ):
            value = data.get(name)
            if value is not None and (not isinstance(value, int | float) or isinstance(value, bool) or value < 0):
                raise WorldError(f"{where}.{name} must be a non-negative number")
            numbers[name] = None if value is None else float(value)
        busy_operation = data.get("busyOperation")
        if busy_operation is not None:
            if not isinstance(busy_operation, str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", busy_operation):
                raise WorldError(f"{where}.busyOperation must be a name such as 'scale' (letters and digits)")
            if busy_operation.lower() in RESERVED_OPERATION_KINDS:
                raise WorldError(
                    f"{where}.busyOperation cannot be {busy_operation!r}: the simulator gives it a meaning"
                )
            if not numbers["busyForSeconds"]:
                raise WorldError(f"{where}.busyOperation needs a positive busyForSeconds")
        return cls(
            data_size_gib=numbers["dataSizeGiB"],
            spare_ru_per_second=numbers["spareRuPerSecond"],
            largest_document_id_bytes=largest,
            databases=databases,
            key_status_lag_seconds=numbers["keyStatusLagSeconds"],
            busy_for_seconds=numbers["busyForSeconds"],
            busy_operation=busy_operation,
            document_count=count,
            provisioned_ru_per_second=numbers["provisionedRuPerSecond"],
        )


def _check_databases(databases: Any, where: str) -> None:
    if not isinstance(databases, dict):
        raise WorldError(f"{where} must map database names to {{container name: [documents]}}")
    for database, containers in databases.items():
        if not isinstance(containers, dict):
            raise WorldError(f"{where}.{database} must map container names to lists of documents")
        for container, documents in containers.items():
            if not isinstance(documents, list) or not all(
                isinstance(document, dict) and isinstance(document.get("id"), str) for document in documents
            ):
                raise WorldError(f"{where}.{database}.{container} must be a list of documents with string ids")


@dataclass
class World:
    tenant_id: str
    resources: list[JsonDict]
    account_data: dict[str, AccountData]
    settings: SimulatorSettings
    expectations: JsonDict = field(default_factory=dict)

    def to_json(self) -> JsonDict:
        return {
            "tenantId": self.tenant_id,
            "resources": self.resources,
            "accountData": {key: value.to_json() for key, value in self.account_data.items()},
            "simulator": self.settings.to_json(),
            "expectations": self.expectations,
        }


_AZ_ONLY_TOP_LEVEL_KEYS = ("resourceGroup",)  # added by `az resource show`/`az ... list`, not part of ARM bodies


def _flatten_bodies(value: Any, where: str) -> list[JsonDict]:
    """Resource bodies from a body, a list of bodies or `{"value": [...]}` (nesting allowed)."""
    if isinstance(value, list):
        bodies: list[JsonDict] = []
        for index, item in enumerate(value):
            bodies.extend(_flatten_bodies(item, f"{where}[{index}]"))
        return bodies
    if isinstance(value, dict):
        if "id" not in value and isinstance(value.get("value"), list):
            return _flatten_bodies(value["value"], f"{where}.value")
        if isinstance(value.get("id"), str):
            return [value]
    raise WorldError(f"{where}: expected a resource body with an 'id', a list of them, or {{'value': [...]}}")


def _clean_cli_body(body: JsonDict) -> JsonDict:
    """Drop what the Azure CLI adds around ARM bodies (null placeholders, `resourceGroup`)."""
    cleaned = {key: value for key, value in body.items() if value is not None}
    for key in _AZ_ONLY_TOP_LEVEL_KEYS:
        if isinstance(cleaned.get(key), str) and key not in ("properties",):
            cleaned.pop(key)
    if "type" not in cleaned:
        derived = resource_type_of(str(cleaned["id"]))
        if not derived:
            raise WorldError(f"resource {cleaned['id']!r} has no 'type' and its id does not name one")
        cleaned["type"] = derived
    return cleaned


def _check_authorization_body(body: JsonDict, where: str) -> None:
    """Role definitions must be usable and role assignment conditions ones the simulator can evaluate."""
    kind = resource_type_of(str(body["id"]))
    try:
        if kind == ROLE_DEFINITION_TYPE:
            role_from_body(body)
        elif kind == ROLE_ASSIGNMENT_TYPE:
            properties = body.get("properties") or {}
            check_condition(properties.get("condition"), properties.get("conditionVersion"))
    except ValueError as error:
        raise WorldError(f"{where}: {body['id']!r}: {error}") from error


def load_world(source: Path | str | JsonDict | list[Any]) -> World:
    """Build a World from a file path, a parsed world object, or Azure CLI output (see module docstring)."""
    where = "world"
    if isinstance(source, Path | str):
        path = Path(source)
        where = str(path)
        try:
            data: Any = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise WorldError(f"{where}: not valid JSON ({error})") from error
    else:
        data = source
    if isinstance(data, dict) and ("resources" in data or "simulator" in data or "accountData" in data):
        unknown = sorted(set(data) - {"tenantId", "resources", "accountData", "simulator", "expectations", "$comment"})
        if unknown:
            raise WorldError(f"{where}: unknown top-level field(s) {unknown}")
        raw_resources = data.get("resources", [])
        raw_account_data = data.get("accountData", {})
        raw_settings = data.get("simulator", {})
        tenant_id = data.get("tenantId")
        expectations = data.get("expectations", {})
    else:
        raw_resources, raw_account_data, raw_settings, tenant_id, expectations = data, {}, {}, None, {}
    bodies = [_clean_cli_body(body) for body in _flatten_bodies(raw_resources, f"{where}.resources")]
    seen: dict[str, str] = {}
    for body in bodies:
        key = id_key(str(body["id"]))
        if key in seen:
            raise WorldError(f"{where}: resource {body['id']!r} appears twice")
        seen[key] = str(body["id"])
        _check_authorization_body(body, where)
    if not isinstance(raw_account_data, dict):
        raise WorldError(f"{where}.accountData must map account ids to objects")
    account_data: dict[str, AccountData] = {}
    for account_id, facts in raw_account_data.items():
        key = id_key(account_id)
        if resource_type_of(account_id) != ACCOUNT_TYPE:
            raise WorldError(f"{where}.accountData: {account_id!r} is not a database account id")
        account_data[key] = AccountData.from_json(facts, f"{where}.accountData[{account_id!r}]")
    settings = SimulatorSettings.from_json(raw_settings)
    if tenant_id is None:
        tenant_id = _tenant_from_resources(bodies) or DEFAULT_TENANT_ID
    if not isinstance(tenant_id, str):
        raise WorldError(f"{where}.tenantId must be a string")
    if not isinstance(expectations, dict):
        raise WorldError(f"{where}.expectations must be an object")
    return World(tenant_id, bodies, account_data, settings, expectations)


def load_worlds(paths: list[Path]) -> World:
    """Merge several world files (e.g. a hand-written one plus CLI exports); the first one's settings win."""
    worlds = [load_world(path) for path in paths]
    if not worlds:
        return load_world({"resources": []})
    merged = worlds[0]
    for other in worlds[1:]:
        merged = World(
            merged.tenant_id,
            merged.resources + other.resources,
            {**other.account_data, **merged.account_data},
            merged.settings,
            {**other.expectations, **merged.expectations},
        )
    return load_world(
        {
            "tenantId": merged.tenant_id,
            "resources": merged.resources,
            "accountData": {normalize_id(key): value.to_json() for key, value in merged.account_data.items()},
            "simulator": merged.settings.to_json(),
            "expectations": merged.expectations,
        }
    )


def _tenant_from_resources(bodies: list[JsonDict]) -> str | None:
    for body in bodies:
        properties = body.get("properties")
        if isinstance(properties, dict) and isinstance(properties.get("tenantId"), str):
            return str(properties["tenantId"])
    return None
