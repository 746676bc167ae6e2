"""The ARM route table: (method, path template) -> handler, declared beside each handler in its provider module.

A provider module makes a `RouteTable` and decorates its handlers:

    ROUTES = RouteTable()

    @ROUTES.route("PATCH", "/subscriptions/{subscription}/resourceGroups/{group}/providers/Microsoft.DocumentDB/"
                           "databaseAccounts/{account}")
    def patch_account(state: CloudState, context: RequestContext, match: RouteMatch) -> Reply: ...

`sandbox/azure/arm.py` joins the providers' tables in precedence order. Matching is case-insensitive, on the path
without its query and with empty segments dropped. The first template that matches owns the path: a method none
of the routes with that template declare is 405 MethodNotAllowed, as ARM's resource providers answer. Templates:
`{name}` is one segment, `{name:path}` one or more, `{name:scope}` zero or more (a scope prefix, "" for the
tenant root); `[...]` is optional. What ARM does before a handler (throttling, the subscription check,
authorization) is the router's, from each route's `scope`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sandbox.azure.errors import ArmError

if TYPE_CHECKING:
    from sandbox.azure.messages import Reply, RequestContext
    from sandbox.azure.state import CloudState

# Where a route sits, which decides the checks ARM runs before the handler (see ArmRouter.dispatch).
SCOPE_SUBSCRIPTION = "subscription"  # under a subscription the tenant knows (404 SubscriptionNotFound otherwise)
SCOPE_ANY = "any"  # at any scope, the tenant root included (role assignments and role definitions)
SCOPE_TENANT_QUERY = "tenant query"  # Resource Graph: the per-user query quota instead of the subscription throttle


@dataclass(frozen=True)
class RouteMatch:
    """The request path as routed (`path`: one leading slash, no trailing one) and the template's parameters."""

    path: str
    params: dict[str, str]

    def __getitem__(self, name: str) -> str:
        return self.params[name]


Handler = Callable[["CloudState", "RequestContext", RouteMatch], "Reply"]


@dataclass(frozen=True)
class Route:
    method: str
    template: str
    handler: Handler
    scope: str = SCOPE_SUBSCRIPTION
    pattern: re.Pattern[str] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "pattern", compile_template(self.template))


_PARAMETER = re.compile(r"\{(?P<name>\w+)(?::(?P<kind>path|scope))?\}")
_SEGMENT_PATTERNS = {None: "[^/]+", "path": "[^/]+(?:/[^/]+)*", "scope": "(?:/[^/]+)*"}


def compile_template(template: str) -> re.Pattern[str]:
    """`/a/{b}[/c/{d}]/{e:path}` as a case-insensitive full-match regex with named groups."""
    pattern = ""
    position = 0
    for found in re.finditer(r"\{\w+(?::\w+)?\}|\[|\]", template):
        pattern += re.escape(template[position : found.start()])
        token = found.group(0)
        if token == "[":
            pattern += "(?:"
        elif token == "]":
            pattern += ")?"
        else:
            parameter = _PARAMETER.fullmatch(token)
            if parameter is None:
                raise ValueError(f"route template {template!r}: unknown parameter {token}")
            pattern += f"(?P<{parameter.group('name')}>{_SEGMENT_PATTERNS[parameter.group('kind')]})"
        position = found.end()
    pattern += re.escape(template[position:])
    return re.compile(pattern, re.IGNORECASE)


@dataclass(frozen=True)
class Resolved:
    """The routes that own a path (one template, its methods) and the parameters the template took from it."""

    routes: tuple[Route, ...]
    match: RouteMatch

    @property
    def scope(self) -> str:
        return self.routes[0].scope

    def handler_for(self, method: str) -> Handler:
        for route in self.routes:
            if route.method in (method, "*"):
                return route.handler
        raise method_not_allowed(method)


class RouteTable:
    """Routes in precedence order (declaration order; tables joined with `RouteTable.join`)."""

    def __init__(self, routes: Iterable[Route] = ()) -> None:
        self.routes: list[Route] = list(routes)

    def route(self, methods: str, template: str, *, scope: str = SCOPE_SUBSCRIPTION) -> Callable[[Handler], Handler]:
        """Declare the decorated handler for `methods` ("GET", "GET PUT", "*" for any) at `template`."""

        def register(handler: Handler) -> Handler:
            for method in methods.split():
                self.routes.append(Route(method, template, handler, scope))
            return handler

        return register

    def add(self, methods: str, template: str, handler: Handler, *, scope: str = SCOPE_SUBSCRIPTION) -> None:
        self.route(methods, template, scope=scope)(handler)

    @classmethod
    def join(cls, *tables: RouteTable) -> RouteTable:
        return cls(route for table in tables for route in table.routes)

    def resolve(self, path: str, routed: str | None = None) -> Resolved | None:
        """The routes of the first template that matches `routed` (default `path`; the router passes the path's
        segments joined by single slashes); the handler gets `path`."""
        for route in self.routes:
            found = route.pattern.fullmatch(routed if routed is not None else path)
            if found is None:
                continue
            owners = tuple(other for other in self.routes if other.template == route.template)
            params = {name: value for name, value in found.groupdict().items() if value is not None}
            return Resolved(owners, RouteMatch(path, params))
        return None


def method_not_allowed(method: str) -> ArmError:
    return ArmError(405, "MethodNotAllowed", f"The requested resource does not support http method '{method}'.")


def no_route(method: str, path: str) -> ArmError:
    return ArmError(404, "NotFound", f"No route for '{method} {path}'.")
