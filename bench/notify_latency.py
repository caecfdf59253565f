#!/usr/bin/env python3
"""Alert latency: from a log line written to the webhook receiving its alert.

The release agent tails one file with a rule that fires per `alert_id` on the first
``boom`` line carrying it (`for: 0s`, group interval 1s, `evaluation_delay: 0s`), and
routes every alert to a webhook with `group_wait: 0s` and `group_by: [alertname,
alert_id]`, so each line starts its own group and notification. The bench writes one
line per `--gap` seconds with a new `alert_id` and records the write time; the webhook
receiver (tests/harness/webhook_server.py, a stdlib HTTP server on 127.0.0.1) records
the arrival time of each notification. Latency = arrival − write, per alert; printed:
p50, p90, p99, max over `--alerts` alerts (100 by default), against the target
p99 ≤ 1.5 s.

  .venv/bin/python bench/notify_latency.py                  # 100 alerts, 0.5 s apart
  .venv/bin/python bench/notify_latency.py --alerts 20      # quicker

Needs `cargo build --release` (target/release/sidewatch) or $SIDEWATCH_BIN.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from harness import Agent, WebhookReceiver, wait_until  # noqa: E402

RULES = """\
groups:
  - name: latency
    interval: 1s
    rules:
      - alert: Boom
        expr: sum by (alert_id) (count_over_time({source="app"} | event="boom" [5m])) > 0
        for: 0s
        annotations: { summary: "boom {{ $labels.alert_id }}" }
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q * (len(ordered) - 1))))
    return ordered[k]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--alerts", type=int, default=100)
    parser.add_argument("--gap", type=float, default=0.5, help="seconds between alerts")
    args = parser.parse_args()
    binary = os.environ.get("SIDEWATCH_BIN") or str(REPO / "target" / "release" / "sidewatch")
    if not os.access(binary, os.X_OK):
        print(f"error: {binary} not found: run `cargo build --release` first", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="sidewatch-latency-") as tmp:
        tmp_path = Path(tmp)
        log = tmp_path / "app.log"
        log.touch()
        (tmp_path / "rules.yaml").write_text(RULES)
        hook = WebhookReceiver(tmp_path)
        config = {
            "service": {"name": "latency", "environment": "bench"},
            "logs": [{"name": "app", "paths": [str(log)], "format": "structlog", "start_at": "end"}],
            "rules": {
                "files": [str(tmp_path / "rules.yaml")],
                "evaluation_interval": "1s",
                "evaluation_delay": "0s",
            },
            "alerting": {
                "route": {
                    "receiver": "hook",
                    "group_by": ["alertname", "alert_id"],
                    "group_wait": "0s",
                    "group_interval": "1m",
                    "repeat_interval": "1h",
                },
                "receivers": [{"name": "hook", "webhook": {"url": hook.url}}],
            },
        }
        written: dict[str, float] = {}
        # Gaps drawn around --gap (seeded), so write times fall at every phase of the
        # 1 s evaluation grid rather than at two fixed ones.
        rng = random.Random(1)
        with Agent(tmp_path, config, binary=binary) as agent:
            with log.open("a") as f:
                for i in range(args.alerts):
                    alert_id = f"a{i:04d}"
                    line = {
                        "event": "boom",
                        "level": "error",
                        "alert_id": alert_id,
                        "timestamp": dt.datetime.now(dt.timezone.utc).isoformat(),
                    }
                    written[alert_id] = time.time()
                    f.write(json.dumps(line) + "\n")
                    f.flush()
                    time.sleep(rng.uniform(0.5 * args.gap, 1.5 * args.gap))  # pacing, not synchronisation

            def arrivals() -> dict[str, float]:
                out: dict[str, float] = {}
                for r in hook.delivered():
                    for a in (r["json"] or {}).get("alerts", []):
                        alert_id = a["labels"].get("alert_id")
                        if a["status"] == "firing" and alert_id not in out:
                            out[alert_id] = r["time"]
                return out

            got = wait_until(
                lambda: (lambda a: a if len(a) >= args.alerts else None)(arrivals()),
                60,
                lambda: f"{len(arrivals())} of {args.alerts} alerts at the webhook",
            )
            agent.terminate()
    latencies = [got[k] - written[k] for k in written]
    p50, p90, p99 = (percentile(latencies, q) for q in (0.5, 0.9, 0.99))
    print(f"alerts: {len(latencies)}, one every ~{args.gap:g} s; evaluation_interval 1s, group_wait 0s, for 0s")
    print(
        f"log line written -> webhook received: p50 {p50 * 1000:.0f} ms  p90 {p90 * 1000:.0f} ms  "
        f"p99 {p99 * 1000:.0f} ms  max {max(latencies) * 1000:.0f} ms  mean {statistics.mean(latencies) * 1000:.0f} ms"
    )
    verdict = "PASS" if p99 <= 1.5 else "FAIL"
    print(f"target p99 <= 1500 ms: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
