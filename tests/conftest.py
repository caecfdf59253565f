"""pytest glue for sidewatch's end-to-end tests.

- Puts tests/ on sys.path so tests `import harness`.
- Before each test, forgets the previous test's components; after it, stops every
  component the test left running (by PID: SIGTERM, then SIGKILL).
- When a test fails, attaches the captured output of every component it started to
  the failure report, so an agent panic or an app traceback is right there.
- At the end of the session, scans everything every agent wrote (captured output,
  record files) for every secret value the tests configured (`harness.secrets`), and
  fails the run on a leak (SPEC: secrets never appear in logs, status or errors).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import process, secrets  # noqa: E402  (needs the sys.path entry above)


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


def pytest_sessionfinish(session, exitstatus):
    leaks = secrets.leaks()
    if leaks:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        lines = [f"  {path}: holds a configured secret ({value[:3]}…)" for path, value in leaks]
        message = "SECRET LEAK: the agent wrote secret values it was configured with:\n" + "\n".join(lines)
        if reporter:
            reporter.write_line(message, red=True)
        else:
            print(message)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    elif secrets.KNOWN and session.config.getoption("verbose") >= 0:
        print(f"\nsecret scan: {len(secrets.KNOWN)} secret values, none in {len(secrets.AGENT_OUTPUTS)} agent outputs")
