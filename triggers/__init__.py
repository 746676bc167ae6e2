"""Client functions: the HTTP API (and, later, Event Grid) that start and manage orchestrations.
One `df.Blueprint` per module, registered by function_app.py."""
