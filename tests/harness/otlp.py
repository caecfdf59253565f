"""A real OTLP receiver (official protobufs, gRPC and HTTP) as a test component.

`OtlpReceiver(tmp_path)` starts ``otlp_server.py`` on two free ports: ``.grpc_endpoint``
(``http://127.0.0.1:P``) and ``.http_endpoint`` (a base URL, `/v1/logs` appended by the
sender). `log_records()` flattens what arrived into one dict per record with its
resource and scope attributes and hex ids; `script([503, 503], then=200,
retry_after="1")` scripts the next answers; `stop()` / `start()` take it down and back
on the same ports (the "collector down" fault).
"""

from __future__ import annotations

import base64
import json
import os
import sys
from pathlib import Path
from typing import Any

import requests as http

from .ports import free_port
from .process import Process, wait_until

HERE = Path(__file__).resolve().parent


def _value(v: dict) -> Any:
    """An OTLP AnyValue (JSON mapping) as a Python value."""
    if "stringValue" in v:
        return v["stringValue"]
    if "intValue" in v:
        return int(v["intValue"])  # int64 comes as a string in the JSON mapping
    if "doubleValue" in v:
        return float(v["doubleValue"])
    if "boolValue" in v:
        return v["boolValue"]
    if "arrayValue" in v:
        return [_value(x) for x in v["arrayValue"].get("values", [])]
    if "kvlistValue" in v:
        return attributes(v["kvlistValue"].get("values", []))
    if "bytesValue" in v:
        return base64.b64decode(v["bytesValue"])
    return None


def attributes(kvs: list[dict]) -> dict[str, Any]:
    return {kv["key"]: _value(kv.get("value", {})) for kv in kvs}


def hex_id(b64: str | None) -> str | None:
    """protobuf's JSON mapping writes bytes as base64; OTLP ids are hex (TESTING.md)."""
    return base64.b64decode(b64).hex() if b64 else None


class OtlpReceiver:
    def __init__(self, tmp_path: str | os.PathLike, name: str = "otlp"):
        self.dir = Path(tmp_path) / name
        self.grpc_port, self.http_port = free_port(), free_port()
        self.process = Process(
            name,
            [sys.executable, HERE / "otlp_server.py", self.grpc_port, self.http_port, self.dir],
            log_dir=Path(tmp_path),
        )
        self.grpc_endpoint = f"http://127.0.0.1:{self.grpc_port}"
        self.http_endpoint = f"http://127.0.0.1:{self.http_port}"
        self.start()

    def start(self) -> "OtlpReceiver":
        self.process.start()
        wait_until(self._answers, 20, lambda: f"otlp receiver to answer:\n{self.process.tail()}")
        return self

    def stop(self) -> None:
        self.process.stop()

    def _answers(self) -> bool:
        try:
            return http.post(self.http_endpoint + "/_script", json={}, timeout=1).ok
        except http.ConnectionError:
            return False

    def script(self, statuses: list[int], then: int = 200, retry_after: str | None = None,
               grpc: str = "UNAVAILABLE") -> None:
        r = http.post(
            self.http_endpoint + "/_script",
            json={"statuses": statuses, "then": then, "retry_after": retry_after, "grpc": grpc},
            timeout=5,
        )
        r.raise_for_status()

    def requests(self, signal: str = "logs") -> list[dict]:
        path = self.dir / f"{signal}.jsonl"
        if not path.exists():
            return []
        # The receiver (another process) may be halfway through writing a large request:
        # only lines it has finished, up to the last newline, are read.
        data = path.read_bytes()
        data = data[: data.rfind(b"\n") + 1]
        return [json.loads(line) for line in data.decode().splitlines() if line.strip()]

    def log_records(self) -> list[dict]:
        """Every log record received, flattened: body, severity, times, attributes, hex
        trace/span ids, and its resource's and scope's attributes."""
        out = []
        for entry in self.requests("logs"):
            for rl in entry["request"].get("resourceLogs", []):
                resource = attributes(rl.get("resource", {}).get("attributes", []))
                for sl in rl.get("scopeLogs", []):
                    scope = sl.get("scope", {})
                    for rec in sl.get("logRecords", []):
                        out.append(
                            {
                                "transport": entry["transport"],
                                "headers": entry["headers"],
                                "resource": resource,
                                "scope": scope,
                                "body": _value(rec.get("body", {})),
                                "severity_number": rec.get("severityNumber"),
                                "severity_text": rec.get("severityText"),
                                "time_unix_nano": int(rec.get("timeUnixNano", 0)),
                                "observed_time_unix_nano": int(rec.get("observedTimeUnixNano", 0)),
                                "attributes": attributes(rec.get("attributes", [])),
                                "trace_id": hex_id(rec.get("traceId")),
                                "span_id": hex_id(rec.get("spanId")),
                            }
                        )
        return out
