"""The local host reproduces one azure-functions-durable release's out-of-process behaviour; this fails when the
installed SDK is another one, so that an upgrade re-checks the shim instead of silently diverging from Azure."""

from __future__ import annotations

from importlib.metadata import version

from sandbox.host.orchestration_replay import REPRODUCED_SDK_VERSION


def test_the_installed_durable_sdk_is_the_release_the_host_reproduces() -> None:
    installed = version("azure-functions-durable")
    assert installed == REPRODUCED_SDK_VERSION, (
        f"azure-functions-durable {installed} is installed, but sandbox/host/orchestration_replay.py reproduces "
        f"{REPRODUCED_SDK_VERSION}: re-read the SDK's orchestrator protocol, re-check the shim, then move both pins"
    )
