#!/usr/bin/env python3
"""The sidewatch demo: a real FastAPI service logging through structlog, and sidewatch
beside it tailing its rotating log files — all on 127.0.0.1, in a scratch directory.

Run it with `make demo` (which builds the release binary and the Python venv first).
It drives traffic for `--seconds` (the app's RotatingFileHandler rotates every 64 KiB),
then shows what a user of the agent sees: records in SPEC's shape, /metrics, the status
document, and the check that every request id the app logged arrived exactly once.
`--keep` leaves both running until Ctrl-C so you can poke at the API yourself.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))

from harness.agent import Agent  # noqa: E402
from harness.app import StructlogApp  # noqa: E402


def banner(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="how long to drive traffic")
    parser.add_argument("--keep", action="store_true", help="keep running until Ctrl-C")
    args = parser.parse_args()
    os.environ.setdefault("SIDEWATCH_BIN", str(REPO / "target" / "release" / "sidewatch"))

    scratch = Path(tempfile.mkdtemp(prefix="sidewatch-demo-"))
    logs = scratch / "logs"
    logs.mkdir()
    banner(f"scratch directory {scratch}")
    app = StructlogApp(scratch, handler="rotating", max_bytes=64 * 1024, backups=20, version="1.4.2")
    print(f"app: FastAPI + uvicorn + structlog on {app.url}, writing {app.log_path} (RotatingFileHandler, 64 KiB)")
    agent = Agent(
        scratch,
        {
            "service": {"name": "demo-api", "environment": "demo"},
            "logs": [
                {
                    "name": "app",
                    "paths": [str(logs / "app.log*")],
                    "format": "structlog",
                    "start_at": "beginning",
                }
            ],
        },
    )
    print(f"sidewatch: {agent.binary} run -c {agent.config_path}")
    print(agent.config_path.read_text())

    banner(f"driving traffic for {args.seconds:.0f}s")
    sent: list[str] = []
    errors = 0
    deadline = time.monotonic() + args.seconds
    while time.monotonic() < deadline:
        sent += app.work(25)
        sent += app.work(2, status=503)
        if len(sent) % 500 < 27:
            app.error()
            errors += 1
        time.sleep(0.05)
    rotations = len(list(logs.glob("app.log.*")))
    print(f"{len(sent)} request records and {errors} exceptions logged; {rotations} rotated backups on disk")

    # Wait (bounded) until every id the app logged is in the sink.
    expected = set(sent)
    until = time.monotonic() + 60
    while True:
        records = agent.records("app")
        ids = collections.Counter(
            r["attributes"].get("request_id") for r in records if r["attributes"].get("request_id") in expected
        )
        if set(ids) == expected or time.monotonic() > until:
            break
        time.sleep(0.2)

    banner("two records as sidewatch writes them (export.file)")
    for r in (records[0], next((r for r in records if r["severity_text"] == "error"), records[-1])):
        shown = dict(r)
        if "exception" in shown["attributes"]:
            shown["attributes"] = dict(shown["attributes"], exception=shown["attributes"]["exception"][:80] + "…")
        print(json.dumps(shown, indent=2))

    banner("/metrics (excerpt)")
    for line in agent.metrics_text().splitlines():
        if line.startswith(("sidewatch_log_records_total", "sidewatch_log_parse_errors_total", "sidewatch_file_events_total", "process_resident_memory_bytes")):
            print(line)

    banner("/api/v1/status (files)")
    status = agent.get("/api/v1/status").json()
    for source in status["sources"]:
        for f in source["files"][:5]:
            name = f"{f['current_path']} (was {Path(f['path']).name})" if f["current_path"] != f["path"] else f["path"]
            print(f"{name:<72} offset {f['offset']:>7} of {f['size']:>7}{'  rotated, draining' if f['rotated'] else ''}")
        if len(source["files"]) > 5:
            print(f"… and {len(source['files']) - 5} more")

    banner("verdict")
    missing = expected - set(ids)
    doubled = [i for i, n in ids.items() if n > 1]
    print(f"{len(expected)} request ids logged, {len(ids)} arrived, {len(missing)} missing, {len(doubled)} duplicated")
    ok = not missing and not doubled

    if args.keep:
        banner(f"running: API {agent.api_url} (try /metrics, /api/v1/status); Ctrl-C to stop")
        try:
            while True:
                app.work(5)
                time.sleep(1)
        except KeyboardInterrupt:
            pass
    code = agent.terminate()
    app.stop()
    print(f"\nsidewatch exited {code} after SIGTERM; scratch files kept in {scratch}")
    return 0 if ok and code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
