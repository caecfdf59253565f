"""End-to-end tests of sidewatch's OTLP log export against a real OTLP receiver.

The receiver (tests/harness/otlp_server.py) is built on the official OpenTelemetry
protobufs (`opentelemetry-proto` + `grpcio`) and records every request it accepts, over
gRPC and HTTP/protobuf. The structlog FastAPI app writes the log; the agent tails it and
exports; the test decodes what arrived and checks each mapped field, the resource, the
ids, and that every request id arrives — through 503s with a retry hint and through a
collector outage.

Run: .venv/bin/pytest tests/e2e/test_otlp.py -s   (needs target/debug/sidewatch).
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from harness import Agent, OtlpReceiver, StructlogApp, wait_until
from harness.endurance import memory_bound, proc_memory


def start(tmp_path: Path, app: StructlogApp, receiver: OtlpReceiver, protocol: str = "http/protobuf", **otlp) -> Agent:
    endpoint = receiver.grpc_endpoint if protocol == "grpc" else receiver.http_endpoint
    config = {
        "service": {"name": "checkout-api", "environment": "e2e"},
        "logs": [{"name": "app", "paths": [str(app.log_path)], "format": "structlog", "start_at": "beginning"}],
        "export": {"otlp": {"endpoint": endpoint, "protocol": protocol, **otlp}},
        "deployments": {"detect": ["log_field"], "version_field": "version"},
    }
    return Agent(tmp_path, config)


def file_records(app: StructlogApp) -> dict[str, dict]:
    """The app's own log lines by request id: what the export must reproduce."""
    out = {}
    for line in app.log_path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if "request_id" in rec:
            out[rec["request_id"]] = rec
    return out


def arrived_ids(receiver: OtlpReceiver) -> Counter:
    return Counter(r["attributes"].get("request_id") for r in receiver.log_records())


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_every_record_arrives_with_its_fields_resource_and_ids(tmp_path, protocol):
    receiver = OtlpReceiver(tmp_path)
    with StructlogApp(tmp_path, version="2.3.4") as app, start(tmp_path, app, receiver, protocol) as agent:
        ids = app.work(200)
        error_id = app.error()
        wait_until(
            lambda: set(ids) | {error_id} <= set(arrived_ids(receiver)),
            60,
            lambda: f"all 201 request ids at the collector; {len(arrived_ids(receiver))} arrived",
        )
        written = file_records(app)
        records = {r["attributes"].get("request_id"): r for r in receiver.log_records()}
        for request_id in ids[:20] + [error_id]:
            got, line = records[request_id], written[request_id]
            assert got["transport"] == ("grpc" if protocol == "grpc" else "http")
            assert got["body"] == line["event"]
            assert got["severity_text"] == line["level"]
            assert got["time_unix_nano"] > 0 and got["observed_time_unix_nano"] >= got["time_unix_nano"] - 60e9
            if "trace_id" in line:
                assert got["trace_id"] == line["trace_id"], (got, line)
                assert got["span_id"] == line["span_id"], (got, line)
            for key in ("request_id", "path", "status"):
                if key in line:
                    assert got["attributes"][key] == line[key], (key, got["attributes"], line)
            resource = got["resource"]
            assert resource["service.name"] == "checkout-api", resource
            assert resource["service.version"] == "2.3.4", resource
            assert resource["deployment.environment.name"] == "e2e", resource
            assert resource.get("host.name"), resource
        assert records[ids[0]]["severity_number"] == 9  # INFO
        assert records[error_id]["severity_number"] == 17  # ERROR
        assert agent.metric_sum("sidewatch_export_dropped_total") == 0


def test_a_collector_answering_503_with_retry_after_gets_everything_once(tmp_path):
    receiver = OtlpReceiver(tmp_path)
    receiver.script([503, 503, 503], then=200, retry_after="1")
    with StructlogApp(tmp_path) as app, start(tmp_path, app, receiver) as agent:
        ids = app.work(500)
        wait_until(
            lambda: set(ids) <= set(arrived_ids(receiver)),
            60,
            lambda: f"500 ids after three 503s; {len(arrived_ids(receiver))} arrived",
        )
        counts = arrived_ids(receiver)
        assert max(counts[i] for i in ids) == 1, "no record twice without a crash"
        assert agent.metric_sum("sidewatch_export_dropped_total") == 0


