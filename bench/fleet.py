"""Fleet figures: a rollout's makespan against its lower bound and against a sequential CLI-style script, the ARM
traffic it costs, throttling under the real ARM token buckets, and wall time and peak memory at 1,000 accounts.

Each scenario runs in its own process (`python -m bench.fleet <scenario> <accounts>`), so peak memory is that
scenario's alone. Simulated time is discrete-event (sandbox.stack.DiscreteEventDriver): computing costs no simulated
time, so makespans measure the waits the product and Azure impose, not this machine's speed. Times are simulated
seconds unless named wall.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import requests
from azure.mgmt.cosmosdb import CosmosDBManagementClient, models
from azure.mgmt.keyvault import KeyVaultManagementClient
from azure.mgmt.keyvault import models as keyvault_models

from cmk.arm_pacing import BURST_SECONDS
from cmk.settings import SETTINGS
from sandbox.azure import builders as b
from sandbox.azure.testing import IDENTITY_ENV, SYSTEM, TENANT, peak_concurrent_key_operations
from sandbox.host.config import worker_process_count
from sandbox.stack import LocalAzureStack

SUBSCRIPTIONS = [f"{index:08d}-bbbb-4ccc-8ddd-eeeeeeeeeeee" for index in range(1, 11)]
KEY = "https://kv-fleet-bench.vault.azure.net/keys/cosmos-cmk"
COSMOS_ACCOUNT = "Microsoft.DocumentDB/databaseAccounts"
MAX_CONCURRENCY = 20
# Data sizes, drawn per account; with 1,000 spare RU/s encryptions range from the 10-minute minimum to about 7 hours.
SIZES_GIB = [0.05, 0.2, 0.5, 1.0, 2.0, 4.0]


def build_world(accounts: int, seed: int = 7, sizes: list[float] = SIZES_GIB, *, rbac: bool = False) -> dict[str, Any]:
    rng = random.Random(seed)
    vault = b.key_vault(SUBSCRIPTIONS[0], "rg-keys", "kv-fleet-bench", tenant_id=TENANT, rbac=rbac)
    bodies = [
        b.cosmos_account(SUBSCRIPTIONS[i % len(SUBSCRIPTIONS)], "rg-fleet", f"fleet-{i:04d}") for i in range(accounts)
    ]
    data = {str(a["id"]): {"dataSizeGiB": rng.choice(sizes), "spareRuPerSecond": 1000} for a in bodies}
    resources = [vault, b.vault_key(vault, "cosmos-cmk"), *bodies, *(b.sql_role_assignment(a, SYSTEM) for a in bodies)]
    return b.world(resources, tenant_id=TENANT, account_data=data)


def worker_processes() -> int:
    """The app's worker processes in these runs: FUNCTIONS_WORKER_PROCESS_COUNT from the environment, else one per
    core, as Azure's guidance for CPU-bound Python apps has it."""
    return worker_process_count() if os.environ.get("FUNCTIONS_WORKER_PROCESS_COUNT") else os.cpu_count() or 1


def _stack(world: dict[str, Any]) -> LocalAzureStack:
    settings = {
        "CMK_KEY_VAULT_SUBSCRIPTIONS": json.dumps([SUBSCRIPTIONS[0]]),
        "FUNCTIONS_WORKER_PROCESS_COUNT": str(worker_processes()),
    }
    return LocalAzureStack(world, settings=settings, discrete=True)


