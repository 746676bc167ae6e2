# mypy: disallow-untyped-decorators=False
"""Toy HTTP and Event Grid triggers, including a starter that uses the real DurableOrchestrationClient."""

import json
from typing import Any

import azure.durable_functions as df
import azure.functions as func

bp = df.Blueprint()

# Events the Event Grid functions received, in arrival order.
RECEIVED: list[dict[str, Any]] = []


@bp.route(route="orchestrators/{name}", methods=["POST"])
@bp.durable_client_input(client_name="client")
async def http_start(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    payload = req.get_json() if req.get_body() else None
    try:
        instance_id = await client.start_new(req.route_params["name"], req.params.get("instanceId"), payload)
    except Exception as error:
        return func.HttpResponse(str(error), status_code=409)
    return client.create_check_status_response(req, instance_id)


@bp.route(route="client/{instance_id}/{action}", methods=["POST", "GET"])
@bp.durable_client_input(client_name="client")
async def client_operations(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    instance_id = req.route_params["instance_id"]
    action = req.route_params["action"]
    if action == "raise":
        await client.raise_event(instance_id, req.params["event"], req.get_json())
        return func.HttpResponse(status_code=202)
    if action == "status":
        status = await client.get_status(instance_id, show_history=True)
        body = {
            "runtimeStatus": status.runtime_status.value if status.runtime_status else None,
            "customStatus": status.custom_status,
            "output": status.output,
            "input": status.input_,
        }
        return func.HttpResponse(json.dumps(body), mimetype="application/json")
    if action == "count_all":
        return func.HttpResponse(json.dumps(len(await client.get_status_all())), mimetype="application/json")
    if action == "terminate":
        await client.terminate(instance_id, "stopped by the client")
        return func.HttpResponse(status_code=202)
    if action == "purge":
        result = await client.purge_instance_history(instance_id)
        return func.HttpResponse(json.dumps(result.instances_deleted), mimetype="application/json")
    return func.HttpResponse(status_code=400)


@bp.route(route="items/{id:int}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def get_item(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(json.dumps({"id": int(req.route_params["id"])}), mimetype="application/json")


@bp.route(route="hello/{who?}", auth_level=func.AuthLevel.ANONYMOUS)
def hello(req: func.HttpRequest) -> str:
    return f"hello {req.route_params.get('who') or 'world'}"


@bp.event_grid_trigger(arg_name="event")
def on_resource_event(event: func.EventGridEvent) -> None:
    data = event.get_json()
    RECEIVED.append({"schema": "EventGrid", "id": event.id, "type": event.event_type, "data": data})
    if isinstance(data, dict) and data.get("fail"):
        raise RuntimeError("the handler refused the event")


@bp.event_grid_trigger(arg_name="event")
def on_cloud_event(event: func.CloudEvent) -> None:
    RECEIVED.append({"schema": "CloudEvents", "id": event.id, "type": event.type, "data": event.get_json()})
