"""The local host indexes apps with the Functions Python worker's own code, and refuses what Azure refuses.

`sandbox.host.worker` runs `loader.index_function_app` and `loader.process_indexed_function` (which calls
`functions.Registry.add_indexed_function`) of the pinned `azure-functions-runtime` on `function_app.py`, as the
worker does at start-up on Azure. These tests read what that code produced (the worker's `FunctionInfo` and the
`RpcFunctionMetadata` it would send the Functions host), so they fail if the host stops running it.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from sandbox.clock import SimClock
from sandbox.host import LocalHost, worker
from sandbox.host.app_loader import AppLoadError, FunctionInfo, LoadedApp, load_app
from tests.sandbox.host.conftest import REPO_ROOT, http

WORKER_MODULE = "azure_functions_runtime.functions"

ORCHESTRATORS = {"cmk_account", "cmk_rollout", "cmk_rollout_lane"}
ACTIVITIES = {
    "preflight",
    "ensure_identity",
    "grant_key_access",
    "enable_cmk",
    "poll_operation",
    "verify_cmk",
    "discover_accounts",
    "estimate_encryption",
    "summarize_rollout",
    "prepare_account_start",
    "find_older_orchestration",
    "read_account_instance",
    "release_account_slot",
    "collect_lane_rows",
    "plan_throughput_raise",
    "converge_throughput",
}
HTTP_ROUTES = {
    "cmk_start_account": ("cmk/accounts", ["POST"]),
    "cmk_get_instance": ("cmk/instances/{instanceId}", ["GET"]),
    "cmk_list_instances": ("cmk/instances", ["GET"]),
    "cmk_approve_instance": ("cmk/instances/{instanceId}/approve", ["POST"]),
    "cmk_reject_instance": ("cmk/instances/{instanceId}/reject", ["POST"]),
    "cmk_terminate_instance": ("cmk/instances/{instanceId}/terminate", ["POST"]),
    "cmk_openapi": ("openapi.json", ["GET"]),
    "cmk_start_rollout": ("cmk/rollouts", ["POST"]),
    "cmk_get_rollout": ("cmk/rollouts/{instanceId}", ["GET"]),
    "cmk_rollout_report": ("cmk/rollouts/{instanceId}/report", ["GET"]),
}
# The status API and the dashboard (triggers/status_api.py, triggers/dashboard_api.py).
STATUS_ROUTES = {
    "cmk_overview": ("cmk/overview", ["GET"]),
    "cmk_list_rollouts": ("cmk/rollouts", ["GET"]),
    "cmk_rollout_accounts": ("cmk/rollouts/{instanceId}/accounts", ["GET"]),
    "cmk_rollout_timeline": ("cmk/rollouts/{instanceId}/timeline", ["GET"]),
    "cmk_list_accounts": ("cmk/accounts", ["GET"]),
    "cmk_instance_details": ("cmk/instances/{instanceId}/details", ["GET"]),
    "cmk_dashboard": ("cmk/dashboard", ["GET"]),
    "cmk_dashboard_asset": ("cmk/dashboard/{asset}", ["GET"]),
}
HTTP_ROUTES |= STATUS_ROUTES
# The dashboard's page and files hold no data: no key (triggers/dashboard_api.py).
ANONYMOUS = {"cmk_dashboard", "cmk_dashboard_asset"}
# Every method of every path no other route takes: 404 or 405 with the error shape (triggers/fallback_api.py).
FALLBACK = "cmk_fallback"
EVENT_GRID = {"enrol_from_event_grid"}
BINDING_IN, BINDING_OUT = 0, 1  # FunctionRpc.proto BindingInfo.Direction


@pytest.fixture(scope="module")
def product() -> LoadedApp:
    return load_app(REPO_ROOT)


def _function(app: LoadedApp, name: str) -> FunctionInfo:
    info = app.registry.get(name)
    assert info is not None, name
    return info


def _bindings(info: FunctionInfo) -> dict[str, dict[str, Any]]:
    return {str(binding["name"]): binding for binding in info.bindings}


def test_every_function_of_the_app_passes_the_workers_indexing_and_registry(product: LoadedApp) -> None:
    functions = product.registry.functions.values()
    assert {info.name for info in functions} == ORCHESTRATORS | ACTIVITIES | set(HTTP_ROUTES) | EVENT_GRID | {FALLBACK}
    assert len(product.registry.functions) == 31 + len(STATUS_ROUTES)
    for info in functions:
        # What the worker's Registry.add_indexed_function accepted and process_indexed_function reported.
        assert type(info.worker_info).__module__ == WORKER_MODULE, info.name
        assert type(info.worker_info).__name__ == "FunctionInfo"
        assert info.worker_info.name == info.name
        assert info.metadata.properties == {"worker_indexed": "True"}
        assert info.metadata.language == "python"
        assert info.metadata.entry_point == info.name
        assert Path(str(info.metadata.directory)) == REPO_ROOT
        assert info.bindings == [json.loads(raw) for raw in info.metadata.raw_bindings]
        assert set(info.metadata.bindings) == {str(b["name"]) for b in info.bindings}
    assert {i.name for i in functions if i.trigger_type == "orchestrationTrigger"} == ORCHESTRATORS
    assert {i.name for i in functions if i.trigger_type == "activityTrigger"} == ACTIVITIES
    assert {i.name for i in functions if i.trigger_type == "eventGridTrigger"} == EVENT_GRID


def test_http_functions_have_the_routes_methods_and_auth_level_azure_will_see(product: LoadedApp) -> None:
    for name, (route, methods) in HTTP_ROUTES.items():
        info = _function(product, name)
        bindings = _bindings(info)
        assert bindings["req"] == {
            "direction": "IN",
            "type": "httpTrigger",
            "name": "req",
            "methods": methods,
            "authLevel": "ANONYMOUS" if name in ANONYMOUS else "FUNCTION",
            "route": route,
        }
        assert bindings["$return"] == {"direction": "OUT", "type": "http", "name": "$return"}
        assert info.metadata.bindings["$return"].direction == BINDING_OUT
        assert info.worker_info.is_http_func
        assert info.worker_info.return_type.binding_name == "http"
    fallback = _bindings(_function(product, FALLBACK))["req"]
    assert fallback == {
        "direction": "IN",
        "type": "httpTrigger",
        "name": "req",
        "authLevel": "ANONYMOUS",
        "route": "{*path}",
    }
    start = _function(product, "cmk_start_account")
    assert _bindings(start)["client"] == {"direction": "IN", "type": "durableClient", "name": "client"}
    assert start.metadata.bindings["client"].type == "durableClient"
    assert start.metadata.bindings["client"].direction == BINDING_IN
    # The DFApp hands the client binding to its wrapper as a str: the worker decodes it with its generic binding.
    assert start.worker_info.input_types["client"].binding_name == "generic"
    assert start.worker_info.input_types["client"].pytype is str


def test_activities_orchestrators_and_the_event_grid_trigger_bind_as_azure_will_see(product: LoadedApp) -> None:
    for name in ACTIVITIES:
        info = _function(product, name)
        assert _bindings(info)["payload"] == {
            "direction": "IN",
            "type": "activityTrigger",
            "name": "payload",
            "activity": name,
        }
        payload = info.worker_info.input_types["payload"]
        assert (payload.binding_name, payload.pytype) == ("activityTrigger", dict)  # a class, not dict[str, Any]
        assert info.worker_info.return_type.binding_name == "activityTrigger"
    summarize = _function(product, "summarize_rollout")
    assert set(_bindings(summarize)) == {"payload", "client"}
    assert summarize.worker_info.is_async
    for name in ORCHESTRATORS:
        info = _function(product, name)
        assert _bindings(info)["context"] == {
            "direction": "IN",
            "type": "orchestrationTrigger",
            "name": "context",
            "orchestration": name,
        }
        assert info.worker_info.input_types["context"].binding_name == "orchestrationTrigger"
        assert not info.worker_info.is_async
    enrol = _function(product, "enrol_from_event_grid")
    assert set(_bindings(enrol)) == {"event", "client"}
    assert _bindings(enrol)["event"] == {"direction": "IN", "type": "eventGridTrigger", "name": "event"}
    assert not enrol.worker_info.has_return  # no $return binding: returning a value fails on Azure


# --- throwaway apps -------------------------------------------------------------------------------------------------

THROWAWAY = """
from typing import Any

