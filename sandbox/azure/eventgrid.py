"""Event Grid system events for ARM writes (Microsoft.Resources.ResourceWrite*), pushed to webhook subscribers.

When: a synchronous write (role assignment, access policy) raises its event when it is answered; an asynchronous
account PATCH raises it when the operation reaches a terminal state — ResourceWriteSuccess on Succeeded,
ResourceWriteFailure on Failed — because ARM publishes resource events from the operation's end (the event
carries `status`, which is only known then). A consumer therefore never sees "Success" for an account whose
change is still in flight.

Delivery is at-least-once and asynchronous with Event Grid's retry schedule (in simulated seconds); duplicates
and reordering can be switched on (simulator.eventDelivery). Every attempt is recorded (GET /_sandbox/events).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import uuid
from typing import Any

import aiohttp

from sandbox.azure.ids import JsonDict, parse_resource_id
from sandbox.azure.messages import RequestContext, iso
from sandbox.azure.state import CloudState, ResourceWritten

# Event Grid does not retry these: the endpoint rejected the event itself.
_NO_RETRY_STATUSES = {400, 413}


def _event_type(action: str, status: str) -> str:
    verb = "Delete" if action.endswith("/delete") else "Action" if action.endswith("/action") else "Write"
    outcome = {"Succeeded": "Success", "Failed": "Failure", "Canceled": "Cancel"}.get(status, "Success")
    return f"Microsoft.Resources.Resource{verb}{outcome}"


def _claims(raw: JsonDict, tenant_id: str) -> JsonDict:
    """ARM's event `claims` carry the caller's token claims (numbers as strings, long-form claim names)."""
    principal = str(raw.get("oid", ""))
    return {
        "aud": str(raw.get("aud", "")),
        "iss": str(raw.get("iss", f"https://sts.windows.net/{tenant_id}/")),
        "iat": str(raw.get("iat", "")),
        "nbf": str(raw.get("nbf", "")),
        "exp": str(raw.get("exp", "")),
        "aio": "",
        "appid": str(raw.get("appid", principal)),
        "appidacr": str(raw.get("appidacr", "2")),
        "http://schemas.microsoft.com/identity/claims/identityprovider": f"https://sts.windows.net/{tenant_id}/",
        "http://schemas.microsoft.com/identity/claims/objectidentifier": principal,
        "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/nameidentifier": principal,
        "http://schemas.microsoft.com/identity/claims/tenantid": str(raw.get("tid", tenant_id)),
        "uti": str(raw.get("uti", "")),
        "ver": str(raw.get("ver", "1.0")),
    }


def publisher(state: CloudState) -> ResourceWritten:
    """The `hooks.resource_written` that raises ARM's resource events here."""
    return functools.partial(emit_resource_event, state)


def emit_resource_event(
    state: CloudState,
    context: RequestContext | None,
    resource_id: str,
    action: str,
    status: str,
    *,
    claims: JsonDict | None = None,
    http_method: str | None = None,
    http_url: str | None = None,
) -> None:
    """Queue one ARM resource event for every matching subscriber."""
    if not state.events.subscriptions:
        return
    parsed = parse_resource_id(resource_id)
    subscription_id = parsed.subscription_id if parsed is not None else ""
    raw_claims = claims if claims is not None else (context.claims.raw if context and context.claims else {})
    principal = str(raw_claims.get("oid", ""))
    event_type = _event_type(action, status)
    event_id = str(uuid.uuid4())
    event_time = iso(state.now())
    data: JsonDict = {
        "authorization": {
            "scope": resource_id,
            "action": action,
            "evidence": {"role": "Contributor", "principalId": principal, "principalType": "ServicePrincipal"},
        },
        "claims": _claims(raw_claims, state.tenant_id),
        "correlationId": str(uuid.uuid4()),
    }
    method = http_method or (context.method if context else None)
    url = http_url or (context.url if context else None)
    if method and url and method.upper() in ("PATCH", "PUT", "DELETE", "POST"):
        data["httpRequest"] = {
            "clientRequestId": str(uuid.uuid4()),
            "clientIpAddress": "127.0.0.1",
            "method": method.upper(),
            "url": url,
        }
    data.update(
        {
            "resourceProvider": parsed.namespace if parsed is not None and parsed.namespace else "",
            "resourceUri": resource_id,
            "operationName": action,
            "status": status,
            "subscriptionId": subscription_id,
            "tenantId": state.tenant_id,
        }
    )
    topic = f"/subscriptions/{subscription_id}"
    for subscription in state.events.subscriptions:
        if not _matches(subscription, resource_id, event_type, subscription_id):
            continue
        if subscription["schema"] == "CloudEventSchemaV1_0":
            payload: Any = {
                "id": event_id,
                "source": topic,
                "specversion": "1.0",
                "type": event_type,
                "subject": resource_id,
                "time": event_time,
                "data": data,
            }
        else:
            payload = [
                {
                    "subject": resource_id,
                    "eventType": event_type,
                    "eventTime": event_time,
                    "id": event_id,
                    "data": data,
                    "dataVersion": "2",
                    "metadataVersion": "1",
                    "topic": topic,
                }
            ]
        copies = 2 if state.rng.random() < state.settings.event_delivery.duplicate_probability else 1
        for _copy in range(copies):
            delay = state.rng.uniform(0, state.settings.event_delivery.max_delay_seconds)
            state.events.queue(
                {
                    "deliveryId": str(uuid.uuid4()),
                    "subscription": subscription["name"],
                    "endpoint": subscription["endpoint"],
                    "schema": subscription["schema"],
                    "eventId": event_id,
                    "eventType": event_type,
                    "subject": resource_id,
                    "principal": principal,
                    "payload": payload,
                    "attempt": 0,
                    "dueAt": state.now() + delay,
                }
            )


