"""A local Azure Functions + Durable Functions host for Python v2 apps (see `LocalHost`)."""

from sandbox.host.host import LocalHost

__all__ = ["LocalHost"]
