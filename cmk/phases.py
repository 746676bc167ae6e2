"""The phases an account goes through and the outcomes it ends with, in the order people read them: the one list
the account orchestration (its custom status), the status API and its filters, and cmk-admin's progress bars use.

Standard library only: cmk-admin imports it, and it installs without the app's dependencies.
"""

from __future__ import annotations

from typing import Literal, get_args

# What the account orchestration reports while it runs (custom status `phase`), in order. `waitingForAccount`: the
# account is busy with another operation; `waitingForSlot`: prepared ahead of its lane's slot, it waits for the slot
# before its key PATCH.
Phase = Literal[
    "preflight",
    "waitingForAccount",
    "identity",
    "keyAccess",
    "awaitingApproval",
    "waitingForSlot",
    "enabling",
    "encrypting",
    "verifying",
    "done",
]
# Every phase an account of a rollout can be in, in order. `queued`: its lane has not reached it (the concurrency
# cap); `starting`: claimed, its orchestration has not reported yet.
PHASES: tuple[str, ...] = ("queued", "starting", *get_args(Phase))

# Encrypting: the key PATCH was accepted (or may have been, its reply lost), Azure has not finished, and this
# orchestration stopped following it. Failed: Azure reported the operation Failed/Canceled, or a step before the
# key PATCH could not be done, or the account never confirmed the key. An account is never Failed while Azure
# still encrypts it.
Outcome = Literal["Enabled", "AlreadyEnabled", "Encrypting", "Failed", "Refused", "Planned"]
# Every outcome an account orchestration can show: its own, and what one that ended without one shows (terminated
# by an admin, or failed in the orchestrator itself).
OUTCOMES: tuple[str, ...] = (*get_args(Outcome), "Terminated")
