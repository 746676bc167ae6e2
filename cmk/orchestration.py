"""What the per-account orchestration carries: its configuration snapshot, instance id, status and output shapes.

Orchestrators must be deterministic, so they never read app settings themselves: the starter takes a snapshot
of the settings (`orchestration_config`) into the orchestration's input, and replays see the same values even if
the settings change while an encryption runs for days.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, NotRequired, TypedDict

from cmk import settings
from cmk.auth import Actor
from cmk.findings import Finding
from cmk.inventory import GraphAnswers
from cmk.operations import OperationReading, OperationRef
from cmk.phases import Outcome as Outcome
from cmk.phases import Phase as Phase
from cmk.preflight import Plan
from cmk.requests import EnablementRequest
from cmk.resource_ids import parse_account_id, same_key_uri
from cmk.throughput import ThroughputRaiseReport

ACCOUNT_ORCHESTRATOR = "cmk_account"
ROLLOUT_ORCHESTRATOR = "cmk_rollout"
LANE_ORCHESTRATOR = "cmk_rollout_lane"
APPROVAL_EVENT = "approval"
# Raised by a rollout lane to the account orchestration it started ahead of its slot (input `hold`): the lane's
# slot is free, the key PATCH may go.
SLOT_EVENT = "slot"

# Separates an account's instance-id base from the part that makes each orchestration's id new. Account names
# are lowercase letters, digits and hyphens, so a dot never appears in a base.
INSTANCE_SUFFIX_SEPARATOR = "."


class OrchestrationConfig(TypedDict):
    pollIntervalSeconds: int
    pollMaxIntervalSeconds: int
    monitorDeadlineHours: float
    pollsPerGeneration: int
    approvalTimeoutHours: float
    activityMaxAttempts: int
    activityRetrySeconds: int
    busyWaitHours: float
    verifyWindowMinutes: float


def orchestration_config() -> OrchestrationConfig:
    return {
        "pollIntervalSeconds": settings.get_int("CMK_POLL_INTERVAL_SECONDS"),
        "pollMaxIntervalSeconds": settings.get_int("CMK_POLL_MAX_INTERVAL_SECONDS"),
        "monitorDeadlineHours": settings.get_float("CMK_MONITOR_DEADLINE_HOURS"),
        "pollsPerGeneration": settings.get_int("CMK_MONITOR_POLLS_PER_GENERATION"),
        "approvalTimeoutHours": settings.get_float("CMK_APPROVAL_TIMEOUT_HOURS"),
        "activityMaxAttempts": settings.get_int("CMK_ACTIVITY_MAX_ATTEMPTS"),
        "activityRetrySeconds": settings.get_int("CMK_ACTIVITY_RETRY_SECONDS"),
        "busyWaitHours": settings.get_float("CMK_BUSY_WAIT_HOURS"),
        "verifyWindowMinutes": settings.get_float("CMK_VERIFY_WINDOW_MINUTES"),
    }


def account_instance_base(account_id: str) -> str:
    """What every orchestration of one account has in its instance id: `cmk-<account name>-<digest>`.

    Readable and prefix-filterable, and unique through a digest of the full (case-folded) id, since account
    names repeat across subscriptions and resource groups. Each orchestration adds a suffix of its own
    (`account_instance_id`), so a start never reuses an id and never depends on the engine's duplicate handling.
    """
    account = parse_account_id(account_id)
    digest = hashlib.sha256(account.key.encode()).hexdigest()[:12]
    return f"cmk-{re.sub(r'[^a-z0-9-]', '-', account.name.lower())}-{digest}"


def account_instance_id(account_id: str, suffix: str) -> str:
    """A new orchestration's id for the account; `suffix` makes it unique (a random token, or a digest of the
    rollout or event that starts it, so a retried start names the same instance)."""
    cleaned = re.sub(r"[^A-Za-z0-9-]", "-", suffix)[:40]
    return f"{account_instance_base(account_id)}{INSTANCE_SUFFIX_SEPARATOR}{cleaned}"


def rollout_instance_id(account_id: str, rollout_id: str, claim: int) -> str:
    """The orchestration a rollout's lane starts for the account at its `claim`-th claim (0 first): never used
    before, and the same when the lane's step is replayed or retried."""
    return account_instance_id(account_id, short_digest(f"{rollout_id}/{claim}"))


def belongs_to_account(instance_id: str, base: str) -> bool:
    """Whether an instance id is one of the account's (the base alone is what earlier versions used)."""
    return instance_id == base or instance_id.startswith(base + INSTANCE_SUFFIX_SEPARATOR)


