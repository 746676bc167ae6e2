"""The local stack's glibc malloc settings (sandbox.host.allocator): given to the worker processes it starts, never
over a value the environment already sets."""

from __future__ import annotations

from sandbox.host import allocator


def test_a_worker_process_gets_the_settings_and_keeps_any_the_environment_sets() -> None:
    environment = {"MALLOC_ARENA_MAX": "4", "PATH": "/usr/bin"}
    allocator.child_environment(environment)
    assert environment == {
        "MALLOC_ARENA_MAX": "4",
        "MALLOC_MMAP_THRESHOLD_": "1048576",
        "MALLOC_TRIM_THRESHOLD_": "2097152",
        "PATH": "/usr/bin",
    }