import azure.durable_functions as df
import azure.functions as func

app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)
"""


def _app(directory: Path, body: str) -> Path:
    directory.mkdir(parents=True)
    (directory / "host.json").write_text(json.dumps({"version": "2.0"}))
    (directory / "function_app.py").write_text(THROWAWAY + textwrap.dedent(body))
    return directory


def _start(app: Path, tmp_path: Path) -> LocalHost:
    host = LocalHost(app, clock=SimClock(1.0), state_dir=tmp_path / "state")
    host.start()
    return host


ACTIVITY_ANNOTATED = """
@app.activity_trigger(input_name="payload")
def throwaway_activity(payload: {annotation}) -> Any:
    return payload
"""


def test_the_local_host_refuses_a_dict_str_any_activity_binding_with_the_workers_error(tmp_path: Path) -> None:
    app = _app(tmp_path / "app", ACTIVITY_ANNOTATED.format(annotation="dict[str, Any]"))
    with pytest.raises(AppLoadError) as refused:
        _start(app, tmp_path)
    assert str(refused.value) == (
        "FunctionLoadError: cannot load the throwaway_activity function: "
        "binding payload has invalid non-type annotation dict[str, typing.Any]"
    )
    cause = refused.value.__cause__
    assert isinstance(cause, worker.runtime().FunctionLoadError)
    assert type(cause).__module__ == WORKER_MODULE


def test_the_same_activity_annotated_with_a_class_starts(tmp_path: Path) -> None:
    app = _app(tmp_path / "app", ACTIVITY_ANNOTATED.format(annotation="dict"))
    host = _start(app, tmp_path)
    try:
        assert host.registry is not None
        assert host.registry.activity_names() == {"throwaway_activity": "throwaway_activity"}
    finally:
        host.stop()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            """
            @app.route(route="orders/{id}", methods=["GET"])
            def orders(req: func.HttpRequest, identifier: str) -> func.HttpResponse:
                return func.HttpResponse("")
            """,
            "FunctionLoadError: cannot load the orders function: the following parameters are declared in Python but "
            "not in the function definition (function.json or function decorators):  {'identifier'}",
        ),
        (
            """
            @app.route(route="orders")
            def orders(req: func.HttpRequest, context: str) -> func.HttpResponse:
                return func.HttpResponse("")
            """,
            'FunctionLoadError: cannot load the orders function: the "context" parameter is expected to be of type '
            "azure.functions.Context, got \"<class 'str'>\"",
        ),
        (
            """
            @app.route(route="orders")
            def orders(req: func.HttpRequest) -> dict[str, Any]:
                return {}
            """,
            "FunctionLoadError: cannot load the orders function: has invalid non-type return annotation "
            "dict[str, typing.Any]",
        ),
        (
            """
            @app.route(route="orders")
            def orders(req: func.HttpRequest) -> func.HttpResponse:
                return func.HttpResponse("")

            other = func.FunctionApp()
            """,
            "ValueError: More than one DFApp or other top level function app instances are defined.",
        ),
    ],
    ids=["unbound-parameter", "context-not-a-Context", "generic-return", "two-apps"],
)
def test_other_refusals_of_the_worker_stop_the_host_with_its_message(body: str, message: str, tmp_path: Path) -> None:
    app = _app(tmp_path / "app", body)
    with pytest.raises(AppLoadError) as refused:
        load_app(app)
    assert str(refused.value) == message


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            """
            @app.route(route="administration/keys")
            def keys(req: func.HttpRequest) -> func.HttpResponse:
                return func.HttpResponse("")
            """,
            "The function 'keys' is in error: The specified route conflicts with one or more built in routes.",
        ),
        (
            """
            @app.route(route="orders/{id}", methods=["GET", "POST"])
            def orders(req: func.HttpRequest) -> func.HttpResponse:
                return func.HttpResponse("")

            @app.route(route="/Orders/{id}/", methods=["POST"])
            def more_orders(req: func.HttpRequest) -> func.HttpResponse:
                return func.HttpResponse("")
            """,
            "The function 'more_orders' is in error: The route specified conflicts with the route defined by "
            "function 'orders'.",
        ),
        (
            """
            @app.route(route="orders/{id:number}")
            def orders(req: func.HttpRequest) -> func.HttpResponse:
                return func.HttpResponse("")
            """,
            "The function 'orders' is in error: The constraint reference 'number' could not be resolved to a type. "
            "Register the constraint type with 'Microsoft.AspNetCore.Routing.RouteOptions.ConstraintMap'.",
        ),
    ],
    ids=["reserved-route", "conflicting-routes", "unknown-constraint"],
)
def test_the_functions_hosts_route_checks_stop_the_host_with_its_message(
    body: str, message: str, tmp_path: Path
) -> None:
    app = _app(tmp_path / "app", body)
    with pytest.raises(AppLoadError) as refused:
        load_app(app)
    assert str(refused.value) == message


def test_routes_that_differ_only_by_method_are_accepted(tmp_path: Path) -> None:
    app = _app(
        tmp_path / "app",
        """
        @app.route(route="orders/{id:int}", methods=["GET"])
        def get_order(req: func.HttpRequest) -> func.HttpResponse:
            return func.HttpResponse("")

        @app.route(route="orders/{id:int}", methods=["DELETE"])
        def delete_order(req: func.HttpRequest) -> func.HttpResponse:
            return func.HttpResponse("")
        """,
    )
    assert {info.name for info in load_app(app).registry.http} == {"get_order", "delete_order"}


CALL_TIME = """
@app.route(route="nothing", auth_level=func.AuthLevel.ANONYMOUS)
def nothing(req: func.HttpRequest) -> func.HttpResponse:
    return None  # type: ignore[return-value]

