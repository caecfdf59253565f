"""End-to-end tests of sidewatch's alert rules against the real structlog FastAPI app.

The app is driven into an error ratio; the agent tails its log, evaluates a rule file
(the default pack's HighErrorRatio with second-scale windows, so a test takes seconds,
not minutes) and the alert is read back from the outside: `/api/v1/alerts`, `/metrics`
(checked by `promtool`) and the agent's own log lines. Reload (file change, SIGHUP, a
broken file) and a restart in the middle of a firing alert are covered too.

Run: .venv/bin/pytest tests/e2e/test_rules.py -s   (needs target/debug/sidewatch).
"""

from __future__ import annotations

import re
import signal
import threading
import time
from pathlib import Path

from harness import Agent, StructlogApp, promtool_check, wait_until

RULES = """\
groups:
  - name: e2e
    interval: 1s
    rules:
      - record: http:request_errors:ratio{window}
        expr: |
          sum by (path) (count_over_time({{source="app"}} | event="request finished" | status >= 500 [{window}]))
          /
          sum by (path) (count_over_time({{source="app"}} | event="request finished" [{window}]))
      - alert: HighErrorRatio
        expr: http:request_errors:ratio{window} > 0.05
        for: 2s
        labels: {{ severity: page }}
        annotations:
          summary: "{{{{ $labels.path }}}} fails {{{{ $value | humanizePercentage }}}} of requests"
"""


def rules_text(window: str = "10s") -> str:
    return RULES.format(window=window)


class Traffic:
    """Requests to the app in a background thread: `errors` of every 10 fail with 500."""

    def __init__(self, app: StructlogApp):
        self.app = app
        self.errors = 0
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.failure: BaseException | None = None

    def _run(self) -> None:
        try:
            while not self.stop_event.is_set():
                errors = self.errors
                self.app.work(10 - errors, status=200)
                if errors:
                    self.app.work(errors, status=500)
                time.sleep(0.05)
        except BaseException as e:  # surfaced by the test, never swallowed
            self.failure = e

    def __enter__(self) -> "Traffic":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop_event.set()
        self.thread.join(10)
        if self.failure:
            raise self.failure


def start(tmp_path: Path, app: StructlogApp, window: str = "10s", **rules) -> Agent:
    rules_file = tmp_path / "rules" / "app.yaml"
    rules_file.parent.mkdir(exist_ok=True)
    if not rules_file.exists():
        rules_file.write_text(rules_text(window))
    config = {
        "service": {"name": "checkout-api", "environment": "e2e"},
        "logs": [
            {
                "name": "app",
                "paths": [str(app.log_path)],
                "format": "structlog",
                "start_at": "beginning",
            }
        ],
        "rules": {
            "files": [str(rules_file.parent / "*.yaml")],
            "evaluation_interval": "1s",
            "evaluation_delay": "500ms",
            **rules,
        },
    }
    return Agent(tmp_path, config)


def alerts(agent: Agent, name: str = "HighErrorRatio", state: str | None = "firing") -> list[dict]:
    body = agent.get("/api/v1/alerts").json()
    assert body["status"] == "success", body
    return [
        a
        for a in body["data"]["alerts"]
        if a["labels"].get("alertname") == name and (state is None or a["state"] == state)
    ]


