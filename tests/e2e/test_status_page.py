"""End-to-end test of the status page (`GET /`) in a real browser.

The real FastAPI app runs as 1.0.0 under `/checkout` traffic with an agent on it (the
set-up of test_deployments.py, whose helpers this reuses), with a token set; a second
probe points at a port nothing listens on, and an alert rule fires on the app's failed
checkouts with a summary that carries markup. The app is redeployed as a worse 1.1.0,
so the verification fails early and `DeploymentVerdict` fires. Once the API shows all
of that, headless Chromium loads the page with the token as its Basic password: the
rendered DOM must show each probe with its state, the firing alerts (the markup as
text), the deployments newest first with their verdicts and the evidence the API
reports, the queues, and the auto-refresh. The screenshot is kept in
``target/e2e-artifacts/status-page.png`` for people to look at.

Run: .venv/bin/python -m pytest tests/e2e/test_status_page.py -q -s  (needs target/debug/sidewatch).
"""

from __future__ import annotations

from contextlib import ExitStack
from html.parser import HTMLParser

import pytest
import requests

from harness import Agent, StructlogApp, free_port, wait_until
from harness.secrets import secret
from harness.agent import REPO
from harness import browser

# test_deployments.py's components and readers (tests/e2e is on sys.path: pytest's
# rootdir-relative import of this directory's modules).
from harness.traffic import Traffic
from test_deployments import RULES, V1, agent_config, deployment, deployments_doc, wait_baseline

TOKEN = secret("page-s3cret-81c4")
SCREENSHOT = REPO / "target" / "e2e-artifacts" / "status-page.png"

# Fires while any checkout fails (1.0.0 fails 2% of them, 1.1.0 40%); its summary
# carries markup that must reach the browser as text.
ALERT_RULE = """\
      - alert: CheckoutErrors
        expr: sum by (path) (count_over_time({source="app"} | event="request finished" | status >= 500 [10s])) > 0
        labels:
          severity: page
        annotations:
          summary: 'failed checkouts on {{ $labels.path }} <script>alert("x")</script>'
"""


