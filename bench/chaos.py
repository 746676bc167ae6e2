"""`python -m bench.chaos [--accounts N] [--kills K] [--seed S] [--out bench/chaos.json]`: a fleet rollout driven
through the app's HTTP API on the local stack while Azure misbehaves and the whole stack is killed, then the
invariants that must hold whatever happened, measured from the simulator's own logs and the rollout's report.

The stack is `python -m sandbox serve --state DIR` in a process group of its own, on ports picked once: SIGKILL of
the group at seeded moments, then a restart on the same state directory and ports. Faults come from the
simulator's fault rules (sandbox/worlds/README.md, "Faults"), by a schedule drawn from the seed: 500, 503 and
connection resets on every route class (Cosmos DB, Key Vault, authorization, managed identities, Resource Graph,
metrics, the operation status URL, the Cosmos data plane, the identity endpoint), `statusAfterApply` and
`resetAfterApply` on every write the app sends (the reply lost after Azure acted), 429 storms on reads and on writes;
and Event Grid deliveries duplicated and delayed out of order (`simulator.eventDelivery`) while an administrator's
writes nominate accounts for enrolment.

Invariants (each must be 0; the run exits 1 otherwise): accounts lost (no outcome), wrong outcomes (against the
world's expectations, and against what Azure holds), duplicate key PATCHes (applied key writes beyond one per
account), cap violations (concurrent key operations above maxConcurrency or maxConcurrencyPerSubscription, from the
operation log), orchestrations stuck Running at the end, kills the app did not recover from.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from sandbox.azure import builders as b
from sandbox.azure import mint_token
from sandbox.azure.ids import JsonDict, id_key
from sandbox.azure.rbac import OWNER
from sandbox.azure.testing import (
    IDENTITY_ENV,
    SYSTEM,
    TENANT,
    key_patches,
    peak_concurrent_key_operations,
)

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = Path(__file__).with_name("chaos.json")
SUBSCRIPTIONS = [
    "c0a05001-1111-4a2b-8c3d-4e5f6a7b8c9d",
    "c0a05002-2222-4b3c-9d4e-5f6a7b8c9d0e",
    "c0a05003-3333-4c4d-8e5f-6a7b8c9d0e1f",
]
FLEET_GROUP = "rg-chaos-fleet"
ENROLMENT_GROUP = "rg-chaos-enrol"
KEYS_GROUP = "rg-chaos-keys"
TAG = "cmk-key-uri"
ARM_API = "2026-03-15"
# Someone other than the app who writes accounts in the enrolment scope (Owner of the first subscription).
ADMIN = "ad000000-0c4a-4e55-9a0d-000000000001"
FINAL = {"Completed", "Failed", "Terminated"}
ACCOUNT = "Microsoft.DocumentDB/databaseAccounts"


# ---------------------------------------------------------------------------------------------------- the world


@dataclass(frozen=True)
class Profile:
    """A kind of account, what the world predicts for it, and its share of the fleet."""

    prefix: str
    outcome: str
    share: float
    finding: str | None = None
    reason_contains: str | None = None


PROFILES = {
    "rbac": Profile("rbac", "Enabled", 0.08),  # key in an RBAC vault: a role assignment, then propagation
    "pitr": Profile("pitr", "Enabled", 0.08),  # continuous backup, its user-assigned identity already default
    "has-cmk": Profile("has-cmk", "AlreadyEnabled", 0.05, finding="ALREADY_ENABLED"),
    "cassandra": Profile("cassandra", "Refused", 0.04, finding="CASSANDRA_NOT_SUPPORTED"),
    "vector": Profile("vector", "Refused", 0.03, finding="VECTOR_SEARCH_NOT_SUPPORTED"),
    "long-id": Profile("long-id", "Refused", 0.04, finding="DOCUMENT_ID_TOO_LONG"),
    "no-purge": Profile("no-purge", "Refused", 0.03, finding="VAULT_PURGE_PROTECTION_DISABLED"),
    # Its firewall keeps the preflight scan out: only Azure's own scan finds the long id, and the encryption fails.
    "locked": Profile("locked", "Failed", 0.03, reason_contains="Unexpected error on document scan for CMK Migration"),
}
READY = Profile("ready", "Enabled", 0.0)


@dataclass
class ChaosWorld:
    world: JsonDict
    # account id -> {"outcome", "keyUri", "finding"?, "reasonContains"?, "profile"}
    expectations: dict[str, JsonDict]
    rollout_accounts: list[str]
    enrolment_accounts: list[str]
    key_uri: str


def build_world(accounts: int, seed: int, sizes_gib: tuple[float, ...]) -> ChaosWorld:
    """`accounts` accounts for the rollout (every profile at least once, the rest ready) across three
    subscriptions, and one account in twenty (at least one) for Event Grid enrolment; their expectations."""
    rng = random.Random(seed)
    vault = b.key_vault(SUBSCRIPTIONS[0], KEYS_GROUP, "kv-chaos", tenant_id=TENANT)
    rbac_vault = b.key_vault(SUBSCRIPTIONS[0], KEYS_GROUP, "kv-chaos-rbac", tenant_id=TENANT, rbac=True)
    loose_vault = b.key_vault(SUBSCRIPTIONS[0], KEYS_GROUP, "kv-chaos-loose", tenant_id=TENANT, purge_protection=False)
    vaults = {"ap": vault, "rbac": rbac_vault, "loose": loose_vault}
    keys = {name: b.vault_key(v, "cosmos-cmk") for name, v in vaults.items()}
    key_uri = {name: b.versionless_key_uri(key) for name, key in keys.items()}
    uami = b.user_assigned_identity(SUBSCRIPTIONS[0], KEYS_GROUP, "id-chaos-cmk", tenant_id=TENANT)
    counts = {name: max(1, round(accounts * profile.share)) for name, profile in PROFILES.items()}
    ready = accounts - sum(counts.values())
    if ready < 1:
        raise ValueError(f"at least {sum(counts.values()) + 1} accounts: one of each kind and one ready")
    kinds = [READY] * ready + [PROFILES[name] for name, count in counts.items() for _ in range(count)]
    rng.shuffle(kinds)
    bodies: list[JsonDict] = []
    expectations: dict[str, JsonDict] = {}
    data: dict[str, JsonDict] = {}
    for index, profile in enumerate(kinds):
        subscription = SUBSCRIPTIONS[index % len(SUBSCRIPTIONS)]
        name = f"{profile.prefix}-{index:03d}"
        options: dict[str, Any] = {}
        expected_key = key_uri["ap"]
        if profile.prefix == "rbac":
            options["tags"] = {TAG: key_uri["rbac"]}
            expected_key = key_uri["rbac"]
        elif profile.prefix == "no-purge":
            options["tags"] = {TAG: key_uri["loose"]}
            expected_key = key_uri["loose"]
        elif profile.prefix == "pitr":
            options.update(
                backup="Continuous",
                identity=b.account_identity(user_assigned=[uami]),
                default_identity=f"UserAssignedIdentity={uami['id']}",
            )
        elif profile.prefix == "has-cmk":
            options.update(
                identity=b.account_identity(system_principal_id=b.stable_guid("has-cmk", name), tenant_id=TENANT),
                default_identity="SystemAssignedIdentity",
                key_vault_key_uri=key_uri["ap"],
            )
        elif profile.prefix == "cassandra":
            options["capabilities"] = ["EnableCassandra"]
        elif profile.prefix == "vector":
            options["capabilities"] = ["EnableNoSQLVectorSearch"]
        elif profile.prefix == "locked":
            options["public_network_access"] = "Disabled"
        body = b.cosmos_account(subscription, FLEET_GROUP, name, **options)
        bodies.append(body)
        account_id = str(body["id"])
        data[account_id] = {"dataSizeGiB": rng.choice(sizes_gib), "spareRuPerSecond": 1000}
        if profile.prefix in ("long-id", "locked"):
            data[account_id]["largestDocumentIdBytes"] = 1000
        expectation: JsonDict = {"outcome": profile.outcome, "keyUri": expected_key, "profile": profile.prefix}
        if profile.finding:
            expectation["finding"] = profile.finding
        if profile.reason_contains:
            expectation["reasonContains"] = profile.reason_contains
        expectations[account_id] = expectation
    enrolment: list[str] = []
    for index in range(max(1, accounts // 20)):
        body = b.cosmos_account(SUBSCRIPTIONS[0], ENROLMENT_GROUP, f"enrol-{index:03d}")
        bodies.append(body)
        account_id = str(body["id"])
        enrolment.append(account_id)
        data[account_id] = {"dataSizeGiB": rng.choice(sizes_gib), "spareRuPerSecond": 1000}
        expectations[account_id] = {"outcome": "Enabled", "keyUri": key_uri["ap"], "profile": "enrolment"}
    resources = [vault, rbac_vault, loose_vault, *keys.values(), uami, *bodies]
    resources += [b.sql_role_assignment(body, SYSTEM) for body in bodies]
    resources.append(b.role_assignment(f"/subscriptions/{SUBSCRIPTIONS[0]}", OWNER, ADMIN))
    simulator = {
        "randomSeed": seed,
        # Every event delivered twice half the time, each copy up to five simulated minutes late: out of order.
        "eventDelivery": {"duplicateProbability": 0.5, "maxDelaySeconds": 300},
    }
    world = b.world(resources, tenant_id=TENANT, account_data=data, simulator=simulator)
    world["expectations"] = {
        account_id: {key: value for key, value in expectation.items() if key != "profile"}
        for account_id, expectation in expectations.items()
    }
    rollout_accounts = [account_id for account_id in expectations if account_id not in enrolment]
    return ChaosWorld(world, expectations, rollout_accounts, enrolment, key_uri["ap"])


# ---------------------------------------------------------------------------------------------------- faults

# Route classes: regexes searched in path+query, each matching only its own class (a role assignment on a vault is
# authorization, not Key Vault: a nested provider belongs to the last one).
ROUTE_CLASSES = {
    "cosmosDb": r"/providers/Microsoft\.DocumentDB/databaseAccounts/[^/?]+(\?|$)",
    "keyVault": r"/providers/Microsoft\.KeyVault/vaults(?!.*/providers/)",
    "authorization": r"/providers/Microsoft\.Authorization/",
    "managedIdentity": r"/providers/Microsoft\.ManagedIdentity/(?!.*/providers/)",
    "resourceGraph": r"^/providers/Microsoft\.ResourceGraph/",
    "metrics": r"/providers/Microsoft\.Insights/metrics",
    "statusUrl": r"/operationsStatus/",
    "dataPlane": r"^/cosmos/",
    "identityEndpoint": r"^/msi/token",
}
# Every write the app sends, for the faults that strike after Azure acted.
WRITES = {
    "keyPatch": ("PATCH", ROUTE_CLASSES["cosmosDb"], "keyVaultKeyUri"),
    "identityPatch": ("PATCH", ROUTE_CLASSES["cosmosDb"], '"identity"'),
    "defaultIdentityPatch": ("PATCH", ROUTE_CLASSES["cosmosDb"], "defaultIdentity"),
    "accessPolicyPut": ("PUT", r"/providers/Microsoft\.KeyVault/vaults/[^/]+/accessPolicies/", None),
    "roleAssignmentPut": ("PUT", r"/providers/Microsoft\.Authorization/roleAssignments/", None),
}
ARM = r"^/(subscriptions|providers)/"


def background_faults(rng: random.Random, accounts: int) -> list[JsonDict]:
    """Rules active from the start (they persist in the state directory across kills): on every route class a 500,
    a 503 and a reset, and on every write both after-apply kinds. Each kind strikes the first request of its class
    for sure (so even a small run meets every kind), then a seeded share of the requests after it until its count is
    spent. Ids say the class and the kind, so the request log tells what was injected."""
    budget = max(2, accounts // 12)
    kinds: list[tuple[str, JsonDict]] = []
    for name, path in ROUTE_CLASSES.items():
        for kind, status in (("status", 500), ("status", 503), ("reset", None)):
            rule: JsonDict = {"path": path, "kind": kind}
            if status is not None:
                rule["status"] = status
            kinds.append((f"chaos/{name}/{kind if status is None else status}", rule))
    for name, (method, path, body) in WRITES.items():
        for kind in ("statusAfterApply", "resetAfterApply"):
            rule = {"method": method, "path": path, "kind": kind}
            if kind == "statusAfterApply":
                rule["status"] = rng.choice((500, 503, 504))
            if body is not None:
                rule["bodyContains"] = body
            kinds.append((f"chaos/{name}/{kind}", rule))
    first = [{**rule, "id": f"{rule_id}/first", "count": 1} for rule_id, rule in kinds]
    later = [
        {**rule, "id": rule_id, "probability": round(rng.uniform(0.05, 0.25), 3), "count": budget}
        for rule_id, rule in kinds
    ]
    return first + later


def storm(rng: random.Random, index: int, accounts: int) -> list[JsonDict]:
    """A 429 storm: ARM throttles most reads or most writes (PATCH and PUT) for a while, with Retry-After."""
    retry_after = rng.randint(1, 10)
    count = max(10, accounts // 2)
    message = "Number of requests for the subscription exceeded the limit (sandbox chaos storm)."
    common = {"path": ARM, "kind": "status", "status": 429, "code": "SubscriptionRequestsThrottled"}
    common.update(message=message, retryAfter=retry_after, probability=0.8, count=count)
    if index % 2 == 0:
        return [{**common, "id": f"chaos/storm{index}-reads/429", "method": "GET"}]
    return [
        {**common, "id": f"chaos/storm{index}-writes/429/{method}", "method": method} for method in ("PATCH", "PUT")
    ]


# ---------------------------------------------------------------------------------------------------- the stack


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Stack:
    """`python -m sandbox serve` in a process group of its own, killed whole and started again on the same state
    directory and ports."""

    def __init__(self, world_file: Path, settings_file: Path, state: Path, time_scale: float) -> None:
        self._command = [
            sys.executable,
            "-m",
            "sandbox",
            "serve",
            "--world",
            str(world_file),
            "--settings",
            str(settings_file),
            "--state",
            str(state),
            "--port",
            str(free_port()),
            "--azure-port",
            str(free_port()),
            "--time-scale",
            f"{time_scale:g}",
        ]
        self._state = state
        self._starts = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.host = ""
        self.azure = ""
        self.ca = ""

    def start(self, timeout: float = 90) -> float:
        """Start and wait for READY; returns the real seconds it took."""
        began = time.monotonic()
        self._starts += 1
        output = self._state.parent / f"serve-{self._starts}.out"
        environment = {key: value for key, value in os.environ.items() if key not in IDENTITY_ENV}
        with output.open("wb") as stdout, (self._state.parent / "serve.log").open("ab") as stderr:
            self.process = subprocess.Popen(
                self._command, cwd=REPO, env=environment, stdout=stdout, stderr=stderr, start_new_session=True
            )
        while time.monotonic() - began < timeout:
            lines = output.read_text(encoding="utf-8", errors="replace").splitlines()
            ready = [line for line in lines if line.startswith("READY ")]
            ca = [line for line in lines if line.startswith("CA=")]
            if ready and ca:
                fields = dict(part.split("=", 1) for part in ready[0].split()[1:])
                self.host, self.azure, self.ca = fields["host"], fields["azure"], ca[0].removeprefix("CA=")
                return time.monotonic() - began
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"serve did not become ready (see {self._state.parent / 'serve.log'})")

    def kill(self) -> None:
        """SIGKILL to the whole process group: nothing gets to flush or say goodbye."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


