"""The Durable Functions HTTP management API (extension `HttpApiHandler`).

Served twice, like the extension does: under `/runtime/webhooks/durabletask/` on the public port (the webhook,
behind the system key when keys are required) and under `/durabletask/` on a loopback port of its own (the
`rpcBaseUrl` the Python `DurableOrchestrationClient` calls; the extension's LocalHttpListener, which needs no key
and which Azure does not expose). Status codes, headers and payloads follow the
extension source and golden/durable/HTTP-API-NOTES.md: 202 + Location + Retry-After while running, 200 when
terminal, 404 unknown, 410 for operations on finished instances, 409 when starting an ID that is still running.
"""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.parse
from collections.abc import Callable
from typing import Any

from aiohttp import web

from sandbox.host import history as h
from sandbox.host.config import HostConfig
from sandbox.host.engine import InstanceExistsError, OrchestrationEngine, UnknownFunctionError
from sandbox.host.history import EventType, OrchestrationStatus, format_status_time, parse_timestamp
from sandbox.host.store import InstanceQuery, InstanceRecord

log = logging.getLogger("sandbox.host")

WEBHOOK_PATH = "/runtime/webhooks/durabletask"
RPC_PATH = "/durabletask"
DEFAULT_CONNECTION = "Storage"
DEFAULT_PAGE_SIZE = 100  # OrchestrationStatusQueryCondition.PageSize
CONTINUATION_HEADER = "x-ms-continuation-token"


