"""Spans read back from the OTLP receiver (`harness.otlp.OtlpReceiver`).

`spans(receiver)` flattens every span that arrived (over gRPC `TraceService/Export` or
HTTP `/v1/traces`) into one dict with its transport and headers, resource and scope,
hex ids, status, attributes and events — the shape `OtlpReceiver.log_records()` gives
log records. protobuf's JSON mapping writes ids as base64 and int64 as strings; both
are converted here.
"""

from __future__ import annotations

from .otlp import OtlpReceiver, attributes, hex_id

# OTLP's `Status.StatusCode`.
STATUS_UNSET, STATUS_OK, STATUS_ERROR = 0, 1, 2


def spans(receiver: OtlpReceiver) -> list[dict]:
    out = []
    for entry in receiver.requests("traces"):
        for rs in entry["request"].get("resourceSpans", []):
            resource = attributes(rs.get("resource", {}).get("attributes", []))
            for ss in rs.get("scopeSpans", []):
                scope = ss.get("scope", {})
                for span in ss.get("spans", []):
                    status = span.get("status", {})
                    out.append(
                        {
                            "transport": entry["transport"],
                            "headers": entry["headers"],
                            "resource": resource,
                            "scope": {"name": scope.get("name", ""), "version": scope.get("version", "")},
                            "name": span.get("name", ""),
                            "kind": span.get("kind", 0),
                            "trace_id": hex_id(span.get("traceId")),
                            "span_id": hex_id(span.get("spanId")),
                            "parent_span_id": hex_id(span.get("parentSpanId")),
                            "start_time_unix_nano": int(span.get("startTimeUnixNano", 0)),
                            "end_time_unix_nano": int(span.get("endTimeUnixNano", 0)),
                            "status_code": int(status.get("code", STATUS_UNSET)),
                            "status_message": status.get("message", ""),
                            "attributes": attributes(span.get("attributes", [])),
                            "events": [
                                {
                                    "name": event.get("name", ""),
                                    "time_unix_nano": int(event.get("timeUnixNano", 0)),
                                    "attributes": attributes(event.get("attributes", [])),
                                }
                                for event in span.get("events", [])
                            ],
                        }
                    )
    return out
