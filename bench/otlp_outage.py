#!/usr/bin/env python3
"""A collector outage under load: the full version of tests/e2e/test_otlp.py's
`test_a_collector_outage_loses_nothing` (CI runs it with a 20 s outage).

The real structlog FastAPI app logs ~2,000 "request finished" lines a second (each with
a request id); sidewatch (release build) tails them and exports over OTLP/HTTP to the
real OTLP receiver on the official protobufs (tests/harness/otlp_server.py). The
receiver is stopped for `--outage` seconds (default 120) while the load goes on, then
started again. Printed: ids logged and arrived (missing, duplicated), the agent's RSS
(start, max during the outage, end) against `queue.memory` + 25 MiB, the disk queue's
peak, and how long the backlog took to drain.

Run: .venv/bin/python bench/otlp_outage.py [--outage 120] [--binary target/release/sidewatch]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from harness import Agent, OtlpReceiver, StructlogApp, wait_until  # noqa: E402

QUEUE_MEMORY_MIB = 16


def rss_kib(pid: int, key: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--outage", type=float, default=120.0, help="seconds the collector is down")
    parser.add_argument("--binary", default=str(REPO / "target/release/sidewatch"))
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="sidewatch-outage-"))
    try:
        return measure(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # a 2-minute outage leaves ~300 MB of logs and queue


def measure(args: argparse.Namespace, tmp: Path) -> int:
    receiver = OtlpReceiver(tmp)
    with StructlogApp(tmp) as app:
        config = {
            "service": {"name": "checkout-api", "environment": "bench"},
            "logs": [{"name": "app", "paths": [str(app.log_path)], "format": "structlog", "start_at": "beginning"}],
            "export": {"otlp": {"endpoint": receiver.http_endpoint, "signals": ["logs"],
                                 "queue": {"memory": f"{QUEUE_MEMORY_MIB}MiB"}}},
        }
        with Agent(tmp, config, binary=args.binary) as agent:
            pid = agent.process.pid

            def arrived() -> Counter:
                return Counter(r["attributes"].get("request_id") for r in receiver.log_records())

            first = app.work(100)
            wait_until(lambda: set(first) <= set(arrived()), 60, "the first 100 ids at the collector")
            rss_start = rss_kib(pid)
            receiver.stop()
            ids: list[str] = list(first)
            stop = threading.Event()

            def load():
                while not stop.is_set():
                    ids.extend(app.work(200))
                    time.sleep(0.1)  # pacing: ~2,000 lines/s

            writer = threading.Thread(target=load, daemon=True)
            writer.start()
            down_since = time.monotonic()
            rss_max, queue_max = rss_start, 0.0
            while time.monotonic() - down_since < args.outage:
                rss_max = max(rss_max, rss_kib(pid))
                queue_max = max(queue_max, agent.metric_sum("sidewatch_export_queue_bytes", signal="logs"))
                assert agent.healthz() == 200, "the agent answers during the outage"
                time.sleep(0.5)  # sampling interval
            stop.set()
            writer.join(30)
            written_during = len(ids) - len(first)
            receiver.start()
            back = time.monotonic()
            wanted = set(ids)
            wait_until(
                lambda: wanted <= set(arrived()),
                600,
                lambda: f"{len(wanted - set(arrived()))} of {len(wanted)} ids still missing",
                interval=2.0,
            )
            drained_s = time.monotonic() - back
            got = arrived()
            rss_end = rss_kib(pid)
            peak_hwm = rss_kib(pid, "VmHWM")
            dropped = agent.metric_sum("sidewatch_export_dropped_total")
    receiver.stop()

    duplicates = sum(n - 1 for i, n in got.items() if i in wanted and n > 1)
    bound = (QUEUE_MEMORY_MIB + 25) * 1024
    print(f"outage: {args.outage:.0f} s at ~{written_during / args.outage:,.0f} lines/s "
          f"({written_during:,} lines logged while the collector was down)")
    print(f"ids logged: {len(wanted):,}   arrived: {len(wanted & set(got)):,}   missing: "
          f"{len(wanted - set(got))}   duplicated: {duplicates}   dropped (metric): {dropped:.0f}")
    print(f"RSS: start {rss_start / 1024:.1f} MiB, max during the outage {rss_max / 1024:.1f} MiB, "
          f"end {rss_end / 1024:.1f} MiB, VmHWM {peak_hwm / 1024:.1f} MiB "
          f"(bound: queue.memory {QUEUE_MEMORY_MIB} MiB + 25 MiB = {bound / 1024:.0f} MiB) "
          f"{'ok' if peak_hwm <= bound else 'OVER'}")
    print(f"disk queue peak: {queue_max / 1e6:.1f} MB; backlog drained {drained_s:.1f} s after the collector returned")
    ok = not (wanted - set(got)) and peak_hwm <= bound and dropped == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