def short_digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def reattachment_from(output: Any, custom_status: Any, key_uri: str) -> OperationRef | None:
    """The encryption an earlier orchestration of the account left running, from its output or last status.

    An output with outcome Encrypting (the deadline) names its operation; a terminated orchestration has no
    output, but its last custom status in the encrypting phase names the status URL it was reading.
    """
    account_id: str | None = None
    status_url: str | None = None
    if isinstance(output, dict) and output.get("outcome") == "Encrypting":
        operation = output.get("operation") or {}
        account_id, status_url = output.get("accountId"), operation.get("statusUrl")
        if not same_key_uri(output.get("keyUri"), key_uri):
            return None
    elif (
        not isinstance(output, dict) and isinstance(custom_status, dict) and custom_status.get("phase") == "encrypting"
    ):
        # Terminated (the output is then the reason) or failed while it followed the encryption.
        account_id, status_url = custom_status.get("accountId"), custom_status.get("statusUrl")
    if not account_id:
        return None
    return {
        "accountId": str(account_id),
        "kind": "enableCmk",
        "statusUrl": str(status_url) if status_url else None,
        "locationUrl": None,
        "retryAfterSeconds": None,
        "expectedKeyUri": key_uri,
    }


class MonitorState(TypedDict):
    """Where the encryption monitor stands; carried across continue_as_new generations."""

    operation: OperationRef
    polls: int
    generation: int
    intervalSeconds: int
    deadline: str
    startedAt: str
    lastStatus: str | None
    lastReading: OperationReading | None
    readFailures: int
    # Times the enable step ran; a follow of the account's own state that ends without the key decides again.
    enableAttempts: int
    # Whether Azure is known to have accepted the key PATCH (False: its reply was lost, or another operation ran).
    certain: bool
    # Following an encryption an earlier orchestration started (no plan of our own).
    reattached: bool
    # The expected length of the encryption followed (None: no estimate); absent in states from before it existed.
    expectedSeconds: NotRequired[float | None]
    # The last read that saw the encryption still running (absent: none yet).
    lastRunningAt: NotRequired[str]


class Timings(TypedDict, total=False):
    startedAt: str
    preflightDoneAt: str
    identityReadyAt: str
    keyAccessReadyAt: str
    approvedAt: str
    slotGrantedAt: str  # a rollout's account prepared ahead of its slot: when the lane gave it the slot
    enableRequestedAt: str
    encryptionDoneAt: str
    finishedAt: str
    encryptionSeconds: float
    # From enableRequestedAt to the last read that saw the encryption running: the least it took. A rollout's lane
    # learns from it how far its estimates are off (cmk.fleet.estimate_scale).
    encryptionRunningSeconds: float


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
    # Who asked for this orchestration, and who approved or rejected it, each with the time (object id and name
    # of the Entra ID principal; "a function key holder" in functionKey mode).
    requestedBy: NotRequired[Actor | None]
    approvedBy: NotRequired[Actor | None]
    rejectedBy: NotRequired[Actor | None]
    # The throughput raise a request asked for: its plan, each change, and whether it was restored (cmk.throughput).
    throughputRaise: NotRequired[ThroughputRaiseReport]


class SlotHold(TypedDict):
    """A rollout lane started this orchestration ahead of the lane's slot: prepare, then wait for SLOT_EVENT before
    the key PATCH; while waiting, read the lane now and then, and end (nothing irreversible done) if it is gone."""

    laneId: str
    rolloutId: str


class HeldState(TypedDict):
    """Where a held orchestration stands; carried across continue_as_new while it waits for its slot."""

    findings: list[Finding]
    plan: Plan
    timings: Timings
    since: str
    checks: int
    checkSeconds: int


class AccountInput(TypedDict):
    request: EnablementRequest
    config: OrchestrationConfig
    # Present from the second generation on: the orchestration resumes in the encrypting phase.
    resume: NotRequired[ResumeState]
    # An encryption an earlier orchestration of this account left running: follow it, send no PATCH.
    reattach: NotRequired[OperationRef]
    # Started by a rollout lane ahead of its slot: wait for the slot before the key PATCH (never in a dry run).
    hold: NotRequired[SlotHold]
    # Started by this rollout: its accounts share the reads of their key's vault and key (cmk.inventory.SharedReads).
    rollout: NotRequired[str]
    # What the rollout's discovery asked Resource Graph about this account (cmk.inventory.GraphAnswers), so its
    # preflight need not ask.
    resourceGraph: NotRequired[GraphAnswers]
    # Present in later generations of a held orchestration: prepared, it resumes waiting for its slot.
    held: NotRequired[HeldState]
    # The rollout's estimate of this account's encryption (cmk.fleet), which paces the monitor's status reads.
    expectedSeconds: NotRequired[float]


class ResumeState(TypedDict):
    monitor: MonitorState
    findings: list[Finding]
    plan: Plan | None
    identity: str | None
    timings: Timings
    # What a throughput raise recorded and changed, carried to the restore after the encryption.
    throughputRaise: NotRequired[ThroughputRaiseReport]


class CustomStatus(TypedDict):
    phase: Phase
    accountId: str
    operationStatus: str | None
    nextPollAt: str | None
    polls: int
    percentComplete: float | None
    detail: str | None
    statusUrl: NotRequired[str | None]