class Client:
    """Plain HTTP to the app and to the simulator's control routes; None while the stack is down."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.session = requests.Session()

    def app(self, method: str, path: str, body: Any = None, timeout: float = 30) -> requests.Response | None:
        try:
            return self.session.request(method, f"{self.stack.host}/api/{path}", json=body, timeout=timeout)
        except requests.RequestException:
            return None

    def sandbox(self, method: str, path: str, body: Any = None, timeout: float = 60) -> Any:
        try:
            response = self.session.request(
                method, f"{self.stack.azure}/_sandbox/{path}", json=body, timeout=timeout, verify=self.stack.ca
            )
        except requests.RequestException:
            return None
        return response.json() if response.status_code == 200 else None

    def arm_as_admin(self, method: str, path: str, body: Any) -> int | None:
        """A write by someone other than the app, as any ARM client sends it; the status, None without a reply."""
        token = mint_token(ADMIN, tenant_id=TENANT)
        try:
            response = self.session.request(
                method,
                f"{self.stack.azure}{path}?api-version={ARM_API}",
                json=body,
                headers={"Authorization": f"Bearer {token}"},
                timeout=30,
                verify=self.stack.ca,
            )
        except requests.RequestException:
            return None
        return response.status_code


@dataclass
class RemoteLogs:
    """The simulator's request and operation logs, read once over /_sandbox (sandbox.azure.testing.SimulatorLogs)."""

    entries: list[JsonDict]
    operation_log: list[JsonDict]

    def requests(self, since: int = 0) -> list[JsonDict]:
        return [entry for entry in self.entries if int(entry["sequence"]) > since]

    def operations(self) -> list[JsonDict]:
        return self.operation_log


