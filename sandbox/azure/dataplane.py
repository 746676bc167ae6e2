"""Just enough of the Cosmos DB NoSQL data plane for azure-cosmos 4.17 to find an account's longest document ids.

Served under each account's `documentEndpoint` (`https://127.0.0.1:PORT/cosmos/<account>/`; azure-cosmos keeps a
path prefix when it joins resource paths). Supported calls: the database-account read at the root, database
and container feeds and reads, partition key ranges (one range "0"), the query plan, and queries of exactly
these shapes (alias free, parameter or number on the right):

    SELECT [TOP n] c.id FROM c [WHERE LENGTH(c.id) > @a [AND LENGTH(c.id) <= @b ...]]
        (comparisons >, >=, <, <=, =; also `SELECT VALUE c.id` and `SELECT *`)

Authentication is Entra ID only (`type=aad&ver=1.0&sig=<jwt>`). Like the real service the data plane enforces
its own RBAC (sqlRoleAssignments on the account, unless simulator.enforceDataPlaneRbac is false) and the
account firewall (publicNetworkAccess Disabled, or ipRules that do not include 127.0.0.1, block the scan).

Request units. A filter on LENGTH(c.id) cannot use the index, so a query page reads documents one by one: a page
ends when it holds `x-ms-max-item-count` results, when it has read DOCUMENTS_READ_PER_PAGE documents (the
backend's own per-page execution limit: sparse filters return empty pages with a continuation), at TOP n, or at
the end of the container. It costs QUERY_BASE_CHARGE + QUERY_CHARGE_PER_DOCUMENT_READ x documents read RU
(`x-ms-request-charge`). Queries and document feeds are charged to the account on the simulated clock; when the
RU charged over the last (simulated) second has reached the request's limit the request is refused with 429,
substatus 3200 and `x-ms-retry-after-ms`. A low-priority request (`x-ms-cosmos-priority-level: Low`) may use only
the account's spare throughput (accountData `spareRuPerSecond`); a normal one takes from the workload's share and
is limited only by `provisionedRuPerSecond` when the world gives it. Synthesized containers (`documentCount`, up
to millions of documents) are never materialized: their ids are computed from their position.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import math
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from sandbox.azure.cosmos_documents import Documents, account_documents, document_endpoint
from sandbox.azure.ids import ACCOUNT_TYPE, SQL_ROLE_ASSIGNMENT_TYPE, JsonDict, id_key, is_scope_at_or_above
from sandbox.azure.state import CloudState
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
# Request units of a query page (module docstring). A scan that cannot use the index is charged per document read;
# about 2 RU per 100 documents is a stand-in of the right order for small documents, not a measured constant.
QUERY_BASE_CHARGE = 2.5
QUERY_CHARGE_PER_DOCUMENT_READ = 0.02
DOCUMENTS_READ_PER_PAGE = 1000
_QUERY = re.compile(
    r"^\s*SELECT\s+(?:TOP\s+(?P<top>\d+|@\w+)\s+)?(?P<value>VALUE\s+)?"
    r"(?P<projection>\*|(?P<projected>[A-Za-z_]\w*)\.id)\s+"
    r"FROM\s+(?P<alias>[A-Za-z_]\w*)(?:\s+WHERE\s+(?P<where>.+?))?\s*$",
    re.IGNORECASE | re.DOTALL,
)


@dataclass
class DataPlaneReply:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)
    action: str | None = None


class DataPlaneError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        substatus: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.substatus = substatus
        self.headers = headers or {}

    def reply(self) -> DataPlaneReply:
        headers = {"x-ms-substatus": str(self.substatus)} if self.substatus is not None else {}
        headers.update(self.headers)
        body = {
            "code": self.code,
            "message": f"{self.message}\r\nActivityId: {uuid.uuid4()}, Microsoft.Azure.Documents.Common/2.14.0",
        }
        return DataPlaneReply(self.status, body, headers)


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
    return state.resources.named(ACCOUNT_TYPE, name)


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
    for assignment in state.resources.children(account_id, SQL_ROLE_ASSIGNMENT_TYPE):
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
        definition = state.resources.get(role_id)
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
    databases = account_documents(state.accounts.facts(str(account["id"])), account)
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
            return _query(state, account, documents, collection_rid, request)
        if method == "GET":
            _authorize(state, account, claims, READ_ITEMS, container_path)
            return _charged(state, account, request, lambda: _read_feed(documents, collection_rid, request))
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


_CONDITION = re.compile(
    r"^LENGTH\s*\(\s*(?P<measured>[A-Za-z_]\w*)\.id\s*\)\s*(?P<op>>=|<=|>|<|=)\s*(?P<rhs>@\w+|\d+)$",
    re.IGNORECASE,
)
_COMPARISONS: dict[str, Callable[[int, float], bool]] = {
    ">": lambda length, bound: length > bound,
    ">=": lambda length, bound: length >= bound,
    "<": lambda length, bound: length < bound,
    "<=": lambda length, bound: length <= bound,
    "=": lambda length, bound: length == bound,
}


@dataclass(frozen=True)
class _ParsedQuery:
    top: int | None
    select_value: bool
    select_all: bool
    keep: Callable[[str], bool]


def _unsupported(query_text: str) -> DataPlaneError:
    return DataPlaneError(
        400,
        "BadRequest",
        "The simulated data plane only evaluates 'SELECT [TOP n] [VALUE] c.id FROM c [WHERE LENGTH(c.id) > @n "
        f"[AND LENGTH(c.id) <= @m ...]]' (and SELECT *); this query is not supported: {query_text!r}",
    )


def _parse_query(query_text: str, parameters: list[Any]) -> _ParsedQuery:
    match = _QUERY.match(query_text)
    if match is None:
        raise _unsupported(query_text)
    alias = match.group("alias").lower()
    projected = match.group("projected")
    if (projected is not None and projected.lower() != alias) or (
        match.group("value") and match.group("projection") == "*"
    ):
        raise _unsupported(query_text)
    checks: list[tuple[Callable[[int, float], bool], float]] = []
    where = match.group("where")
    for condition in re.split(r"\s+AND\s+", where.strip(), flags=re.IGNORECASE) if where else []:
        found = _CONDITION.match(condition.strip())
        if found is None or found.group("measured").lower() != alias:
            raise _unsupported(query_text)
        checks.append((_COMPARISONS[found.group("op")], _parameter_value(found.group("rhs"), parameters)))
    top: int | None = None
    if match.group("top") is not None:
        top = int(_parameter_value(match.group("top"), parameters))

    def keep(document_id: str) -> bool:
        length = len(document_id)  # LENGTH counts characters, not bytes
        return all(compare(length, bound) for compare, bound in checks)

    return _ParsedQuery(top, bool(match.group("value")), match.group("projection") == "*", keep)


def _query(
    state: CloudState, account: JsonDict, documents: Documents, collection_rid: str, request: DataPlaneRequest
) -> DataPlaneReply:
    try:
        payload = json.loads(request.body or b"{}")
    except json.JSONDecodeError as error:
        raise DataPlaneError(400, "BadRequest", f"The query body is not valid JSON: {error}") from error
    query_text = str(payload.get("query", "")) if isinstance(payload, dict) else ""
    parameters = (payload.get("parameters") or []) if isinstance(payload, dict) else []
    parsed = _parse_query(query_text, parameters)
    if request.headers.get("x-ms-cosmos-is-query-plan-request", "").lower() == "true":
        plan = _query_plan(parsed.select_value, parsed.top)
        return DataPlaneReply(200, plan, _common_headers(charge=0.0), EXECUTE_QUERY)

    def shape(index: int) -> Any:
        if parsed.select_all:
            return _with_system_properties(documents.document_at(index), collection_rid)
        if parsed.select_value:
            return documents.id_at(index)
        return {"id": documents.id_at(index)}

    return _charged(
        state,
        account,
        request,
        lambda: _page(documents, collection_rid, request, parsed.keep, shape, parsed.top, EXECUTE_QUERY),
    )


def _read_feed(documents: Documents, collection_rid: str, request: DataPlaneRequest) -> DataPlaneReply:
    def shape(index: int) -> Any:
        return _with_system_properties(documents.document_at(index), collection_rid)

    return _page(documents, collection_rid, request, lambda _document_id: True, shape, None, READ_ITEMS)


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


def _query_plan(select_value: bool, top: int | None) -> JsonDict:
    return {
        "partitionedQueryExecutionInfoVersion": 2,
        "queryInfo": {
            "distinctType": "None",
            "top": top,
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


def _page(
    documents: Documents,
    collection_rid: str,
    request: DataPlaneRequest,
    keep: Callable[[str], bool],
    shape: Callable[[int], Any],
    top: int | None,
    action: str,
) -> DataPlaneReply:
    """One page of a scan in document order, and its request charge (see the module docstring)."""
    try:
        page_size = int(request.headers.get("x-ms-max-item-count", DEFAULT_PAGE_SIZE))
    except ValueError:
        page_size = DEFAULT_PAGE_SIZE
    if page_size <= 0:
        page_size = DEFAULT_PAGE_SIZE
    token = request.headers.get("x-ms-continuation")
    offset = 0
    returned = 0
    if token:
        try:
            position = json.loads(base64.b64decode(token))
            offset, returned = int(position["offset"]), int(position.get("returned", 0))
        except (ValueError, KeyError, TypeError) as error:
            raise DataPlaneError(400, "BadRequest", "The continuation token is not valid.") from error
    limit = page_size if top is None else max(0, min(page_size, top - returned))
    found, read = documents.scan(offset, keep, limit, DOCUMENTS_READ_PER_PAGE) if limit else ([], 0)
    page = [shape(index) for index in found]
    offset += read
    returned += len(page)
    headers = _common_headers(charge=QUERY_BASE_CHARGE + QUERY_CHARGE_PER_DOCUMENT_READ * read)
    headers["x-ms-item-count"] = str(len(page))
    if offset < len(documents) and (top is None or returned < top):
        position_json = json.dumps({"offset": offset, "returned": returned})
        headers["x-ms-continuation"] = base64.b64encode(position_json.encode()).decode()
    return DataPlaneReply(200, {"_rid": collection_rid, "Documents": page, "_count": len(page)}, headers, action)


# ----------------------------------------------------------------------------- request units


def request_charges(state: CloudState, account_id: str | None = None) -> list[JsonDict]:
    """Charged and throttled data-plane requests, oldest first: `{time (simulated epoch seconds), account, path,
    priority ("Low" | "High"), status (200 | 429), charge}`; call under `state.lock`."""
    wanted = id_key(account_id) if account_id is not None else None
    return [dict(entry) for entry in state.request_units.history if wanted is None or entry["account"] == wanted]


def _is_low_priority(headers: dict[str, str]) -> bool:
    return headers.get("x-ms-cosmos-priority-level", "").strip().lower() == "low"


def _throughput_limit(state: CloudState, account: JsonDict, low_priority: bool) -> float | None:
    facts = state.accounts.facts(str(account["id"]))
    if low_priority:
        spare = facts.spare_ru_per_second
        return spare if spare is not None else state.settings.encryption.default_spare_ru_per_second
    return facts.provisioned_ru_per_second


def _charged(
    state: CloudState, account: JsonDict, request: DataPlaneRequest, serve: Callable[[], DataPlaneReply]
) -> DataPlaneReply:
    """Serve a request that consumes the account's throughput: 429 while the last second's charges have reached
    the request's limit (spare RU/s for low priority), else serve it and charge what its reply says."""
    account_id = str(account["id"])
    window = state.request_units.window(account_id)
    history = state.request_units.history
    now = state.now()
    low = _is_low_priority(request.headers)
    limit = _throughput_limit(state, account, low)
    entry: JsonDict = {
        "time": now,
        "account": id_key(account_id),
        "path": "/" + "/".join(request.segments),
        "priority": "Low" if low else "High",
    }
    if limit is not None and window.consumed(now) >= limit:
        wait = window.seconds_until_below(limit, now)
        history.append({**entry, "status": 429, "charge": 0.0})
        headers = _common_headers(charge=0.0)
        # The client sleeps in real time: the wait on the simulated clock, in real milliseconds.
        headers["x-ms-retry-after-ms"] = str(max(1, math.ceil(state.clock.real_seconds(wait) * 1000)))
        raise DataPlaneError(
            429,
            "TooManyRequests",
            "Request rate is large. More Request Units may be needed, so no changes were made. Please retry this "
            "request later. Learn more: http://aka.ms/cosmosdb-error-429",
            substatus=3200,
            headers=headers,
        )
    reply = serve()
    charge = float(reply.headers.get("x-ms-request-charge", "0"))
    window.charges.append((now, charge))
    window.total += charge
    history.append({**entry, "status": reply.status, "charge": charge})
    return reply
