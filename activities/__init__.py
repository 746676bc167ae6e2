"""Durable activities: one module each, each a `df.Blueprint` that function_app.py registers.

Activities are thin: they decode the JSON input, call the domain core (cmk), and return plain JSON. ARM answers
that are outcomes rather than faults come back as results (`{"throttled": ...}`, `{"refused": ...}`, see
cmk.arm.arm_outcomes); everything else is raised so Durable RetryOptions retry the activity.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    Payload = dict[str, Any]
else:
    # The Functions Python worker refuses a binding parameter annotated `dict[str, Any]` at start-up ("invalid
    # non-type annotation"): it wants a class. Type checkers see the precise type, the worker plain `dict`.
    # See docs/style.md.
    Payload = dict
