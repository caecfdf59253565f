#!/usr/bin/env python3
"""The sidewatch demo: a deployment verified, a bad one caught, the alert delivered.

Run it with `make demo` (which builds the release binary and the Python venv first).
Everything runs on 127.0.0.1 on free ports, in a scratch directory under /tmp:

- the example service: a real FastAPI app logging through structlog
  (tests/app/app.py), version 1.0.0, under steady background traffic;
- a local SMTP catcher (aiosmtpd with STARTTLS and AUTH, its own private CA) and a
  webhook printer — the end-to-end tests' own components (tests/harness/);
- sidewatch, tailing the app's log, probing its /health (which reports the version),
  with the default rule pack (rules/) and alerts routed to email and the webhook.

Then it deploys 1.1.0 (same behaviour) and shows sidewatch's `pass` verdict with its
evidence, deploys 1.2.0 (more errors, slower) and shows the `fail` verdict, the alert
email and the webhook as they were received, the firing alerts, `sidewatch status` and
where the status page is. Verification windows are seconds here, not the production
minutes, so the whole story takes under a minute.

Exit 0 only if the verdicts were pass then fail and both notifications arrived.
`--keep` leaves everything running (traffic included) until Ctrl-C; either way every
process the demo started is stopped before it exits.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))

from harness.agent import Agent  # noqa: E402
from harness.app import StructlogApp  # noqa: E402
from harness.process import wait_until  # noqa: E402
from harness.smtp import SmtpServer  # noqa: E402
from harness.traffic import Traffic, verifications  # noqa: E402
from harness.webhook import WebhookReceiver  # noqa: E402

SERVICE = "demo-api"
RULE_PACK = REPO / "rules" / "python-service.yaml"

# Seconds instead of the production minutes, so a verdict arrives within the demo.
VERIFY_WINDOW = 20
DEPLOYMENTS = {
    "verify_window": f"{VERIFY_WINDOW}s",  # a passing version is watched this long
    "baseline_window": "30s",              # compared with this much of the previous one
    "probe_grace": "2s",                   # probe failures during the restart don't count
    "probe_boost": "500ms",                # probe faster while verifying
}

# The default pack's checks (rules/python-service.yaml), min_samples scaled to the
# demo's ~50 requests a second and 20-second windows.
VERIFICATIONS = verifications(min_samples=100, min_errors=3)

# The versions (tests/app/app.py reads these): 1.0.0 and 1.1.0 fail 1 call in 100 with
# a TimeoutError; 1.2.0 fails 1 in 4 and every call takes 40 ms longer.
GOOD = {"APP_ERROR_RATIO": "0.01", "APP_EXCEPTION_TYPE": "TimeoutError"}
BAD = {**GOOD, "APP_ERROR_RATIO": "0.25", "APP_EXTRA_LATENCY_MS": "40"}
RATE = 50.0  # background /checkout calls a second
BASELINE_CALLS = 300  # calls of 1.0.0 before the first deployment (~6 s)

BOLD, DIM, GREEN, RED, RESET = "\033[1m", "\033[2m", "\033[32m", "\033[31m", "\033[0m"


class DemoFailure(Exception):
    """Something the demo waited for did not happen; the message says what."""


# -- output -----------------------------------------------------------------------------


class Out:
    def __init__(self, color: bool):
        self.color = color
        self.t0 = time.monotonic()
        self.explained = False  # the evidence table's legend, shown once

    def c(self, code: str, text: str) -> str:
        return f"{code}{text}{RESET}" if self.color else text

    def heading(self, text: str) -> None:
        elapsed = time.monotonic() - self.t0
        print(f"\n{self.c(BOLD, '== ' + text)} {self.c(DIM, f'[{elapsed:4.0f}s]')}", flush=True)

    def line(self, text: str = "") -> None:
        print(text, flush=True)

    def block(self, text: str, max_lines: int, indent: str = "  ") -> None:
        lines = text.rstrip("\n").splitlines()
        for line in lines[:max_lines]:
            print(indent + line[:110] + ("…" if len(line) > 110 else ""))
        if len(lines) > max_lines:
            print(indent + self.c(DIM, f"… ({len(lines) - max_lines} more lines)"))
        sys.stdout.flush()

    def verdict(self, verdict: str) -> str:
        return self.c({"pass": GREEN, "fail": RED}.get(verdict, BOLD), verdict.upper())


# -- traffic ----------------------------------------------------------------------------


# -- reading sidewatch back -------------------------------------------------------------


def api_json(agent: Agent, path: str) -> dict:
    r = agent.get(path)
    if r.status_code != 200:
        raise DemoFailure(f"GET {path} answered {r.status_code}: {r.text[:300]}")
    return r.json()


def alive(agent: Agent) -> None:
    if not agent.running:
        raise DemoFailure(
            f"sidewatch exited with code {agent.process.returncode}; its log "
            f"({agent.process.log_path}) ends with:\n{agent.process.tail(30)}"
        )
    panics = [l for l in agent.process.output().splitlines() if " panicked at " in l]
    if panics:
        raise DemoFailure(f"sidewatch panicked: {panics[0]}")


def wait_for(predicate, timeout: float, what):
    """A bounded poll; DemoFailure naming what was awaited (`what`: a string, or a
    callable describing the state when time ran out) if it runs out."""
    try:
        return wait_until(predicate, timeout, what, interval=0.25)
    except AssertionError as e:
        raise DemoFailure(str(e)) from None


def deployment(agent: Agent, version: str) -> dict | None:
    r = agent.get(f"/api/v1/deployments/{version}")
    return r.json() if r.status_code == 200 else None


def num(value) -> float | None:
    """A finite number from the evidence, else None (NaN and ±inf are sent as strings)."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if value == value and abs(value) != float("inf") else None