# ---------------------------------------------------------------------------------------------------- the run


@dataclass
class Kill:
    threshold: float
    delay: float
    progress: float = 0.0
    at: float = 0.0
    restart_seconds: float = 0.0
    recovery_seconds: float | None = None

    def json(self) -> JsonDict:
        return {
            "atSeconds": round(self.at, 1),
            "rolloutProgress": round(self.progress, 2),
            "restartSeconds": round(self.restart_seconds, 2),
            "recoverySeconds": None if self.recovery_seconds is None else round(self.recovery_seconds, 2),
        }


@dataclass
class Storm:
    threshold: float
    seconds: float
    rules: list[JsonDict]
    started: bool = False
    stopped: bool = False
    started_at: float = 0.0


@dataclass
class Nomination:
    """An administrator's write to an enrolment account: its ResourceWriteSuccess nominates the account."""

    account_id: str
    at: float
    status: int | None = None
    attempts: int = 0


@dataclass
class Run:
    arguments: argparse.Namespace
    world: ChaosWorld
    client: Client
    kills: list[Kill]
    storms: list[Storm]
    nominations: list[Nomination]
    rollout_id: str = ""
    began: float = field(default_factory=time.monotonic)
    notes: list[str] = field(default_factory=list)

    def elapsed(self) -> float:
        return time.monotonic() - self.began

    def say(self, message: str) -> None:
        if not self.arguments.quiet:
            print(f"[{self.elapsed():6.1f} s] {message}", file=sys.stderr, flush=True)


