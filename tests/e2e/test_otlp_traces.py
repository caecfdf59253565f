"""End-to-end test of sidewatch's own spans exported over OTLP traces.

The real FastAPI + structlog app runs as 1.0.0 under steady `/checkout` traffic; an
agent tails its log, probes `/health` (`version_from`) and exports to the real OTLP
receiver (tests/harness/otlp_server.py, official protobufs) over HTTP/protobuf or gRPC.
The app is redeployed as a good version (1.1.0: passes after `verify_window`), then a
bad one (1.2.0: 40% errors, fails early; its `DeploymentVerdict` goes to a webhook
receiver), then a fix (1.2.1) whose verification the agent's SIGTERM interrupts.

What arrives at the receiver is checked against the agent's own API and the webhook's
requests: a `deployment.verify` span per verified version with its verdict, one
`deployment.check` event per check, error status on the failed one; a
`notification.deliver` span for the webhook delivery (outcome `delivered`, the same
notification id the webhook saw, no URL anywhere); the shutdown flush of the
interrupted verification; the resource; and that nothing but the agent's own spans
(no hyper/h2/tonic/reqwest/tower spans of the export itself) is exported.

Windows are seconds (verify 8s, baseline 30s, probe grace 2s, batch timeout 200ms).

Run: .venv/bin/python -m pytest tests/e2e/test_otlp_traces.py -q -s  (needs target/debug/sidewatch).
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import pytest

from harness import Agent, OtlpReceiver, StructlogApp, WebhookReceiver, wait_until
from harness.otlp_spans import STATUS_ERROR, STATUS_UNSET, spans
from harness.traffic import Traffic, verifications

RULES = "groups: []\n" + verifications(checks=("error-ratio", "latency", "health"))
CHECKS = {"error-ratio", "latency", "health"}
OUR_SPANS = {"deployment.verify", "notification.deliver"}
# The crates the exporter itself sends through (their spans must never be exported).
EXPORT_STACK = ["hyper", "hyper_util", "h2", "tonic", "tower", "reqwest", "rustls"]

GOOD = {"APP_ERROR_RATIO": "0.02", "APP_EXCEPTION_TYPE": "TimeoutError"}
BAD = {**GOOD, "APP_ERROR_RATIO": "0.4", "APP_EXTRA_LATENCY_MS": "40"}


def agent_config(tmp_path: Path, app: StructlogApp, receiver: OtlpReceiver, hook: WebhookReceiver,
                 protocol: str) -> dict:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    return {
        "service": {"name": "checkout-api", "environment": "e2e"},
        "logs": [{"name": "app", "paths": [str(app.log_path)], "format": "structlog", "start_at": "beginning"}],
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
        "deployments": {
            "verify_window": "8s",
            "baseline_window": "30s",
            "probe_grace": "2s",
            "probe_boost": "500ms",
        },
        "rules": {"files": [str(rules)], "evaluation_interval": "1s"},
        "alerting": {
            "route": {
                "receiver": "log",
                "group_wait": "0s",
                "group_interval": "1s",
                "routes": [{"matchers": ['alertname="DeploymentVerdict"'], "receiver": "hook"}],
            },
            "receivers": [{"name": "hook", "webhook": {"url": hook.url}}],
        },
        "export": {
            "otlp": {
                "endpoint": receiver.grpc_endpoint if protocol == "grpc" else receiver.http_endpoint,
                "protocol": protocol,
                "headers": {"x-api-key": "s3cret-key"},
            }
        },
    }


def deployments_doc(agent: Agent) -> dict:
    r = agent.get("/api/v1/deployments")
    assert r.status_code == 200, f"/api/v1/deployments answered {r.status_code}: {r.text}"
    return r.json()


def deployment(agent: Agent, version: str) -> dict | None:
    return next((d for d in deployments_doc(agent)["deployments"] if d["version"] == version), None)


def decided(agent: Agent, version: str) -> dict | None:
    d = deployment(agent, version)
    return d if d and d.get("verdict") else None


def verify_spans(receiver: OtlpReceiver, version: str) -> list[dict]:
    return [
        s for s in spans(receiver)
        if s["name"] == "deployment.verify" and s["attributes"].get("deployment.version") == version
    ]


def summary(receiver: OtlpReceiver) -> str:
    return repr([(s["name"], s["attributes"]) for s in spans(receiver)])


def assert_verify_span(span: dict, doc: dict, verdict: str) -> None:
    """The span of one verification against the agent's own account of it."""
    attrs = span["attributes"]
    assert attrs["deployment.id"] == doc["id"], (attrs, doc)
    assert attrs["deployment.baseline_version"] == doc["previous"], (attrs, doc)
    assert attrs["deployment.detected_by"], attrs
    assert attrs["deployment.verdict"] == verdict == doc["verdict"], (attrs, doc)
    assert span["parent_span_id"] is None, "a verification is a root span"
    assert span["end_time_unix_nano"] > span["start_time_unix_nano"], span
    events = [e for e in span["events"] if e["name"] == "deployment.check"]
    by_name = {e["attributes"]["check.name"]: e["attributes"] for e in events}
    assert len(events) == len(CHECKS) and set(by_name) == CHECKS, f"one event per check: {events}"
    for check in doc["checks"]:
        got = by_name[check["name"]]
        assert got["check.kind"] == check["kind"], (got, check)
        assert got["check.verdict"] == (check["verdict"] or "undecided"), (got, check)
        assert got["check.samples.current"] == check["n_current"] or check["verdict"] is None, (got, check)
    for event in events:
        assert span["start_time_unix_nano"] <= event["time_unix_nano"] <= span["end_time_unix_nano"], event