def fmt_value(check: dict, key: str) -> str:
    value = num(check.get(key))
    if value is None:
        return "-"
    if check.get("kind") == "ratio":
        return f"{value * 100:.1f}%"
    if check.get("kind") == "distribution":  # the demo's is duration_ms
        return f"{value:.2f}ms" if value < 10 else f"{value:.0f}ms"
    return f"{value:g}"


def evidence_table(checks: list[dict], out: Out) -> None:
    """One line per check: verdict, baseline → new (limit), sample sizes, p-value."""
    out.line(out.c(DIM, f"  {'check':<12} {'verdict':<13} {'previous':>9} {'new':>9} {'limit':>9}"
                        f" {'samples (prev/new)':>19} {'p-value':>8}"))
    for c in checks:
        name, kind = c["name"], c.get("kind")
        if kind == "new_values":
            new = ", ".join(c.get("new_values") or []) or "none"
            prev, cur, limit = "-", f"new: {new}", f"{num(c.get('threshold')) or 0:g} new"
        elif kind == "probe":
            prev, cur, limit = "-", f"{num(c.get('current')) or 0:g} fail", f"{num(c.get('threshold')) or 0:g} fail"
        else:
            prev, cur, limit = fmt_value(c, "baseline"), fmt_value(c, "current"), fmt_value(c, "threshold")
        samples = f"{c.get('n_baseline', '-')}/{c.get('n_current', '-')}"
        p = num(c.get("p_value"))
        p = "-" if p is None else (f"{p:.2g}" if p >= 1e-4 else f"{p:.0e}")
        if c.get("verdict"):
            verdict = out.verdict(c["verdict"])
            pad = 13 + len(verdict) - len(c["verdict"])
        else:  # an early fail decides the deployment before every check is done
            verdict, pad = out.c(DIM, "running"), 13 + len(out.c(DIM, ""))
        out.line(f"  {name:<12} {verdict:<{pad}} {prev:>9} {cur:>9} {limit:>9} {samples:>19} {p:>8}")
        if c.get("note"):
            out.line(out.c(DIM, f"  {'':<12} {c['note']}"))
    alpha = next((num(c.get("alpha")) for c in checks if num(c.get("alpha"))), None)
    if alpha and not out.explained:
        out.explained = True
        out.line(out.c(DIM, f"  (a check fails only when new is over its limit and the p-value is below {alpha:.2g}: "
                            "confidence 0.99 for the whole deployment)"))


def webhook_view(body: dict) -> str:
    """The webhook body as pretty JSON, the alerts in full and every other top-level
    field on one line (long ones cut with "…")."""
    order = ["version", "status", "receiver", "groupKey", "groupLabels", "commonLabels",
             "commonAnnotations", "externalURL", "truncatedAlerts"]
    keys = [k for k in order if k in body] + [k for k in body if k not in order and k != "alerts"]
    lines = ["{"]
    for k in keys:
        value = json.dumps(body[k], ensure_ascii=False)
        if len(value) > 90:
            value = value[:89] + "…"
        lines.append(f'  "{k}": {value},')
    alerts = json.dumps(body.get("alerts", []), indent=2, ensure_ascii=False).splitlines()
    lines.append('  "alerts": ' + alerts[0])
    lines += ["  " + line for line in alerts[1:]]
    lines.append("}")
    return "\n".join(lines)


# -- the demo ---------------------------------------------------------------------------