def plan(arguments: argparse.Namespace, world: ChaosWorld) -> tuple[list[Kill], list[Storm], list[Nomination]]:
    """The seeded schedule. Kills and storms are placed on the rollout's progress (its share of accounts with an
    outcome), each kill in its own slice of [0, 0.75) so all of them land before the end, then a seeded delay of up
    to 2 s; nominations at seeded times in the first 20 s, twice per account."""
    rng = random.Random(arguments.seed * 7919 + 1)
    count = arguments.kills
    kills = [Kill(rng.uniform(i, i + 1) * 0.75 / max(1, count), rng.uniform(0, 2.0)) for i in range(count)]
    storms = [
        Storm(rng.uniform(0, 0.8), rng.uniform(2, 6), storm(rng, index, arguments.accounts))
        for index in range(max(2, count))
    ]
    nominations = [
        Nomination(account_id, rng.uniform(0, 20)) for account_id in world.enrolment_accounts for _ in range(2)
    ]
    return kills, sorted(storms, key=lambda s: s.threshold), sorted(nominations, key=lambda n: n.at)


def start_rollout(run: Run) -> None:
    body = {
        "scope": {"subscriptions": SUBSCRIPTIONS, "resourceGroups": [FLEET_GROUP]},
        "keyPolicy": {"default": run.world.key_uri, "accountTag": TAG},
        "maxConcurrency": run.arguments.max_concurrency,
        "maxConcurrencyPerSubscription": run.arguments.max_concurrency_per_subscription,
    }
    for _ in range(60):
        response = run.client.app("POST", "cmk/rollouts", body)
        if response is not None and response.status_code == 202:
            run.rollout_id = response.json()["id"]
            return
        time.sleep(0.5)
    raise RuntimeError("the rollout could not be started")


