"""`python -m sandbox serve --discrete`: the stack on discrete-event time, measured from outside. A 7-hour encryption
takes seconds of wall time, and the makespan read through the HTTP API and the simulator's operation log is the
simulated one: Azure's encryption, the monitor's reads, nothing of this machine's speed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from sandbox.azure.testing import IDENTITY_ENV, single_account_world

SUB = "3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f"
KEY_URI = "https://kv-discrete.vault.azure.net/keys/cosmos-cmk"
REPO = Path(__file__).resolve().parents[2]


def _seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


@pytest.mark.timeout(180)
def test_serve_discrete_measures_a_seven_hour_encryption_in_simulated_time(tmp_path: Path) -> None:
    # 4 GiB at 1,000 spare RU/s: about 7 simulated hours of encryption (the simulator's model).
    world, account_id = single_account_world(
        SUB, "rg-discrete", "kv-discrete", "seven-hours", data_size_gib=4, spare_ru_per_second=1000
    )
    world_file = tmp_path / "world.json"
    world_file.write_text(json.dumps(world))
    environment = {k: v for k, v in os.environ.items() if k not in IDENTITY_ENV}
    command = [sys.executable, "-m", "sandbox", "serve", "--world", str(world_file), "--port", "0", "--discrete"]
    process = subprocess.Popen(
        command, cwd=REPO, env=environment, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        assert process.stdout is not None
        ready = process.stdout.readline()
        assert ready.startswith("READY "), ready
        fields = dict(part.split("=", 1) for part in ready.split()[1:])
        assert fields["clock"] == "discrete"
        ca = process.stdout.readline().strip().removeprefix("CA=")
        host, azure = fields["host"], fields["azure"]

        wall = time.monotonic()
        started = requests.post(
            f"{host}/api/cmk/accounts", json={"accountId": account_id, "keyUri": KEY_URI}, timeout=30
        )
        instance_id = started.json()["id"]
        status: dict[str, Any] = {}
        while (status := requests.get(f"{host}/api/cmk/instances/{instance_id}", timeout=30).json())[
            "runtimeStatus"
        ] not in ("Completed", "Failed", "Terminated"):
            assert time.monotonic() - wall < 120, status.get("customStatus")
            time.sleep(0.2)
        wall_seconds = time.monotonic() - wall
        output = status["output"]
        assert output["outcome"] == "Enabled", output["reason"]

        operations = requests.get(f"{azure}/_sandbox/operations", timeout=30, verify=ca).json()["value"]
        (encryption,) = [o for o in operations if "keyVaultKeyUri" in json.dumps(o.get("changes"))]
        encryption_seconds = _seconds(encryption["endTime"]) - _seconds(encryption["startTime"])
        timings = output["timings"]
        makespan = _seconds(timings["finishedAt"]) - _seconds(timings["startedAt"])
        # Simulated hours, in seconds of wall time: the clock jumped from one thing due to the next.
        assert 6.5 * 3600 < encryption_seconds < 7.5 * 3600, encryption_seconds
        assert encryption_seconds < makespan < encryption_seconds + 3600, (makespan, encryption_seconds)
        assert wall_seconds < 90, wall_seconds
        # The monitor noticed the end within its budget for an encryption of over an hour, read from outside.
        noticed = _seconds(timings["encryptionDoneAt"]) - _seconds(encryption["endTime"])
        assert 0 <= noticed <= 0.1 * encryption_seconds, noticed
    finally:
        process.terminate()
        process.wait(timeout=30)
