"""Secret values the tests configure, and a scan of everything the agent wrote for them.

SPEC: secrets (`password`, `hmac_secret`, `token`, `*_file` contents, OTLP headers) never
appear in the agent's logs, status output or errors. Every test that gives the agent a
secret takes its value from `secret(...)`; the `Agent` harness records where each agent
wrote (its captured stdout+stderr and its file output), and at the end of the session
`tests/conftest.py` fails the run if any of those files holds any registered value.
"""

from __future__ import annotations

import os
from pathlib import Path

KNOWN: set[str] = set()
# Files an agent (or a `sidewatch` verb) wrote: captured output, record outputs.
AGENT_OUTPUTS: set[Path] = set()


def secret(value: str) -> str:
    """Registers a secret value (at least 8 characters, so it cannot match by chance)
    and returns it."""
    assert len(value) >= 8, f"secret values must be distinctive: {value!r}"
    KNOWN.add(value)
    return value


def agent_output(path: str | os.PathLike) -> None:
    AGENT_OUTPUTS.add(Path(path))


def leaks(paths=None) -> list[tuple[Path, str]]:
    """(file, secret) for every registered secret found in the agent's outputs."""
    found = []
    for path in sorted(paths if paths is not None else AGENT_OUTPUTS):
        try:
            text = path.read_text(errors="replace")
        except FileNotFoundError:
            continue
        found.extend((path, s) for s in sorted(KNOWN) if s in text)
    return found