def rollout_progress(run: Run) -> tuple[str | None, float]:
    response = run.client.app("GET", f"cmk/rollouts/{run.rollout_id}", timeout=10)
    if response is None or response.status_code != 200:
        return None, 0.0
    status = response.json()
    custom = status.get("customStatus") or {}
    total = int(custom.get("total") or 0)
    done = float(custom.get("done") or 0)
    return str(status.get("runtimeStatus")), (done / total if total else 0.0)


def last_request_sequence(run: Run) -> int | None:
    served = run.client.sandbox("GET", f"requests?since={10**12}")
    return None if served is None else int(served["last"])


def kill_and_restart(run: Run, kill: Kill, progress: float) -> None:
    kill.progress = progress
    kill.at = run.elapsed()
    run.client.stack.kill()
    kill.restart_seconds = run.client.stack.start()
    # Recovered: the app's first request that Azure answered with success after the restart.
    since = last_request_sequence(run) or 0
    deadline = time.monotonic() + 60
    began = time.monotonic()
    while time.monotonic() < deadline:
        served = run.client.sandbox("GET", f"requests?since={since}")
        if served is not None:
            for entry in served["value"]:
                if entry.get("principal") == SYSTEM and 200 <= int(entry["status"]) < 300:
                    kill.recovery_seconds = time.monotonic() - began
                    return
            since = int(served["last"])
        time.sleep(0.05)


def nominate(run: Run, nomination: Nomination) -> bool:
    """True once the write got an answer that ends the attempt (ARM accepted it, or an operation holds the
    account: the app's, since the nomination before this one worked)."""
    nomination.attempts += 1
    tags = {"chaos-touched": f"{nomination.at:.1f}"}
    status = run.client.arm_as_admin("PATCH", nomination.account_id, {"tags": tags})
    nomination.status = status
    return status in (200, 409, 412) or nomination.attempts >= 20


def tend_storms(run: Run, progress: float) -> None:
    """Start each storm at its point of the rollout, and end it after its seconds."""
    for storm_ in run.storms:
        if not storm_.started and progress >= storm_.threshold:
            if run.client.sandbox("POST", "faults", storm_.rules) is not None:
                storm_.started, storm_.started_at = True, run.elapsed()
                target = "reads" if storm_.rules[0]["method"] == "GET" else "writes"
                run.say(f"429 storm on {target} for {storm_.seconds:.1f} s")
        elif storm_.started and not storm_.stopped and run.elapsed() - storm_.started_at >= storm_.seconds:
            storm_.stopped = all(run.client.sandbox("DELETE", f"faults?id={rule['id']}") for rule in storm_.rules)


def drive(run: Run) -> None:
    """Until the rollout and every enrolment have ended: storms, nominations and kills as the schedule says."""
    pending_kills = list(run.kills)
    pending_nominations = list(run.nominations)
    shown = -1.0
    status: str | None = None
    while run.elapsed() < run.arguments.timeout:
        status, progress = rollout_progress(run)
        if progress >= shown + 0.1 or (status in FINAL and shown < 1):
            shown = progress if status not in FINAL else 1.0
            run.say(f"rollout {status}, {progress:.0%} of accounts have an outcome")
        tend_storms(run, progress)
        while (
            pending_nominations and pending_nominations[0].at <= run.elapsed() and nominate(run, pending_nominations[0])
        ):
            pending_nominations.pop(0)
        if pending_kills and status not in FINAL and progress >= pending_kills[0].threshold:
            kill = pending_kills.pop(0)
            time.sleep(kill.delay)
            kill_and_restart(run, kill, progress)
            run.say(f"SIGKILL at rollout progress {progress:.2f}: {json.dumps(kill.json())}")
            time.sleep(1.0)  # the next kill, however far the rollout got meanwhile, no sooner than this
            continue
        if status in FINAL and not pending_nominations and enrolments_done(run):
            return
        time.sleep(0.2)
    run.notes.append(f"timed out after {run.arguments.timeout:g} s with the rollout {status}")


def account_instances(run: Run, account_id: str) -> list[JsonDict]:
    """Every orchestration of the account (its instance ids start with cmk-<name>-)."""
    name = account_id.rsplit("/", 1)[-1]
    return list_instances(run, f"prefix=cmk-{name}-")


def list_instances(run: Run, query: str) -> list[JsonDict]:
    found: list[JsonDict] = []
    token: str | None = None
    while True:
        path = f"cmk/instances?{query}&top=500" + (f"&continuationToken={token}" if token else "")
        response = run.client.app("GET", path, timeout=60)
        if response is None or response.status_code != 200:
            raise RuntimeError(f"GET {path}: {None if response is None else response.status_code}")
        page = response.json()
        found += page["instances"]
        token = page.get("continuationToken")
        if not token:
            return found


def enrolments_done(run: Run) -> bool:
    for account_id in run.world.enrolment_accounts:
        try:
            instances = account_instances(run, account_id)
        except RuntimeError:
            return False
        if not instances or any(i["runtimeStatus"] not in FINAL for i in instances):
            return False
    return True


# ---------------------------------------------------------------------------------------------------- invariants


