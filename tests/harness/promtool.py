"""`promtool check metrics` on an exposition, the way the e2e tests judge `/metrics`."""

from __future__ import annotations

import shutil
import subprocess


def promtool_check(text: str | bytes) -> None:
    """Assert that promtool parses the exposition and finds nothing to lint, except the
    colons of recording-rule series (`http:request_errors:ratio1m`): promtool's linter
    is written for instrumented code, where colons are reserved for exactly those."""
    promtool = shutil.which("promtool")
    # tests/setup.sh installs it (Debian package `prometheus`): its absence is a failure.
    assert promtool, "promtool not found: run tests/setup.sh (apt-get install prometheus)"
    data = text.encode() if isinstance(text, str) else text
    check = subprocess.run([promtool, "check", "metrics"], input=data, capture_output=True, timeout=30)
    out = (check.stdout + check.stderr).decode(errors="replace")
    if check.returncode == 0:
        return
    findings = [line for line in out.splitlines() if line.strip()]
    # Exit code 3 is "lint problems only"; anything else is a parse failure.
    colon_only = check.returncode == 3 and all(
        line.endswith("metric names should not contain ':'") and ":" in line.split(" ", 1)[0]
        for line in findings
    )
    assert colon_only, f"promtool check metrics exited {check.returncode}:\n{out}\n--- /metrics:\n{data.decode(errors='replace')}"