def test_a_collector_outage_loses_nothing(tmp_path):
    """The collector goes away for 20 s while the app logs ~2,000 lines/s (the full
    2-minute version runs outside CI: bench/otlp_outage.py): nothing lost, memory
    bounded."""
    receiver = OtlpReceiver(tmp_path)
    with StructlogApp(tmp_path) as app, start(tmp_path, app, receiver) as agent:
        first = app.work(100)
        wait_until(lambda: set(first) <= set(arrived_ids(receiver)), 60, "the first 100 ids")
        idle_rss, _ = proc_memory(agent.process.pid)
        receiver.stop()
        ids: list[str] = []
        stop = threading.Event()

        def load():
            while not stop.is_set():
                ids.extend(app.work(200))
                time.sleep(0.1)  # pacing: ~2,000 lines/s

        writer = threading.Thread(target=load, daemon=True)
        writer.start()
        down_since = time.monotonic()
        wait_until(lambda: time.monotonic() - down_since >= 20, 30, "20 s of outage")
        stop.set()
        writer.join(30)
        assert agent.healthz() == 200, "the agent keeps answering during the outage"
        # The records wait on disk, not in memory: the peak stays within the bound the
        # endurance harness works out from the config (queue.memory is 16 MiB here).
        _, peak = proc_memory(agent.process.pid)
        bound, formula = memory_bound(idle_rss, queue_memory=16 * 1024 * 1024)
        print(f"outage: peak RSS {peak / 2**20:.1f} MiB, bound {formula}")
        assert peak <= bound, f"peak RSS {peak / 2**20:.1f} MiB over the bound {formula}"
        queued = agent.metric_sum("sidewatch_export_queue_bytes", signal="logs")
        assert queued > 0, "the records wait in the queue"
        status = agent.get("/api/v1/status").json()
        assert status["queues"]["otlp_logs_bytes"] > 0, status["queues"]
        receiver.start()
        wait_until(
            lambda: set(ids) <= set(arrived_ids(receiver)),
            120,
            lambda: f"{len(set(ids) - set(arrived_ids(receiver)))} of {len(ids)} ids still missing",
        )
        assert agent.metric_sum("sidewatch_export_dropped_total") == 0


def prometheus_name(metric: dict) -> str:
    """The Collector's translation of an OTLP metric name to Prometheus (the
    `prometheus` exporter with metric suffixes): dots to underscores, the unit as a
    suffix, `_total` for a monotonic sum. What README documents and dashboards use."""
    name = metric["name"].replace(".", "_")
    name += {"s": "_seconds", "By": "_bytes"}.get(metric.get("unit", ""), "")
    if metric.get("sum", {}).get("isMonotonic"):
        name += "_total"
    return name


def metric_points(receiver: OtlpReceiver) -> dict[str, list[dict]]:
    """The data points of the last metrics request, by Prometheus name."""
    requests = receiver.requests("metrics")
    if not requests:
        return {}
    out: dict[str, list[dict]] = {}
    for rm in requests[-1]["request"].get("resourceMetrics", []):
        for sm in rm.get("scopeMetrics", []):
            for metric in sm.get("metrics", []):
                data = metric.get("sum") or metric.get("gauge") or {}
                out[prometheus_name(metric)] = data.get("dataPoints", [])
    return out


def point_value(point: dict) -> float:
    return float(point["asInt"]) if "asInt" in point else float(point.get("asDouble", 0.0))


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_metrics_arrive_with_otel_names_that_translate_back_to_the_prometheus_names(tmp_path, protocol):
    receiver = OtlpReceiver(tmp_path)
    endpoint = receiver.grpc_endpoint if protocol == "grpc" else receiver.http_endpoint
    with StructlogApp(tmp_path, version="3.1.0") as app:
        config = {
            "service": {"name": "checkout-api", "environment": "e2e"},
            "logs": [{"name": "app", "paths": [str(app.log_path)], "format": "structlog", "start_at": "beginning"}],
            "probes": [{"name": "health", "url": app.url + "/health", "interval": "500ms", "version_from": "$.version"}],
            "export": {"otlp": {"endpoint": endpoint, "protocol": protocol, "metrics_interval": "1s",
                                 "signals": ["metrics"]}},
        }
        with Agent(tmp_path, config) as agent:
            app.work(40)
            wait_until(
                lambda: agent.metric_sum("sidewatch_log_records_total", source="app") >= 40
                and agent.metric_sum("probe_success", probe="health") == 1,
                30,
                "the agent to count the records and probe the app",
            )
            counted = agent.metric_sum("sidewatch_log_records_total", source="app")

            def exported_records() -> float:
                points = metric_points(receiver).get("sidewatch_log_records_total", [])
                return sum(point_value(p) for p in points
                           if any(a["key"] == "source" and a["value"].get("stringValue") == "app"
                                  for a in p.get("attributes", [])))

            wait_until(lambda: exported_records() >= counted, 30,
                       lambda: f"an export with the {counted} records counted; last: {exported_records()}")
            points = metric_points(receiver)
            scraped = {name for name, _, _ in agent.metric_samples()}
            missing = scraped - set(points)
            extra = set(points) - scraped
            assert not extra, f"exported names that /metrics does not have: {sorted(extra)}"
            # Series that appeared between the export and the scrape are the only allowed gap.
            assert len(missing) <= 3, f"/metrics series missing from the export: {sorted(missing)}"
            assert point_value(points["probe_success"][0]) == 1.0
            assert points["probe_duration_seconds"], "the probe's duration, unit s"
            request = receiver.requests("metrics")[-1]
            assert request["transport"] == ("grpc" if protocol == "grpc" else "http")
            rm = request["request"]["resourceMetrics"][0]
            resource = {a["key"]: a["value"].get("stringValue") for a in rm["resource"]["attributes"]}
            assert resource["service.name"] == "checkout-api", resource
            assert resource["deployment.environment.name"] == "e2e", resource
            assert resource.get("service.version") == "3.1.0", resource
            sums = [m for sm in rm["scopeMetrics"] for m in sm["metrics"] if "sum" in m]
            assert sums and all(m["sum"]["aggregationTemporality"] in (2, "AGGREGATION_TEMPORALITY_CUMULATIVE")
                                for m in sums), "counters are cumulative sums"
            assert not receiver.requests("logs"), "signals: [metrics] sends no logs"
    receiver.stop()