def outcome_problem(expectation: JsonDict, output: JsonDict | None) -> str | None:
    """Why an account's reported outcome is not the one its world predicts (None when it is)."""
    if not output or not output.get("outcome"):
        return "no outcome"
    if output["outcome"] != expectation["outcome"]:
        return f"{output['outcome']} ({str(output.get('reason') or '')[:160]}), expected {expectation['outcome']}"
    finding = expectation.get("finding")
    # A report row lists finding codes; an orchestration's output, findings with their codes.
    codes = {f if isinstance(f, str) else f.get("code") for f in output.get("findings") or []}
    if finding and finding not in codes:
        return f"{output['outcome']} without the finding {finding} (findings {sorted(map(str, codes))})"
    wanted = expectation.get("reasonContains")
    if wanted and wanted not in str(output.get("reason") or ""):
        return f"{output['outcome']} for another reason: {str(output.get('reason') or '')[:160]}"
    return None


def truth_problem(expectation: JsonDict, resource: JsonDict | None) -> str | None:
    """Why what Azure holds disagrees with the expected outcome (a key where none belongs, or the wrong key)."""
    properties = (resource or {}).get("properties") or {}
    key = str(properties.get("keyVaultKeyUri") or "").replace(":443/", "/").rstrip("/").lower()
    wanted = str(expectation["keyUri"]).rstrip("/").lower()
    if expectation["outcome"] in ("Enabled", "AlreadyEnabled"):
        return None if key == wanted else f"Azure holds key {key or 'none'}, expected {wanted}"
    return None if not key else f"Azure holds key {key} though the outcome is {expectation['outcome']}"


def key_patch_counts(logs: RemoteLogs, account_id: str, had_key: bool) -> tuple[int, int, int]:
    """(applied, duplicates, re-sent after a failed encryption) among the account's key PATCHes.

    A PATCH counts once it reached the resource provider (a fault that struck before it changed nothing). It is a
    duplicate when the key was already there (the world's, or an earlier PATCH's encryption that Succeeded) or an
    encryption an earlier PATCH started was still running: what a PATCH sent blind after a lost reply does (Azure
    refuses it with 409 while encrypting, or re-applies the key). A PATCH after an earlier encryption ended Failed
    is a new attempt, not a duplicate: it is counted apart."""
    wanted = id_key(account_id)
    encryptions = sorted(
        (
            o
            for o in logs.operation_log
            if id_key(str(o["accountId"])) == wanted
            and "keyVaultKeyUri" in (((o.get("changes") or {}).get("properties")) or {})
        ),
        key=lambda o: str(o["startTime"]),
    )
    applied = duplicates = after_failure = 0
    for entry in key_patches(logs, account_id):
        if entry.get("fault") and "appliedStatus" not in entry:
            continue
        moment = str(entry["time"])
        earlier = encryptions[:applied]
        live = [o for o in earlier if o["status"] == "Succeeded" or not o["endTime"] or str(o["endTime"]) > moment]
        if had_key or live:
            duplicates += 1
        elif earlier:
            after_failure += 1
        status = int(entry["appliedStatus"] if "appliedStatus" in entry else entry["status"])
        applied += 200 <= status < 300
    return applied, duplicates, after_failure


def cap_peaks(logs: RemoteLogs, accounts: list[str]) -> tuple[int, dict[str, int]]:
    """The most key operations of the rollout's accounts that ran at once, overall and per subscription."""
    wanted = {id_key(account) for account in accounts}
    mine = [o for o in logs.operation_log if id_key(str(o["accountId"])) in wanted]
    per_subscription = {}
    for subscription in SUBSCRIPTIONS:
        subset = [o for o in mine if str(o["accountId"]).lower().startswith(f"/subscriptions/{subscription}/")]
        per_subscription[subscription] = peak_concurrent_key_operations(RemoteLogs([], subset))
    return peak_concurrent_key_operations(RemoteLogs([], mine)), per_subscription


def fault_counts(logs: RemoteLogs) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    by_kind: Counter[str] = Counter()
    by_class: dict[str, Counter[str]] = defaultdict(Counter)
    for entry in logs.entries:
        rule = str(entry.get("fault") or "")
        if not rule.startswith("chaos/"):
            continue
        _, route_class, kind = rule.split("/")[:3]
        kind = {"500": "status500", "503": "status503", "429": "status429"}.get(kind, kind)
        route_class = "429 storms" if route_class.startswith("storm") else route_class
        by_kind[kind] += 1
        by_class[route_class][kind] += 1
    return dict(sorted(by_kind.items())), {name: dict(sorted(c.items())) for name, c in sorted(by_class.items())}


def event_grid_counts(events: list[JsonDict]) -> JsonDict:
    """Deliveries that reached the app: extra copies of an event, and events delivered after a later one."""
    delivered = [e for e in events if e.get("outcome") == "delivered"]
    copies = Counter(str(e["eventId"]) for e in delivered)
    times = {}
    for entry in events:
        payload = entry.get("event")
        first = payload[0] if isinstance(payload, list) and payload else payload
        if isinstance(first, dict):
            times[str(entry["eventId"])] = str(first.get("eventTime") or first.get("time") or "")
    latest = ""
    reordered = 0
    for entry in sorted(delivered, key=lambda e: int(e["sequence"])):
        moment = times.get(str(entry["eventId"]), "")
        if moment < latest:
            reordered += 1
        latest = max(latest, moment)
    return {
        "deliveries": len(delivered),
        "events": len(copies),
        "duplicates": sum(n - 1 for n in copies.values()),
        "reordered": reordered,
        "failedAttempts": sum(1 for e in events if e.get("outcome") != "delivered"),
    }


