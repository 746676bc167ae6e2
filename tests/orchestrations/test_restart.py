"""`python -m sandbox serve --state DIR` killed with SIGKILL mid-encryption and started again on the same DIR:
both the app and "Azure" continue where they were, and the orchestration ends Enabled with no step lost or
repeated that matters (the key PATCH is sent exactly once)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from sandbox.azure.testing import IDENTITY_ENV, single_account_world

SUB = "7b2c3d4e-5f6a-4b7c-8d9e-0f1a2b3c4d5e"
RG = "rg-restart"
KEY_URI = "https://kv-restart.vault.azure.net/keys/cosmos-cmk"
REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _serve(world: Path, state: Path, host_port: int, azure_port: int) -> tuple[subprocess.Popen[str], str, str, str]:
    environment = {k: v for k, v in os.environ.items() if k not in IDENTITY_ENV}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sandbox",
            "serve",
            "--world",
            str(world),
            "--state",
            str(state),
            "--port",
            str(host_port),
            "--azure-port",
            str(azure_port),
            "--time-scale",
            "300",
        ],
        cwd=REPO,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if line.startswith("READY "):
            fields = dict(part.split("=", 1) for part in line.split()[1:])
            ca = process.stdout.readline().strip().removeprefix("CA=")
            return process, fields["host"], fields["azure"], ca
        if not line and process.poll() is not None:
            break
    process.kill()
    raise AssertionError("serve did not become ready")


def _status(host: str, instance_id: str) -> dict[str, Any]:
    status: dict[str, Any] = requests.get(f"{host}/api/cmk/instances/{instance_id}", timeout=30).json()
    return status


@pytest.mark.timeout(300)
def test_serve_killed_mid_encryption_resumes_on_the_same_state(tmp_path: Path) -> None:
    # About 70 simulated minutes of encryption: 15 seconds of real time at 300x, which outlasts the restart.
    world, account_id = single_account_world(
        SUB, RG, "kv-restart", "survivor", data_size_gib=0.4, spare_ru_per_second=600
    )
    world_file = tmp_path / "world.json"
    world_file.write_text(json.dumps(world))
    state = tmp_path / "state"
    host_port, azure_port = _free_port(), _free_port()

    first, host, _, _ = _serve(world_file, state, host_port, azure_port)
    try:
        started = requests.post(
            f"{host}/api/cmk/accounts", json={"accountId": account_id, "keyUri": KEY_URI}, timeout=30
        )
        instance_id = started.json()["id"]
        deadline = time.monotonic() + 120
        while (_status(host, instance_id).get("customStatus") or {}).get("phase") != "encrypting":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        polls_before = _status(host, instance_id)["customStatus"]["polls"]
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()

    second, host, azure, ca = _serve(world_file, state, host_port, azure_port)
    try:
        # Azure is still encrypting once both are back: the app resumes in the middle of the encryption.
        operations = requests.get(f"{azure}/_sandbox/operations", timeout=30, verify=ca).json()["value"]
        (running,) = [o for o in operations if "keyVaultKeyUri" in json.dumps(o)]
        assert running["status"] not in ("Succeeded", "Failed", "Canceled"), running
        deadline = time.monotonic() + 180
        while (status := _status(host, instance_id))["runtimeStatus"] not in ("Completed", "Failed", "Terminated"):
            assert time.monotonic() < deadline, status.get("customStatus")
            time.sleep(0.5)
        output = status["output"]
        assert output["outcome"] == "Enabled", output["reason"]
        assert output["operation"]["polls"] >= polls_before
        served = requests.get(f"{azure}/_sandbox/requests", timeout=30, verify=ca).json()
        entries = served["value"]
        key_patches = [r for r in entries if r["method"] == "PATCH" and "keyVaultKeyUri" in json.dumps(r.get("body"))]
        assert len(key_patches) == 1, "the irreversible PATCH went out exactly once"
        operations = requests.get(f"{azure}/_sandbox/operations", timeout=30, verify=ca).json()
        operation_list = operations["value"]
        encryption = [o for o in operation_list if "keyVaultKeyUri" in json.dumps(o)]
        assert len(encryption) == 1 and encryption[0]["status"] == "Succeeded"
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=30)
