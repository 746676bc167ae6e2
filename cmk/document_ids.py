"""The data-plane check for document ids over 990 bytes, which make the CMK encryption fail, run so it does no harm.

Encryption adds overhead to the id, so with CMK the id limit drops from 1,024 to 990 bytes, and Azure's own
server-side scan fails the operation while such a document exists. A filter on LENGTH(c.id) cannot use the index:
every query here reads every document of a container, on the customer's production throughput. So the scan:

* asks as Microsoft's own migration scanner does (AzureCosmosDB/Cosmos-DB-Non-CMK-to-CMK-Migration-Scanner,
  CosmosClientScanner.cs), first in every container: `SELECT TOP 1 c.id FROM c WHERE LENGTH(c.id) > 990`. LENGTH
  counts characters and a character is at least one byte, so any hit is over 990 bytes: blocking, and the scan
  stops there. Only then, in every container, the ids of 248 to 990 characters, where characters and bytes
  disagree (UTF-8 takes up to 4 bytes a character, so fewer than 248 characters never exceed 990 bytes); their
  UTF-8 bytes are measured here and the scan stops at the first over 990. Both bounds hold whether the service
  counts code points or UTF-16 units;
* sends every request at low priority (priority-based execution: once the account is at its throughput, the
  service throttles low-priority requests before the workload's; the header is ignored where the feature is off);
* reads small pages, and keeps its own request-unit rate under CMK_DOCUMENT_ID_SCAN_RU_PER_SECOND by reading each
  response's `x-ms-request-charge` and sleeping before the next request. It does this in the SDK's response hook,
  which sees every page the service returns, including the empty pages a sparse filter produces and the SDK
  skips; the hook also measures the ids, so the scan stops on the page that holds the first offender;
* handles throttling itself: a 429 is retried in place by the SDK after `x-ms-retry-after-ms` (a request-level
  retry keeps every query's state, cross-partition TOP included), but the scan sees each one first (raw response
  hook), halves its pace and the page size of the queries that follow, and stops the scan when the wait would
  pass its time budget or after MAX_THROTTLED_RESPONSES 429s; the SDK's own limits are set beyond ours, so its
  retries never sleep outside the budget;
* stops at CMK_DOCUMENT_ID_SCAN_SECONDS (real time: it runs in an activity) and reports the scan unavailable with
  the reason and how far it got: Azure's own scan still guards the encryption.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict

from azure.core.exceptions import AzureError
from azure.cosmos import ContainerProxy, CosmosClient
from azure.cosmos._retry_options import RetryOptions  # the class ConnectionPolicy.RetryOptions holds
from azure.cosmos.documents import ConnectionPolicy
from azure.cosmos.exceptions import CosmosHttpResponseError

from cmk import clients, clouds, settings

MAX_DOCUMENT_ID_BYTES = 990
_MAX_UTF8_BYTES_PER_CHARACTER = 4
MIN_SUSPECT_ID_CHARACTERS = MAX_DOCUMENT_ID_BYTES // _MAX_UTF8_BYTES_PER_CHARACTER  # 247: longer ids are suspects
OVER_LIMIT_QUERY = "SELECT TOP 1 c.id FROM c WHERE LENGTH(c.id) > @limit"
SUSPECT_ID_QUERY = "SELECT c.id FROM c WHERE LENGTH(c.id) > @minChars AND LENGTH(c.id) <= @limit"
MAX_THROTTLED_RESPONSES = 10  # past this many 429s the account has no spare throughput for us
_MIN_PACE_FRACTION = 1 / 8  # each 429 halves the pace, down to this fraction of the budget
_STATUS_TOO_MANY_REQUESTS = 429


class OffendingId(TypedDict):
    container: str
    bytes: int
    characters: int


class DocumentIdScan(TypedDict):
    status: Literal["scanned", "found", "unavailable"]
    offendingId: OffendingId | None
    containersTotal: int
    containersScanned: int  # containers checked by both queries
    requestCharge: float  # RU the scan consumed
    elapsedSeconds: float
    throttledResponses: int
    detail: str


@dataclass(frozen=True)
class ScanBudget:
    ru_per_second: float
    seconds: float
    page_size: int

    @classmethod
    def from_settings(cls) -> ScanBudget:
        ru_per_second = settings.get_float("CMK_DOCUMENT_ID_SCAN_RU_PER_SECOND")
        seconds = settings.get_float("CMK_DOCUMENT_ID_SCAN_SECONDS")
        page_size = settings.get_int("CMK_DOCUMENT_ID_SCAN_PAGE_SIZE")
        if ru_per_second <= 0 or seconds <= 0 or page_size <= 0:
            raise ValueError(
                "CMK_DOCUMENT_ID_SCAN_RU_PER_SECOND, CMK_DOCUMENT_ID_SCAN_SECONDS and CMK_DOCUMENT_ID_SCAN_PAGE_SIZE "
                "must be positive."
            )
        return cls(ru_per_second, seconds, page_size)


class _Stop(Exception):  # noqa: N818 - control flow, not an error: raised from the response hook to end the scan
    """Ends the scan from inside the SDK (the response hook): not an AzureError, so no SDK layer catches it."""


class _Found(_Stop):
    def __init__(self, document_id: str) -> None:
        super().__init__("offending id")
        self.document_id = document_id


class _OutOfBudget(_Stop):
    def __init__(self, reason: Literal["time", "throttled"]) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class _Pacer:
    """Request units, time and throttling of one scan, on real time (`clock`, `sleep` are replaceable in tests)."""

    budget: ScanBudget
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    charged: float = 0.0
    throttled: int = 0
    measure: Callable[[str], bool] = field(default=lambda _document_id: False)
    started: float = field(init=False)
    deadline: float = field(init=False)
    pace: float = field(init=False)
    page_size: int = field(init=False)
    _paid_until: float = field(init=False)
    _sent_at: float = field(init=False)

    def __post_init__(self) -> None:
        self.started = self.clock()
        self.deadline = self.started + self.budget.seconds
        self.pace = self.budget.ru_per_second
        self.page_size = self.budget.page_size
        self._paid_until = self._sent_at = self.started

    def elapsed(self) -> float:
        return self.clock() - self.started

    def on_response(self, headers: Mapping[str, Any], body: Any) -> None:
        """Response hook of every request: charge, measure the ids of a query page, then wait our turn."""
        charge = _request_charge(headers)
        self.charged += charge
        continuation = _header(headers, "x-ms-continuation")
        for document_id in _ids_of(body):
            if self.measure(document_id):
                raise _Found(document_id)
        # This request is paid for at `pace` from when it was sent: the next may leave when it is paid for.
        self._paid_until = max(self._paid_until, self._sent_at) + charge / self.pace
        if continuation is not None and self._paid_until > self.deadline:
            raise _OutOfBudget("time")  # the next page of this query cannot be afforded
        self._wait_until(min(self._paid_until, self.deadline))

    def check_time(self) -> None:
        """Before a query: is there time (and paid-up request units) left for it?"""
        if self.clock() >= self.deadline or self._paid_until >= self.deadline:
            raise _OutOfBudget("time")

    def _wait_until(self, instant: float) -> None:
        now = self.clock()
        if instant > now:
            self.sleep(instant - now)
        self._sent_at = self.clock()

    def on_raw_response(self, response: Any) -> None:
        """Raw response hook, which also sees the 429s the SDK is about to retry (after x-ms-retry-after-ms)."""
        http_response = getattr(response, "http_response", None)
        if getattr(http_response, "status_code", None) == _STATUS_TOO_MANY_REQUESTS:
            self.on_throttled(getattr(http_response, "headers", None) or {})

    def on_throttled(self, headers: Mapping[str, Any]) -> None:
        """A 429: halve the pace and the page size of the next queries; give up past the budget, else let the SDK
        retry the request after x-ms-retry-after-ms."""
        self.throttled += 1
        self.pace = max(self.budget.ru_per_second * _MIN_PACE_FRACTION, self.pace / 2)
        self.page_size = max(1, self.page_size // 2)
        if self.throttled > MAX_THROTTLED_RESPONSES:
            raise _OutOfBudget("throttled")
        try:
            wait = float(_header(headers, "x-ms-retry-after-ms") or 0) / 1000
        except ValueError:
            wait = 0.0
        now = self.clock()
        if now + wait >= self.deadline:
            raise _OutOfBudget("throttled")
        self._sent_at = max(self._sent_at, now + wait)  # when the SDK sends the retry


def _header(headers: Mapping[str, Any], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return None if value is None else str(value)
    return None


def _request_charge(headers: Mapping[str, Any]) -> float:
    try:
        return max(0.0, float(_header(headers, "x-ms-request-charge") or 0))
    except ValueError:
        return 0.0


def _ids_of(body: Any) -> list[str]:
    rows = body.get("Documents") if isinstance(body, dict) else None
    if not isinstance(rows, list):
        return []
    ids: list[str] = []
    for row in rows:
        if isinstance(row, dict) and "id" in row:
            ids.append(str(row["id"]))
        elif isinstance(row, str):
            ids.append(row)
    return ids


def _over_limit(document_id: str) -> bool:
    return len(document_id.encode("utf-8")) > MAX_DOCUMENT_ID_BYTES


def _run_query(pacer: _Pacer, container: ContainerProxy, query: str, parameters: list[dict[str, object]]) -> None:
    """Read the whole result of `query`; the response hook measures the ids and raises _Found at an offender."""
    pacer.check_time()
    pages = container.query_items(
        query,
        parameters=parameters,
        enable_cross_partition_query=True,
        max_item_count=pacer.page_size,
        priority="Low",
        response_hook=pacer.on_response,
        raw_response_hook=pacer.on_raw_response,
    ).by_page()
    for _page in pages:
        pass


# One transport, so one HTTP session, for every scan's client: its connection pools outlive a scan, as the management
# clients' do (cmk.clients). A client of its own per account opened new connections, each with a new TLS context that
# loads the CA store (a third of a 1,000-account dry run's CPU against the simulator, where every account's data plane
# is one host). Nothing closes it: the clients are never used as context managers.
_TRANSPORT = clients.pooled_transport()


def _client(document_endpoint: str, budget: ScanBudget) -> CosmosClient:
    policy = ConnectionPolicy()
    # The SDK retries 429s in place (9 times, 30 s at most, by default). Our raw response hook sees each one first
    # and ends the scan at our own limits, so the SDK's are set beyond them: it never gives up before we do, and
    # never sleeps past our time budget.
    policy.RetryOptions = RetryOptions(
        max_retry_attempt_count=MAX_THROTTLED_RESPONSES + 1,
        max_wait_time_in_seconds=math.ceil(budget.seconds) + 1,
    )
    return CosmosClient(
        document_endpoint,
        credential=clients.credential(),
        connection_policy=policy,
        priority="Low",
        transport=_TRANSPORT,
    )


def scan_document_ids(document_endpoint: str | None, budget: ScanBudget | None = None) -> DocumentIdScan:
    """Look for a document id over 990 bytes in every container, within the request-unit and time budget."""
    if not document_endpoint:
        return _result("unavailable", "the account reports no document endpoint")
    if not clouds.data_plane_in_cloud(document_endpoint):
        # The scan sends the app's token there: never to a host outside this cloud's Cosmos DB domain.
        return _result(
            "unavailable",
            f"the account's document endpoint {document_endpoint} is not in the Cosmos DB domain of "
            f"{clouds.current().name} (*.{clouds.current().cosmos_suffix}); check AZURE_CLOUD",
        )
    pacer = _Pacer(budget or ScanBudget.from_settings())
    containers: list[tuple[str, ContainerProxy]] = []
    phase = "listing containers"
    over_limit_checked = suspects_checked = 0
    current = ""
    try:
        client = _client(document_endpoint, pacer.budget)
        databases = list(client.list_databases(raw_response_hook=pacer.on_raw_response))
        pacer.on_response(client.client_connection.last_response_headers, None)
        for database in databases:
            database_client = client.get_database_client(database["id"])
            for container in database_client.list_containers(raw_response_hook=pacer.on_raw_response):
                name = f"{database['id']}/{container['id']}"
                containers.append((name, database_client.get_container_client(container["id"])))
            pacer.on_response(client.client_connection.last_response_headers, None)
        phase = "over990"
        pacer.measure = _over_limit
        over_limit: list[dict[str, object]] = [{"name": "@limit", "value": MAX_DOCUMENT_ID_BYTES}]
        for name, container_client in containers:
            current = name
            _run_query(pacer, container_client, OVER_LIMIT_QUERY, over_limit)
            over_limit_checked += 1
        phase = "suspects"
        suspects: list[dict[str, object]] = [
            {"name": "@minChars", "value": MIN_SUSPECT_ID_CHARACTERS},
            {"name": "@limit", "value": MAX_DOCUMENT_ID_BYTES},
        ]
        for name, container_client in containers:
            current = name
            _run_query(pacer, container_client, SUSPECT_ID_QUERY, suspects)
            suspects_checked += 1
    except _Found as found:
        offender: OffendingId = {
            "container": current,
            "bytes": len(found.document_id.encode("utf-8")),
            "characters": len(found.document_id),
        }
        how = "over 990 characters" if phase == "over990" else "of 248-990 characters"
        detail = f"an id {how} in {current}; the scan stopped there"
        return _result("found", detail, pacer, len(containers), suspects_checked, offender)
    except _OutOfBudget as stopped:
        total = len(containers)
        if phase == "listing containers":
            progress = "while listing the containers"
        elif phase == "over990":
            progress = f"after {over_limit_checked} of {total} containers (ids over 990 characters)"
        else:
            progress = (
                f"after {suspects_checked} of {total} containers (ids of 248-990 characters; no id over 990 "
                f"characters in any of the {total})"
            )
        budget_text = f"{pacer.budget.seconds:g} s time budget"
        if stopped.reason == "throttled":
            limit = f"its {budget_text}" if pacer.throttled <= MAX_THROTTLED_RESPONSES else "its 429 limit"
            detail = f"throttled (429) by the account {pacer.throttled} time(s); gave up at {limit} {progress}"
        else:
            throttled = f", throttled (429) {pacer.throttled} time(s)" if pacer.throttled else ""
            detail = f"stopped at its {budget_text} {progress}{throttled}"
        return _result("unavailable", detail, pacer, total, suspects_checked)
    except CosmosHttpResponseError as error:
        if error.status_code == _STATUS_TOO_MANY_REQUESTS:  # the SDK gave up first (it should not)
            detail = f"throttled (429) by the account {pacer.throttled} time(s); the SDK gave up"
            return _result("unavailable", detail, pacer, len(containers), suspects_checked)
        message = str(error).splitlines()[0] if str(error) else ""
        return _result("unavailable", f"{type(error).__name__}: {message}", pacer, len(containers), suspects_checked)
    except AzureError as error:
        message = str(error).splitlines()[0] if str(error) else ""
        return _result("unavailable", f"{type(error).__name__}: {message}", pacer, len(containers), suspects_checked)
    detail = f"{len(containers)} container(s) scanned, {pacer.charged:.0f} RU in {pacer.elapsed():.0f} s"
    return _result("scanned", detail, pacer, len(containers), suspects_checked)


def _result(
    status: Literal["scanned", "found", "unavailable"],
    detail: str,
    pacer: _Pacer | None = None,
    total: int = 0,
    scanned: int = 0,
    offender: OffendingId | None = None,
) -> DocumentIdScan:
    return {
        "status": status,
        "offendingId": offender,
        "containersTotal": total,
        "containersScanned": scanned,
        "requestCharge": round(pacer.charged, 2) if pacer else 0.0,
        "elapsedSeconds": round(pacer.elapsed(), 3) if pacer else 0.0,
        "throttledResponses": pacer.throttled if pacer else 0,
        "detail": detail,
    }
