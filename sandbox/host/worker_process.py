"""Entry point of one language worker process (see sandbox.host.worker_processes): `python -m
sandbox.host.worker_process <socket fd> <app directory> <threads>`.

A module of its own so that the classes its replies carry are pickled under their importable names, never
`__main__`.
"""

from __future__ import annotations

import logging
import sys
from multiprocessing.connection import Connection
from pathlib import Path

from sandbox.host.worker_processes import serve

if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="worker process: %(levelname)s %(name)s: %(message)s")
    serve(Connection(int(sys.argv[1])), Path(sys.argv[2]), int(sys.argv[3]))
