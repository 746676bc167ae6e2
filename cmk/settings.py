"""App settings: every environment variable the app reads, with its documented default.

This registry is the single way product code reads configuration, so that infra (which sets app settings) and
code (which reads them) can be checked against each other. Values are read at call time, not import time, so a
changed setting takes effect without re-importing the app.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Setting:
    name: str
    default: str
    description: str


_ALL = (
    Setting(
        "AZURE_CLOUD",
        "AzureCloud",
        "The Azure cloud: AzureCloud, AzureUSGovernment or AzureChinaCloud. Chooses the ARM endpoint (and so "
        "Resource Graph and metrics), the token audience of every management client, the Key Vault and Managed HSM "
        "domains accepted in key URIs, and the Cosmos DB data-plane domain. Infra sets it from environment().name.",
    ),
    Setting(
        "ARM_ENDPOINT",
        "",
        "Azure Resource Manager endpoint override. Empty: the cloud's (AZURE_CLOUD). Points at the local simulator "
        "when rehearsing.",
    ),
    Setting(
        "AZURE_CLIENT_ID",
        "",
        "Client id of the app's user-assigned managed identity (read by DefaultAzureCredential). "
        "Empty: the system-assigned identity.",
    ),
    Setting(
        "CMK_POLL_INTERVAL_SECONDS",
        "60",
        "Wait between two reads of an async operation when Azure sends no Retry-After (ARM RPC default: 60); the "
        "encryption monitor reads at it for the first 3 minutes, then by the expected end (cmk.polling).",
    ),
    Setting(
        "CMK_POLL_MAX_INTERVAL_SECONDS",
        "1800",
        "Ceiling of the monitor's back-off, which grows with the encryption's elapsed time: a 3-week encryption "
        "costs about 2 status reads an hour.",
    ),
    Setting(
        "CMK_MONITOR_DEADLINE_HOURS",
        "720",
        "How long the monitor follows one encryption (30 days, for multi-terabyte accounts). Past it the outcome is "
        "Encrypting: Azure goes on, and a new request for the account follows it again without a PATCH.",
    ),
    Setting(
        "CMK_BUSY_WAIT_HOURS",
        "24",
        "How long an account busy with another operation (provisioningState not Succeeded) is waited for before "
        "it is refused as ACCOUNT_BUSY.",
    ),
    Setting(
        "CMK_VERIFY_WINDOW_MINUTES",
        "60",
        "After Azure reports the encryption Succeeded, how long the account is re-read until "
        "customerManagedKeyStatus confirms access.",
    ),
    Setting(
        "CMK_MONITOR_POLLS_PER_GENERATION",
        "10",
        "Polls per orchestration generation before continue_as_new, which bounds replay history (and its cost).",
    ),
    Setting(
        "CMK_RBAC_PROPAGATION_WAIT_SECONDS",
        "600",
        "Wait after creating a Key Vault role assignment before enabling CMK (RBAC takes minutes to apply).",
    ),
    Setting(
        "CMK_APPROVAL_TIMEOUT_HOURS",
        "72",
        "How long an orchestration started with approval 'required' waits for approve/reject.",
    ),
    Setting(
        "CMK_DOCUMENT_ID_SCAN",
        "true",
        "Whether preflight queries the data plane for document ids over 990 bytes (needs data-plane read).",
    ),
    Setting(
        "CMK_DOCUMENT_ID_SCAN_RU_PER_SECOND",
        "100",
        "Request units per second the document-id scan may spend on the account (it paces itself on each "
        "response's x-ms-request-charge, at low priority).",
    ),
    Setting(
        "CMK_DOCUMENT_ID_SCAN_SECONDS",
        "120",
        "Time budget of the whole document-id scan; past it the scan stops and preflight warns "
        "DOCUMENT_ID_SCAN_UNAVAILABLE (Azure's own scan still guards the encryption).",
    ),
    Setting(
        "CMK_DOCUMENT_ID_SCAN_PAGE_SIZE",
        "100",
        "Items per page of the document-id queries (max_item_count); each 429 halves it for the queries that follow.",
    ),
    Setting(
        "CMK_KEY_VAULT_SUBSCRIPTIONS",
        "[]",
        "Optional JSON list of subscription ids that narrows where a key's vault is looked for: the account's "
        "subscription and these. Empty: every subscription the app can read (Resource Graph, by vault name).",
    ),
    Setting(
        "CMK_ACTIVITY_MAX_ATTEMPTS",
        "4",
        "Attempts of an activity that fails after the SDK's own retries (Durable RetryOptions).",
    ),
    Setting(
        "CMK_ACTIVITY_RETRY_SECONDS",
        "30",
        "First wait between activity attempts (Durable RetryOptions).",
    ),
    Setting(
        "CMK_KEY_POLICY",
        "",
        'JSON key policy for rollouts and enrolment: {"default", "bySubscription", "byRegion", "accountTag"}. '
        "Empty: every request must name its key.",
    ),
    Setting(
        "CMK_ENROLMENT_SCOPE",
        "[]",
        "JSON list of subscription or resource-group ids whose new accounts are enrolled from Event Grid. "
        "Empty: enrolment is off.",
    ),
    Setting(
        "CMK_ROLLOUT_MAX_CONCURRENCY",
        "20",
        "Accounts a rollout works on at once, unless the request says otherwise.",
    ),
    Setting(
        "CMK_ROLLOUT_MAX_CONCURRENCY_PER_SUBSCRIPTION",
        "10",
        "Accounts of one subscription a rollout works on at once (ARM write limits are per subscription).",
    ),
    Setting(
        "CMK_ARM_READS_PER_SECOND",
        "20",
        "ARM reads per second and subscription the app allows itself, all instances together (ARM refills 25 per "
        "principal and subscription; the rest is headroom for the identity's other callers). Paced per process by "
        "cmk.arm_pacing.",
    ),
    Setting(
        "CMK_ARM_WRITES_PER_SECOND",
        "8",
        "ARM writes (and deletes) per second and subscription the app allows itself, all instances together (ARM "
        "refills 10).",
    ),
    Setting(
        "CMK_ARM_PACING_INSTANCES",
        "1",
        "Instances that run activities at once: each paces itself to its share of CMK_ARM_READS_PER_SECOND and "
        "CMK_ARM_WRITES_PER_SECOND. ARM's x-ms-ratelimit-remaining-* answers and 429 Retry-After correct any "
        "instance that takes more.",
    ),
    Setting(
        "FUNCTIONS_WORKER_PROCESS_COUNT",
        "1",
        "The Functions host's Python worker processes per instance (at most 10). ARM pacing is per process, so each "
        "paces itself to 1 / (CMK_ARM_PACING_INSTANCES x this) of the app's ARM budget.",
    ),
    Setting(
        "CMK_APP_PRINCIPAL_ID",
        "",
        "Object id of the app's own identity: Event Grid events caused by it are ignored, so our PATCHes never loop.",
    ),
    Setting(
        "CMK_AUTH_MODE",
        "functionKey",
        "Who may call the HTTP API. entra: App Service Authentication (Microsoft Entra ID) in front, and the app "
        "enforces the app roles CMK.Reader, CMK.Operator and CMK.Approver of the caller's X-MS-CLIENT-PRINCIPAL "
        "(routes are anonymous to the Functions host: the platform's authentication is the gate). functionKey: "
        "the Functions host's function keys, which name nobody (every holder has every role). Infra sets entra "
        "whenever it configures an app registration, which it does by default. Read when the app is indexed.",
    ),
    Setting(
        "CMK_APPROVAL_SEPARATION",
        "true",
        "Separation of duties: the principal that approves or rejects an account must not be the one that "
        "requested it (entra mode; a function key names nobody).",
    ),
)

# Settings the Functions platform reads (host, Durable extension, Application Insights), not our code. Infra sets
# them; they are listed here so the settings contract knows every name infra may set.
PLATFORM_SETTINGS: dict[str, str] = {
    "AzureWebJobsStorage__accountName": "Storage account of the host and the Durable task hub (identity-based).",
    "AzureWebJobsStorage__credential": "'managedidentity': the host reaches storage with the app's identity.",
    "AzureWebJobsStorage__clientId": "Client id of the user-assigned identity used for storage.",
    "TASKHUB_NAME": "Durable task hub name (host.json durableTask.hubName), one per environment.",
    "APPLICATIONINSIGHTS_CONNECTION_STRING": "Where telemetry goes (not a secret: local auth is off).",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "'ClientId=<uami>;Authorization=AAD': Entra ID auth for telemetry.",
    "DURABLE_TASK_SCHEDULER_CONNECTION_STRING": "Durable Task Scheduler backend (large fleets), when selected.",
    # host.json overrides that switch the Durable backend to the Durable Task Scheduler without a second host.json.
    "AzureFunctionsJobHost__extensions__durableTask__storageProvider__type": "'azureManaged' with the DTS backend.",
    "AzureFunctionsJobHost__extensions__durableTask__storageProvider__connectionStringName": (
        "'DURABLE_TASK_SCHEDULER_CONNECTION_STRING' with the DTS backend."
    ),
}

SETTINGS: dict[str, Setting] = {setting.name: setting for setting in _ALL}


def get_str(name: str) -> str:
    setting = SETTINGS[name]
    value = os.environ.get(name)
    return setting.default if value is None or value.strip() == "" else value.strip()


def get_int(name: str) -> int:
    value = get_str(name)
    try:
        return int(value)
    except ValueError as error:
        raise ValueError(f"App setting {name}={value!r} must be an integer.") from error


def get_float(name: str) -> float:
    value = get_str(name)
    try:
        return float(value)
    except ValueError as error:
        raise ValueError(f"App setting {name}={value!r} must be a number.") from error


def get_bool(name: str) -> bool:
    value = get_str(name).lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"App setting {name}={value!r} must be true or false.")


def get_json(name: str) -> Any:
    value = get_str(name)
    try:
        return json.loads(value)
    except json.JSONDecodeError as error:
        raise ValueError(f"App setting {name} must be JSON: {error}") from error