def test_high_error_ratio_fires_and_resolves(tmp_path):
    with StructlogApp(tmp_path) as app, start(tmp_path, app) as agent, Traffic(app) as traffic:
        traffic.errors = 1  # 10% of requests fail
        firing = wait_until(
            lambda: alerts(agent),
            60,
            lambda: f"HighErrorRatio firing in /api/v1/alerts; got {agent.get('/api/v1/alerts').text}",
        )
        alert = firing[0]
        assert alert["labels"] == {
            "alertname": "HighErrorRatio",
            "path": "/work",
            "severity": "page",
            "service": "checkout-api",
            "environment": "e2e",
        }
        assert 0.05 < float(alert["value"]) < 0.2, alert
        assert re.fullmatch(r"/work fails [0-9.]+% of requests", alert["annotations"]["summary"]), alert

        metrics = agent.metrics_text()
        promtool_check(metrics)
        assert agent.metric_sum("sidewatch_alerts", alertname="HighErrorRatio", state="firing") == 1
        ratio = [v for n, l, v in agent.metric_samples() if n == "http:request_errors:ratio10s"]
        assert ratio and 0.05 < ratio[0] < 0.2, f"recorded series in /metrics: {ratio}"

        traffic.errors = 0  # errors stop: the ratio's series vanishes within the 10s window
        wait_until(
            lambda: not alerts(agent, state=None),
            60,
            lambda: f"HighErrorRatio to resolve; /api/v1/alerts says {agent.get('/api/v1/alerts').text}",
        )
        assert agent.metric_sum("sidewatch_alerts", alertname="HighErrorRatio", state="firing") == 0
        log = agent.process.output()
        assert '"state":"firing"' in log and '"alertname":"HighErrorRatio"' in log, agent.process.tail()
        assert '"state":"resolved"' in log, agent.process.tail()


def rule_names(agent: Agent) -> list[str]:
    status = agent.get("/api/v1/status").json()
    return [r["name"] for g in status["rule_groups"] for r in g["rules"]]


def test_reload_keeps_state_and_rejects_a_broken_file(tmp_path):
    with StructlogApp(tmp_path) as app, start(tmp_path, app) as agent, Traffic(app) as traffic:
        traffic.errors = 2
        firing = wait_until(lambda: alerts(agent), 60, "HighErrorRatio to fire")
        active_at = firing[0]["activeAt"]
        rules_file = tmp_path / "rules" / "app.yaml"

        # A broken file: rejected with its position, the running rules stay.
        rules_file.write_text(rules_text() + "      - alert: Broken\n        expr: rate_over({source=\"app\"}[1m])\n")
        wait_until(
            lambda: agent.metric_sum("sidewatch_rule_reloads_total", outcome="failure") >= 1,
            30,
            "the broken rule file to be rejected",
        )
        assert re.search(r"app\.yaml:\d+:15: unknown function \\\"rate_over\\\"", agent.process.output()), agent.process.tail()
        assert rule_names(agent) == ["http:request_errors:ratio10s", "HighErrorRatio"]
        assert alerts(agent)[0]["activeAt"] == active_at

        # A good change (one more rule): applied; the unchanged alert keeps its state.
        rules_file.write_text(
            rules_text()
            + "      - alert: AnyError\n        expr: sum(count_over_time({source=\"app\"} | status >= 500 [10s])) > 0\n"
        )
        wait_until(lambda: "AnyError" in rule_names(agent), 30, "the new rule to be loaded")
        assert agent.metric_sum("sidewatch_rule_reloads_total", outcome="success") >= 1
        assert alerts(agent)[0]["activeAt"] == active_at, "an unchanged rule lost its alert state on reload"

        # SIGHUP reloads too.
        before = agent.metric_sum("sidewatch_rule_reloads_total", outcome="success")
        agent.process.popen.send_signal(signal.SIGHUP)
        wait_until(
            lambda: agent.metric_sum("sidewatch_rule_reloads_total", outcome="success") > before,
            30,
            "SIGHUP to reload the rules",
        )


def test_alert_and_windows_survive_a_restart(tmp_path):
    with StructlogApp(tmp_path) as app:
        agent = start(tmp_path, app, window="5m")
        with agent, Traffic(app) as traffic:
            traffic.errors = 3
            firing = wait_until(lambda: alerts(agent), 60, "HighErrorRatio to fire")
        # Traffic has stopped: after the restart only the saved windows can keep it firing.
        active_at = firing[0]["activeAt"]
        agent.terminate()
        agent.restart()
        with agent:
            after = wait_until(lambda: alerts(agent), 30, "HighErrorRatio firing again after the restart")
            assert after[0]["activeAt"] == active_at, (firing, after)
            ratio = [v for n, l, v in agent.metric_samples() if n == "http:request_errors:ratio5m"]
            assert ratio and ratio[0] > 0.05, ratio
            assert "rule state restored" in agent.process.output()
