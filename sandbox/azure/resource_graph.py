"""Azure Resource Graph `POST /providers/Microsoft.ResourceGraph/resources` with a documented KQL subset.

Supported (anything else is refused with 400 InvalidQuery naming the construct):
  table     `resources` / `Resources` (top-level resources: accounts, vaults, identities)
  operators `| where <expr>`, `| project a, b = <expr>`, `| extend x = <expr>`, `| order by <expr> [asc|desc], ...`
            (also `sort by`; KQL's default direction is desc), `| limit n` / `| take n`, `| distinct a, b`
            (ARG's supported operators: docs/azure-cmk-facts.md §7.4)
  expr      `and`, `or`, `not(...)`, parentheses; `==` `!=` (case-sensitive), `=~` `!~` (case-insensitive),
            `in (...)`, `in~ (...)`, `!in`, `!in~`, `has`, `!has`, `contains`, `!contains`, `startswith`,
            `<` `<=` `>` `>=`; columns and dynamic paths `properties.a.b`, `tags['k']`, `tags.k`;
            functions tostring, tolower, toupper, tobool, toint, strlen, array_length, isempty, isnotempty,
            isnull, isnotnull; string, number and true/false literals.
Like ARG, `type` and `resourceGroup` are lowercase (so `type == 'Microsoft.DocumentDB/databaseAccounts'` matches
nothing) and column/property names are case-sensitive. Paging: `options.$top` (default and maximum 1000),
`options.$skip`, `options.$skipToken`; a `$skipToken` is returned while more rows remain, unless the query uses
limit/take or projects only dynamic columns, in which case `resultTruncated` is "true" and there is no token.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sandbox.azure.authorizer import visible
from sandbox.azure.errors import ArmError
from sandbox.azure.ids import JsonDict, parse_resource_id, region_slug
from sandbox.azure.messages import Reply, RequestContext
from sandbox.azure.routing import SCOPE_TENANT_QUERY, RouteMatch, RouteTable
from sandbox.azure.state import CloudState

MAX_TOP = 1000
ROUTES = RouteTable()
_TOKEN = re.compile(
    r"""\s+
    |(?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
    |(?P<number>\d+(?:\.\d+)?)
    |(?P<op>!in~|in~|!in(?![A-Za-z0-9_])|!has|!contains|!startswith|==|!=|=~|!~|<=|>=|[|(),.\[\]=<>])
    |(?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    """,
    re.VERBOSE,
)
_DYNAMIC_COLUMNS = {"properties", "tags", "identity", "sku", "plan", "zones", "extendedLocation"}


class QueryError(Exception):
    pass


def _invalid(message: str) -> ArmError:
    return ArmError(
        400,
        "BadRequest",
        "Please provide below info when asking for support: timestamp, correlationId. Query is invalid.",
        details=[
            {
                "code": "InvalidQuery",
                "message": "Query is invalid. Please refer to the documentation for the Azure Resource Graph service "
                "and fix the error before retrying.",
            },
            {"code": "ParserFailure", "message": message},
        ],
    )


@dataclass(frozen=True)
class Token:
    kind: str
    text: str


def tokenize(query: str) -> list[Token]:
    tokens: list[Token] = []
    position = 0
    while position < len(query):
        match = _TOKEN.match(query, position)
        if match is None:
            raise QueryError(f"unexpected character {query[position]!r} at position {position}")
        position = match.end()
        kind = match.lastgroup
        if kind is None:
            continue
        tokens.append(Token(kind, match.group(kind)))
    return tokens


Expr = Callable[[JsonDict], Any]


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.position = 0

    def peek(self, offset: int = 0) -> Token | None:
        index = self.position + offset
        return self.tokens[index] if index < len(self.tokens) else None

    def next(self) -> Token:
        token = self.peek()
        if token is None:
            raise QueryError("unexpected end of query")
        self.position += 1
        return token

    def accept(self, text: str) -> bool:
        token = self.peek()
        if token is not None and token.text.lower() == text.lower() and token.kind in ("op", "ident"):
            self.position += 1
            return True
        return False

    def expect(self, text: str) -> None:
        if not self.accept(text):
            found = self.peek()
            raise QueryError(f"expected '{text}' but found {found.text!r}" if found else f"expected '{text}'")

    # expression grammar: or > and > comparison > primary
    def expression(self) -> Expr:
        left = self.conjunction()
        while self.accept("or"):
            right = self.conjunction()
            left = (lambda a, b: lambda row: _truthy(a(row)) or _truthy(b(row)))(left, right)
        return left

    def conjunction(self) -> Expr:
        left = self.comparison()
        while self.accept("and"):
            right = self.comparison()
            left = (lambda a, b: lambda row: _truthy(a(row)) and _truthy(b(row)))(left, right)
        return left

    def comparison(self) -> Expr:
        left = self.primary()
        token = self.peek()
        if token is None or token.kind not in ("op", "ident"):
            return left
        operator = token.text.lower()
        if operator in (
            "==",
            "!=",
            "=~",
            "!~",
            "<",
            ">",
            "<=",
            ">=",
            "has",
            "!has",
            "contains",
            "!contains",
            "startswith",
            "!startswith",
        ):
            self.next()
            right = self.primary()
            return _binary(operator, left, right)
        if operator in ("in", "in~", "!in", "!in~"):
            self.next()
            self.expect("(")
            values = [self.primary()]
            while self.accept(","):
                values.append(self.primary())
            self.expect(")")
            return _membership(operator, left, values)
        return left

    def primary(self) -> Expr:
        token = self.next()
        if token.kind == "string":
            value = _unquote(token.text)
            return lambda row: value
        if token.kind == "number":
            number = float(token.text) if "." in token.text else int(token.text)
            return lambda row: number
        if token.text == "(":
            inner = self.expression()
            self.expect(")")
            return inner
        if token.kind != "ident":
            raise QueryError(f"unexpected {token.text!r}")
        lowered = token.text.lower()
        if lowered in ("true", "false"):
            boolean = lowered == "true"
            return lambda row: boolean
        if self.peek() is not None and self.peek().text == "(":  # type: ignore[union-attr]
            return self.call(token.text)
        return self.path(token.text)

    def call(self, name: str) -> Expr:
        self.expect("(")
        arguments: list[Expr] = []
        if not self.accept(")"):
            arguments.append(self.expression())
            while self.accept(","):
                arguments.append(self.expression())
            self.expect(")")
        function = _FUNCTIONS.get(name.lower())
        if function is None:
            raise QueryError(f"function '{name}' is not supported by the simulator")
        if len(arguments) != 1:
            raise QueryError(f"function '{name}' takes exactly one argument")
        argument = arguments[0]
        return lambda row: function(argument(row))

    def path(self, root: str) -> Expr:
        accessors: list[str] = []
        while True:
            if self.accept("."):
                accessors.append(self.next().text)
            elif self.peek() is not None and self.peek().text == "[":  # type: ignore[union-attr]
                self.next()
                key = self.next()
                if key.kind != "string":
                    raise QueryError("only string keys are supported in [...] accessors")
                accessors.append(_unquote(key.text))
                self.expect("]")
            else:
                break

        def evaluate(row: JsonDict) -> Any:
            value: Any = row.get(root)
            for accessor in accessors:
                value = value.get(accessor) if isinstance(value, dict) else None
            return value

        evaluate.column_name = "_".join([root, *accessors])  # type: ignore[attr-defined]
        return evaluate


def _unquote(text: str) -> str:
    body = text[1:-1]
    return re.sub(r"\\(.)", r"\1", body)


def _to_string(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _truthy(value: Any) -> bool:
    return value is True


def _to_bool(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None


def _to_int(value: Any) -> Any:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


_FUNCTIONS: dict[str, Callable[[Any], Any]] = {
    "tostring": _to_string,
    "tolower": lambda value: _to_string(value).lower(),
    "toupper": lambda value: _to_string(value).upper(),
    "tobool": _to_bool,
    "toint": _to_int,
    "strlen": lambda value: len(_to_string(value)),
    "array_length": lambda value: len(value) if isinstance(value, list) else None,
    "isempty": lambda value: value is None or value == "",
    "isnotempty": lambda value: not (value is None or value == ""),
    "isnull": lambda value: value is None,
    "isnotnull": lambda value: value is not None,
    "not": lambda value: not _truthy(value),
}


def _has_term(haystack: Any, needle: Any) -> bool:
    text = _to_string(haystack).lower()
    term = _to_string(needle).lower()
    return re.search(r"(?<![a-z0-9])" + re.escape(term) + r"(?![a-z0-9])", text) is not None


def _binary(operator: str, left: Expr, right: Expr) -> Expr:
    def compare(row: JsonDict) -> Any:
        a, b = left(row), right(row)
        if operator == "==":
            return a == b if not isinstance(b, str) else _to_string(a) == b and a is not None
        if operator == "!=":
            return not (a == b if not isinstance(b, str) else _to_string(a) == b)
        if operator == "=~":
            return a is not None and _to_string(a).lower() == _to_string(b).lower()
        if operator == "!~":
            return _to_string(a).lower() != _to_string(b).lower()
        if operator in ("has", "!has"):
            return _has_term(a, b) == (operator == "has")
        if operator in ("contains", "!contains"):
            return (_to_string(b).lower() in _to_string(a).lower()) == (operator == "contains")
        if operator in ("startswith", "!startswith"):
            return _to_string(a).lower().startswith(_to_string(b).lower()) == (operator == "startswith")
        if not isinstance(a, int | float) or not isinstance(b, int | float):
            return None
        return {"<": a < b, ">": a > b, "<=": a <= b, ">=": a >= b}[operator]

    return compare


def _membership(operator: str, left: Expr, values: list[Expr]) -> Expr:
    insensitive = operator.endswith("~")
    negated = operator.startswith("!")

    def member(row: JsonDict) -> bool:
        value = _to_string(left(row))
        candidates = [_to_string(candidate(row)) for candidate in values]
        if insensitive:
            value, candidates = value.lower(), [candidate.lower() for candidate in candidates]
        found = value in candidates
        return found != negated

    return member


@dataclass
class CompiledQuery:
    steps: list[Callable[[list[JsonDict]], list[JsonDict]]]
    limited: bool


def compile_query(query: str) -> CompiledQuery:
    parser = _Parser(tokenize(query))
    table = parser.next()
    if table.kind != "ident" or table.text.lower() != "resources":
        raise QueryError(f"table '{table.text}' is not supported; the simulator serves the 'resources' table only")
    steps: list[Callable[[list[JsonDict]], list[JsonDict]]] = []
    limited = False
    while parser.peek() is not None:
        parser.expect("|")
        operator = parser.next().text.lower()
        if operator == "where":
            predicate = parser.expression()
            steps.append((lambda p: lambda rows: [row for row in rows if _truthy(p(row))])(predicate))
        elif operator in ("project", "extend"):
            columns = _column_list(parser)
            if operator == "project":
                steps.append((lambda c: lambda rows: [{name: expr(row) for name, expr in c} for row in rows])(columns))
            else:
                steps.append(
                    (lambda c: lambda rows: [{**row, **{name: expr(row) for name, expr in c}} for row in rows])(columns)
                )
        elif operator == "distinct":
            steps.append((lambda c: lambda rows: _distinct(rows, c))(_column_list(parser)))
        elif operator in ("order", "sort"):
            parser.expect("by")
            keys = [_sort_key(parser)]
            while parser.accept(","):
                keys.append(_sort_key(parser))
            steps.append((lambda k: lambda rows: _sort(rows, k))(keys))
        elif operator in ("limit", "take"):
            count = parser.next()
            if count.kind != "number":
                raise QueryError(f"'{operator}' needs a number")
            limited = True
            steps.append((lambda n: lambda rows: rows[:n])(int(count.text)))
        else:
            raise QueryError(f"operator '{operator}' is not supported by the simulator")
    return CompiledQuery(steps, limited)


def _distinct(rows: list[JsonDict], columns: list[tuple[str, Expr]]) -> list[JsonDict]:
    """KQL `distinct a, b`: one row per combination of the columns' values, only those columns, first seen first."""
    seen: set[str] = set()
    kept: list[JsonDict] = []
    for row in rows:
        values = {name: expr(row) for name, expr in columns}
        key = json.dumps(values, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            kept.append(values)
    return kept


def _column_list(parser: _Parser) -> list[tuple[str, Expr]]:
    columns: list[tuple[str, Expr]] = []
    while True:
        token = parser.peek()
        following = parser.peek(1)
        if token is not None and token.kind == "ident" and following is not None and following.text == "=":
            parser.next()
            parser.next()
            columns.append((token.text, parser.expression()))
        else:
            expression = parser.expression()
            name = getattr(expression, "column_name", None)
            if name is None:
                raise QueryError("a computed column needs a name: use 'name = expression'")
            columns.append((str(name), expression))
        if not parser.accept(","):
            return columns


def _sort_key(parser: _Parser) -> tuple[Expr, bool]:
    expression = parser.expression()
    descending = True  # KQL's default
    if parser.accept("asc"):
        descending = False
    elif parser.accept("desc"):
        descending = True
    return expression, descending


def _sort(rows: list[JsonDict], keys: list[tuple[Expr, bool]]) -> list[JsonDict]:
    ordered = list(rows)
    for expression, descending in reversed(keys):
        ordered.sort(key=lambda row, e=expression: _sortable(e(row)), reverse=descending)  # type: ignore[misc]
    return ordered


def _sortable(value: Any) -> tuple[int, Any]:
    if value is None:
        return (0, "")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (1, value)
    return (2, _to_string(value))


def resource_rows(state: CloudState) -> list[JsonDict]:
    """The `resources` table: top-level resources shaped like ARG rows."""
    rows: list[JsonDict] = []
    for body in state.resources.all():
        parsed = parse_resource_id(str(body.get("id", "")))
        if parsed is None or len(parsed.type_segments) != 1 or len(parsed.name_segments) != 1:
            continue
        if parsed.type_key.startswith("microsoft.authorization/"):
            continue  # role assignments and definitions are in authorizationresources, not resources
        rows.append(
            {
                "id": body["id"],
                "name": body.get("name", parsed.name),
                "type": str(body.get("type", parsed.full_type)).lower(),
                "tenantId": state.tenant_id,
                "kind": body.get("kind", ""),
                "location": region_slug(str(body.get("location", ""))),
                "resourceGroup": (parsed.resource_group or "").lower(),
                "subscriptionId": parsed.subscription_id,
                "managedBy": body.get("managedBy", ""),
                "sku": body.get("sku"),
                "plan": body.get("plan"),
                "properties": body.get("properties"),
                "tags": body.get("tags") or {},
                "identity": body.get("identity"),
                "zones": body.get("zones"),
                "extendedLocation": body.get("extendedLocation"),
            }
        )
    return rows


@ROUTES.route("POST", "/providers/Microsoft.ResourceGraph/resources", scope=SCOPE_TENANT_QUERY)
def resources_query(state: CloudState, context: RequestContext, match: RouteMatch) -> Reply:
    return query_resources(state, context, visible=lambda resource_id: visible(state, context, resource_id))


def query_resources(
    state: CloudState, context: RequestContext, *, visible: Callable[[str], bool] | None = None
) -> Reply:
    """Run the query over the rows `visible` keeps (ARG answers with what the caller may read: authorizer.py)."""
    request = context.body
    if not isinstance(request, dict) or not isinstance(request.get("query"), str):
        raise ArmError(400, "BadRequest", "The request body must contain a 'query' string.")
    if request.get("managementGroups"):
        raise _invalid("managementGroups scopes are not supported by the simulator; pass 'subscriptions'.")
    options = request.get("options") or {}
    if not isinstance(options, dict):
        raise ArmError(400, "BadRequest", "'options' must be an object.")
    result_format = options.get("resultFormat", "objectArray")
    if result_format not in ("objectArray", "table"):
        raise ArmError(400, "BadRequest", f"resultFormat '{result_format}' is not valid.")
    top = options.get("$top", MAX_TOP)
    if not isinstance(top, int) or not 1 <= top <= MAX_TOP:
        raise ArmError(400, "BadRequest", f"$top must be an integer from 1 to {MAX_TOP}.")
    subscriptions = request.get("subscriptions")
    query_text = str(request["query"])
    try:
        compiled = compile_query(query_text)
    except QueryError as error:
        raise _invalid(str(error)) from error
    rows = resource_rows(state)
    if subscriptions:
        wanted = {str(subscription).lower() for subscription in subscriptions}
        rows = [row for row in rows if str(row["subscriptionId"]).lower() in wanted]
    if visible is not None:
        rows = [row for row in rows if visible(str(row["id"]))]
    for step in compiled.steps:
        rows = step(rows)
    fingerprint = hashlib.sha256(json.dumps([query_text, sorted(subscriptions or [])]).encode()).hexdigest()[:16]
    offset = 0
    if options.get("$skipToken"):
        offset = _read_skip_token(str(options["$skipToken"]), fingerprint)
    elif isinstance(options.get("$skip"), int) and not compiled.limited:
        offset = int(options["$skip"])
    page = rows[offset : offset + top]
    more = offset + top < len(rows)
    pageable = not compiled.limited and any(
        any(name not in _DYNAMIC_COLUMNS and value is not None for name, value in row.items()) for row in page
    )
    response: JsonDict = {"totalRecords": len(rows), "count": len(page)}
    if result_format == "table":
        names = list(page[0]) if page else []
        response["data"] = {
            "columns": [{"name": name, "type": _column_type(page, name)} for name in names],
            "rows": [[row.get(name) for name in names] for row in page],
        }
    else:
        response["data"] = page
    response["facets"] = []
    if more and pageable:
        response["resultTruncated"] = "false"
        response["$skipToken"] = base64.b64encode(json.dumps({"o": offset + top, "q": fingerprint}).encode()).decode()
    else:
        response["resultTruncated"] = "true" if more else "false"
    return Reply(200, response)


def _column_type(rows: list[JsonDict], name: str) -> str:
    for row in rows:
        value = row.get(name)
        if value is None:
            continue
        if isinstance(value, bool):
            return "boolean"
        if isinstance(value, int):
            return "integer"
        if isinstance(value, float):
            return "real"
        if isinstance(value, str):
            return "string"
        return "object"
    return "string"


def _read_skip_token(token: str, fingerprint: str) -> int:
    try:
        data = json.loads(base64.b64decode(token))
        offset = int(data["o"])
        same_query = data["q"] == fingerprint
    except (ValueError, KeyError, TypeError) as error:
        raise ArmError(400, "BadRequest", "The $skipToken is not valid.") from error
    if not same_query:
        raise ArmError(400, "BadRequest", "The $skipToken belongs to a different query or scope.")
    return offset
