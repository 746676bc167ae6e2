# mypy: disallow-untyped-decorators=False
"""Toy activities."""

import asyncio
import os
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import azure.durable_functions as df

bp = df.Blueprint()

if TYPE_CHECKING:
    Params = dict[str, Any]
else:
    Params = dict  # the worker refuses `dict[str, Any]` on a binding parameter (docs/style.md)

# How many times `flaky` ran per key (the host runs activities in this process).
ATTEMPTS: dict[str, int] = {}


@bp.activity_trigger(input_name="value")
def add_one(value: int) -> int:
    return value + 1


@bp.activity_trigger(input_name="value")
def square(value: int) -> int:
    return value * value


@bp.activity_trigger(input_name="params")
def flaky(params: Params) -> str:
    key = params["key"]
    ATTEMPTS[key] = ATTEMPTS.get(key, 0) + 1
    if ATTEMPTS[key] <= params["failures"]:
        raise RuntimeError(f"attempt {ATTEMPTS[key]} of {key} failed")
    return f"{key} succeeded on attempt {ATTEMPTS[key]}"


@bp.activity_trigger(input_name="message")
def fail_now(message: str) -> None:
    raise ValueError(message)


@bp.activity_trigger(input_name="params")
async def slow_echo(params: Params) -> float:
    await asyncio.sleep(params["seconds"])
    return float(params["seconds"])


@bp.activity_trigger(input_name="params")
def mark_step(params: Params) -> int:
    """Leaves a marker file per execution (duplicates show at-least-once re-execution)."""
    time.sleep(0.25)
    marks = Path(os.environ["TOY_MARKS_DIR"])
    (marks / f"{params['run']}-{params['step']}-{uuid.uuid4().hex}").touch()
    return int(params["step"])
