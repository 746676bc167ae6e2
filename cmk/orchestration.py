"""What the per-account orchestration carries: its configuration snapshot, instance id, status and output shapes.

Orchestrators must be deterministic, so they never read app settings themselves: the starter takes a snapshot
of the settings (`orchestration_config`) into the orchestration's input, and replays see the same values even if
the settings change while an encryption runs for days.
"""

from __future__ import annotations

import hashlib
import re
from typing import Literal, NotRequired, TypedDict

from cmk import settings
from cmk.findings import Finding
from cmk.operations import OperationReading, OperationRef
from cmk.preflight import Plan
from cmk.requests import EnablementRequest
from cmk.resource_ids import parse_account_id

ACCOUNT_ORCHESTRATOR = "cmk_account"
ROLLOUT_ORCHESTRATOR = "cmk_rollout"
LANE_ORCHESTRATOR = "cmk_rollout_lane"
APPROVAL_EVENT = "approval"

Outcome = Literal["Enabled", "AlreadyEnabled", "Refused", "Failed", "Planned"]
Phase = Literal["preflight", "identity", "keyAccess", "awaitingApproval", "enabling", "encrypting", "verifying", "done"]


class OrchestrationConfig(TypedDict):
    pollIntervalSeconds: int
    pollMaxIntervalSeconds: int
    monitorDeadlineHours: float
    pollsPerGeneration: int
    approvalTimeoutHours: float
    activityMaxAttempts: int
    activityRetrySeconds: int


def orchestration_config() -> OrchestrationConfig:
    return {
        "pollIntervalSeconds": settings.get_int("CMK_POLL_INTERVAL_SECONDS"),
        "pollMaxIntervalSeconds": settings.get_int("CMK_POLL_MAX_INTERVAL_SECONDS"),
        "monitorDeadlineHours": settings.get_float("CMK_MONITOR_DEADLINE_HOURS"),
        "pollsPerGeneration": settings.get_int("CMK_MONITOR_POLLS_PER_GENERATION"),
        "approvalTimeoutHours": settings.get_float("CMK_APPROVAL_TIMEOUT_HOURS"),
        "activityMaxAttempts": settings.get_int("CMK_ACTIVITY_MAX_ATTEMPTS"),
        "activityRetrySeconds": settings.get_int("CMK_ACTIVITY_RETRY_SECONDS"),
    }


def account_instance_id(account_id: str) -> str:
    """One orchestration per account: the instance id derives from the (case-folded) account id.

    Readable and prefix-filterable (`cmk-<account name>-`), and unique through a digest of the full id, since
    account names repeat across subscriptions only in theory but resource groups make ids differ in case only.
    """
    account = parse_account_id(account_id)
    digest = hashlib.sha256(account.key.encode()).hexdigest()[:12]
    return f"cmk-{re.sub(r'[^a-z0-9-]', '-', account.name.lower())}-{digest}"


class MonitorState(TypedDict):
    """Where the encryption monitor stands; carried across continue_as_new generations."""

    operation: OperationRef
    polls: int
    generation: int
    intervalSeconds: int
    deadline: str
    lastStatus: str | None
    lastReading: OperationReading | None
    readFailures: int


class Timings(TypedDict, total=False):
    startedAt: str
    preflightDoneAt: str
    identityReadyAt: str
    keyAccessReadyAt: str
    approvedAt: str
    enableRequestedAt: str
    encryptionDoneAt: str
    finishedAt: str
    encryptionSeconds: float


class OperationSummary(TypedDict):
    statusUrl: str | None
    status: str | None
    polls: int
    error: NotRequired[dict[str, str] | None]


class AccountOutput(TypedDict):
    accountId: str
    outcome: Outcome
    reason: str
    findings: list[Finding]
    keyUri: str
    identity: str | None
    operation: OperationSummary | None
    timings: Timings
    plan: NotRequired[Plan | None]


class AccountInput(TypedDict):
    request: EnablementRequest
    config: OrchestrationConfig
    # Present from the second generation on: the orchestration resumes in the encrypting phase.
    resume: NotRequired[ResumeState]


class ResumeState(TypedDict):
    monitor: MonitorState
    findings: list[Finding]
    plan: Plan
    identity: str | None
    timings: Timings


class CustomStatus(TypedDict):
    phase: Phase
    accountId: str
    operationStatus: str | None
    nextPollAt: str | None
    polls: int
    percentComplete: float | None
    detail: str | None
