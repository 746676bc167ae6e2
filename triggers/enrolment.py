"""Event Grid trigger: enrol accounts written without CMK inside the enrolment scope, and start rollouts that
arrive as custom events. Duplicates, out-of-order deliveries and our own writes start nothing new."""

from __future__ import annotations

import logging
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from cmk import inventory, settings
from cmk.enrolment import decide, rollout_instance_id
from cmk.errors import InvalidRequest
from cmk.key_policy import choose_key, parse_key_policy
from cmk.orchestration import AccountInput, account_instance_id, orchestration_config, short_digest
from cmk.resource_ids import parse_account_id
from coordination.account_instances import claim_account, find_active
from triggers.http import find_instance
from triggers.rollouts_api import start_rollout

bp = df.Blueprint()
logger = logging.getLogger(__name__)


def _event_parts(event: Any) -> tuple[str, str, str | None, Any]:
    """(id, type, subject, data) of an Event Grid schema event or a CloudEvent (the worker decodes either)."""
    if isinstance(event, func.CloudEvent):
        return str(event.id), str(event.type), event.subject, event.get_json()
    return str(event.id), str(event.event_type), event.subject, event.get_json()


@bp.function_name("enrol_from_event_grid")
@bp.event_grid_trigger(arg_name="event")
@bp.durable_client_input(client_name="client")
async def enrol_from_event_grid(event: func.EventGridEvent, client: df.DurableOrchestrationClient) -> None:
    event_id, event_type, subject, data = _event_parts(event)
    decision = decide(
        event_type,
        subject,
        data,
        settings.get_json("CMK_ENROLMENT_SCOPE") or [],
        settings.get_str("CMK_APP_PRINCIPAL_ID") or None,
    )
    if decision["action"] == "rollout":
        await _rollout_from_event(client, event_id, data)
        return
    if decision["action"] == "ignore" or decision["accountId"] is None:
        logger.info("Event %s ignored: %s", event_id, decision["reason"])
        return
    await _enrol(client, event_id, decision["accountId"])


async def _rollout_from_event(client: df.DurableOrchestrationClient, event_id: str, data: Any) -> None:
    instance_id = rollout_instance_id(event_id)
    if await find_instance(client, instance_id) is not None:
        logger.info("Event %s: rollout %s already exists (redelivery)", event_id, instance_id)
        return
    try:
        await start_rollout(client, data, instance_id)
    except InvalidRequest as error:
        # Acknowledge: redelivering an invalid request would fail the same way every time.
        logger.error("Event %s carries an invalid rollout request: %s %s", event_id, error.code, error.message)


async def _enrol(client: df.DurableOrchestrationClient, event_id: str, account_id: str) -> None:
    active = await find_active(client, account_id)
    if active is not None:
        logger.info("Event %s: %s is already being handled by %s", event_id, account_id, active["instanceId"])
        return
    account = inventory.read_account(parse_account_id(account_id))
    if account is None:
        logger.info("Event %s: %s no longer exists", event_id, account_id)
        return
    if account["keyVaultKeyUri"]:
        logger.info("Event %s: %s already uses a customer-managed key", event_id, account_id)
        return
    policy_setting = settings.get_str("CMK_KEY_POLICY")
    if not policy_setting:
        logger.error("Event %s: cannot enrol %s, CMK_KEY_POLICY is not set", event_id, account_id)
        return
    try:
        policy = parse_key_policy(settings.get_json("CMK_KEY_POLICY"))
    except (InvalidRequest, ValueError) as error:
        # Acknowledge: a key policy that cannot be used (a Managed HSM key, a key of another cloud, bad JSON)
        # refuses every event the same way; redelivery would not help.
        code = error.code if isinstance(error, InvalidRequest) else "InvalidSetting"
        logger.error("Event %s: cannot enrol %s, CMK_KEY_POLICY is refused: %s %s", event_id, account_id, code, error)
        return
    choice = choose_key(policy, parse_account_id(account_id).subscription_id, account["location"], account["tags"])
    if choice["keyUri"] is None:
        logger.error("Event %s: no key for %s: %s", event_id, account_id, choice["source"])
        return
    orchestration_input: AccountInput = {
        "request": {"accountId": account_id, "keyUri": choice["keyUri"]},
        "config": orchestration_config(),
    }
    # Named after the event: a redelivery of this event claims the same instance instead of starting another.
    instance_id = account_instance_id(account_id, short_digest(event_id))
    claim = await claim_account(client, orchestration_input, instance_id)
    if not claim["started"]:
        logger.info("Event %s: %s is already being handled by %s", event_id, account_id, claim["instanceId"])
        return
    logger.info("Event %s: enrolled %s as %s with key from %s", event_id, account_id, instance_id, choice["source"])