class Demo:
    def __init__(self, scratch: Path, binary: Path, out: Out):
        self.scratch, self.binary, self.out = scratch, binary, out
        self.app: StructlogApp | None = None
        self.agent: Agent | None = None
        self.smtp: SmtpServer | None = None
        self.hook: WebhookReceiver | None = None
        self.traffic: Traffic | None = None
        self.verdicts: dict[str, str | None] = {}
        self.mail = None
        self.webhook_body: dict | None = None

    # -- setup ---------------------------------------------------------------------

    def rules_file(self) -> Path:
        """The default pack's alert rules, verbatim, with the demo-scaled verifications."""
        pack = RULE_PACK.read_text()
        marker = "\nverifications:"
        if marker not in pack:
            raise DemoFailure(f"{RULE_PACK} has no top-level `verifications:` to replace")
        groups = pack[: pack.index(marker)].rstrip()
        # Drop the comment block that introduces the pack's verifications.
        lines = groups.splitlines()
        while lines and lines[-1].startswith("#"):
            lines.pop()
        path = self.scratch / "rules" / "python-service.yaml"
        path.parent.mkdir()
        path.write_text(
            f"# {RULE_PACK.relative_to(REPO)}'s alert rules, verbatim.\n"
            + "\n".join(lines).rstrip()
            + "\n\n"
            + VERIFICATIONS
        )
        return path

    def config(self, app: StructlogApp, smtp: SmtpServer, hook: WebhookReceiver) -> dict:
        return {
            "service": {"name": SERVICE, "environment": "demo"},
            "logs": [
                {"name": "app", "paths": [str(app.log_path)], "format": "structlog", "start_at": "beginning"}
            ],
            "probes": [
                {
                    "name": "health",
                    "url": app.url + "/health",
                    "interval": "1s",
                    "timeout": "2s",
                    "expect": {"status": [200], "body_json": {"$.status": "ok"}},
                    "version_from": "$.version",
                }
            ],
            "deployments": DEPLOYMENTS,
            "rules": {"files": [str(self.rules_file())], "evaluation_interval": "1s"},
            "alerting": {
                "route": {
                    "receiver": "oncall",
                    "group_by": ["alertname", "service"],
                    "group_wait": "1s",
                    "group_interval": "10s",
                    "repeat_interval": "1h",
                },
                "receivers": [
                    {
                        "name": "oncall",
                        "email": {
                            "to": ["oncall@example.com"],
                            "from": "sidewatch@example.com",
                            "smarthost": smtp.smarthost,
                            "tls": "starttls",
                            "username": smtp.user,
                            "password": smtp.password,
                            "ca_file": str(smtp.ca),
                        },
                        "webhook": {"url": hook.url},
                    }
                ],
            },
        }

    def start(self) -> None:
        out = self.out
        out.heading("Starting the service, an SMTP catcher, a webhook printer and sidewatch")
        out.line(f"scratch directory: {self.scratch}")
        self.app = StructlogApp(self.scratch, version="1.0.0", env=GOOD, start=False)
        self.app.start(wait=False)  # uvicorn takes a few seconds: start the rest meanwhile
        self.smtp = SmtpServer(self.scratch)
        self.hook = WebhookReceiver(self.scratch)
        self.agent = Agent(
            self.scratch, self.config(self.app, self.smtp, self.hook), binary=self.binary, ready_timeout=60
        )
        self.app.wait_ready()
        out.line(f"app        FastAPI + structlog, v1.0.0 on {self.app.url}, logging to {self.app.log_path}")
        out.line(f"smtp       catcher on {self.smtp.smarthost} (STARTTLS with a private CA, AUTH)")
        out.line(f"webhook    printer on {self.hook.url}")
        out.line(f"sidewatch  {self.binary} run -c {self.agent.config_path}")
        out.line(f"           API and status page on {self.agent.api_url}; rules: the default pack {RULE_PACK.relative_to(REPO)}")
        out.line(f"           verify_window {DEPLOYMENTS['verify_window']}, baseline_window {DEPLOYMENTS['baseline_window']};"
                 " alerts to email + webhook, group_wait 1s")

        self.traffic = Traffic(self.app.url, RATE).start()
        out.line(f"traffic    GET /checkout, {RATE:g}/s in the background")
        wait_for(
            lambda: self.alive_and(lambda: (api_json(self.agent, "/api/v1/deployments").get("live") == "1.0.0")),
            30,
            "sidewatch to see version 1.0.0 live (from the log and the health probe)",
        )
        wait_for(
            lambda: self.alive_and(lambda: self.traffic.calls >= BASELINE_CALLS),
            60,
            lambda: f"{BASELINE_CALLS} calls to 1.0.0 as the baseline (at {self.traffic.calls}, "
            f"{self.traffic.refused} refused)",
        )
        out.line(f"sidewatch sees 1.0.0 live; {self.traffic.calls} calls served as its baseline "
                 f"({self.traffic.statuses[500]} failed)")

    def alive_and(self, predicate):
        alive(self.agent)
        return predicate()

    # -- deployments ---------------------------------------------------------------

    def deploy(self, version: str, env: dict, story: str, expect: str) -> dict:
        out = self.out
        out.heading(f"Deploying {version}: {story}")
        previous = self.app.version
        started, refused = time.monotonic(), self.traffic.refused
        self.app.redeploy(version, env=env)
        out.line(f"app restarted as {version} in {time.monotonic() - started:.1f}s "
                 f"({self.traffic.refused - refused} calls refused meanwhile)")
        doc = wait_for(
            lambda: self.alive_and(lambda: deployment(self.agent, version)),
            30,
            f"sidewatch to detect the deployment of {version}",
        )
        out.line(f"sidewatch detected it ({', '.join(doc.get('detected_by') or [])}) and verifies it "
                 f"against {doc.get('previous') or previous}; a pass takes the whole {VERIFY_WINDOW}s window, "
                 "a fail can come early")
        doc = wait_for(
            lambda: self.alive_and(lambda: (lambda d: d if d and d.get("verdict") else None)(deployment(self.agent, version))),
            VERIFY_WINDOW + 60,
            f"a verdict on {version}",
        )
        after = (doc["decided_at"] - doc["t0"]) / 1e9 if doc.get("decided_at") and doc.get("t0") else None
        self.verdicts[version] = doc["verdict"]
        (self.scratch / f"deployment-{version}.json").write_text(json.dumps(doc, indent=2))
        decided = f" after {after:.0f}s" if after is not None else ""
        out.line(f"verdict: {out.verdict(doc['verdict'])} — {version} against {doc.get('previous')}, decided{decided} "
                 f"(GET /api/v1/deployments/{version}):")
        evidence_table(doc.get("checks") or [], out)
        if doc["verdict"] != expect:
            raise DemoFailure(f"{version} was expected to {expect}, sidewatch said {doc['verdict']} "
                              f"(evidence above; the whole document is {self.scratch}/deployment-{version}.json)")
        return doc

    # -- notifications -------------------------------------------------------------

    def notifications(self, version: str) -> None:
        out = self.out

        def verdict_mail():
            for msg, envelope in self.smtp.messages():
                subject = str(msg["Subject"] or "")
                if "DeploymentVerdict" in subject and "FIRING" in subject:
                    return msg, envelope
            return None

        def verdict_hook():
            for r in self.hook.delivered():
                body = r.get("json") or {}
                if body.get("status") == "firing" and any(
                    a["labels"].get("alertname") == "DeploymentVerdict" and a["labels"].get("version") == version
                    for a in body.get("alerts", [])
                ):
                    return body
            return None

        self.mail, envelope = wait_for(lambda: self.alive_and(verdict_mail), 60,
                                       f"the DeploymentVerdict email in the SMTP catcher ({self.smtp.maildir})")
        out.heading("The alert email, as the SMTP catcher received it")
        how = ", ".join(x for x, ok in (("over STARTTLS", envelope.get("tls")), ("authenticated", envelope.get("authenticated"))) if ok)
        out.line(f"From: {self.mail['From']}   To: {self.mail['To']}   ({how or 'in clear, unauthenticated'})")
        out.line(f"Subject: {self.mail['Subject']}")
        text = self.mail.get_body(preferencelist=("plain",))
        out.line(out.c(DIM, "text part (an HTML part comes with it):"))
        out.block(text.get_content() if text else "(no text part)", max_lines=20)

        self.webhook_body = wait_for(lambda: self.alive_and(verdict_hook), 60,
                                     f"the DeploymentVerdict webhook at the printer ({self.hook.url})")
        out.heading("The webhook, as the printer received it (Alertmanager's JSON, version 4)")
        out.block(webhook_view(self.webhook_body), max_lines=40)

        others = sorted(
            {str(m["Subject"]) for m, _ in self.smtp.messages() if "DeploymentVerdict" not in str(m["Subject"])}
        )
        if others:
            out.line(out.c(DIM, "other notifications sent meanwhile (the default pack's rules):"))
            for subject in others:
                out.line(out.c(DIM, f"  {subject}"))

    def alerts_and_status(self) -> None:
        out = self.out
        out.heading("Firing alerts (GET /api/v1/alerts)")
        alerts = api_json(self.agent, "/api/v1/alerts").get("data", {}).get("alerts", [])
        for a in alerts:
            labels = dict(a.get("labels", {}))
            name = labels.pop("alertname", "?")
            summary = (a.get("annotations") or {}).get("summary", "")
            shown = ", ".join(f"{k}={v}" for k, v in labels.items() if k not in ("service", "environment"))
            out.line(f"  {a.get('state', '?'):<8} {name:<24} {shown}")
            if summary:
                out.line(out.c(DIM, f"  {'':<8} {summary}"))
        if not alerts:
            out.line("  (none)")

        out.heading(f"sidewatch status --url {self.agent.api_url}")
        run = subprocess.run(
            [str(self.binary), "status", "--url", self.agent.api_url],
            capture_output=True, text=True, timeout=30,
        )
        out.block(run.stdout + run.stderr, max_lines=20)
        if run.returncode != 0:
            raise DemoFailure(f"`sidewatch status` exited {run.returncode}")

    # -- teardown ------------------------------------------------------------------

    def stop(self) -> list[str]:
        """Stop everything this demo started (by PID); return what did not stop cleanly."""
        problems = []
        if self.traffic:
            self.traffic.stop()
        if self.agent and self.agent.process.popen:
            try:
                code = self.agent.process.terminate(timeout=20)
                if code != 0:
                    problems.append(f"sidewatch exited {code} after SIGTERM (expected 0)")
            except AssertionError as e:
                problems.append(str(e).splitlines()[0])
        for component in (self.app, self.smtp, self.hook):
            if component is not None:
                component.process.stop()
        return problems


