"""Durable orchestrators, one module each (a `df.Blueprint` that function_app.py registers), plus the
replay-safe building blocks they share (steps.py)."""