@app.route(route="text", auth_level=func.AuthLevel.ANONYMOUS)
def text(req: func.HttpRequest) -> str:
    return "plain"

RECEIVED: list[str] = []

@app.event_grid_trigger(arg_name="event")
def returns_a_value(event: func.EventGridEvent) -> None:
    RECEIVED.append(event.id)
    return "handled"  # type: ignore[return-value]
"""


def test_call_time_conversions_fail_as_the_worker_fails_them(tmp_path: Path) -> None:
    app = _app(tmp_path / "app", CALL_TIME)
    host = _start(app, tmp_path)
    try:
        # An HTTP function's return value goes through the http converter: None cannot be encoded (500 on Azure).
        assert http("GET", f"{host.base_url}/api/nothing").status == 500
        reply = http("GET", f"{host.base_url}/api/text")
        assert (reply.status, reply.text) == (200, "plain")
        # A function without a $return binding that returns a value fails, so Event Grid redelivers the event.
        event = {
            "id": "e1",
            "subject": "s",
            "eventType": "t",
            "eventTime": "2025-01-01T00:00:00Z",
            "data": {},
            "dataVersion": "1",
        }
        reply = http(
            "POST",
            f"{host.base_url}/runtime/webhooks/eventgrid?functionName=returns_a_value",
            json_body=[event],
            headers={"aeg-event-type": "Notification"},
        )
        assert reply.status == 500
        assert "without a $return binding" in reply.text
    finally:
        host.stop()
