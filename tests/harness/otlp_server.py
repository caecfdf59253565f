"""A real OTLP receiver for the e2e tests, on the official OpenTelemetry protobufs.

Run as a process by `harness.otlp.OtlpReceiver`: ``python otlp_server.py GRPC_PORT HTTP_PORT DIR``.
It serves OTLP/gRPC (the `LogsService`, `MetricsService` and `TraceService` of
``opentelemetry-proto``) and OTLP/HTTP (``POST /v1/logs``, ``/v1/metrics``, ``/v1/traces``,
protobuf or JSON, gzip or not) and appends every request it accepts to
``DIR/<signal>.jsonl`` as the protobuf's JSON mapping (``MessageToDict``, ids in base64 as
the mapping writes them; the reader converts). ``POST /_script`` with ``{"statuses": [503,
503], "then": 200, "retry_after": "1", "grpc": "UNAVAILABLE"}`` scripts the next answers of
both transports, to exercise retries (TESTING.md: the SDK retries on UNAVAILABLE / 503).
"""

from __future__ import annotations

import gzip
import json
import sys
import threading
import time
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import grpc
from google.protobuf.json_format import MessageToDict, Parse
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

SIGNALS = {
    "logs": (logs_service_pb2.ExportLogsServiceRequest, logs_service_pb2.ExportLogsServiceResponse),
    "metrics": (metrics_service_pb2.ExportMetricsServiceRequest, metrics_service_pb2.ExportMetricsServiceResponse),
    "traces": (trace_service_pb2.ExportTraceServiceRequest, trace_service_pb2.ExportTraceServiceResponse),
}


class Recorder:
    def __init__(self, directory: Path):
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.lock = threading.Lock()
        self.script = {"statuses": [], "then": 200, "retry_after": None, "grpc": "UNAVAILABLE"}

    def next_status(self) -> tuple[int, str | None, str]:
        with self.lock:
            status = self.script["statuses"].pop(0) if self.script["statuses"] else self.script["then"]
            return status, self.script.get("retry_after"), self.script.get("grpc") or "UNAVAILABLE"

    def record(self, signal: str, message, transport: str, headers: dict) -> None:
        entry = {
            "transport": transport,
            "time": time.time(),
            "headers": headers,
            "request": MessageToDict(message, use_integers_for_enums=True),
        }
        with self.lock, (self.dir / f"{signal}.jsonl").open("a") as f:
            f.write(json.dumps(entry) + "\n")


def grpc_servicer(recorder: Recorder, signal: str, base):
    request_type, response_type = SIGNALS[signal]

    class Servicer(base):
        def Export(self, request, context):  # noqa: N802 (grpc API)
            status, _, code = recorder.next_status()
            if status != 200:
                context.abort(getattr(grpc.StatusCode, code), f"scripted {code}")
            headers = {k: v for k, v in context.invocation_metadata()}
            recorder.record(signal, request, "grpc", headers)
            return response_type()

    return Servicer()


def main() -> None:
    grpc_port, http_port, directory = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
    recorder = Recorder(directory)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    logs_service_pb2_grpc.add_LogsServiceServicer_to_server(
        grpc_servicer(recorder, "logs", logs_service_pb2_grpc.LogsServiceServicer), server)
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(
        grpc_servicer(recorder, "metrics", metrics_service_pb2_grpc.MetricsServiceServicer), server)
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(
        grpc_servicer(recorder, "traces", trace_service_pb2_grpc.TraceServiceServicer), server)
    server.add_insecure_port(f"127.0.0.1:{grpc_port}")
    server.start()

    class Handler(BaseHTTPRequestHandler):
        disable_nagle_algorithm = True
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):  # noqa: A003 (stdlib API)
            print(fmt % args, flush=True)

        def do_POST(self):  # noqa: N802 (stdlib API)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            if self.path == "/_script":
                with recorder.lock:
                    recorder.script.update(json.loads(body))
                return self._answer(200, b"{}", "application/json")
            signal = self.path.rsplit("/", 1)[-1]
            if not self.path.startswith("/v1/") or signal not in SIGNALS:
                return self._answer(404, b"not found", "text/plain")
            status, retry_after, _ = recorder.next_status()
            if status != 200:
                extra = {"Retry-After": retry_after} if retry_after else {}
                return self._answer(status, b"", "application/x-protobuf", extra)
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            request_type, response_type = SIGNALS[signal]
            content_type = self.headers.get("Content-Type", "")
            message = request_type()
            try:
                if content_type.startswith("application/json"):
                    Parse(body.decode(), message)
                else:
                    message.ParseFromString(body)
            except Exception as e:  # a malformed body is the sender's bug: 400, as a collector does
                return self._answer(400, str(e).encode(), "text/plain")
            headers = {k.lower(): v for k, v in self.headers.items()}
            recorder.record(signal, message, "http", headers)
            self._answer(200, response_type().SerializeToString(), "application/x-protobuf")

        def _answer(self, status, body, content_type, extra=None):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

    http = ThreadingHTTPServer(("127.0.0.1", http_port), Handler)
    print(f"otlp receiver: grpc 127.0.0.1:{grpc_port}, http 127.0.0.1:{http_port}", flush=True)
    http.serve_forever()


if __name__ == "__main__":
    main()
