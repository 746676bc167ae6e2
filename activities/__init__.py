"""Durable activities: one module each, each a `df.Blueprint` that function_app.py registers.

Activities are thin: they decode the JSON input, call the domain core (cmk), and return plain JSON. ARM answers
that are outcomes rather than faults come back as results (`{"throttled": ...}`, `{"refused": ...}`, see
cmk.arm.arm_outcomes); everything else is raised so Durable RetryOptions retry the activity.
"""