def measure(run: Run) -> JsonDict:
    client = run.client
    world = run.world
    problems: list[str] = list(run.notes)
    served = client.sandbox("GET", "requests?since=0", timeout=300) or {"value": []}
    operations = (client.sandbox("GET", "operations", timeout=300) or {"value": []})["value"]
    logs = RemoteLogs(served["value"], operations)
    stored = (client.sandbox("GET", "resources", timeout=300) or {"value": []})["value"]
    resources = {id_key(str(r["id"])): r for r in stored}
    outputs: dict[str, JsonDict | None] = {account_id: None for account_id in world.expectations}
    report = client.app("GET", f"cmk/rollouts/{run.rollout_id}/report?format=json", timeout=300)
    if report is not None and report.status_code == 200:
        for row in report.json()["accounts"]:
            for account_id in outputs:
                if id_key(account_id) == id_key(str(row["accountId"])):
                    outputs[account_id] = row
    else:
        problems.append(f"no rollout report: {None if report is None else report.text[:200]}")
    duplicate_enrolments = 0
    for account_id in world.enrolment_accounts:
        instances = account_instances(run, account_id)
        done = [i for i in instances if i["runtimeStatus"] == "Completed" and isinstance(i.get("output"), dict)]
        if done:
            outputs[account_id] = done[0]["output"]
        duplicate_enrolments += max(0, len(instances) - 1)
        if len(instances) > 1:
            problems.append(f"{account_id}: {len(instances)} orchestrations from its nominations")
    lost = wrong = duplicates = 0
    reported: Counter[str] = Counter()
    key_patch_totals: Counter[str] = Counter()
    for account_id, expectation in world.expectations.items():
        output = outputs[account_id]
        reported[str((output or {}).get("outcome") or "none")] += 1
        problem = outcome_problem(expectation, output)
        if problem == "no outcome":
            lost += 1
            problems.append(f"{account_id}: lost (no outcome)")
        elif problem is not None:
            wrong += 1
            problems.append(f"{account_id}: {problem}")
        else:
            truth = truth_problem(expectation, resources.get(id_key(account_id)))
            if truth is not None:
                wrong += 1
                problems.append(f"{account_id}: reported {output and output.get('outcome')}, but {truth}")
        had_key = expectation["profile"] == "has-cmk"
        applied, duplicated, retried = key_patch_counts(logs, account_id, had_key)
        key_patch_totals.update(applied=applied, duplicates=duplicated, afterFailedEncryption=retried)
        if duplicated:
            duplicates += duplicated
            problems.append(f"{account_id}: {duplicated} key PATCH(es) sent while its key was there or encrypting")
    peak, per_subscription = cap_peaks(logs, world.rollout_accounts)
    cap, cap_per_subscription = run.arguments.max_concurrency, run.arguments.max_concurrency_per_subscription
    cap_violations = max(0, peak - cap) + sum(max(0, p - cap_per_subscription) for p in per_subscription.values())
    if cap_violations:
        problems.append(f"key operations at once: {peak} (cap {cap}), per subscription {per_subscription}")
    stuck = list_instances(run, "runtimeStatus=Running,Pending")
    problems += [f"stuck {i['runtimeStatus']}: {i['instanceId']}" for i in stuck]
    unrecovered = sum(1 for kill in run.kills if kill.recovery_seconds is None)
    missing_kills = sum(1 for kill in run.kills if not kill.at)
    if missing_kills:
        problems.append(f"{missing_kills} of {len(run.kills)} kills did not happen before the rollout ended")
    by_kind, by_class = fault_counts(logs)
    recoveries = [kill.recovery_seconds for kill in run.kills if kill.recovery_seconds is not None]
    events = (client.sandbox("GET", "events?since=0", timeout=300) or {"value": []})["value"]
    key_patch_totals["sent"] = sum(len(key_patches(logs, a)) for a in world.expectations)
    return {
        "command": command(run.arguments),
        "seed": run.arguments.seed,
        "timeScale": run.arguments.time_scale,
        "accounts": {
            "rollout": len(world.rollout_accounts),
            "enrolment": len(world.enrolment_accounts),
            "byProfile": dict(sorted(Counter(e["profile"] for e in world.expectations.values()).items())),
        },
        "maxConcurrency": cap,
        "maxConcurrencyPerSubscription": cap_per_subscription,
        "outcomes": dict(sorted(reported.items())),
        "faults": {
            "byKind": by_kind,
            "byRouteClass": by_class,
            "total": sum(by_kind.values()),
            "eventGrid": event_grid_counts(events),
            "stormsStarted": sum(1 for s in run.storms if s.started),
            "nominations": len(run.nominations),
        },
        "kills": [kill.json() for kill in run.kills if kill.at],
        "recovery": {
            "maxSeconds": round(max(recoveries), 2) if recoveries else None,
            "medianSeconds": round(statistics.median(recoveries), 2) if recoveries else None,
            "restartMaxSeconds": round(max((k.restart_seconds for k in run.kills if k.at), default=0), 2),
        },
        "keyPatches": dict(key_patch_totals),
        "peakConcurrentKeyOperations": {"rollout": peak, "perSubscription": max(per_subscription.values())},
        "invariants": {
            "accountsLost": lost,
            "wrongOutcomes": wrong,
            "duplicateKeyPatches": duplicates,
            "duplicateEnrolments": duplicate_enrolments,
            "capViolations": cap_violations,
            "stuckRunning": len(stuck),
            "unrecoveredKills": unrecovered + missing_kills,
        },
        "armRequests": sum(1 for e in logs.entries if not e.get("plane")),
        "wallSeconds": round(run.elapsed(), 1),
        "problems": problems,
    }


