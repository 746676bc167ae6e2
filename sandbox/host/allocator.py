"""glibc malloc settings for the local stack's processes (the host, with the simulator in it, and the worker
processes). With glibc's defaults, the host process of a 10,000-account dry run was 728 MiB resident at its peak for
504 MiB allocated (memray).

- Each thread that allocates gets an arena of its own, up to eight per core, and memory freed in one arena serves
  only that arena's threads: the host's and workers' thread pools spread a replay's transient buffers over many.
- glibc raises its mmap threshold each time a large block is freed (up to 32 MiB), so a replay's multi-megabyte
  history strings end up on the heap, where what they leave behind is not given back.

Fixed values turn both off (mallopt(3); setting either threshold disables the dynamic one). Measured with `python -m
bench.fleet dryrun 3000`, the variables set from outside: the stack's peak RSS (the host's and each worker
process's) was 672 MiB with glibc's defaults, 605 MiB with two arenas, 610 MiB with a fixed 1 MiB mmap threshold and
571 MiB with two arenas and a 256 KiB threshold, wall time unchanged (82 s). At 10,000 accounts a 256 KiB threshold
and a 1 MiB one gave the same peak (893 and 909 MiB, README); 1 MiB keeps a lane's replay buffers off mmap. An
environment that sets any of these variables keeps its own value. Not glibc (macOS, musl): nothing to do.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import MutableMapping

# mallopt(3) parameter numbers (malloc.h) and their environment-variable forms, read by glibc at process start.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8
SETTINGS: dict[str, tuple[int, int]] = {
    "MALLOC_ARENA_MAX": (_M_ARENA_MAX, 2),
    "MALLOC_MMAP_THRESHOLD_": (_M_MMAP_THRESHOLD, 1024 * 1024),
    "MALLOC_TRIM_THRESHOLD_": (_M_TRIM_THRESHOLD, 2 * 1024 * 1024),
}


def child_environment(environment: MutableMapping[str, str]) -> None:
    """Give a process about to start the settings (glibc reads them once, at start)."""
    for name, (_, value) in SETTINGS.items():
        environment.setdefault(name, str(value))


def tune_this_process() -> bool:
    """Apply the settings to the running process, for what it allocates from now on; False when not glibc."""
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # noqa: B018 - glibc only; musl and macOS have no such symbol
    except (AttributeError, OSError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    for name, (parameter, value) in SETTINGS.items():
        if name not in os.environ:
            mallopt(parameter, value)
    return True
