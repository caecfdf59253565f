"""End-to-end test of a log source's `drop` and `redact` (SPEC: applied after parsing,
before anything leaves the pod or reaches the rules).

The real structlog FastAPI app logs a login handler's password, bearer token and
headers (a leak real apps have) and some records the source drops. The agent exports to
its JSONL file and over OTLP to the real receiver on the official protobufs; neither
may hold a secret or a dropped record, the agent's own log neither, and the counters say
what happened.

Run: .venv/bin/pytest tests/e2e/test_redaction.py -s   (needs target/debug/sidewatch).
"""

from __future__ import annotations

import json
from pathlib import Path

from harness import Agent, OtlpReceiver, StructlogApp, wait_until
from harness.secrets import secret

# Registered: the session-wide scan also checks that no agent output holds them.
PASSWORD = secret("hunter2-b9c1f3")
TOKEN = secret("eyJhbGciOi.s3cr3t-7f2a")


def test_dropped_records_and_secrets_never_leave_the_agent(tmp_path: Path):
    receiver = OtlpReceiver(tmp_path)
    with StructlogApp(tmp_path, version="1.0.0") as app:
        config = {
            "service": {"name": "checkout-api", "environment": "e2e"},
            "logs": [
                {
                    "name": "app",
                    "paths": [str(app.log_path)],
                    "format": "structlog",
                    "start_at": "beginning",
                    "drop": '| path="/work" and status == 404',
                    "redact": [
                        {"field": "password"},
                        {"pattern": "(?i)bearer [a-z0-9._-]+", "replace": "Bearer ***"},
                    ],
                }
            ],
            "export": {"otlp": {"endpoint": receiver.http_endpoint}},
        }
        with Agent(tmp_path, config) as agent:
            dropped = app.work(25, status=404)
            kept = app.work(30)
            login = app.login("ann", PASSWORD, TOKEN)
            wanted = set(kept) | {login}

            def otlp_ids() -> set:
                return {r["attributes"].get("request_id") for r in receiver.log_records()}

            wait_until(
                lambda: wanted <= otlp_ids(),
                60,
                lambda: f"the kept records at the collector; {len(wanted & otlp_ids())}/{len(wanted)} arrived",
            )
            records = agent.wait_records(
                lambda recs: wanted <= {(r.get("attributes") or {}).get("request_id") for r in recs},
                30,
                "the kept records in the file output",
            )

            # Dropped: in neither output; kept: in both.
            file_ids = {(r.get("attributes") or {}).get("request_id") for r in records}
            assert not set(dropped) & file_ids, "a dropped record reached the file output"
            assert not set(dropped) & otlp_ids(), "a dropped record reached the collector"
            assert set(kept) <= file_ids

            # The login record: redacted the same way in both outputs.
            in_file = next(r for r in records if (r.get("attributes") or {}).get("request_id") == login)
            in_otlp = next(r for r in receiver.log_records() if r["attributes"].get("request_id") == login)
            for attrs in (in_file["attributes"], in_otlp["attributes"]):
                assert attrs["password"] == "[REDACTED]", attrs
                assert attrs["authorization"] == "Bearer ***", attrs
                assert attrs["user"] == "ann", attrs
            assert in_file["attributes"]["headers"]["authorization"] == "Bearer ***"
            assert json.loads(in_otlp["attributes"]["headers"])["authorization"] == "Bearer ***"

            # The counters say what happened.
            assert agent.metric_sum("sidewatch_log_records_dropped_total", source="app") == 25
            assert agent.metric_sum("sidewatch_log_records_redacted_total", source="app") >= 1
            assert agent.metric_sum("sidewatch_log_records_total", source="app") >= 25 + 30 + 1

        # The app's own file has the secrets (the leak is real) ...
        assert PASSWORD in app.log_path.read_text() and TOKEN in app.log_path.read_text()
    # ... and nothing the agent wrote or sent does: file output, collector, its own log.
    outputs = {
        "file output": agent.sink_path.read_text(),
        "collector": "\n".join(json.dumps(e) for e in receiver.requests("logs")),
        "agent log": agent.process.output(),
    }
    receiver.stop()
    for name, text in outputs.items():
        for secret in (PASSWORD, TOKEN):
            assert secret not in text, f"{secret!r} leaked into the {name}"
