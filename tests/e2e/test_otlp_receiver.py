"""End-to-end tests of sidewatch's OTLP receiver with the real OpenTelemetry Python SDK.

The FastAPI app runs with ``APP_OTEL=grpc|http``: the real SDK (FastAPI instrumentation,
``BatchSpanProcessor``, the OTLP span exporter of that protocol) sends its spans to
sidewatch's ``otlp_receiver``; sidewatch relays them to the real Python OTLP receiver
(tests/harness/otlp_server.py, the official protobufs) and turns the server spans into
the ``{source="otlp"}`` stream. The test checks what arrived at the collector (the
resource now carries the live deployment's ``service.version``, also after a redeploy,
and the config's ``service.name``), that a recording rule over ``{source="otlp"}`` counts
the failing requests, and that the spans' trace ids are those of the app's log records.

Run: .venv/bin/pytest tests/e2e/test_otlp_receiver.py -s   (needs target/debug/sidewatch).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness import Agent, OtlpReceiver, StructlogApp, free_port, wait_until
from harness.otlp import attributes, hex_id

RULES = """\
groups:
  - name: otlp
    interval: 1s
    rules:
      - record: otlp:server_errors:count5m
        expr: sum(count_over_time({source="otlp"} | status >= 500 [5m]))
      - record: otlp:requests:count5m
        expr: sum by (deployment) (count_over_time({source="otlp"} | event="GET /checkout" [5m]))
"""


def server_spans(collector: OtlpReceiver) -> list[dict]:
    """The app's server spans at the collector (the agent's own spans, if it exports
    any, are left out: their resource is not the Python SDK's)."""
    out = []
    for entry in collector.requests("traces"):
        for rs in entry["request"].get("resourceSpans", []):
            resource = attributes(rs.get("resource", {}).get("attributes", []))
            if resource.get("telemetry.sdk.language") != "python":
                continue
            for ss in rs.get("scopeSpans", []):
                for span in ss.get("spans", []):
                    if span.get("kind") not in (2, "SPAN_KIND_SERVER"):
                        continue
                    out.append(
                        {
                            "transport": entry["transport"],
                            "resource": resource,
                            "name": span.get("name"),
                            "trace_id": hex_id(span.get("traceId")),
                            "span_id": hex_id(span.get("spanId")),
                            "attributes": attributes(span.get("attributes", [])),
                        }
                    )
    return out


def log_lines(app: StructlogApp) -> list[dict]:
    out = []
    for line in app.log_path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def live(agent: Agent) -> str | None:
    r = agent.get("/api/v1/deployments")
    assert r.status_code == 200, r.text
    return r.json().get("live")


