"""Tests of the product, the sandbox and the infra, driven against the local simulator and host."""

from pathlib import Path

# Real JSON from the Azure REST specs, Event Grid and Durable samples, copied verbatim into the repository so a
# clean clone tests against them (tests/golden/INDEX.md names each file's source and commit).
GOLDEN = Path(__file__).with_name("golden")