def _seconds(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def rollout(
    accounts: int,
    dry_run: bool,
    sizes: list[float] = SIZES_GIB,
    *,
    rbac: bool = False,
    max_preparing: int | None = None,
) -> dict[str, Any]:
    world = build_world(accounts, sizes=sizes, rbac=rbac)
    wall = time.perf_counter()
    with _stack(world) as stack:
        started = stack.clock.timestamp()
        body: dict[str, Any] = {
            "scope": {"subscriptions": SUBSCRIPTIONS},
            "keyUri": KEY,
            "maxConcurrency": MAX_CONCURRENCY,
            "dryRun": dry_run,
        }
        if max_preparing is not None:
            body["maxPreparing"] = max_preparing
        # One session, no proxy or netrc look-up per call: the polling is the benchmark's, not the product's cost
        # (a new session per poll was 6 % of a 300-account dry run's CPU, in the same process as the stack).
        http = requests.Session()
        http.trust_env = False
        instance_id = http.post(f"{stack.host_url}/api/cmk/rollouts", json=body, timeout=60).json()["id"]
        while (status := http.get(f"{stack.host_url}/api/cmk/rollouts/{instance_id}", timeout=60).json())[
            "runtimeStatus"
        ] not in ("Completed", "Failed", "Terminated"):
            time.sleep(1.0)
        finished = _seconds(status["output"]["timings"]["finishedAt"])
        # What tests/orchestrations/test_fleet_scale.py checks on a small fleet, at this size: every account is in
        # the report, once, with an outcome.
        report = http.get(f"{stack.host_url}/api/cmk/rollouts/{instance_id}/report", timeout=600).text
        reported = sorted(row["accountId"].lower() for row in csv.DictReader(io.StringIO(report)) if row["outcome"])
        expected = sorted(str(r["id"]).lower() for r in world["resources"] if r["type"] == COSMOS_ACCOUNT)
        assert reported == expected, f"{len(reported)} accounts in the report of {len(expected)}"
        arm = [r for r in stack.simulator.requests() if r["path"].lower().startswith(("/subscriptions", "/providers"))]
        operations = stack.simulator.operations()
        noticed = _noticed_after_azure(stack, report, operations)
        peak = peak_concurrent_key_operations(stack.simulator)
        # The cap is concurrent encryptions in Azure (README, Fleets): the simulator's own log must never exceed it.
        assert peak <= MAX_CONCURRENCY, f"{peak} key operations ran at once, cap {MAX_CONCURRENCY}"
        worker_peaks = _worker_peak_rss_mib(stack)
    encryptions = [o for o in operations if "keyVaultKeyUri" in json.dumps(o.get("changes"))]
    encryption_seconds = [_seconds(o["endTime"]) - _seconds(o["startTime"]) for o in encryptions]
    # Reads of the encryptions' own status URLs (the identity PATCHes' operations are read too, but not here).
    key_operations = {str(o["id"]).lower() for o in encryptions}
    status_reads = sum(
        1
        for r in arm
        if "operationsstatus" in r["path"].lower()
        and r["path"].lower().split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1] in key_operations
    )
    result = {
        "accounts": accounts,
        "dryRun": dry_run,
        "totals": status["output"]["totals"],
        "makespanSeconds": round(max(0.0, finished - started), 1),  # the output's time is to the millisecond
        "armRequests": len(arm),
        "armRequestsPerAccount": round(len(arm) / accounts, 2),
        # One central vault for the whole fleet, and Resource Graph's quota of 15 queries per 5 s: both are read
        # per process, not per account (cmk.inventory).
        "keyVaultReads": sum(1 for r in arm if "/providers/microsoft.keyvault/" in r["path"].lower()),
        "resourceGraphQueries": sum(1 for r in arm if "/microsoft.resourcegraph/" in r["path"].lower()),
        "throttled429": sum(1 for r in arm if r["status"] == 429),
        "throttledShare": round(sum(1 for r in arm if r["status"] == 429) / max(1, len(arm)), 4),
        # The least simulated time ARM's real buckets allow for these requests (a subscription's reads beyond its
        # 250 at 25 a second, writes beyond 200 at 10): what pacing may not make the run slower than.
        "armBucketBoundSeconds": _bucket_bound(arm),
        # The same with the budget the app keeps by default, below ARM's: what its pacing aims at.
        "appBudgetBoundSeconds": _bucket_bound(arm, APP_BUDGET),
        "peakConcurrentEncryptions": peak,
        "wallSeconds": round(time.perf_counter() - wall, 1),
        **_cpu_and_memory(worker_peaks),
    }
    if encryption_seconds:
        total = sum(encryption_seconds)
        result.update(
            {
                "encryptionSecondsSum": round(total, 1),
                "encryptionSecondsMax": round(max(encryption_seconds), 1),
                "lowerBoundSeconds": round(max(max(encryption_seconds), total / MAX_CONCURRENCY), 1),
                "statusReadsPerAccountHour": round(status_reads / (total / 3600), 2),
            }
        )
    if noticed:
        # From Azure's end of an encryption (the simulator's operation log) to the orchestration's encryptionDoneAt.
        lateness = [late for late, _ in noticed]
        result["noticedAfterAzureSeconds"] = {
            "median": round(statistics.median(lateness), 1),
            "max": round(max(lateness), 1),
            "maxUnderAnHour": _worst(noticed, lambda seconds: seconds < 3600),
            "maxAnHourOrMore": _worst(noticed, lambda seconds: seconds >= 3600),
        }
        result["makespanOverLowerBound"] = round(result["makespanSeconds"] / result["lowerBoundSeconds"], 2)
    return result


