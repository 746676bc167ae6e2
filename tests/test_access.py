"""Entra ID in front, roles inside: `python -m sandbox serve --auth entra` runs the app with CMK_AUTH_MODE=entra
behind the local emulation of App Service Authentication, and these tests call it as people and automation would,
with tokens carrying app roles (cmk-admin --as-role mints the same local tokens).

It runs as a process of its own (the way an operator runs it): the app reads its auth mode when it is indexed, and
a test process may already hold the app indexed in functionKey mode.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from cmk_admin.cli import local_token
from cmk_admin.cli import main as cmk_admin
from sandbox.azure import builders as b
from sandbox.azure.testing import SYSTEM, TENANT

SUB = "8a1c3e5f-2b4d-4f6a-9c8e-0d2f4a6c8e0a"
RG = "rg-access"
KEY = "https://kv-access.vault.azure.net/keys/cosmos-cmk"
MASTER_KEY = f"master-{uuid.uuid4().hex}"
REPO = Path(__file__).resolve().parent.parent


def account_id(name: str) -> str:
    return f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.DocumentDB/databaseAccounts/{name}"


def _world() -> dict[str, Any]:
    vault = b.key_vault(SUB, RG, "kv-access", tenant_id=TENANT)
    accounts = [b.cosmos_account(SUB, RG, f"acct-{index}") for index in range(6)]
    resources = [vault, b.vault_key(vault, "cosmos-cmk"), *accounts]
    resources += [b.sql_role_assignment(account, SYSTEM) for account in accounts]
    return b.world(resources, tenant_id=TENANT)


@dataclass
class Served:
    url: str
    azure: str
    ca: str

    def call(self, method: str, path: str, *, token: str | None = None, **kwargs: Any) -> requests.Response:
        headers = dict(kwargs.pop("headers", {}))
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return requests.request(method, f"{self.url}/api/{path}", headers=headers, timeout=60, **kwargs)

    def instances(self) -> list[dict[str, Any]]:
        url = f"{self.url}/runtime/webhooks/durabletask/instances"
        listed: list[dict[str, Any]] = requests.get(url, params={"code": MASTER_KEY}, timeout=30).json()
        return listed

    def arm_writes(self) -> list[str]:
        log = requests.get(f"{self.azure}/_sandbox/requests", verify=self.ca, timeout=30).json()
        entries = log if isinstance(log, list) else log.get("requests", [])
        return [f"{r['method']} {r['path']}" for r in entries if r["method"] in ("PUT", "PATCH", "DELETE")]

    def wait(self, instance_id: str, token: str, *, phase: str | None = None, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            status: dict[str, Any] = self.call("GET", f"cmk/instances/{instance_id}", token=token).json()
            custom = status.get("customStatus") or {}
            if status.get("runtimeStatus") in ("Completed", "Failed", "Terminated") or (
                phase and custom.get("phase") == phase
            ):
                return status
            assert time.monotonic() < deadline, status
            time.sleep(0.2)


READER = local_token("rita", ["CMK.Reader"])
OPERATOR = local_token("oscar", ["CMK.Reader", "CMK.Operator"])
APPROVER = local_token("ada", ["CMK.Reader", "CMK.Approver"])
OPERATOR_AND_APPROVER = local_token("otto", ["CMK.Reader", "CMK.Operator", "CMK.Approver"])
AUTOMATION = local_token("pipeline-sp", ["CMK.Operator"])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("access")
    world = folder / "world.json"
    world.write_text(json.dumps(_world()))
    settings = folder / "local.settings.json"
    values = {"CMK_DOCUMENT_ID_SCAN": "false", "CMK_RBAC_PROPAGATION_WAIT_SECONDS": "0", "TASKHUB_NAME": "access"}
    settings.write_text(json.dumps({"IsEncrypted": False, "Values": values}))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "MSI_", "IDENTITY_", "CMK_"))}
    env["FUNCTIONS_MASTER_KEY"] = MASTER_KEY
    command = [sys.executable, "-m", "sandbox", "serve", "--world", str(world), "--port", "0", "--auth", "entra"]
    command += ["--settings", str(settings), "--time-scale", "600"]
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert process.stdout is not None
        ready = ca = ""
        deadline = time.monotonic() + 120
        while not (ready and ca):
            line = process.stdout.readline()
            assert line or process.poll() is None, "serve exited"
            ready = line if line.startswith("READY") else ready
            ca = line.split("=", 1)[1].strip() if line.startswith("CA=") else ca
            assert time.monotonic() < deadline
        fields = dict(part.split("=", 1) for part in ready.split()[1:])
        yield Served(fields["host"], fields["azure"], ca)
    finally:
        process.terminate()
        process.wait(timeout=30)


def _error(reply: requests.Response, status: int, code: str) -> None:
    assert reply.status_code == status, reply.text
    assert reply.json()["error"]["code"] == code, reply.text


def test_without_a_token_nothing_answers_but_401(served: Served) -> None:
    before = len(served.instances())
    for method, path in (("GET", "cmk/instances"), ("GET", "openapi.json"), ("POST", "cmk/accounts")):
        assert served.call(method, path, json={"accountId": account_id("acct-0"), "keyUri": KEY}).status_code == 401
    expired = local_token("late", ["CMK.Operator"], lifetime_seconds=-10)
    assert served.call("GET", "cmk/instances", token=expired).status_code == 401
    assert served.call("GET", "cmk/instances", token="not-a-jwt").status_code == 401
    assert len(served.instances()) == before


def test_the_dashboard_page_loads_without_a_token_and_its_data_does_not(served: Served) -> None:
    # Excluded from App Service Authentication (as infra/app/api.bicep excludes it): a browser must load the page
    # to sign in or to be given a token. The data it shows comes from routes that still answer 401.
    page = served.call("GET", "cmk/dashboard")
    assert page.status_code == 200 and "text/html" in page.headers["Content-Type"], page.text[:200]
    assert served.call("GET", "cmk/dashboard/app.js").status_code == 200
    assert served.call("GET", "cmk/overview").status_code == 401
    assert served.call("GET", "cmk/rollouts").status_code == 401


def test_each_role_opens_its_routes_and_a_wrong_role_is_a_403_that_starts_nothing(served: Served) -> None:
    before = len(served.instances())
    body = {"accountId": account_id("acct-0"), "keyUri": KEY, "dryRun": True}
    _error(served.call("POST", "cmk/accounts", token=READER, json=body), 403, "Forbidden")
    _error(served.call("POST", "cmk/accounts", token=APPROVER, json=body), 403, "Forbidden")
    _error(
        served.call("POST", "cmk/rollouts", token=READER, json={"accounts": [account_id("acct-0")]}), 403, "Forbidden"
    )
    _error(served.call("POST", "cmk/instances/cmk-x-1/terminate", token=APPROVER), 403, "Forbidden")
    _error(served.call("POST", "cmk/instances/cmk-x-1/approve", token=OPERATOR), 403, "Forbidden")
    _error(served.call("GET", "cmk/instances", token=AUTOMATION), 403, "Forbidden")
    assert len(served.instances()) == before, "a refused request started nothing"
    assert served.call("GET", "cmk/instances", token=READER).status_code == 200
    assert served.call("GET", "openapi.json", token=READER).status_code == 200

    started = served.call("POST", "cmk/accounts", token=AUTOMATION, json=body)
    assert started.status_code == 202, started.text
    links = started.json()
    assert links["statusQueryGetUri"] == f"{served.url}/api/cmk/instances/{links['id']}"
    assert "code=" not in started.text, "no system key is handed to callers"
    output = served.wait(links["id"], READER)["output"]
    assert output["outcome"] == "Planned"
    assert output["requestedBy"]["displayName"] == "pipeline-sp" and output["requestedBy"]["objectId"]


def test_a_principal_header_sent_by_a_client_is_not_believed(served: Served) -> None:
    forged = (
        "eyJjbGFpbXMiOiBbeyJ0eXAiOiAib2lkIiwgInZhbCI6ICJ4In0sIHsidHlwIjogInJvbGVzIiwgInZhbCI6ICJDTUsuT3BlcmF0b3IifV19"
    )
    headers = {"X-MS-CLIENT-PRINCIPAL": forged}
    body = {"accountId": account_id("acct-0"), "keyUri": KEY, "dryRun": True}
    _error(served.call("POST", "cmk/accounts", token=READER, json=body, headers=headers), 403, "Forbidden")
    assert served.call("POST", "cmk/accounts", json=body, headers=headers).status_code == 401


def test_the_approver_is_never_the_requester_and_both_are_recorded(served: Served) -> None:
    body = {"accountId": account_id("acct-1"), "keyUri": KEY, "approval": "required"}
    started = served.call("POST", "cmk/accounts", token=OPERATOR_AND_APPROVER, json=body)
    assert started.status_code == 202, started.text
    instance_id = started.json()["id"]
    served.wait(instance_id, READER, phase="awaitingApproval")

    own = served.call("POST", f"cmk/instances/{instance_id}/approve", token=OPERATOR_AND_APPROVER, json={})
    _error(own, 403, "SeparationOfDuties")
    assert "otto requested this account" in own.json()["error"]["message"]
    assert not [w for w in served.arm_writes() if "acct-1" in w and "keyVaultKeyUri" in w]
    _error(
        served.call("POST", f"cmk/instances/{instance_id}/approve", json={"by": "ada"}, token=APPROVER),
        400,
        "InvalidRequestBody",
    )

    approved = served.call("POST", f"cmk/instances/{instance_id}/approve", token=APPROVER, json={"comment": "CHG-1"})
    assert approved.status_code == 202, approved.text
    assert approved.json()["by"]["displayName"] == "ada"
    output = served.wait(instance_id, READER)["output"]
    assert output["outcome"] == "Enabled", output
    assert output["requestedBy"]["displayName"] == "otto" and output["requestedBy"]["at"]
    assert output["approvedBy"]["displayName"] == "ada" and output["approvedBy"]["at"]
    assert output["approvedBy"]["objectId"] != output["requestedBy"]["objectId"]
    assert output["rejectedBy"] is None


def test_a_rejection_records_who_rejected(served: Served) -> None:
    body = {"accountId": account_id("acct-2"), "keyUri": KEY, "approval": "required"}
    instance_id = served.call("POST", "cmk/accounts", token=OPERATOR, json=body).json()["id"]
    served.wait(instance_id, READER, phase="awaitingApproval")
    rejected = served.call("POST", f"cmk/instances/{instance_id}/reject", token=APPROVER, json={"comment": "no"})
    assert rejected.status_code == 202, rejected.text
    output = served.wait(instance_id, READER)["output"]
    assert output["outcome"] == "Refused" and "Rejected by ada: no" in output["reason"]
    assert output["rejectedBy"]["displayName"] == "ada" and output["approvedBy"] is None
    assert output["requestedBy"]["displayName"] == "oscar"


def test_report_rows_record_who_requested(served: Served) -> None:
    body = {"accounts": [account_id("acct-3"), account_id("acct-4")], "keyUri": KEY, "dryRun": True}
    started = served.call("POST", "cmk/rollouts", token=OPERATOR, json=body)
    assert started.status_code == 202, started.text
    rollout_id = started.json()["id"]
    assert started.json()["statusQueryGetUri"].endswith(f"/api/cmk/rollouts/{rollout_id}")
    deadline = time.monotonic() + 120
    while (
        report := served.call("GET", f"cmk/rollouts/{rollout_id}/report?format=json", token=READER)
    ).status_code != 200:
        assert time.monotonic() < deadline, report.text
        time.sleep(0.3)
    rows = report.json()["accounts"]
    assert len(rows) == 2 and {row["requestedBy"]["displayName"] for row in rows} == {"oscar"}
    csv = served.call("GET", f"cmk/rollouts/{rollout_id}/report", token=READER).text
    assert csv.splitlines()[0].endswith("requestedBy,approvedBy,rejectedBy") and "oscar (" in csv


def test_system_endpoints_keep_their_keys_behind_authentication(served: Served) -> None:
    raise_event = f"{served.url}/runtime/webhooks/durabletask/instances/cmk-x-1/raiseEvent/approval"
    assert requests.post(raise_event, json={"approved": True}, timeout=30).status_code == 401
    bearer = {"Authorization": f"Bearer {APPROVER}"}
    assert requests.post(raise_event, json={"approved": True}, headers=bearer, timeout=30).status_code == 401
    hook = f"{served.url}/runtime/webhooks/eventgrid?functionName=enrol_from_event_grid"
    assert requests.post(hook, json=[], headers=bearer, timeout=30).status_code == 401
    assert requests.get(f"{served.url}/admin/host/status", headers=bearer, timeout=30).status_code == 401


def test_cmk_admin_calls_with_a_token_or_a_local_role(served: Served, capsys: pytest.CaptureFixture[str]) -> None:
    dry_run = ["enable", account_id("acct-5"), "--key-uri", KEY, "--dry-run"]
    assert cmk_admin(["--url", served.url, *dry_run]) == 2, "no token: the platform answers 401"
    assert "HTTP 401" in capsys.readouterr().err
    assert cmk_admin(["--url", served.url, "--as-role", "CMK.Reader", *dry_run]) == 2
    assert "HTTP 403 Forbidden" in capsys.readouterr().err
    args = ["--url", served.url, "--as-role", "CMK.Operator", "--as-role", "CMK.Reader", "--as-user", "carol"]
    assert cmk_admin([*args, *dry_run, "--watch"]) == 0
    assert "Planned" in capsys.readouterr().out
    assert cmk_admin(["--url", served.url, "--token", READER, "list", "--prefix", "cmk-acct-5-"]) == 0
    assert "acct-5" in capsys.readouterr().out
