"""SPEC's security promises, end to end: secrets never appear in what the agent says.

One agent is given every kind of secret SPEC names — the API token (from a file), an
SMTP password (from a file), a webhook URL (from a file: Slack-style URLs carry their
token) and HMAC secret, OTLP headers, an Alertmanager bearer token (from a file) — and
every peer that would receive them is unreachable, so each one ends up in an error path:
connection refused for mail, webhook, collector and Alertmanager, while an alert fires
and metrics are exported. Then everything the agent says is collected — its own log,
`/api/v1/status`, `/api/v1/alerts`, `/metrics`, the status page, refused API calls,
`sidewatch check`, `sidewatch status` — and searched for every secret value.

(The session-wide scan in tests/conftest.py does the same over every agent of every
test; this test makes sure the error paths are actually taken.)

Run: .venv/bin/pytest tests/e2e/test_security.py -s   (needs target/debug/sidewatch).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import requests

from harness import Agent, LineWriter, free_port, sidewatch_bin, to_yaml, wait_until
from harness.secrets import secret

TOKEN = secret("api-token-3f9a0c17")
SMTP_PASSWORD = secret("smtp-pass-77b2e4d1")
WEBHOOK_PATH = secret("T000-B000-hook-9c2e51aa")
HMAC = secret("hmac-key-0d4f7e29")
OTLP_KEY = secret("otlp-api-key-5a1c93bb")
AM_TOKEN = secret("am-bearer-6e0b2f48")

RULES = """\
groups:
  - name: security
    interval: 1s
    rules:
      - alert: PaymentFailures
        expr: sum(count_over_time({source="app"} | event="payment failed" [5s])) > 0
        for: 0s
"""


def test_no_secret_reaches_logs_status_errors_or_check_output(tmp_path: Path):
    closed = free_port()  # nothing listens here: every delivery fails
    files = {
        "token": TOKEN,
        "smtp-password": SMTP_PASSWORD,
        "webhook-url": f"http://127.0.0.1:{closed}/services/{WEBHOOK_PATH}",
        "am-token": AM_TOKEN,
    }
    for name, value in files.items():
        (tmp_path / name).write_text(value + "\n")
    (tmp_path / "rules.yaml").write_text(RULES)
    config = {
        "service": {"name": "checkout-api", "environment": "e2e"},
        "api": {"token_file": str(tmp_path / "token")},
        "logs": [{"name": "app", "paths": [str(tmp_path / "app.log")], "format": "structlog", "start_at": "end"}],
        "rules": {"files": [str(tmp_path / "rules.yaml")], "evaluation_interval": "1s", "evaluation_delay": "0s"},
        "export": {
            "otlp": {
                "endpoint": f"http://127.0.0.1:{closed}",
                "headers": {"x-api-key": OTLP_KEY},
                "metrics_interval": "1s",
                "timeout": "1s",
            }
        },
        "alerting": {
            "alertmanagers": [
                {"urls": [f"http://127.0.0.1:{closed}"], "bearer_token_file": str(tmp_path / "am-token"), "timeout": "1s"}
            ],
            "resend_delay": "1s",
            "route": {"receiver": "all", "group_wait": "0s", "group_interval": "1s"},
            "receivers": [
                {
                    "name": "all",
                    "email": {
                        "to": ["ops@example.com"],
                        "from": "sidewatch@example.com",
                        "smarthost": f"127.0.0.1:{closed}",
                        "username": "sidewatch",
                        "password_file": str(tmp_path / "smtp-password"),
                        "timeout": "1s",
                    },
                    "webhook": {
                        "url_file": str(tmp_path / "webhook-url"),
                        "hmac_secret": HMAC,
                        "timeout": "1s",
                    },
                }
            ],
        },
    }
    with Agent(tmp_path, config) as agent, LineWriter(tmp_path / "app.log", rate=5, event="payment failed"):
        # Every error path is taken: notifications retried, OTLP retried, Alertmanager posts failing.
        def failing_everywhere() -> bool:
            return (
                agent.metric_sum("sidewatch_notifications_total", receiver="all", outcome="retried") >= 2
                and agent.metric_sum("sidewatch_export_retries_total", signal="logs") >= 1
                and "alertmanager" in agent.process.output().lower()
            )

        wait_until(
            failing_everywhere,
            60,
            lambda: "mail and webhook retries, OTLP retries and an Alertmanager error in the log; log tail:\n"
            + agent.process.tail(30),
        )
        said: dict[str, str] = {}
        auth = {"Authorization": f"Bearer {TOKEN}"}
        for path in ("/api/v1/status", "/api/v1/alerts", "/api/v1/deployments", "/api/v1/silences", "/metrics", "/"):
            r = requests.get(agent.api_url + path, headers=auth, timeout=10)
            assert r.status_code == 200, f"{path}: {r.status_code} {r.text[:200]}"
            said[path] = r.text
        assert "PaymentFailures" in said["/api/v1/alerts"], "the alert fires (the error paths are real)"
        for wrong in ("Bearer nope", f"Bearer {TOKEN[:-1]}", "Basic eDp5"):
            r = requests.get(agent.api_url + "/api/v1/status", headers={"Authorization": wrong}, timeout=10)
            assert r.status_code == 401
            said[f"401 for {wrong[:6]}"] = r.text + str(r.headers)
        status = subprocess.run(
            [sidewatch_bin(), "status", "--url", agent.api_url, "--token", TOKEN],
            capture_output=True, text=True, timeout=30,
        )
        assert status.returncode == 0, status.stderr
        said["sidewatch status"] = status.stdout + status.stderr
    said["agent log"] = agent.process.output()
    check = subprocess.run(
        [sidewatch_bin(), "check", "-c", agent.config_path], capture_output=True, text=True, timeout=30
    )
    assert check.returncode == 0, check.stdout + check.stderr
    said["sidewatch check"] = check.stdout + check.stderr
    # A broken config with secrets in it: the errors name the keys, never the values.
    broken = dict(config, api={"token": TOKEN, "listen": "not-an-address"})
    broken["export"] = {"otlp": {"endpoint": "ftp://x", "headers": {"bad header": OTLP_KEY}}}
    broken_path = tmp_path / "broken.yaml"
    broken_path.write_text(to_yaml(broken))
    check = subprocess.run([sidewatch_bin(), "check", "-c", broken_path], capture_output=True, text=True, timeout=30)
    assert check.returncode == 1, check.stdout + check.stderr
    said["sidewatch check (broken)"] = check.stdout + check.stderr

    assert "connection refused" in said["agent log"].lower() or "refused" in said["agent log"].lower()
    leaks = [
        (where, value[:4] + "…")
        for where, text in said.items()
        for value in (TOKEN, SMTP_PASSWORD, WEBHOOK_PATH, HMAC, OTLP_KEY, AM_TOKEN)
        if value in text
    ]
    assert not leaks, f"secrets leaked: {leaks}"
