"""pytest glue for sidewatch's end-to-end tests.

- Puts tests/ on sys.path so tests `import harness`.
- Before each test, forgets the previous test's components; after it, stops every
  component the test left running (by PID: SIGTERM, then SIGKILL).
- When a test fails, attaches the captured output of every component it started to
  the failure report, so an agent panic or an app traceback is right there.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import process  # noqa: E402  (needs the sys.path entry above)


@pytest.fixture(autouse=True)
def _components():
    process.LIVE.clear()
    yield
    for p in reversed(process.LIVE):
        p.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed:
        for p in process.LIVE:
            state = f"pid {p.pid}, running" if p.running else f"exit codes {p.exit_codes}"
            report.sections.append(
                (f"{p.name} output ({p.log_path}; {state})", p.tail(200))
            )
    return report