def recorded(agent: Agent, name: str, **labels: str) -> float:
    return agent.metric_sum(name, **labels)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_app_spans_are_relayed_with_the_deployment_and_feed_rules(tmp_path: Path, protocol: str):
    collector = OtlpReceiver(tmp_path)
    grpc_port, http_port = free_port(), free_port()
    receiver_port = grpc_port if protocol == "grpc" else http_port
    rules_file = tmp_path / "rules" / "otlp.yaml"
    rules_file.parent.mkdir()
    rules_file.write_text(RULES)
    app = StructlogApp(
        tmp_path,
        version="1.0.0",
        start=False,
        env={
            "APP_OTEL": protocol,
            "APP_ERROR_RATIO": "0.25",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver_port}",
        },
    )
    config = {
        "service": {"name": "checkout-api", "environment": "e2e"},
        "logs": [{"name": "app", "paths": [str(app.log_path)], "format": "structlog", "start_at": "beginning"}],
        "otlp_receiver": {"grpc": f"127.0.0.1:{grpc_port}", "http": f"127.0.0.1:{http_port}"},
        "export": {"otlp": {"endpoint": collector.grpc_endpoint, "protocol": "grpc"}},
        "deployments": {"detect": ["log_field"], "version_field": "version"},
        "rules": {"files": [str(rules_file)], "evaluation_interval": "1s", "evaluation_delay": "500ms"},
    }
    with Agent(tmp_path, config) as agent, app:
        app.start()
        # The app's "app started" line makes 1.0.0 the live version.
        wait_until(lambda: live(agent) == "1.0.0", 30, lambda: f"1.0.0 live; {agent.get('/api/v1/deployments').text}")
        statuses = [app.checkout().status_code for _ in range(8)]
        assert statuses.count(500) == 2, statuses  # every 4th call fails

        def checkout_spans(version: str | None = None) -> list[dict]:
            return [
                s
                for s in server_spans(collector)
                if s["attributes"].get("http.route") == "/checkout"
                and (version is None or s["resource"].get("service.version") == version)
            ]

        wait_until(
            lambda: len(checkout_spans()) >= 8,
            30,
            lambda: f"8 /checkout server spans at the collector; got {len(checkout_spans())}",
        )
        spans = checkout_spans()
        assert len(spans) == 8, spans
        for span in spans:
            assert span["resource"]["service.version"] == "1.0.0", span
            assert span["resource"]["service.name"] == "checkout-api", span  # over unknown_service
            assert span["resource"]["deployment.environment.name"] == "e2e", span

        # The spans' trace ids are the app's log records' (structlog reads the real span).
        lines = [r for r in log_lines(app) if r.get("event") == "request finished" and r.get("path") == "/checkout"]
        assert len(lines) == 8
        assert {r["trace_id"] for r in lines} == {s["trace_id"] for s in spans}
        by_trace = {s["trace_id"]: s for s in spans}
        for r in lines:
            assert by_trace[r["trace_id"]]["span_id"] == r["span_id"], (r, by_trace[r["trace_id"]])

        # The recording rule over {source="otlp"} sees the two failures.
        wait_until(
            lambda: recorded(agent, "otlp:server_errors:count5m") == 2,
            30,
            lambda: f"otlp:server_errors:count5m == 2; /metrics: {[l for l in agent.metrics_text().splitlines() if l.startswith('otlp:')]}",
        )
        records = agent.records(source="otlp")
        checkout_records = [r for r in records if r["attributes"].get("http.route") == "/checkout"]
        assert len(checkout_records) == 8, records
        assert {r["trace_id"] for r in checkout_records} == {s["trace_id"] for s in spans}
        assert all(r["deployment"] == "1.0.0" for r in checkout_records), checkout_records
        errors = [r for r in checkout_records if r["attributes"]["status"] >= 500]
        assert len(errors) == 2 and all(r["severity_text"] == "error" for r in errors), errors
        assert all(r["attributes"]["duration_ms"] > 0 for r in checkout_records)

        # A redeploy: the new version's spans carry the new service.version.
        app.redeploy("2.0.0", env={"APP_OTEL": protocol})
        wait_until(lambda: live(agent) == "2.0.0", 30, lambda: f"2.0.0 live; {agent.get('/api/v1/deployments').text}")
        for _ in range(4):
            assert app.checkout().status_code == 200
        wait_until(
            lambda: len(checkout_spans("2.0.0")) >= 4,
            30,
            lambda: f"4 spans of 2.0.0; versions seen: {[s['resource'].get('service.version') for s in checkout_spans()]}",
        )
        assert len(checkout_spans()) == 12
        wait_until(
            lambda: recorded(agent, "otlp:requests:count5m", deployment="2.0.0") == 4,
            30,
            lambda: f"4 requests of 2.0.0 in the rule; /metrics: {[l for l in agent.metrics_text().splitlines() if l.startswith('otlp:')]}",
        )
        assert recorded(agent, "otlp:requests:count5m", deployment="1.0.0") == 8
        assert {s["transport"] for s in checkout_spans()} == {"grpc"}  # sidewatch → collector
        assert agent.metric_sum("sidewatch_otlp_receiver_received_total", signal="traces") >= 12
        assert agent.metric_sum("sidewatch_otlp_receiver_refused_total", signal="traces") == 0
        agent.terminate()
