"""The README's main command works: `make demo`'s script, run as a user runs it.

`deploy/demo/demo.py` starts the example app, an SMTP catcher, a webhook printer and
sidewatch, deploys a good then a bad version and prints what sidewatch did. These tests
run it as a subprocess (with the debug build, as the other e2e tests do) and check its
exit code, the key lines of its output, and that it leaves no process behind — after a
normal run and after a Ctrl-C in the middle.

Run: .venv/bin/python -m pytest tests/e2e/test_demo.py -q -s  (needs target/debug/sidewatch).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from harness import sidewatch_bin, wait_until

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "deploy" / "demo" / "demo.py"


def demo_argv(*extra: str) -> list[str]:
    return [sys.executable, str(DEMO), "--binary", str(sidewatch_bin()), *extra]


def scratch_of(output: str) -> str:
    m = re.search(r"scratch directory: (/\S+)", output)
    assert m, f"the demo names its scratch directory first:\n{output}"
    return m.group(1)


def processes_mentioning(text: str) -> list[str]:
    """Live processes whose command line or environment contains `text` (the demo's
    scratch directory: the agent's config, the app's log path, the SMTP maildir…)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        for name in ("cmdline", "environ"):
            try:
                data = (proc / name).read_bytes()
            except OSError:  # gone, or not ours
                continue
            if text.encode() in data:
                cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                found.append(f"pid {proc.name}: {cmd[:200]}")
                break
    return found


@pytest.mark.timeout(330)
def test_make_demo_tells_the_whole_story_and_cleans_up():
    started = time.monotonic()
    run = subprocess.run(demo_argv(), capture_output=True, text=True, timeout=300, cwd=REPO)
    elapsed = time.monotonic() - started
    out = run.stdout
    shown = f"exit {run.returncode} after {elapsed:.0f}s\n--- stdout:\n{out}\n--- stderr:\n{run.stderr}"
    assert run.returncode == 0, shown
    for expected in (
        "verdict: PASS — 1.1.0 against 1.0.0",
        "verdict: FAIL — 1.2.0 against 1.1.0",
        "Subject: [FIRING:1] DeploymentVerdict demo-api",
        '"alertname": "DeploymentVerdict"',
        "(over STARTTLS, authenticated)",
        "live version: 1.2.0",  # `sidewatch status`
        "Demo passed",
    ):
        assert expected in out, f"{expected!r} missing from the demo's output:\n{shown}"
    # The failed checks are named, in the table and in the alert's summary.
    assert re.search(r"^\s+error-ratio\s+FAIL", out, re.M), shown
    assert "version 1.2.0 is worse than 1.1.0: error-ratio" in out, shown
    # It points at the status page, and the API's port is the one it printed.
    api = re.search(r"API and status page on (http://127\.0\.0\.1:\d+)", out)
    assert api and f"open {api.group(1)}/ in a browser" in out, shown
    assert "\033[" not in out, "no colour codes when stdout is not a terminal"
    # Everything it started is stopped, and its scratch directory is gone.
    scratch = scratch_of(out)
    assert not processes_mentioning(scratch), processes_mentioning(scratch)
    assert not Path(scratch).exists(), f"{scratch} left behind after a successful run"


@pytest.mark.timeout(120)
def test_ctrl_c_in_the_middle_stops_everything():
    proc = subprocess.Popen(
        demo_argv(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        # Once the background traffic runs, the app, SMTP, webhook and agent are all up.
        wait_until(
            lambda: any(line.startswith("traffic") for line in lines) or proc.poll() is not None,
            90,
            lambda: "the demo to start its components; output so far:\n" + "".join(lines),
        )
        assert proc.poll() is None, "".join(lines)
        scratch = scratch_of("".join(lines))
        assert processes_mentioning(scratch), "the components should be running now"
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        code = proc.wait(60)
        reader.join(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = "".join(lines)
    assert code == 1, f"an interrupted demo exits 1, got {code}:\n{out}"
    assert "Demo FAILED" in out and "interrupted" in out, out
    assert "Traceback" not in out, out
    assert not processes_mentioning(scratch), processes_mentioning(scratch)
