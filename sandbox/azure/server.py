"""The HTTP side: an HTTPS listener for ARM + the Cosmos data plane + /_sandbox, and a plain-http identity endpoint.

Every ARM/data-plane request goes through the same steps, in ARM's order: settle due operations, fault rules,
authentication (401), api-version (400), throttling (429), the resource provider, then the request log and a
commit of the state store. An "after apply" fault rule lets all of that happen and only then replaces the reply.
/_sandbox/* control routes need no token and are not logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
import time
import uuid
from typing import Any, NoReturn

from aiohttp import web

from sandbox.azure import dataplane
from sandbox.azure.action_table import map_request
from sandbox.azure.arm import ArmRouter
from sandbox.azure.clouds import audience_error, cloud_named
from sandbox.azure.errors import ArmError
from sandbox.azure.eventgrid import EventDispatcher
from sandbox.azure.faults import AFTER_APPLY_KINDS
from sandbox.azure.ids import IDENTITY_TYPE, JsonDict, id_key
from sandbox.azure.messages import Reply, RequestContext, iso
from sandbox.azure.state import CloudState
from sandbox.azure.tls import TlsFiles
from sandbox.azure.tokens import InvalidToken, TokenClaims, derived_guid, mint_token, read_token

IDENTITY_PATH = "/msi/token"
_WRITE_METHODS = ("PUT", "PATCH", "POST", "DELETE")


def _json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
    text = json.dumps(body, separators=(",", ":"))
    return web.Response(status=status, text=text, content_type="application/json", charset="utf-8", headers=headers)


class SimulatorServer:
    def __init__(self, state: CloudState, tls: TlsFiles, *, port: int = 0, identity_port: int = 0) -> None:
        self.state = state
        self.tls = tls
        self.router = ArmRouter(state)
        self.dispatcher = EventDispatcher(state)
        self._requested_port = port
        self._requested_identity_port = identity_port
        self.port = 0
        self.identity_port = 0
        self._runners: list[web.AppRunner] = []
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def identity_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.identity_port}{IDENTITY_PATH}"

    async def start(self) -> None:
        loop = asyncio.get_running_loop()

        def wake_dispatcher() -> None:
            loop.call_soon_threadsafe(self.dispatcher.wake)

        self.state.events.listener = wake_dispatcher
        main = web.Application(client_max_size=16 * 1024 * 1024)
        main.router.add_route("*", "/{tail:.*}", self._handle)
        identity = web.Application()
        identity.router.add_route("*", "/{tail:.*}", self._handle_identity)
        self.port = await self._listen(main, self._requested_port, secure=True)
        self.identity_port = await self._listen(identity, self._requested_identity_port, secure=False)
        self._tasks.append(loop.create_task(self._tick()))
        self._tasks.append(loop.create_task(self.dispatcher.run()))

    async def _listen(self, app: web.Application, port: int, *, secure: bool) -> int:
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(
            runner, "127.0.0.1", port, ssl_context=self.tls.server_context() if secure else None, reuse_address=True
        )
        await site.start()
        self._runners.append(runner)
        server = site._server  # aiohttp does not expose the bound port of port 0 otherwise
        sockets = getattr(server, "sockets", None) or []
        return int(sockets[0].getsockname()[1]) if sockets else port

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):  # shutting down: nothing to report
                await task
        for runner in self._runners:
            await runner.cleanup()
        with self.state.lock:
            self.state.commit()

    async def _tick(self) -> None:
        """Complete operations whose time has come even when nobody asks (events must still fire)."""
        while True:
            with self.state.lock:
                self.state.settle()
                self.state.commit()
            await asyncio.sleep(0.05)

    # ------------------------------------------------------------------ main listener

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.path.startswith("/_sandbox/") or request.path == "/_sandbox":
            return await self._sandbox(request)
        body = await request.read()
        state = self.state
        fault = self._pick_fault(request, body)
        if fault is not None and fault["kind"] not in AFTER_APPLY_KINDS:
            response = await self._apply_fault(request, fault, body)
            if response is not None:
                return response
            fault = None  # a slow reply: served normally
        with state.lock:
            state.settle()
            if request.path.lower().startswith("/cosmos/"):
                response, log_entry = self._serve_data_plane(request, body)
            else:
                response, log_entry = self._serve_arm(request, body)
            if fault is not None:
                self._mark_after_apply(log_entry, fault)
            state.requests.append(log_entry)
            state.commit()
        if fault is not None:
            return self._after_apply_reply(request, fault)
        return response

    def _pick_fault(self, request: web.Request, body: bytes) -> JsonDict | None:
        """The fault rule that fires for this request, with its count taken (committed before anything else)."""
        state = self.state
        with state.lock:
            state.settle()
            fault = state.faults.take(request.method, request.path_qs, body)
            if fault is not None and fault.get("remaining") is not None:
                state.commit()
        return fault

    @staticmethod
    def _mark_after_apply(entry: JsonDict, fault: JsonDict) -> None:
        """Log what the client got (`status`, 0 for a reset) and what the resource provider did (`appliedStatus`)."""
        entry["appliedStatus"] = entry["status"]
        entry["status"] = 0 if fault["kind"] == "resetAfterApply" else int(fault["status"])
        entry["fault"] = fault["id"]

    def _after_apply_reply(self, request: web.Request, fault: JsonDict) -> web.StreamResponse:
        if fault["kind"] == "resetAfterApply":
            self._reset(request)
        return self._fault_response(fault)

    async def _apply_fault(self, request: web.Request, fault: JsonDict, body: bytes) -> web.StreamResponse | None:
        state = self.state
        kind = fault["kind"]
        if kind == "slow":
            delay = float(fault["delaySeconds"])
            real_delay = state.clock.real_seconds(delay) if fault.get("delayClock") == "simulated" else delay
            await asyncio.sleep(real_delay)
            return None
        with state.lock:
            entry = self._log_entry(request, body, 0 if kind == "reset" else int(fault["status"]), None, None)
            entry["fault"] = fault["id"]
            state.requests.append(entry)
            state.commit()
        if kind == "reset":
            self._reset(request)
        return self._fault_response(fault)

    @staticmethod
    def _reset(request: web.Request) -> NoReturn:
        transport = request.transport
        if transport is not None:
            raw_socket = transport.get_extra_info("socket")
            if raw_socket is not None:
                # SO_LINGER 0 makes close() send a TCP RST: the client sees "connection reset by peer".
                raw_socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        raise asyncio.CancelledError

    @staticmethod
    def _fault_response(fault: JsonDict) -> web.Response:
        headers = {"x-ms-request-id": str(uuid.uuid4())}
        if fault.get("retryAfter") is not None:
            headers["Retry-After"] = str(fault["retryAfter"])
        error = {"error": {"code": fault["code"], "message": fault["message"]}}
        return _json_response(int(fault["status"]), error, headers)

    def _log_entry(
        self, request: web.Request, body: bytes, status: int, claims: TokenClaims | None, action: str | None
    ) -> JsonDict:
        entry: JsonDict = {
            "time": iso(self.state.now()),
            "method": request.method,
            "path": request.path_qs,
            "status": status,
            "principal": claims.principal_id if claims is not None else None,
            "action": action,
        }
        if request.method in _WRITE_METHODS and body:
            try:
                entry["body"] = json.loads(body)
            except (ValueError, UnicodeDecodeError):
                entry["body"] = body.decode("utf-8", "replace")
        return entry

    def _serve_arm(self, request: web.Request, body: bytes) -> tuple[web.Response, JsonDict]:
        claims: TokenClaims | None = None
        context: RequestContext | None = None
        mapped = map_request(request.method, request.path)  # the action, from the one table (action_table.py)
        action = mapped.action if mapped is not None else None
        base_headers = {
            "x-ms-request-id": str(uuid.uuid4()),
            "x-ms-correlation-request-id": str(uuid.uuid4()),
            "Cache-Control": "no-cache",
        }
        try:
            claims = self._authenticate(request)
            api_version = request.query.get("api-version")
            if not api_version:
                raise ArmError(
                    400,
                    "MissingApiVersionParameter",
                    "The api-version query parameter (?api-version=) is required for all requests.",
                )
            parsed_body: Any = None
            if body.strip():
                try:
                    parsed_body = json.loads(body)
                except (ValueError, UnicodeDecodeError) as error:
                    raise ArmError(
                        400,
                        "InvalidRequestContent",
                        f"The request content was invalid and could not be deserialized: '{error}'.",
                    ) from error
            context = RequestContext(
                method=request.method.upper(),
                path=request.path,
                query={key: value for key, value in request.query.items()},
                api_version=api_version,
                claims=claims,
                base_url=f"https://{request.host}",
                body=parsed_body,
                url=f"https://{request.host}{request.path_qs}",
                headers={key.lower(): value for key, value in request.headers.items()},
            )
            reply = self.router.dispatch(context)
            response = self._reply_response(reply, base_headers)
            status = reply.status
        except ArmError as error:
            status = error.status
            headers = {**base_headers, **error.headers}
            if status == 401:
                headers["WWW-Authenticate"] = (
                    f'Bearer authorization_uri="https://login.microsoftonline.com/{self.state.tenant_id}", '
                    'error="invalid_token", error_description="' + error.message.replace('"', "'") + '"'
                )
            response = _json_response(status, error.body(), headers)
        entry = self._log_entry(request, body, status, claims, action)
        decision = context.authorization if context is not None else None
        if decision is not None:
            entry["authorization"] = decision.log_json()
        return response, entry

    @staticmethod
    def _reply_response(reply: Reply, base_headers: dict[str, str]) -> web.Response:
        headers = {**base_headers, **reply.headers}
        if reply.empty:
            return web.Response(status=reply.status, headers=headers)
        return _json_response(reply.status, reply.body, headers)

    def _authenticate(self, request: web.Request) -> TokenClaims:
        header = request.headers.get("Authorization", "")
        if not header.lower().startswith("bearer "):
            raise ArmError(
                401,
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is missing.",
            )
        try:
            claims = read_token(header[7:].strip())
        except InvalidToken as error:
            raise ArmError(401, "InvalidAuthenticationToken", f"The access token is invalid: {error}") from error
        if claims.expires_on < time.time():
            raise ArmError(
                401, "ExpiredAuthenticationToken", "The access token expiry UTC time is earlier than current UTC time."
            )
        wrong_audience = audience_error(cloud_named(self.state.settings.cloud), claims.audience)
        if wrong_audience is not None:
            raise ArmError(401, "InvalidAuthenticationTokenAudience", wrong_audience)
        return claims

    def _serve_data_plane(self, request: web.Request, body: bytes) -> tuple[web.Response, JsonDict]:
        parts = [part for part in request.path.split("/") if part]
        data_request = dataplane.DataPlaneRequest(
            method=request.method,
            account_name=parts[1] if len(parts) > 1 else "",
            segments=parts[2:],
            headers={key.lower(): value for key, value in request.headers.items()},
            body=body,
            base_url=f"https://{request.host}",
        )
        reply, claims = dataplane.handle(self.state, data_request)
        headers = dict(reply.headers)
        if reply.body is None:
            response = web.Response(status=reply.status, headers=headers)
        else:
            response = _json_response(reply.status, reply.body, headers)
        entry = self._log_entry(request, body if request.method != "POST" else b"", reply.status, claims, reply.action)
        entry["plane"] = "data"
        return response, entry

    # ------------------------------------------------------------------ identity listener

    async def _handle_identity(self, request: web.Request) -> web.StreamResponse:
        state = self.state
        fault = self._pick_fault(request, b"")
        if fault is not None and fault["kind"] not in AFTER_APPLY_KINDS:
            response = await self._apply_fault(request, fault, b"")
            if response is not None:
                return response
            fault = None  # a slow reply: served normally
        with state.lock:
            status, payload, claims = self._issue_token(request)
            entry = self._log_entry(request, b"", status, claims, "Microsoft.ManagedIdentity/token/action")
            entry["plane"] = "identity"
            if fault is not None:
                self._mark_after_apply(entry, fault)
            state.requests.append(entry)
            state.commit()
        if fault is not None:
            return self._after_apply_reply(request, fault)
        return _json_response(status, payload)

    def _issue_token(self, request: web.Request) -> tuple[int, JsonDict, TokenClaims | None]:
        state = self.state
        if request.path != IDENTITY_PATH or request.method != "GET":
            return 404, {"statusCode": 404, "message": "Not found."}, None
        if request.headers.get("X-IDENTITY-HEADER") != state.identity_header:
            return 401, {"statusCode": 401, "message": "The X-IDENTITY-HEADER header is missing or wrong."}, None
        if request.query.get("api-version") != "2019-08-01":
            return 400, {"statusCode": 400, "message": "api-version must be 2019-08-01."}, None
        resource = request.query.get("resource")
        if not resource:
            return 400, {"statusCode": 400, "message": "The 'resource' parameter is required."}, None
        principal_id, client_id, resource_id = self._principal_for(request.query)
        token = mint_token(
            principal_id, tenant_id=state.tenant_id, app_id=client_id, audience=resource, resource_id=resource_id
        )
        claims = read_token(token)
        payload = {
            "access_token": token,
            "expires_on": str(claims.expires_on),
            "resource": resource,
            "token_type": "Bearer",
            "client_id": client_id,
        }
        return 200, payload, claims

    def _principal_for(self, query: Any) -> tuple[str, str, str | None]:
        """(principal id, client id, identity resource id) for an App Service token request."""
        state = self.state
        settings = state.settings
        identities = state.resources.of_type(IDENTITY_TYPE)
        for parameter, field in (("client_id", "clientId"), ("object_id", "principalId")):
            value = query.get(parameter)
            if value:
                for identity in identities:
                    properties = identity.get("properties") or {}
                    if str(properties.get(field, "")).lower() == value.lower():
                        return str(properties["principalId"]), str(properties["clientId"]), str(identity["id"])
                if parameter == "object_id":
                    return value, derived_guid("client", value), None
                return derived_guid("principal", value), value, None
        resource_id = query.get("mi_res_id")
        if resource_id:
            found = state.resources.get(resource_id)
            if found is not None and id_key(str(found["id"])) == id_key(resource_id):
                properties = found.get("properties") or {}
                return str(properties["principalId"]), str(properties["clientId"]), str(found["id"])
            return derived_guid("principal", resource_id), derived_guid("client", resource_id), resource_id
        return settings.system_principal_id, settings.system_client_id, None

    # ------------------------------------------------------------------ /_sandbox

    async def _sandbox(self, request: web.Request) -> web.StreamResponse:
        state = self.state
        route = request.path.rstrip("/")
        method = request.method
        try:
            payload: Any = await request.json() if request.can_read_body else None
        except ValueError:
            return _json_response(400, {"error": {"code": "InvalidRequestContent", "message": "Body is not JSON."}})
        try:
            with state.lock:
                result = self._sandbox_route(route, method, request.query, payload)
                state.commit()
        except (ValueError, TypeError) as error:
            return _json_response(400, {"error": {"code": "InvalidSandboxRequest", "message": str(error)}})
        if result is None:
            return _json_response(
                404, {"error": {"code": "NotFound", "message": f"No sandbox route {method} {route}."}}
            )
        return _json_response(200, result)

    def _sandbox_route(self, route: str, method: str, query: Any, payload: Any) -> Any:
        state = self.state
        if route == "/_sandbox/clock" and method == "GET":
            return self.clock_json()
        if route == "/_sandbox/clock/advance" and method == "POST":
            seconds = float((payload or {}).get("seconds", 0))
            state.clock.advance(seconds)
            state.settle()
            return self.clock_json()
        if route == "/_sandbox/requests" and method == "GET":
            since = int(query.get("since", 0))
            values = state.requests.since(since)
            return {"value": values, "last": state.requests.last}
        if route == "/_sandbox/operations" and method == "GET":
            return {"value": [operation.public_json() for operation in state.operations.all()]}
        if route == "/_sandbox/events" and method == "GET":
            since = int(query.get("since", 0))
            return {
                "value": state.events.since(since),
                "pending": len(state.events.pending),
                "last": state.events.last,
            }
        if route == "/_sandbox/faults":
            if method == "GET":
                return {"value": state.faults.rules}
            if method == "POST":
                rules = payload if isinstance(payload, list) else [payload]
                return {"value": [state.faults.add(rule) for rule in rules]}
            if method == "DELETE":
                return {"removed": state.faults.remove(query.get("id"))}
        if route == "/_sandbox/eventSubscriptions":
            if method == "GET":
                return {"value": state.events.subscriptions}
            if method == "POST":
                subscriptions = payload if isinstance(payload, list) else [payload]
                return {"value": [state.events.add_subscription(item) for item in subscriptions]}
            if method == "DELETE":
                return {"removed": state.events.remove_subscriptions(query.get("name"))}
        if route == "/_sandbox/resources" and method == "GET":
            return {"value": state.resources.all()}
        if route == "/_sandbox/health" and method == "GET":
            return {"status": "ok", "baseUrl": self.base_url, "identityEndpoint": self.identity_endpoint}
        return None

    def clock_json(self) -> JsonDict:
        clock = self.state.clock
        return {"now": iso(clock.timestamp()), "epochSeconds": clock.timestamp(), "timeScale": clock.time_scale}