def _matches(subscription: JsonDict, subject: str, event_type: str, subscription_id: str) -> bool:
    begins = subscription.get("subjectBeginsWith")
    if begins and not subject.lower().startswith(str(begins).lower()):
        return False
    ends = subscription.get("subjectEndsWith")
    if ends and not subject.lower().endswith(str(ends).lower()):
        return False
    included = subscription.get("includedEventTypes")
    if included and event_type not in included:
        return False
    wanted_subscription = subscription.get("azureSubscriptionId")
    return not (wanted_subscription and str(wanted_subscription).lower() != subscription_id.lower())


class EventDispatcher:
    """Pushes queued deliveries from the simulator's event loop, retrying on Event Grid's schedule."""

    def __init__(self, state: CloudState) -> None:
        self._state = state
        self._in_flight: set[str] = set()
        self._wake = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        self._session = aiohttp.ClientSession()
        try:
            while True:
                self._dispatch_due()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=0.05)
                self._wake.clear()
        finally:
            for task in list(self._tasks):
                task.cancel()
            await self._session.close()

    def _dispatch_due(self) -> None:
        state = self._state
        with state.lock:
            now = state.now()
            due = sorted(
                (
                    delivery
                    for delivery in state.events.pending.values()
                    if delivery["dueAt"] <= now and delivery["deliveryId"] not in self._in_flight
                ),
                key=lambda delivery: float(delivery["dueAt"]),
            )
        for delivery in due:
            self._in_flight.add(str(delivery["deliveryId"]))
            task = asyncio.get_running_loop().create_task(self._deliver(dict(delivery)))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _deliver(self, delivery: JsonDict) -> None:
        state = self._state
        settings = state.settings.event_delivery
        is_cloud_event = delivery["schema"] == "CloudEventSchemaV1_0"
        headers = {
            "Content-Type": "application/cloudevents+json; charset=utf-8" if is_cloud_event else "application/json",
            "aeg-event-type": "Notification",
            "aeg-subscription-name": str(delivery["subscription"]).upper(),
            "aeg-delivery-count": str(delivery["attempt"]),
            "aeg-data-version": "2",
            "aeg-metadata-version": "1",
        }
        status: int | None = None
        error: str | None = None
        assert self._session is not None
        try:
            async with self._session.post(
                str(delivery["endpoint"]),
                data=json.dumps(delivery["payload"]),
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=settings.timeout_seconds),
            ) as response:
                status = response.status
                await response.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as failure:
            error = f"{type(failure).__name__}: {failure}"
        with state.lock:
            delivered = status is not None and 200 <= status < 300
            attempt = int(delivery["attempt"]) + 1
            give_up = not delivered and (status in _NO_RETRY_STATUSES or attempt >= settings.max_attempts)
            outcome = "delivered" if delivered else "dropped" if give_up else "retrying"
            state.events.record(
                {
                    "time": iso(state.now()),
                    "deliveryId": delivery["deliveryId"],
                    "subscription": delivery["subscription"],
                    "eventId": delivery["eventId"],
                    "eventType": delivery["eventType"],
                    "subject": delivery["subject"],
                    "principal": delivery.get("principal", ""),
                    "attempt": attempt,
                    "httpStatus": status,
                    "error": error,
                    "outcome": outcome,
                    "event": delivery["payload"],
                }
            )
            if delivered or give_up:
                state.events.finish(str(delivery["deliveryId"]))
            else:
                schedule = settings.retry_schedule_seconds or (10.0,)
                delivery["attempt"] = attempt
                delivery["dueAt"] = state.now() + schedule[min(attempt - 1, len(schedule) - 1)]
                state.events.update(delivery)
            state.commit()
            self._in_flight.discard(str(delivery["deliveryId"]))
