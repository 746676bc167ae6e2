"""Entry point of one language worker process (see sandbox.host.worker_processes): `python -m
sandbox.host.worker_process <socket fd> <app directory> <threads>`.

A module of its own so that the classes its replies carry are pickled under their importable names, never
`__main__`.
"""

from __future__ import annotations

import logging
import sys
import warnings
from multiprocessing.connection import Connection
from pathlib import Path

from sandbox.host.worker_processes import serve

if __name__ == "__main__":
    # As sandbox.stack does for the host's process: azure-cosmos turns certificate checks off for loopback endpoints
    # (the simulator's data plane) and urllib3 then warns on every request.
    warnings.filterwarnings("ignore", message="Unverified HTTPS request is being made to host '127.0.0.1'")
    logging.basicConfig(level=logging.WARNING, format="worker process: %(levelname)s %(name)s: %(message)s")
    serve(Connection(int(sys.argv[1])), Path(sys.argv[2]), int(sys.argv[3]))