def _cpu_and_memory(worker_peaks: list[float]) -> dict[str, Any]:
    """CPU seconds of the host process (simulator, host, clock driver) and of its worker processes; peak RSS of the
    host, of the largest worker process, and of the stack: the host's plus every worker process's own peak (an
    upper bound of what the stack held at any one moment)."""
    own, workers = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    host_peak = round(own.ru_maxrss / 1024, 1)
    return {
        "workerProcesses": worker_processes(),
        "hostCpuSeconds": round(own.ru_utime + own.ru_stime, 1),
        "workerCpuSeconds": round(workers.ru_utime + workers.ru_stime, 1),
        "peakRssMiB": host_peak,
        "workerPeakRssMiB": round(workers.ru_maxrss / 1024, 1),
        "stackPeakRssMiB": round(host_peak + sum(worker_peaks), 1),
    }


def _worker_peak_rss_mib(stack: LocalAzureStack) -> list[float]:
    """Each running worker process's peak RSS (VmHWM), read while it runs; none when the app runs in the host."""
    assert stack.host is not None
    processes = stack.host.worker_processes
    peaks: list[float] = []
    for pid in processes.pids if processes is not None else []:
        with contextlib.suppress(OSError, ValueError):
            status = Path(f"/proc/{pid}/status").read_text()
            peaks.append(int(status.split("VmHWM:", 1)[1].split()[0]) / 1024)
    return peaks


def _noticed_after_azure(
    stack: LocalAzureStack, report: str, operations: list[dict[str, Any]]
) -> list[tuple[float, float]]:
    """Per encrypted account: (seconds from Azure's end of its encryption to its orchestration's encryptionDoneAt,
    the encryption's length)."""
    assert stack.host is not None
    ended = {
        str(o["accountId"]).lower(): (_seconds(o["endTime"]), _seconds(o["endTime"]) - _seconds(o["startTime"]))
        for o in operations
        if "keyVaultKeyUri" in json.dumps(o.get("changes")) and o.get("endTime")
    }
    noticed: list[tuple[float, float]] = []
    for row in csv.DictReader(io.StringIO(report)):
        account = row["accountId"].lower()
        if account not in ended or not row.get("instanceId"):
            continue
        output = (stack.host.instance(row["instanceId"]) or {}).get("output") or {}
        done = (output.get("timings") or {}).get("encryptionDoneAt")
        if done:
            noticed.append((_seconds(done) - ended[account][0], ended[account][1]))
    return noticed


def _worst(noticed: list[tuple[float, float]], keep: Callable[[float], bool]) -> float | None:
    chosen = [late for late, length in noticed if keep(length)]
    return round(max(chosen), 1) if chosen else None


# ARM's buckets per principal and subscription: (burst, refill per second).
ARM_BUCKETS = {"reads": (250, 25.0), "writes": (200, 10.0)}
# What the app allows itself by default (CMK_ARM_READS_PER_SECOND, CMK_ARM_WRITES_PER_SECOND, with cmk.arm_pacing's
# burst): the rest of ARM's refill is headroom for the identity's other callers.
APP_BUDGET = {
    kind: (int(float(SETTINGS[name].default) * BURST_SECONDS), float(SETTINGS[name].default))
    for kind, name in (("reads", "CMK_ARM_READS_PER_SECOND"), ("writes", "CMK_ARM_WRITES_PER_SECOND"))
}


def _bucket_bound(arm: list[dict[str, Any]], buckets: dict[str, tuple[int, float]] = ARM_BUCKETS) -> float:
    counts: dict[tuple[str, str], int] = {}
    for request in arm:
        parts = request["path"].split("/")
        if len(parts) > 2 and parts[1].lower() == "subscriptions" and request["status"] != 429:
            kind = "reads" if request["method"] in ("GET", "HEAD") else "writes"
            counts[(parts[2].lower(), kind)] = counts.get((parts[2].lower(), kind), 0) + 1
    return round(max([(n - buckets[k][0]) / buckets[k][1] for (_, k), n in counts.items()] + [0.0]), 1)