@pytest.mark.timeout(90)
@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_deployment_and_notification_spans_arrive(tmp_path, protocol):
    receiver = OtlpReceiver(tmp_path)
    hook = WebhookReceiver(tmp_path)
    with ExitStack() as stack:
        app = stack.enter_context(StructlogApp(tmp_path, version="1.0.0", env=GOOD, start=False))
        app.start(wait=False)
        agent = stack.enter_context(
            Agent(tmp_path, agent_config(tmp_path, app, receiver, hook, protocol), start=False)
        )
        # The export's own HTTP/gRPC stack at its most verbose: its spans exist in the
        # agent (the log layer wants them) and must still not be exported.
        agent.process.env["SIDEWATCH_LOG"] = f"info,{','.join(f'{t}=trace' for t in EXPORT_STACK)}"
        agent.start()
        app.wait_ready()
        traffic = stack.enter_context(Traffic(app))
        wait_until(lambda: deployments_doc(agent)["live"] == "1.0.0", 30,
                   lambda: f"1.0.0 live: {deployments_doc(agent)}")
        # A baseline of ~2s of traffic.
        wait_until(lambda: traffic.calls >= 160, 30, lambda: f"160 calls of 1.0.0 (at {traffic.calls})")

        app.redeploy("1.1.0", env=GOOD)
        good = wait_until(lambda: decided(agent, "1.1.0"), 40,
                          lambda: f"a verdict for 1.1.0: {deployment(agent, '1.1.0')}")
        assert good["verdict"] == "pass", good

        app.redeploy("1.2.0", env=BAD)
        bad = wait_until(lambda: decided(agent, "1.2.0"), 30,
                         lambda: f"a verdict for 1.2.0: {deployment(agent, '1.2.0')}")
        assert bad["verdict"] == "fail", bad
        notified = wait_until(lambda: hook.delivered(), 20, "the DeploymentVerdict notification at the webhook")

        (good_span,) = wait_until(lambda: verify_spans(receiver, "1.1.0"), 10,
                                  lambda: f"the 1.1.0 deployment.verify span; arrived: {summary(receiver)}")
        assert_verify_span(good_span, good, "pass")
        assert good_span["status_code"] == STATUS_UNSET, good_span

        (bad_span,) = wait_until(lambda: verify_spans(receiver, "1.2.0"), 10,
                                 lambda: f"the 1.2.0 deployment.verify span; arrived: {summary(receiver)}")
        assert_verify_span(bad_span, bad, "fail")
        assert bad_span["status_code"] == STATUS_ERROR, bad_span
        assert "error-ratio" in bad_span["status_message"], bad_span
        assert bad_span["trace_id"] != good_span["trace_id"], "each verification is its own trace"
        ratio = next(e["attributes"] for e in bad_span["events"] if e["attributes"]["check.name"] == "error-ratio")
        assert ratio["check.verdict"] == "fail", ratio
        assert ratio["check.current"] > ratio["check.threshold"] > ratio["check.baseline"], ratio
        assert ratio["check.samples.baseline"] >= 50 and ratio["check.p_value"] < ratio["check.alpha"], ratio

        notification_id = notified[0]["headers"]["x-sidewatch-notification-id"]
        deliveries = wait_until(
            lambda: [s for s in spans(receiver) if s["name"] == "notification.deliver"
                     and s["attributes"].get("notification.id") == notification_id],
            10,
            lambda: f"the notification.deliver span of {notification_id}; arrived: {summary(receiver)}",
        )
        (delivered,) = [s for s in deliveries if s["attributes"]["outcome"] == "delivered"]
        attrs = delivered["attributes"]
        assert (attrs["notification.receiver"], attrs["notification.integration"]) == ("hook", "webhook"), attrs
        assert attrs["notification.alerts"] == 1 and attrs["notification.status"] == "firing", attrs
        assert delivered["status_code"] == STATUS_UNSET, delivered

        # The fix goes out and the agent stops mid-verification: the interrupted span is
        # flushed at shutdown.
        app.redeploy("1.2.1", env=GOOD)
        wait_until(lambda: deployment(agent, "1.2.1"), 20, lambda: f"1.2.1 seen: {deployments_doc(agent)}")
        traffic.__exit__(None, None, None)
        agent.terminate()
        (interrupted,) = wait_until(lambda: verify_spans(receiver, "1.2.1"), 5,
                                    lambda: f"the interrupted 1.2.1 span after SIGTERM; arrived: {summary(receiver)}")
        assert interrupted["attributes"].get("deployment.interrupted") is True, interrupted
        assert "deployment.verdict" not in interrupted["attributes"], interrupted

    everything = spans(receiver)
    assert {s["transport"] for s in everything} == {"grpc" if protocol == "grpc" else "http"}
    assert all(s["headers"].get("x-api-key") == "s3cret-key" for s in everything), "configured headers sent"
    # Only the agent's own spans: none of the HTTP/gRPC stack the export itself uses.
    assert {s["name"] for s in everything} <= OUR_SPANS, sorted({s["name"] for s in everything})
    assert {s["scope"]["name"] for s in everything} == {"sidewatch"}, {s["scope"]["name"] for s in everything}
    assert all(s["scope"]["version"] for s in everything), "the agent's version on the scope"
    for s in everything:
        resource = s["resource"]
        assert resource["service.name"] == "checkout-api", resource
        assert resource["deployment.environment.name"] == "e2e", resource
        assert resource.get("host.name"), resource
        # No secret in any attribute: the webhook URL, the exporter's header value.
        values = [str(v) for v in s["attributes"].values()]
        values += [str(v) for e in s["events"] for v in e["attributes"].values()]
        assert not any(hook.url in v or "s3cret" in v for v in values), s