@contextmanager
def running_stack(arguments: argparse.Namespace, world: ChaosWorld, scratch: Path) -> Iterator[Client]:
    world_file = scratch / "world.json"
    world_file.write_text(json.dumps(world.world), encoding="utf-8")
    settings = {
        "CMK_KEY_POLICY": json.dumps({"default": world.key_uri}),
        "CMK_ENROLMENT_SCOPE": json.dumps([b.resource_group_id(SUBSCRIPTIONS[0], ENROLMENT_GROUP)]),
        "CMK_KEY_VAULT_SUBSCRIPTIONS": json.dumps([SUBSCRIPTIONS[0]]),
    }
    settings_file = scratch / "local.settings.json"
    settings_file.write_text(json.dumps({"IsEncrypted": False, "Values": settings}), encoding="utf-8")
    stack = Stack(world_file, settings_file, scratch / "state", arguments.time_scale)
    stack.start()
    try:
        yield Client(stack)
    finally:
        stack.kill()  # the figures are taken; the state directory is SIGKILL-safe (and kept with --keep)


def chaos(arguments: argparse.Namespace) -> JsonDict:
    world = build_world(arguments.accounts, arguments.seed, tuple(arguments.sizes))
    with tempfile.TemporaryDirectory(prefix="cmk-chaos-") as scratch_name:
        scratch = Path(arguments.keep) if arguments.keep else Path(scratch_name)
        scratch.mkdir(parents=True, exist_ok=True)
        with running_stack(arguments, world, scratch) as client:
            rng = random.Random(arguments.seed)
            if client.sandbox("POST", "faults", background_faults(rng, arguments.accounts)) is None:
                raise RuntimeError("the simulator refused the fault rules")
            kills, storms, nominations = plan(arguments, world)
            run = Run(arguments, world, client, kills, storms, nominations)
            start_rollout(run)
            drive(run)
            for storm_ in storms:  # what is left of a storm must not slow the reads below
                for rule in storm_.rules:
                    client.sandbox("DELETE", f"faults?id={rule['id']}")
            client.sandbox("DELETE", "faults")
            return measure(run)


def command(arguments: argparse.Namespace) -> str:
    defaults = parser().parse_args([])
    given = [
        f"--{name.replace('_', '-')} {' '.join(map(str, value)) if isinstance(value, list) else value}"
        for name, value in vars(arguments).items()
        if value != getattr(defaults, name) and name not in ("out", "keep", "quiet")
    ]
    return " ".join(["python -m bench.chaos", *given])


def render(result: JsonDict) -> str:
    invariants = result["invariants"]
    faults = result["faults"]
    lines = [
        f"accounts: {result['accounts']['rollout']} in the rollout + {result['accounts']['enrolment']} enrolled "
        f"from Event Grid; outcomes {result['outcomes']}",
        f"faults injected: {faults['total']} {faults['byKind']}",
        f"Event Grid: {faults['eventGrid']}",
        f"kills: {len(result['kills'])}, recovery max {result['recovery']['maxSeconds']} s, "
        f"median {result['recovery']['medianSeconds']} s",
        f"key PATCHes: {result['keyPatches']}, peak concurrent key operations {result['peakConcurrentKeyOperations']}"
        f" (caps {result['maxConcurrency']}/{result['maxConcurrencyPerSubscription']})",
        "invariants: " + ", ".join(f"{name} {value}" for name, value in invariants.items()),
        f"wall {result['wallSeconds']} s",
    ]
    lines += [f"  problem: {problem}" for problem in result["problems"][:50]]
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=100, help="accounts in the rollout (default 100)")
    parser.add_argument("--kills", type=int, default=5, help="SIGKILLs of the whole stack (default 5)")
    parser.add_argument("--seed", type=int, default=1, help="seeds the world, the faults and the schedule")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write the figures (JSON)")
    parser.add_argument("--time-scale", type=float, default=1500.0, help="simulated seconds per real second")
    parser.add_argument("--max-concurrency", type=int, default=10)
    parser.add_argument("--max-concurrency-per-subscription", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=1800.0, help="real seconds before the run gives up")
    # With 1,000 spare RU/s: encryptions of 21 minutes to 3.5 simulated hours, long enough for lanes to overlap.
    parser.add_argument("--sizes", type=float, nargs="+", default=[0.2, 0.5, 1.0, 2.0], help="data sizes, GiB")
    parser.add_argument("--keep", help="keep the state directory and logs here instead of a temporary one")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return parser


def main(argv: list[str] | None = None) -> int:
    arguments = parser().parse_args(argv)
    result = chaos(arguments)
    print(render(result), flush=True)
    if arguments.out:
        arguments.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0 if not any(result["invariants"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
