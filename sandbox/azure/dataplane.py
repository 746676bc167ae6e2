"""Just enough of the Cosmos DB NoSQL data plane for azure-cosmos 4.17 to find an account's longest document ids.

Served under each account's `documentEndpoint` (`https://127.0.0.1:PORT/cosmos/<account>/`; azure-cosmos keeps a
path prefix when it joins resource paths). Supported calls: the database-account read at the root, database
and container feeds and reads, partition key ranges (one range "0"), the query plan, and queries of exactly
these shapes (alias free, parameter or number on the right):

    SELECT c.id FROM c [WHERE LENGTH(c.id) > @minChars]      (also `>=`, `SELECT VALUE c.id`, `SELECT *`)

Authentication is Entra ID only (`type=aad&ver=1.0&sig=<jwt>`). Like the real service the data plane enforces
its own RBAC (sqlRoleAssignments on the account, unless simulator.enforceDataPlaneRbac is false) and the
account firewall (publicNetworkAccess Disabled, or ipRules that do not include 127.0.0.1, block the scan).
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from sandbox.azure.engine import CloudState
from sandbox.azure.ids import ACCOUNT_TYPE, SQL_ROLE_ASSIGNMENT_TYPE, JsonDict, id_key, is_scope_at_or_above
from sandbox.azure.tokens import InvalidToken, TokenClaims, read_token

READ_METADATA = "Microsoft.DocumentDB/databaseAccounts/readMetadata"
EXECUTE_QUERY = "Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers/executeQuery"
READ_ITEMS = "Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers/items/read"
BUILTIN_DATA_ROLES = {
    "00000000-0000-0000-0000-000000000001": (  # Cosmos DB Built-in Data Reader
        READ_METADATA,
        "Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers/executeQuery",
        "Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers/readChangeFeed",
        "Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers/items/read",
    ),
    "00000000-0000-0000-0000-000000000002": (  # Cosmos DB Built-in Data Contributor
        READ_METADATA,
        "Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers/*",
        "Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers/items/*",
    ),
}
DEFAULT_PAGE_SIZE = 100
SYNTHETIC_DATABASE = "appdb"
SYNTHETIC_CONTAINER = "items"
_QUERY = re.compile(
    r"^\s*SELECT\s+(?P<value>VALUE\s+)?(?P<projection>\*|(?P<projected>[A-Za-z_]\w*)\.id)\s+"
    r"FROM\s+(?P<alias>[A-Za-z_]\w*)"
    r"(?:\s+WHERE\s+LENGTH\s*\(\s*(?P<measured>[A-Za-z_]\w*)\.id\s*\)\s*(?P<op>>=|>)\s*(?P<rhs>@\w+|\d+))?\s*$",
    re.IGNORECASE | re.DOTALL,
)


@dataclass
class DataPlaneReply:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)
    action: str | None = None


class DataPlaneError(Exception):
    def __init__(self, status: int, code: str, message: str, substatus: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.substatus = substatus

    def reply(self) -> DataPlaneReply:
        headers = {"x-ms-substatus": str(self.substatus)} if self.substatus is not None else {}
        body = {
            "code": self.code,
            "message": f"{self.message}\r\nActivityId: {uuid.uuid4()}, Microsoft.Azure.Documents.Common/2.14.0",
        }
        return DataPlaneReply(self.status, body, headers)


# ----------------------------------------------------------------------------- documents


def _id_of_length(length: int, seed: str) -> str:
    alphabet = hashlib.sha256(seed.encode()).hexdigest()
    prefix = "long-id-"
    filler = (alphabet * (length // len(alphabet) + 2))[: max(0, length - len(prefix))]
    return (prefix + filler)[:length]


def account_documents(state: CloudState, account: JsonDict) -> dict[str, dict[str, list[JsonDict]]]:
    """The documents of an account: explicit `databases` from accountData, or a small synthesized container."""
    facts = state.account_facts(str(account["id"]))
    if facts.databases is not None:
        return facts.databases
    name = str(account.get("name", ""))
    ids = [str(uuid.uuid5(uuid.NAMESPACE_URL, f"{name}/{index}")) for index in range(10)]
    largest = facts.largest_document_id_bytes
    if largest is not None:
        if largest <= 36:
            ids = [f"{index:0{largest}d}"[-largest:] for index in range(10)] if largest >= 2 else ["a"]
        else:
            ids.append(_id_of_length(largest, name))
    return {SYNTHETIC_DATABASE: {SYNTHETIC_CONTAINER: [{"id": document_id} for document_id in ids]}}


def largest_document_id(state: CloudState, account: JsonDict) -> tuple[int, str] | None:
    """(bytes, "db/container") of the longest document id, as the service-side CMK scan finds it."""
    best: tuple[int, str] | None = None
    for database, containers in account_documents(state, account).items():
        for container, documents in containers.items():
            for document in documents:
                size = len(str(document["id"]).encode("utf-8"))
                if best is None or size > best[0]:
                    best = (size, f"{database}/{container}")
    return best


# ----------------------------------------------------------------------------- resource ids


def _rid(seed: str, length: int) -> str:
    counter = 0
    while True:
        raw = hashlib.sha256(f"{seed}#{counter}".encode()).digest()[:length]
        encoded = base64.b64encode(raw).decode()
        # Real rids are base64; keep to alphanumerics so they are safe in URL paths.
        if encoded.rstrip("=").isalnum():
            return encoded
        counter += 1


def _database_rid(account_name: str, database: str) -> str:
    return _rid(f"{account_name}/{database}", 4)


def _container_rid(account_name: str, database: str, container: str) -> str:
    database_bytes = base64.b64decode(_database_rid(account_name, database))
    counter = 0
    while True:
        tail = hashlib.sha256(f"{account_name}/{database}/{container}#{counter}".encode()).digest()[:4]
        # The high bit of the collection part marks a collection rid in Cosmos DB's rid layout.
        encoded = base64.b64encode(database_bytes + bytes([tail[0] | 0x80]) + tail[1:]).decode()
        if encoded.rstrip("=").isalnum():
            return encoded
        counter += 1


# ----------------------------------------------------------------------------- request handling


@dataclass
class DataPlaneRequest:
    method: str
    account_name: str
    segments: list[str]
    headers: dict[str, str]
    body: bytes
    base_url: str


def find_account_by_name(state: CloudState, name: str) -> JsonDict | None:
    for account in state.of_type(ACCOUNT_TYPE):
        if str(account.get("name", "")).lower() == name.lower():
            return account
    return None


def authenticate(headers: dict[str, str]) -> TokenClaims:
    raw = unquote(headers.get("authorization", ""))
    match = re.match(r"^type=aad&ver=1\.0&sig=(?P<token>.+)$", raw)
    if match is None:
        raise DataPlaneError(
            401,
            "Unauthorized",
            "Required Header authorization is missing or is not an Entra ID token "
            "(type=aad&ver=1.0&sig=<token>). The simulator accepts Entra ID authentication only.",
        )
    try:
        claims = read_token(match.group("token"))
    except InvalidToken as error:
        raise DataPlaneError(401, "Unauthorized", f"The Entra ID token is invalid: {error}") from error
    if claims.expires_on < time.time():
        raise DataPlaneError(401, "Unauthorized", "The Entra ID token has expired.")
    return claims


def _check_firewall(account: JsonDict) -> None:
    properties = account.get("properties") or {}
    blocked = str(properties.get("publicNetworkAccess", "Enabled")).lower() == "disabled"
    rules = [str(rule.get("ipAddressOrRange", "")) for rule in properties.get("ipRules") or []]
    if rules and not any(rule in ("127.0.0.1", "0.0.0.0") for rule in rules):
        blocked = True
    if blocked:
        raise DataPlaneError(
            403,
            "Forbidden",
            "Request originated from IP 127.0.0.1 through public internet. This is blocked by your Cosmos DB account "
            "firewall settings. More info: https://aka.ms/cosmosdb-tsg-forbidden",
        )


def _granted_data_actions(state: CloudState, account: JsonDict, principal_id: str, resource_path: str) -> list[str]:
    account_id = str(account["id"])
    actions: list[str] = []
    for assignment in state.of_type(SQL_ROLE_ASSIGNMENT_TYPE):
        if not id_key(str(assignment["id"])).startswith(id_key(account_id) + "/"):
            continue
        properties = assignment.get("properties") or {}
        if str(properties.get("principalId", "")).lower() != principal_id.lower():
            continue
        scope = str(properties.get("scope") or account_id)
        if not is_scope_at_or_above(scope, account_id + resource_path):
            continue
        role_id = str(properties.get("roleDefinitionId", ""))
        role_guid = role_id.rstrip("/").rsplit("/", 1)[-1].lower()
        if role_guid in BUILTIN_DATA_ROLES:
            actions.extend(BUILTIN_DATA_ROLES[role_guid])
            continue
        definition = state.get(role_id)
        for permission in ((definition or {}).get("properties") or {}).get("permissions") or []:
            actions.extend(str(action) for action in permission.get("dataActions") or [])
    return actions


def _authorize(state: CloudState, account: JsonDict, claims: TokenClaims, action: str, resource_path: str) -> None:
    if not state.settings.enforce_data_plane_rbac:
        return
    granted = [value.lower() for value in _granted_data_actions(state, account, claims.principal_id, resource_path)]
    if any(fnmatch.fnmatchcase(action.lower(), pattern) for pattern in granted):
        return
    raise DataPlaneError(
        403,
        "Forbidden",
        f"Request blocked by Auth {account['name']} : Request is blocked because principal [{claims.principal_id}] "
        f"does not have required RBAC permissions to perform action [{action}] on resource [{resource_path or '/'}]. "
        "Learn more: https://aka.ms/cosmos-native-rbac.",
        substatus=5301,
    )


def handle(state: CloudState, request: DataPlaneRequest) -> tuple[DataPlaneReply, TokenClaims | None]:
    """Serve one data-plane request; returns the reply and who asked (for the request log)."""
    claims: TokenClaims | None = None
    try:
        claims = authenticate(request.headers)
        account = find_account_by_name(state, request.account_name)
        if account is None:
            raise DataPlaneError(404, "NotFound", f"Database account '{request.account_name}' does not exist.")
        _check_firewall(account)
        return _route(state, account, claims, request), claims
    except DataPlaneError as error:
        return error.reply(), claims


def _common_headers(charge: float = 1.0) -> dict[str, str]:
    return {
        "x-ms-activity-id": str(uuid.uuid4()),
        "x-ms-request-charge": f"{charge:.2f}",
        "x-ms-serviceversion": "version=2.14.0.0",
        "x-ms-gatewayversion": "2.14.0",
        "x-ms-schemaversion": "1.19",
    }


def _route(state: CloudState, account: JsonDict, claims: TokenClaims, request: DataPlaneRequest) -> DataPlaneReply:
    name = str(account["name"])
    segments = request.segments
    method = request.method.upper()
    databases = account_documents(state, account)
    if not segments:
        _authorize(state, account, claims, READ_METADATA, "")
        return _account_reply(account, request.base_url)
    if segments[0].lower() != "dbs":
        raise DataPlaneError(404, "NotFound", f"Resource path '/{'/'.join(segments)}' is not supported.")
    if len(segments) == 1:
        _authorize(state, account, claims, READ_METADATA, "")
        items = [_database_body(name, database) for database in databases]
        return _feed("Databases", "", items)
    database = _resolve(databases, segments[1], lambda candidate: _database_rid(name, candidate))
    if database is None:
        raise DataPlaneError(404, "NotFound", f"Database '{segments[1]}' does not exist.")
    database_path = f"/dbs/{database}"
    if len(segments) == 2:
        _authorize(state, account, claims, READ_METADATA, database_path)
        return DataPlaneReply(200, _database_body(name, database), _common_headers(), READ_METADATA)
    if segments[2].lower() != "colls":
        raise DataPlaneError(404, "NotFound", f"Resource path '/{'/'.join(segments)}' is not supported.")
    containers = databases[database]
    if len(segments) == 3:
        _authorize(state, account, claims, READ_METADATA, database_path)
        items = [_container_body(name, database, container) for container in containers]
        return _feed("DocumentCollections", _database_rid(name, database), items)
    container = _resolve(containers, segments[3], lambda candidate: _container_rid(name, database, candidate))
    if container is None:
        raise DataPlaneError(404, "NotFound", f"Container '{segments[3]}' does not exist.")
    container_path = f"{database_path}/colls/{container}"
    collection_rid = _container_rid(name, database, container)
    if len(segments) == 4:
        _authorize(state, account, claims, READ_METADATA, container_path)
        return DataPlaneReply(200, _container_body(name, database, container), _common_headers(), READ_METADATA)
    tail = segments[4].lower()
    if tail == "pkranges" and len(segments) == 5:
        _authorize(state, account, claims, READ_METADATA, container_path)
        return _partition_key_ranges(collection_rid, request.headers)
    if tail == "docs" and len(segments) == 5:
        documents = containers[container]
        is_query = request.headers.get("x-ms-documentdb-isquery", "").lower() == "true" or (
            request.headers.get("content-type", "").startswith("application/query+json")
        )
        if method == "POST" and is_query:
            _authorize(state, account, claims, EXECUTE_QUERY, container_path)
            return _query(documents, collection_rid, request)
        if method == "GET":
            _authorize(state, account, claims, READ_ITEMS, container_path)
            return _page([_with_system_properties(doc, collection_rid) for doc in documents], collection_rid, request)
    raise DataPlaneError(
        405 if tail == "docs" else 404,
        "MethodNotAllowed" if tail == "docs" else "NotFound",
        f"'{method} /{'/'.join(segments)}' is not supported by the simulated data plane (read-only: account, "
        "database and container reads, partition key ranges, and the document-id queries).",
    )


def _resolve(names: dict[str, Any], wanted: str, rid_of: Any) -> str | None:
    for candidate in names:
        if candidate == wanted:
            return candidate
    for candidate in names:
        if rid_of(candidate) == wanted:
            return candidate
    return None


def _account_reply(account: JsonDict, base_url: str) -> DataPlaneReply:
    from sandbox.azure.cosmos import document_endpoint

    endpoint = document_endpoint(base_url, str(account["name"]))
    properties = account.get("properties") or {}
    locations = properties.get("locations") or []
    region = str(locations[0].get("locationName")) if locations else str(account.get("location", "West US"))
    consistency = (properties.get("consistencyPolicy") or {}).get("defaultConsistencyLevel", "Session")
    query_config = {
        "maxSqlQueryInputLength": 262144,
        "maxJoinsPerSqlQuery": 5,
        "maxLogicalAndPerSqlQuery": 500,
        "maxLogicalOrPerSqlQuery": 500,
        "maxUdfRefPerSqlQuery": 10,
        "maxInExpressionItemsCount": 16000,
        "queryMaxInMemorySortDocumentCount": 500,
        "maxQueryRequestTimeoutFraction": 0.9,
        "sqlAllowNonFiniteNumbers": False,
        "sqlAllowAggregateFunctions": True,
        "sqlAllowSubQuery": True,
        "sqlAllowScalarSubQuery": True,
        "allowNewKeywords": True,
        "sqlAllowLike": True,
        "sqlAllowGroupByClause": True,
        "maxSpatialQueryCells": 12,
        "spatialMaxGeometryPointCount": 256,
        "sqlDisableOptimizationFlags": 0,
        "sqlAllowTop": True,
        "enableSpatialIndexing": True,
    }
    body = {
        "_self": "",
        "id": account["name"],
        "_rid": f"{account['name']}.documents.azure.com",
        "media": "//media/",
        "addresses": "//addresses/",
        "_dbs": "//dbs/",
        "writableLocations": [{"name": region, "databaseAccountEndpoint": endpoint}],
        "readableLocations": [{"name": region, "databaseAccountEndpoint": endpoint}],
        "enableMultipleWriteLocations": False,
        "continuousBackupEnabled": str((properties.get("backupPolicy") or {}).get("type", "")).lower() == "continuous",
        "enableNRegionSynchronousCommit": False,
        "enablePerPartitionFailoverBehavior": False,
        "userReplicationPolicy": {"asyncReplication": False, "minReplicaSetSize": 3, "maxReplicasetSize": 4},
        "userConsistencyPolicy": {"defaultConsistencyLevel": consistency},
        "systemReplicationPolicy": {"minReplicaSetSize": 3, "maxReplicasetSize": 4},
        "readPolicy": {"primaryReadCoefficient": 1, "secondaryReadCoefficient": 1},
        "queryEngineConfiguration": json.dumps(query_config, separators=(",", ":")),
    }
    return DataPlaneReply(200, body, _common_headers(), READ_METADATA)


def _timestamp() -> int:
    return 1700000000


def _database_body(account_name: str, database: str) -> JsonDict:
    rid = _database_rid(account_name, database)
    return {
        "id": database,
        "_rid": rid,
        "_self": f"dbs/{rid}/",
        "_etag": f'"{hashlib.md5(rid.encode()).hexdigest()}"',
        "_colls": "colls/",
        "_users": "users/",
        "_ts": _timestamp(),
    }


def _container_body(account_name: str, database: str, container: str) -> JsonDict:
    database_rid = _database_rid(account_name, database)
    rid = _container_rid(account_name, database, container)
    return {
        "id": container,
        "indexingPolicy": {
            "indexingMode": "consistent",
            "automatic": True,
            "includedPaths": [{"path": "/*"}],
            "excludedPaths": [{"path": '/"_etag"/?'}],
        },
        "partitionKey": {"paths": ["/id"], "kind": "Hash", "version": 2},
        "conflictResolutionPolicy": {
            "mode": "LastWriterWins",
            "conflictResolutionPath": "/_ts",
            "conflictResolutionProcedure": "",
        },
        "geospatialConfig": {"type": "Geography"},
        "_rid": rid,
        "_ts": _timestamp(),
        "_self": f"dbs/{database_rid}/colls/{rid}/",
        "_etag": f'"{hashlib.md5(rid.encode()).hexdigest()}"',
        "_docs": "docs/",
        "_sprocs": "sprocs/",
        "_triggers": "triggers/",
        "_udfs": "udfs/",
        "_conflicts": "conflicts/",
    }


def _feed(list_name: str, rid: str, items: list[JsonDict]) -> DataPlaneReply:
    headers = _common_headers()
    headers["x-ms-item-count"] = str(len(items))
    return DataPlaneReply(200, {"_rid": rid, list_name: items, "_count": len(items)}, headers, READ_METADATA)


def _partition_key_ranges(collection_rid: str, headers: dict[str, str]) -> DataPlaneReply:
    etag = '"00000000-0000-0000-0000-000000000001"'
    if headers.get("if-none-match") == etag:
        # The SDK reads ranges as an incremental change feed until "not modified".
        reply_headers = _common_headers()
        reply_headers["etag"] = etag
        return DataPlaneReply(304, None, reply_headers, READ_METADATA)
    ranges = [
        {
            "_rid": collection_rid.rstrip("=") + "AgAAAAAAAA==",
            "id": "0",
            "_etag": etag,
            "minInclusive": "",
            "maxExclusive": "FF",
            "ridPrefix": 0,
            "_self": f"pkranges/{collection_rid}/",
            "throughputFraction": 1,
            "status": "online",
            "parents": [],
            "ownedArchivalPKRangeIds": [],
            "_ts": _timestamp(),
            "lsn": 1,
        }
    ]
    reply = _feed("PartitionKeyRanges", collection_rid, ranges)
    reply.headers["etag"] = etag
    return reply


def _with_system_properties(document: JsonDict, collection_rid: str) -> JsonDict:
    digest = hashlib.sha256(str(document["id"]).encode()).hexdigest()
    return {
        **document,
        "_rid": collection_rid.rstrip("=") + digest[:8],
        "_self": f"docs/{digest[:12]}/",
        "_etag": f'"{digest[:32]}"',
        "_attachments": "attachments/",
        "_ts": _timestamp(),
    }


def _query(documents: list[JsonDict], collection_rid: str, request: DataPlaneRequest) -> DataPlaneReply:
    try:
        payload = json.loads(request.body or b"{}")
    except json.JSONDecodeError as error:
        raise DataPlaneError(400, "BadRequest", f"The query body is not valid JSON: {error}") from error
    query_text = str(payload.get("query", "")) if isinstance(payload, dict) else ""
    match = _QUERY.match(query_text)
    aliases_ok = match is not None and all(
        match.group(group) is None or match.group(group).lower() == match.group("alias").lower()
        for group in ("projected", "measured")
    )
    if match is None or not aliases_ok or (match.group("value") and match.group("projection") == "*"):
        raise DataPlaneError(
            400,
            "BadRequest",
            f"The simulated data plane only evaluates 'SELECT [VALUE] c.id FROM c [WHERE LENGTH(c.id) > @n]' "
            f"(and SELECT *); this query is not supported: {query_text!r}",
        )
    if request.headers.get("x-ms-cosmos-is-query-plan-request", "").lower() == "true":
        return DataPlaneReply(200, _query_plan(bool(match.group("value"))), _common_headers(), EXECUTE_QUERY)
    minimum: float | None = None
    if match.group("rhs") is not None:
        minimum = _parameter_value(match.group("rhs"), payload.get("parameters") or [])
    inclusive = match.group("op") == ">="
    selected: list[Any] = []
    for document in documents:
        length = len(str(document["id"]))
        if minimum is not None and not (length >= minimum if inclusive else length > minimum):
            continue
        if match.group("projection") == "*":
            selected.append(_with_system_properties(document, collection_rid))
        elif match.group("value"):
            selected.append(document["id"])
        else:
            selected.append({"id": document["id"]})
    return _page(selected, collection_rid, request, action=EXECUTE_QUERY)


def _parameter_value(reference: str, parameters: list[Any]) -> float:
    if not reference.startswith("@"):
        return float(reference)
    for parameter in parameters:
        if isinstance(parameter, dict) and str(parameter.get("name", "")).lower() == reference.lower():
            value = parameter.get("value")
            if isinstance(value, int | float) and not isinstance(value, bool):
                return float(value)
            raise DataPlaneError(400, "BadRequest", f"The parameter {reference} must be a number.")
    raise DataPlaneError(400, "BadRequest", f"The query parameter {reference} has no value.")


def _query_plan(select_value: bool) -> JsonDict:
    return {
        "partitionedQueryExecutionInfoVersion": 2,
        "queryInfo": {
            "distinctType": "None",
            "top": None,
            "offset": None,
            "limit": None,
            "orderBy": [],
            "orderByExpressions": [],
            "groupByExpressions": [],
            "groupByAliases": [],
            "aggregates": [],
            "groupByAliasToAggregateType": {},
            "rewrittenQuery": "",
            "hasSelectValue": select_value,
            "dCountInfo": None,
            "hasNonStreamingOrderBy": False,
        },
        "queryRanges": [{"min": "", "max": "FF", "isMinInclusive": True, "isMaxInclusive": False}],
    }


def _page(items: list[Any], collection_rid: str, request: DataPlaneRequest, action: str = READ_ITEMS) -> DataPlaneReply:
    try:
        page_size = int(request.headers.get("x-ms-max-item-count", DEFAULT_PAGE_SIZE))
    except ValueError:
        page_size = DEFAULT_PAGE_SIZE
    if page_size <= 0:
        page_size = DEFAULT_PAGE_SIZE
    token = request.headers.get("x-ms-continuation")
    offset = 0
    if token:
        try:
            offset = int(json.loads(base64.b64decode(token))["offset"])
        except (ValueError, KeyError, TypeError) as error:
            raise DataPlaneError(400, "BadRequest", "The continuation token is not valid.") from error
    page = items[offset : offset + page_size]
    headers = _common_headers(charge=2.83 + 0.1 * len(page))
    headers["x-ms-item-count"] = str(len(page))
    if offset + page_size < len(items):
        headers["x-ms-continuation"] = base64.b64encode(json.dumps({"offset": offset + page_size}).encode()).decode()
    return DataPlaneReply(200, {"_rid": collection_rid, "Documents": page, "_count": len(page)}, headers, action)