def _interrupt(_signum, _frame) -> None:
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true",
                        help="leave everything running (with traffic) until Ctrl-C, then clean up")
    parser.add_argument("--binary", type=Path, default=REPO / "target" / "release" / "sidewatch",
                        help="the sidewatch binary (default: target/release/sidewatch, built by `make demo`)")
    args = parser.parse_args()
    binary = args.binary.resolve()
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        print(f"demo: no sidewatch binary at {binary}; build it with "
              "`cargo build --release -p sidewatch` (`make demo` does), or pass --binary PATH", file=sys.stderr)
        return 1

    out = Out(color=sys.stdout.isatty() and not os.environ.get("NO_COLOR"))
    # Ctrl-C and SIGTERM (e.g. a CI timeout) stop everything first. (SIGINT explicitly:
    # a shell starting the demo in the background would leave it ignored.)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)

    scratch = Path(tempfile.mkdtemp(prefix="sidewatch-demo-"))
    demo = Demo(scratch, binary, out)
    failure: str | None = None
    try:
        demo.start()
        demo.deploy("1.1.0", GOOD, "same code path, same 1% errors (should pass)", expect="pass")
        demo.deploy("1.2.0", BAD, "25% of checkouts fail and each is 40ms slower (should fail)", expect="fail")
        demo.notifications("1.2.0")
        demo.alerts_and_status()
        out.heading("The status page")
        out.line(f"open {demo.agent.api_url}/ in a browser (probes, deployments and verdicts, firing alerts)")
        if args.keep:
            demo.traffic.rate = 10.0  # a gentler pace while you look around
            out.line(f"\nEverything keeps running, traffic included (10/s). API: {demo.agent.api_url}/api/v1/status, "
                     f"{demo.agent.api_url}/metrics; files in {scratch}. Ctrl-C to stop.")
            threading.Event().wait()  # until Ctrl-C (KeyboardInterrupt)
    except DemoFailure as e:
        failure = str(e)
    except AssertionError as e:  # a harness component did not come up in time
        failure = str(e)
    except KeyboardInterrupt:
        if not (args.keep and len(demo.verdicts) == 2 and demo.webhook_body):
            failure = "interrupted"
    finally:
        # A second Ctrl-C must not cut the cleanup short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        out.line("\nstopping everything the demo started…")
        problems = demo.stop()

    elapsed = time.monotonic() - out.t0
    if failure is None and problems:
        failure = "; ".join(problems)
    if failure:
        out.heading("Demo FAILED")
        out.line(failure)
        if failure == "interrupted":
            shutil.rmtree(scratch, ignore_errors=True)
        else:
            out.line(f"every component's output is kept in {scratch} (sidewatch.log, app.log, smtp/, webhook.log)")
        out.line("everything the demo started has been stopped")
        return 1
    shutil.rmtree(scratch, ignore_errors=True)
    out.heading(f"Demo passed ({elapsed:.0f}s)")
    out.line("1.1.0 passed, 1.2.0 failed and was notified by email and webhook; everything it started is stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