def sequential_script(accounts: int) -> dict[str, Any]:
    """What an operator's script does: for each account in turn, the blocking SDK calls, each waiting to the end."""
    world = build_world(accounts)
    wall = time.perf_counter()
    with _stack(world) as stack:
        started = stack.clock.timestamp()
        credential = stack.simulator.credential(SYSTEM)
        # The poller sleeps real seconds while the discrete clock jumps to the operation's end; keep its naps short.
        polling = 0.005
        vault_client = KeyVaultManagementClient(credential, SUBSCRIPTIONS[0], base_url=stack.azure_url)
        for body in (r for r in world["resources"] if r["type"] == COSMOS_ACCOUNT):
            subscription, group, name = body["id"].split("/")[2], body["id"].split("/")[4], body["name"]
            client = CosmosDBManagementClient(
                credential, subscription, base_url=stack.azure_url, polling_interval=polling
            )
            identity = models.ManagedServiceIdentity({"type": "SystemAssigned"})
            account = client.database_accounts.begin_update(
                group, name, models.DatabaseAccountUpdateParameters(identity=identity)
            ).result()
            principal = account.as_dict()["identity"]["principalId"]
            vault_client.vaults.update_access_policy(
                "rg-keys",
                "kv-fleet-bench",
                "add",
                keyvault_models.VaultAccessPolicyParameters(
                    properties=keyvault_models.VaultAccessPolicyProperties(
                        access_policies=[
                            keyvault_models.AccessPolicyEntry(
                                tenant_id=TENANT,
                                object_id=principal,
                                permissions=keyvault_models.Permissions(keys_property=["get", "wrapKey", "unwrapKey"]),
                            )
                        ]
                    )
                ),
            )
            for properties in (
                models.DatabaseAccountUpdateProperties(default_identity="SystemAssignedIdentity"),
                models.DatabaseAccountUpdateProperties(key_vault_key_uri=KEY),
            ):
                client.database_accounts.begin_update(
                    group, name, models.DatabaseAccountUpdateParameters(properties=properties)
                ).result()
        finished = stack.clock.timestamp()
    return {
        "accounts": accounts,
        "makespanSeconds": round(max(0.0, finished - started), 1),  # the output's time is to the millisecond
        "wallSeconds": round(time.perf_counter() - wall, 1),
    }


SCENARIOS = {
    "rollout": lambda n: rollout(n, dry_run=False),
    "dryrun": lambda n: rollout(n, dry_run=True),
    # At 1,000 accounts the figures of interest are wall time and memory: 10-minute encryptions keep it short.
    "rollout-small": lambda n: rollout(n, dry_run=False, sizes=[0.05]),
    # Most real fleets: many small accounts. 10-minute encryptions behind an RBAC vault, so each account's fixed
    # steps (two identity PATCHes, the role assignment's propagation wait, verification) weigh against its encryption.
    "rollout-short": lambda n: rollout(n, dry_run=False, sizes=[0.05], rbac=True),
    "sequential": sequential_script,
}


def _in_process(scenario: str, accounts: int) -> dict[str, Any]:
    output = subprocess.run(
        [sys.executable, "-m", "bench.fleet", scenario, str(accounts)], capture_output=True, text=True, check=True
    ).stdout
    result: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    return result


def run(quick: bool = False) -> dict[str, Any]:
    """The figures of make bench; --quick runs smaller fleets (every figure carries the size that ran)."""
    mixed_size, short_size, dry_size, large_dry_size = (40, 100, 100, 1000) if quick else (200, 1000, 1000, 10_000)
    orchestrated = _in_process("rollout", mixed_size)
    sequential = _in_process("sequential", mixed_size)
    fleet = {
        "rollout": orchestrated,
        "sequentialScript": sequential,
        "maxConcurrency": MAX_CONCURRENCY,
        "speedupOverSequential": round(sequential["makespanSeconds"] / orchestrated["makespanSeconds"], 1),
    }
    # Many small accounts: the short-encryption fleet is also the scale figure of a rollout (wall time, memory).
    short = _in_process("rollout-short", short_size)
    scale = {
        "dryRun": _in_process("dryrun", dry_size),
        "rollout": short,
        "largeDryRun": _in_process("dryrun", large_dry_size),
    }
    return {"fleet": fleet, "shortFleet": {"rollout": short, "maxConcurrency": MAX_CONCURRENCY}, "scale": scale}


if __name__ == "__main__":
    import os

    for variable in IDENTITY_ENV:
        os.environ.pop(variable, None)
    print(json.dumps(SCENARIOS[sys.argv[1]](int(sys.argv[2]))))