def parse_json_token(text: str | None) -> Any:
    """Durable's `ParseToJToken`: JSON when it parses, else the raw string."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def status_payload(
    record: InstanceRecord, *, show_input: bool = True, history_events: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "name": record.name,
        "instanceId": record.instance_id,
        "runtimeStatus": record.status.name,
        "input": parse_json_token(record.raw_input) if show_input else None,
        "customStatus": parse_json_token(record.custom_status),
        "output": parse_json_token(record.output),
        "createdTime": format_status_time(record.created_time),
        "lastUpdatedTime": format_status_time(record.last_updated_time),
    }
    if history_events is not None:
        payload["historyEvents"] = history_events
    return payload


_HIDDEN_IN_STATUS = frozenset(
    {
        EventType.ORCHESTRATOR_STARTED,
        EventType.ORCHESTRATOR_COMPLETED,
        EventType.TASK_SCHEDULED,
        EventType.SUB_ORCHESTRATION_INSTANCE_CREATED,
    }
)


def history_for_status(events: list[dict[str, Any]], *, show_output: bool) -> list[dict[str, Any]]:
    """The `historyEvents` shape of the status API: event type names, function names and scheduled times."""
    scheduled = {
        e["EventId"]: e
        for e in events
        if e["EventType"] in (EventType.TASK_SCHEDULED, EventType.SUB_ORCHESTRATION_INSTANCE_CREATED)
    }
    shown: list[dict[str, Any]] = []
    for event in events:
        event_type = EventType(event["EventType"])
        if event_type in _HIDDEN_IN_STATUS:
            continue
        item: dict[str, Any] = {"EventType": _pascal(event_type.name)}
        if event_type == EventType.EXECUTION_STARTED:
            item["FunctionName"] = event.get("Name")
        elif "TaskScheduledId" in event:
            origin = scheduled.get(event["TaskScheduledId"], {})
            item["FunctionName"] = origin.get("Name")
            if "InstanceId" in origin:
                item["InstanceId"] = origin["InstanceId"]
            if show_output and "Result" in event:
                item["Result"] = parse_json_token(event["Result"])
            for key in ("Reason", "Details"):
                if event.get(key) is not None:
                    item[key] = event[key]
            if origin:
                item["ScheduledTime"] = origin["Timestamp"]
        elif event_type in (EventType.TIMER_CREATED, EventType.TIMER_FIRED):
            item["FireAt"] = event.get("FireAt")
        elif event_type == EventType.EVENT_RAISED:
            item["Name"] = event.get("Name")
            if show_output:
                item["Input"] = parse_json_token(event.get("Input"))
        elif event_type in (EventType.EXECUTION_COMPLETED, EventType.CONTINUE_AS_NEW):
            item["OrchestrationStatus"] = OrchestrationStatus(event["OrchestrationStatus"]).name
            if show_output:
                item["Result"] = parse_json_token(event.get("Result"))
        elif event_type == EventType.EXECUTION_TERMINATED:
            item["Input"] = event.get("Input")
        item["Timestamp"] = event["Timestamp"]
        shown.append(item)
    return shown


def _pascal(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def _query_bool(query: Any, name: str, default: bool) -> bool:
    value = query.get(name)
    if value is None:
        return default
    lowered = str(value).strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    return default


def _error(status: int, message: str, exception_message: str | None = None) -> web.Response:
    body: dict[str, Any] = {"Message": message}
    if exception_message is not None:
        body["ExceptionMessage"] = exception_message
        body["ExceptionType"] = "System.ArgumentException"
    return web.json_response(body, status=status)


class DurableHttpApi:
    def __init__(
        self,
        engine: OrchestrationEngine,
        config: HostConfig,
        *,
        system_key: Callable[[], str | None],
    ) -> None:
        self._engine = engine
        self._config = config
        self._system_key = system_key

    # --- URLs ---------------------------------------------------------------------------------------------------

    def query_suffix(self) -> str:
        suffix = f"taskHub={urllib.parse.quote(self._config.hub_name)}&connection={DEFAULT_CONNECTION}"
        key = self._system_key()
        return f"{suffix}&code={urllib.parse.quote(key)}" if key else suffix

    def management_payload(self, origin: str, instance_id: str) -> dict[str, str]:
        """HttpManagementPayload: the check-status links, in the extension's property order."""
        instance = f"{origin}{WEBHOOK_PATH}/instances/{urllib.parse.quote(instance_id, safe='')}"
        suffix = self.query_suffix()
        return {
            "id": instance_id,
            "statusQueryGetUri": f"{instance}?{suffix}",
            "sendEventPostUri": f"{instance}/raiseEvent/{{eventName}}?{suffix}",
            "terminatePostUri": f"{instance}/terminate?reason={{text}}&{suffix}",
            "rewindPostUri": f"{instance}/rewind?reason={{text}}&{suffix}",
            "purgeHistoryDeleteUri": f"{instance}?{suffix}",
            "restartPostUri": f"{instance}/restart?{suffix}",
            "suspendPostUri": f"{instance}/suspend?reason={{text}}&{suffix}",
            "resumePostUri": f"{instance}/resume?reason={{text}}&{suffix}",
        }

    def client_binding(
        self, origin: str, task_hub: str | None, connection: str | None, rpc_origin: str | None = None
    ) -> dict[str, Any]:
        """The durable client binding JSON (extension `DurableOrchestrationClientToString`); `rpc_origin` is the
        local listener's (the public origin when not given)."""
        base = f"{origin}{WEBHOOK_PATH}"
        management = self.management_payload(origin, "INSTANCEID")
        suffix = self.query_suffix()
        key = self._system_key()
        universal = f"code={urllib.parse.quote(key)}" if key else ""
        creation = f"{base}/orchestrators/{{functionName}}[/{{instanceId}}]"
        return {
            "taskHubName": task_hub or self._config.hub_name,
            "connectionName": connection,
            "creationUrls": {
                "createNewInstancePostUri": f"{creation}?{universal}",
                "createAndWaitOnNewInstancePostUri": (
                    f"{creation}?timeout={{timeoutInSeconds}}&pollingInterval={{intervalInSeconds}}&{universal}"
                ),
            },
            "managementUrls": management,
            "baseUrl": base,
            "requiredQueryStringParameters": suffix,
            "rpcBaseUrl": f"{rpc_origin or origin}{RPC_PATH}/",
            "httpBaseUrl": "",
            "maxGrpcMessageSizeInBytes": 0,
            "grpcHttpClientTimeout": "00:01:40",
        }

    def check_status_response(self, origin: str, instance_id: str) -> web.Response:
        payload = self.management_payload(origin, instance_id)
        return web.json_response(
            payload,
            status=202,
            headers={"Location": payload["statusQueryGetUri"], "Retry-After": "10"},
        )

    # --- dispatch -----------------------------------------------------------------------------------------------

    async def handle(self, request: web.Request, base_path: str) -> web.Response:
        try:
            return await self._route(request, base_path)
        except RecursionError:  # JSON nested deeper than the parser goes: the extension refuses it too
            return _error(400, "Invalid JSON content", "The JSON content is nested too deeply.")
        except ValueError as error:
            return _error(400, "One or more of the arguments submitted is incorrect", str(error))
        except Exception as error:
            log.exception("Durable HTTP API request %s %s failed", request.method, request.path)
            return _error(500, "Something went wrong while processing your request", str(error))

    async def _route(self, request: web.Request, base_path: str) -> web.Response:
        path = urllib.parse.unquote(request.path)[len(base_path) :].strip("/")
        segments = path.split("/") if path else []
        method = request.method.upper()
        head = segments[0].lower() if segments else ""
        if head == "orchestrators" and len(segments) in (2, 3):
            if method != "POST":
                return web.Response(status=404)
            return await self._start(request, segments[1], segments[2] if len(segments) == 3 else None)
        if head == "entities":
            return _error(501, "Durable entities are not supported by the local host")
        if head == "instances" and len(segments) <= 3:
            instance_id = segments[1] if len(segments) > 1 and segments[1] else None
            operation = segments[2].lower() if len(segments) > 2 and segments[2] else None
            if instance_id is None:
                if method == "GET":
                    return await self._list(request)
                if method == "DELETE":
                    return await self._purge_where(request)
                return web.Response(status=404)
            if operation is None:
                if method == "GET":
                    return await self._status(request, instance_id)
                if method == "DELETE":
                    return await self._purge(instance_id)
                return web.Response(status=404)
            if method == "POST":
                handlers = {
                    "terminate": self._terminate,
                    "suspend": self._suspend,
                    "resume": self._resume,
                    "rewind": self._rewind,
                    "restart": self._restart,
                }
                handler = handlers.get(operation)
                if handler is not None:
                    return await handler(request, instance_id)
            return web.Response(status=404)
        if head == "instances" and len(segments) == 4 and segments[2].lower() == "raiseevent":
            if method != "POST":
                return web.Response(status=404)
            return await self._raise_event(request, segments[1], segments[3])
        return web.Response(status=404)

    # --- operations ---------------------------------------------------------------------------------------------

    async def _start(self, request: web.Request, function_name: str, instance_id: str | None) -> web.Response:
        body = await request.text()
        raw_input: str | None = None
        if body:
            try:
                json.loads(body)
            except ValueError as error:
                return _error(400, "Invalid JSON content", str(error))
            raw_input = body
        try:
            instance_id = await self._engine.start_orchestration(function_name, instance_id, raw_input)
        except InstanceExistsError as error:
            return _error(409, str(error))
        except UnknownFunctionError as error:
            return _error(400, str(error), str(error))
        return await self._respond_started(request, instance_id)

    async def _respond_started(self, request: web.Request, instance_id: str) -> web.Response:
        origin = _origin(request)
        timeout = _query_seconds(request.query.get("timeout"))
        interval = _query_seconds(request.query.get("pollingInterval"))
        if timeout is None or interval is None:
            return self.check_status_response(origin, instance_id)
        # WaitForCompletionOrCreateCheckStatusResponseAsync: poll until terminal or the (real-time) timeout.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            record = await self._engine.db(self._engine.store.get_instance, instance_id)
            if record is not None and record.is_terminal:
                if record.status == OrchestrationStatus.Completed:
                    return web.json_response(parse_json_token(record.output), status=200)
                return web.json_response(status_payload(record), status=200)
            if loop.time() >= deadline:
                return self.check_status_response(origin, instance_id)
            await asyncio.sleep(min(interval, max(0.0, deadline - loop.time())))

    async def _status(self, request: web.Request, instance_id: str) -> web.Response:
        query = request.query
        show_history = _query_bool(query, "showHistory", False)
        show_output = _query_bool(query, "showHistoryOutput", False)
        show_input = _query_bool(query, "showInput", True)
        server_error_on_failure = _query_bool(query, "returnInternalServerErrorOnFailure", False)
        record = await self._engine.db(self._engine.store.get_instance, instance_id)
        if record is None:
            return web.Response(status=404)
        events = None
        if show_history:
            raw = await self._engine.db(self._engine.store.history, instance_id, None)
            events = history_for_status(raw or [], show_output=show_output)
        payload = status_payload(record, show_input=show_input, history_events=events)
        headers: dict[str, str] = {}
        if record.status in (
            OrchestrationStatus.Running,
            OrchestrationStatus.Pending,
            OrchestrationStatus.ContinuedAsNew,
            OrchestrationStatus.Suspended,
        ):
            status = 202
            headers = {"Location": str(request.url), "Retry-After": "5"}
        elif record.status == OrchestrationStatus.Failed:
            status = 500 if server_error_on_failure else 200
        else:
            status = 200
        return web.json_response(payload, status=status, headers=headers)

    async def _list(self, request: web.Request) -> web.Response:
        query = request.query
        page_size = DEFAULT_PAGE_SIZE
        if (top := query.get("top")) is not None and top.strip().lstrip("-").isdigit():
            page_size = max(1, int(top))
        records, token = await self._engine.db(
            self._engine.store.list_instances,
            _instance_query(query, default_to_now=False),
            page_size,
            request.headers.get(CONTINUATION_HEADER),
        )
        show_input = _query_bool(query, "showInput", True)
        body = [status_payload(record, show_input=show_input) for record in records]
        # The extension always adds the header; on the last page its value is empty.
        return web.json_response(body, status=200, headers={CONTINUATION_HEADER: token or ""})

    async def _purge(self, instance_id: str) -> web.Response:
        record = await self._engine.db(self._engine.store.get_instance, instance_id)
        if record is None:
            return web.Response(status=404)
        if not record.is_terminal:
            return web.json_response(
                "Only orchestrations in a terminal state can be purged, but the orchestration with instance ID "
                f"{instance_id} has status {record.status.name}",
                status=412,
            )
        deleted = await self._engine.db(self._engine.store.purge, [instance_id])
        return web.json_response({"instancesDeleted": deleted}, status=200)

    async def _purge_where(self, request: web.Request) -> web.Response:
        query = request.query
        if _query_time(query.get("createdTimeFrom")) is None:
            return web.json_response("Please provide value for 'createdTimeFrom' parameter.", status=400)
        instance_query = _instance_query(query, default_to_now=True, now=self._engine.now())
        if instance_query.statuses is None:
            # Purging running instances would orphan their work; only finished ones are purged by default.
            instance_query = InstanceQuery(
                instance_query.created_from,
                instance_query.created_to,
                frozenset({OrchestrationStatus.Completed, OrchestrationStatus.Failed, OrchestrationStatus.Terminated}),
                instance_query.prefix,
            )
        ids = await self._engine.db(self._engine.store.matching_instance_ids, instance_query)
        deleted = await self._engine.db(self._engine.store.purge, ids) if ids else 0
        if not deleted:
            return web.Response(status=404)
        return web.json_response({"instancesDeleted": deleted}, status=200)

    async def _require_running(self, instance_id: str) -> InstanceRecord | web.Response:
        record = await self._engine.db(self._engine.store.get_instance, instance_id)
        if record is None:
            return web.Response(status=404)
        if record.is_terminal:
            return web.Response(status=410)
        return record

    async def _terminate(self, request: web.Request, instance_id: str) -> web.Response:
        found = await self._require_running(instance_id)
        if isinstance(found, web.Response):
            return found
        await self._engine.send(instance_id, h.execution_terminated(self._engine.now(), request.query.get("reason")))
        return web.Response(status=202)

    async def _suspend(self, request: web.Request, instance_id: str) -> web.Response:
        found = await self._require_running(instance_id)
        if isinstance(found, web.Response):
            return found
        await self._engine.send(instance_id, h.execution_suspended(self._engine.now(), request.query.get("reason")))
        return web.Response(status=202)

    async def _resume(self, request: web.Request, instance_id: str) -> web.Response:
        found = await self._require_running(instance_id)
        if isinstance(found, web.Response):
            return found
        await self._engine.send(instance_id, h.execution_resumed(self._engine.now(), request.query.get("reason")))
        return web.Response(status=202)

    async def _rewind(self, request: web.Request, instance_id: str) -> web.Response:
        record = await self._engine.db(self._engine.store.get_instance, instance_id)
        if record is None:
            return web.json_response(f'No orchestration with instance ID "${instance_id}" found.', status=404)
        if record.status != OrchestrationStatus.Failed:
            return web.json_response(
                f'This orchestration has status {record.status.name}, but only orchestrations in the "Failed" '
                "state can be rewound.",
                status=412,
            )
        return _error(501, "Rewind is not supported by the underlying storage provider.")

    async def _restart(self, request: web.Request, instance_id: str) -> web.Response:
        record = await self._engine.db(self._engine.store.get_instance, instance_id)
        if record is None:
            return _error(400, "InstanceId does not match a valid orchestration instance.", instance_id)
        new_id = instance_id
        if _query_bool(request.query, "restartWithNewInstanceId", True):
            new_id = ""
        try:
            started = await self._engine.start_orchestration(record.name, new_id or None, record.raw_input)
        except InstanceExistsError:
            return _error(409, "A non-terminal instance with this instance ID already exists.")
        return await self._respond_started(request, started)

    async def _raise_event(self, request: web.Request, instance_id: str, event_name: str) -> web.Response:
        found = await self._require_running(instance_id)
        if isinstance(found, web.Response):
            return found
        if request.content_type.lower() != "application/json":
            return _error(400, "Only application/json request content is supported")
        body = await request.text()
        try:
            payload = json.loads(body) if body else None
        except ValueError as error:
            return _error(400, "Invalid JSON content", str(error))
        # RaiseEventAsync stores the body's JToken serialized: a Python client's data arrives as a JSON string.
        raw = None if payload is None else json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        await self._engine.send(instance_id, h.event_raised(self._engine.now(), event_name, raw))
        return web.Response(status=202)


def _origin(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


def _query_seconds(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _query_time(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return parse_timestamp(value)
    except ValueError:
        return None


def _instance_query(query: Any, *, default_to_now: bool, now: float | None = None) -> InstanceQuery:
    statuses: set[OrchestrationStatus] = set()
    for value in query.getall("runtimeStatus", []):
        for name in str(value).split(","):
            if name.strip() in OrchestrationStatus.__members__:
                statuses.add(OrchestrationStatus[name.strip()])
    created_to = _query_time(query.get("createdTimeTo"))
    if created_to is None and default_to_now:
        created_to = now
    return InstanceQuery(
        created_from=_query_time(query.get("createdTimeFrom")),
        created_to=created_to,
        statuses=frozenset(statuses) if statuses else None,
        prefix=query.get("instanceIdPrefix") or None,
    )
