"""The host's single HTTP server: HTTP triggers, the Event Grid webhook and the Durable management API."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import secrets
import urllib.parse
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from sandbox.host import easy_auth, worker
from sandbox.host.app_loader import EVENT_GRID_TRIGGER, FunctionInfo, FunctionRegistry, http_methods, http_route
from sandbox.host.config import HostConfig
from sandbox.host.durable_api import RPC_PATH, WEBHOOK_PATH, DurableHttpApi
from sandbox.host.invoker import FunctionFailedError, FunctionInvoker
from sandbox.host.routes import RouteTemplate

log = logging.getLogger("sandbox.host")

EVENT_GRID_PATH = "/runtime/webhooks/eventgrid"
ADMIN_PATH = "/admin"


@dataclass(frozen=True)
class HostKeys:
    """Function keys. Like Core Tools, they are only checked when the host runs with keys required."""

    master: str
    default_function: str
    durabletask_extension: str
    eventgrid_extension: str

    @classmethod
    def from_environment(cls) -> HostKeys:
        def key(setting: str) -> str:
            return os.environ.get(setting) or secrets.token_urlsafe(30)

        return cls(
            master=key("FUNCTIONS_MASTER_KEY"),
            default_function=key("FUNCTIONS_DEFAULT_KEY"),
            durabletask_extension=key("DURABLETASK_EXTENSION_KEY"),
            eventgrid_extension=key("EVENTGRID_EXTENSION_KEY"),
        )


def _presented_key(request: web.Request) -> str | None:
    return request.query.get("code") or request.headers.get("x-functions-key")


@dataclass(frozen=True)
class _HttpRoute:
    info: FunctionInfo
    template: RouteTemplate
    methods: frozenset[str] | None
    auth_level: str


class HostHttpServer:
    def __init__(
        self,
        *,
        registry: FunctionRegistry,
        config: HostConfig,
        invoker: FunctionInvoker,
        durable_api: DurableHttpApi,
        keys: HostKeys | None,
        easy_auth_audience: str | None = None,
    ) -> None:
        """`easy_auth_audience`: emulate App Service Authentication with Entra ID in front of the HTTP triggers
        (`--auth entra`), accepting local tokens for that audience (sandbox/host/easy_auth.py)."""
        self._easy_auth_audience = easy_auth_audience
        self._registry = registry
        self._config = config
        self._invoker = invoker
        self._durable = durable_api
        self._keys = keys
        routes = []
        for info in registry.http:
            routes.append(
                _HttpRoute(
                    info,
                    RouteTemplate(http_route(info)),
                    http_methods(info),
                    str(info.trigger.get("authLevel") or "FUNCTION").upper(),
                )
            )
        self._routes = sorted(routes, key=lambda route: route.template.precedence)

    def application(self) -> web.Application:
        """The public port: HTTP triggers, and the system endpoints behind their keys."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", WEBHOOK_PATH, self._durable_webhook)
        app.router.add_route("*", WEBHOOK_PATH + "/{tail:[\\s\\S]*}", self._durable_webhook)
        app.router.add_route("*", EVENT_GRID_PATH, self._event_grid)
        app.router.add_route("*", ADMIN_PATH, self._admin)
        app.router.add_route("*", ADMIN_PATH + "/{tail:[\\s\\S]*}", self._admin)
        app.router.add_route("*", "/{tail:[\\s\\S]*}", self._http_trigger)
        return app

    def rpc_application(self) -> web.Application:
        """The Durable extension's local listener (`rpcBaseUrl`), which the worker's client calls without a key.

        On Azure it listens on the instance's loopback (127.0.0.1:17071) and is not reachable from outside; here it
        is a second loopback port of its own, so nothing on the public port answers without the key Azure asks for
        (the management API there is /runtime/webhooks/durabletask, behind the system key)."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", RPC_PATH + "/{tail:[\\s\\S]*}", self._durable_rpc)
        return app

    # --- keys ---------------------------------------------------------------------------------------------------

    def _authorized(self, request: web.Request, level: str, system_key: str | None = None) -> bool:
        if self._keys is None or level == "ANONYMOUS":
            return True
        presented = _presented_key(request)
        if presented is None:
            return False
        accepted = {self._keys.master}
        if level == "FUNCTION":
            accepted.add(self._keys.default_function)
        if system_key is not None:
            accepted.add(system_key)
        # Compared as bytes: compare_digest refuses str with characters outside ASCII (`?code=%C3%A9`).
        given = presented.encode("utf-8", "surrogateescape")
        return any(secrets.compare_digest(given, key.encode()) for key in accepted)

    # --- handlers -----------------------------------------------------------------------------------------------

    async def _admin(self, request: web.Request) -> web.Response:
        """The host's admin API: `/admin/host/ping` is anonymous, everything else needs the master key (ADMIN)."""
        path = request.path.rstrip("/").lower()
        if path == ADMIN_PATH + "/host/ping":
            return web.Response(status=200)
        if not self._authorized(request, "ADMIN"):
            return web.Response(status=401)
        if path == ADMIN_PATH + "/host/status" and request.method == "GET":
            return web.json_response(
                {"state": "Running", "functions": sorted(f.name for f in self._registry.functions.values())}
            )
        return web.Response(status=404)

    async def _durable_webhook(self, request: web.Request) -> web.Response:
        system_key = self._keys.durabletask_extension if self._keys else None
        if not self._authorized(request, "SYSTEM", system_key):
            return web.Response(status=401)
        return await self._durable.handle(request, WEBHOOK_PATH)

    async def _durable_rpc(self, request: web.Request) -> web.Response:
        return await self._durable.handle(request, RPC_PATH)

    async def _http_trigger(self, request: web.Request) -> web.StreamResponse:
        path = routing_path(request.raw_path)
        prefix = self._config.route_prefix
        if prefix:
            marker = f"/{prefix}"
            if path.lower() != marker.lower() and not path.lower().startswith(marker.lower() + "/"):
                return await self._root(request, path)
            path = path[len(marker) :]
        method = request.method.upper()
        for route in self._routes:
            params = route.template.match(path)
            if params is None or (route.methods is not None and method not in route.methods):
                continue
            principal: dict[str, str] = {}
            if self._easy_auth_audience is not None and not easy_auth.is_excluded(request.path):
                try:
                    principal = easy_auth.authenticate(request.headers, audience=self._easy_auth_audience).headers()
                except easy_auth.Unauthenticated as error:
                    return web.Response(status=401, headers={"WWW-Authenticate": f'Bearer error="{error}"'})
            if not self._authorized(request, route.auth_level):
                return web.Response(status=401)
            return await self._invoke_http(route.info, request, params, principal)
        return web.Response(status=404)

    async def _root(self, request: web.Request, path: str) -> web.Response:
        if path in ("", "/"):
            return web.Response(text="Your Functions host is up and running (sandbox.host).")
        return web.Response(status=404)

    async def _invoke_http(
        self, info: FunctionInfo, request: web.Request, params: dict[str, str], principal: dict[str, str]
    ) -> web.Response:
        body = await request.read()
        headers: dict[str, str] = {}
        for name, value in request.headers.items():
            lowered = name.lower()
            if self._easy_auth_audience is not None and lowered in easy_auth.PRINCIPAL_HEADERS:
                continue  # what a client sends there never reaches the app: the platform sets it
            headers[lowered] = f"{headers[lowered]}, {value}" if lowered in headers else value
        headers.update(principal)
        trigger = worker.typed_http(
            method=request.method,
            url=str(request.url),
            headers=headers,
            query=dict(request.query.items()),
            params=params,
            body=body,
        )
        try:
            returned = await self._invoker.invoke(info, trigger)
        except FunctionFailedError:
            return web.Response(status=500)
        return _http_response(returned)

    async def _event_grid(self, request: web.Request) -> web.Response:
        system_key = self._keys.eventgrid_extension if self._keys else None
        if not self._authorized(request, "SYSTEM", system_key):
            return web.Response(status=401)  # before anything else: no key, no word about the functions
        name = request.query.get("functionName")
        if not name:
            return web.Response(status=400, text="functionName query parameter is required")
        info = self._registry.get(name)
        if info is None or info.trigger_type != EVENT_GRID_TRIGGER:
            return web.Response(status=404, text=f"cannot find function: '{name}'")
        if request.method == "OPTIONS":
            # CloudEvents abuse protection handshake.
            origin = request.headers.get("WebHook-Request-Origin", "*")
            return web.Response(status=200, headers={"WebHook-Allowed-Origin": origin, "WebHook-Allowed-Rate": "*"})
        if request.method != "POST":
            return web.Response(status=405)
        try:
            body = json.loads(await request.text())
        except (ValueError, RecursionError):
            return web.Response(status=400, text="the request body is not valid JSON")
        events: list[Any] = body if isinstance(body, list) else [body]
        event_type = request.headers.get("aeg-event-type", "Notification")
        if event_type == "SubscriptionValidation":
            first = events[0] if events and isinstance(events[0], dict) else {}
            data = first.get("data")
            code = data.get("validationCode") if isinstance(data, dict) else None
            log.info("Event Grid subscription validation for %s", info.name)
            return web.json_response({"validationResponse": code})
        if event_type == "Unsubscribe":
            return web.Response(status=202)
        # The Event Grid extension invokes the function once per event, in parallel, and answers 500 if any
        # invocation failed so that Event Grid redelivers the whole batch.
        outcomes = await asyncio.gather(
            *(self._invoker.invoke(info, worker.typed_json(json.dumps(e))) for e in events),
            return_exceptions=True,
        )
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        for failure in failures:
            if not isinstance(failure, FunctionFailedError):
                log.error("Event Grid invocation of %s failed: %r", info.name, failure)
        if failures:
            return web.Response(status=500, text=str(failures[0]))
        return web.Response(status=202)


def routing_path(raw_path: str) -> str:
    """The path routes are matched on, as ASP.NET Core decodes it: every escape but `%2F`, which stays as it is, so
    an encoded slash in a route value never makes a segment of its own (`/items/a%2Fb` is one value, `a%2Fb`)."""
    path = raw_path.split("?", 1)[0]
    return urllib.parse.unquote(re.sub("%2[fF]", lambda escape: "%25" + escape.group(0)[1:], path))


def _http_response(datum: Any) -> web.Response:
    """The response from the return binding's Datum (`http`, or `string` for a function that returns a str)."""
    if datum.type == "string":
        return web.Response(status=200, text=str(datum.value), content_type="text/plain")
    value = datum.value
    status = int(value["status_code"].value)
    headers = {name: str(header.value) for name, header in value["headers"].items()}
    body = value["body"].value if value.get("body") is not None else b""
    response = web.Response(status=status, body=body)
    for name, header in headers.items():
        response.headers[name] = header
    for cookie_set in value.get("cookies") or []:
        for morsel in cookie_set.values():
            response.headers.add("Set-Cookie", morsel.OutputString())
    return response