class Sections(HTMLParser):
    """The page's `<section id=...>`s: their text, and their table rows as cell texts
    (the `<h3>` of each deployment article counts as a one-cell row, so a
    deployment's checks follow their deployment)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.sections: dict[str, dict] = {}
        self._section: dict | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self._section = self.sections.setdefault(attrs.get("id", ""), {"text": [], "rows": []})
        elif self._section is not None and tag in ("tr", "h3"):
            self._row = []
            if tag == "h3":
                self._cell = []
        elif self._row is not None and tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th", "h3") and self._row is not None and self._cell is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        if tag in ("tr", "h3") and self._row is not None:
            self._section["rows"].append(self._row)
            self._row = None
        if tag == "section":
            self._section = None

    def handle_data(self, data):
        if self._section is not None:
            self._section["text"].append(data)
        if self._cell is not None:
            self._cell.append(data)


def sections(dom: str) -> dict[str, dict]:
    parser = Sections()
    parser.feed(dom)
    for s in parser.sections.values():
        s["text"] = " ".join("".join(s["text"]).split())
    return parser.sections


def alert_names(agent: Agent) -> set[str]:
    body = agent.get("/api/v1/alerts").json()
    return {a["labels"]["alertname"] for a in body["data"]["alerts"] if a["state"] == "firing"}


def probes(agent: Agent) -> dict[str, dict]:
    return {p["name"]: p for p in agent.get("/api/v1/status").json()["probes"]}


@pytest.mark.timeout(120)
def test_status_page_in_a_browser(tmp_path):
    with ExitStack() as stack:
        app = stack.enter_context(StructlogApp(tmp_path, version="1.0.0", env=V1, start=False))
        app.start(wait=False)
        config = agent_config(tmp_path, app)
        rules_file = tmp_path / "rules" / "deployments.yaml"
        rules_file.write_text(RULES.replace("verifications:", ALERT_RULE + "verifications:", 1))
        config["api"] = {"token": TOKEN}
        config["probes"].append(
            {"name": "backend", "url": f"http://127.0.0.1:{free_port()}/health", "interval": "1s", "timeout": "1s"}
        )
        agent = stack.enter_context(Agent(tmp_path, config))
        agent.session.headers["Authorization"] = f"Bearer {TOKEN}"
        app.wait_ready()
        stack.enter_context(Traffic(app))
        wait_until(
            lambda: deployments_doc(agent)["live"] == "1.0.0",
            30,
            lambda: f"1.0.0 to be live: {deployments_doc(agent)}",
        )
        wait_baseline(app)
        # 1.1.0: 40% of checkouts fail (was 2%) and each is 40ms slower.
        app.redeploy("1.1.0", env={**V1, "APP_ERROR_RATIO": "0.4", "APP_EXTRA_LATENCY_MS": "40"})

        # The state the page must show, read from the API first (bounded polls).
        wait_until(
            lambda: agent.get("/api/v1/deployments/1.1.0").status_code == 200
            and deployment(agent, "1.1.0")["verdict"] == "fail",
            60,
            lambda: f"1.1.0 to fail verification: {agent.get('/api/v1/deployments/1.1.0').text}",
        )
        wait_until(
            lambda: {"DeploymentVerdict", "CheckoutErrors"} <= alert_names(agent),
            30,
            lambda: f"DeploymentVerdict and CheckoutErrors firing: {agent.get('/api/v1/alerts').text}",
        )
        wait_until(
            lambda: (lambda p: p.get("health", {}).get("success") is True
                     and p.get("health", {}).get("version") == "1.1.0"
                     and p.get("backend", {}).get("success") is False)(probes(agent)),
            30,
            lambda: f"health up on 1.1.0 and backend down: {probes(agent)}",
        )
        doc = deployment(agent, "1.1.0")

        # Without credentials the page asks for Basic auth (what makes a browser prompt).
        r = requests.get(agent.api_url + "/", timeout=10)
        assert r.status_code == 401 and r.headers.get("WWW-Authenticate") == 'Basic realm="sidewatch"', (
            r.status_code, r.headers,
        )

        host = agent.api_url.removeprefix("http://")
        url = f"http://x:{TOKEN}@{host}/"
        dom = browser.dump_dom(url)
        shot = browser.screenshot(url, SCREENSHOT)
        print(f"\nstatus page screenshot: {shot}")

        assert '<meta http-equiv="refresh" content="5">' in dom, dom[:2000]
        assert "<script" not in dom, "markup from an alert reached the DOM as a tag"
        page = sections(dom)
        assert set(page) == {"probes", "alerts", "deployments", "queues"}, list(page)

        probe_rows = {row[0]: row for row in page["probes"]["rows"][1:]}
        assert probe_rows["health"][1] == "up" and probe_rows["health"][4] == "1.1.0", probe_rows
        assert probe_rows["health"][3] == "200", probe_rows
        assert probe_rows["backend"][1] == "down" and probe_rows["backend"][6], (
            f"backend should be down with its error: {probe_rows}"
        )

        alert_rows = {row[1]: row for row in page["alerts"]["rows"][1:]}
        assert {"DeploymentVerdict", "CheckoutErrors"} <= set(alert_rows), page["alerts"]
        verdict_alert = alert_rows["DeploymentVerdict"]
        assert verdict_alert[0] == "firing", verdict_alert
        assert "version=1.1.0" in verdict_alert[2] and "verdict=fail" in verdict_alert[2], verdict_alert
        assert "version 1.1.0 is worse than 1.0.0" in verdict_alert[5], verdict_alert
        errors_alert = alert_rows["CheckoutErrors"]
        assert errors_alert[0] == "firing" and "path=/checkout" in errors_alert[2], errors_alert
        assert errors_alert[5] == 'failed checkouts on /checkout <script>alert("x")</script>', (
            f"the summary should be shown as text: {errors_alert}"
        )

        # Deployments newest first, each title "version verdict [after previous]", then
        # the checks of that deployment with the API's evidence.
        rows = page["deployments"]["rows"]
        titles = [r[0] for r in rows if len(r) == 1]
        assert titles == ["1.1.0 fail after 1.0.0", "1.0.0 initial"], titles
        checks = {r[0]: r for r in rows if len(r) == 10 and r[0] != "check"}
        assert set(checks) == {c["name"] for c in doc["checks"]}, (checks, doc["checks"])
        for c in doc["checks"]:
            row = checks[c["name"]]
            # Decided early: a check without a verdict of its own is undecided.
            assert row[2] == (c["verdict"] or "undecided"), (row, c)
            assert row[6] == f"{c['n_baseline']} / {c['n_current']}", (row, c)
        assert checks["error-ratio"][2] == "fail" and checks["latency"][2] == "fail", checks

        queues = page["queues"]
        queue_rows = {r[0]: r for r in queues["rows"]}
        capacity = agent.get("/api/v1/status").json()["queues"]["log_batches"]["capacity"]
        assert capacity >= 1 and queue_rows["pipeline (log batches)"][1].endswith(f"/ {capacity}"), (
            capacity, queue_rows,
        )
        assert "OTLP log queue" in queue_rows and "notifier outbox" in queue_rows, queue_rows
        assert queue_rows["active silences"][1] == "0", queue_rows
        assert queue_rows["app"][1] == "structlog" and str(app.log_path) in queue_rows["app"][3], queue_rows

        header = dom[dom.index("<header>") : dom.index("</header>")]
        assert "checkout-api" in header and "live version <b>1.1.0</b>" in header, header
