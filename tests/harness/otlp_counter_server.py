"""A counting OTLP/HTTP logs receiver for the endurance runs (soak, overload).

``otlp_server.py`` keeps every request as JSON: right for a test that reads fields back,
far too much for an hour at 5,000 records/s. This one decodes each request with the
official protobufs (``opentelemetry-proto``) and keeps only counts, in a compact form:

- mode ``count``: requests and records (``len(log_records)``; no per-record work), so
  it costs little CPU beside an overloaded agent;
- mode ``identity``: also each record's identity, ``sidewatch.file_id`` + ``sidewatch.offset``
  (SPEC: ``file`` + ``offset`` identify a record; ``file_id`` is the file's inode and
  fingerprint, so rotated generations of one path are told apart) and its ``seq``
  attribute. The lines of an endurance writer all have the same length ``--line-bytes``,
  so a record's offset is ``index × line-bytes``: per file a ``bytearray`` of arrival
  counts by index (1 byte a line: 18 MB for an hour at 5,000/s) and one for ``seq``.
  A record whose offset is not a multiple of the line length is counted as misaligned.

Run by ``harness.endurance.OtlpCounter``: ``python otlp_counter_server.py PORT STATE MODE LINE_BYTES``.
``POST /v1/logs`` (protobuf, gzip or not) → 200; ``GET /_summary`` → the counts as JSON
(``?files=1``: per file_id distinct/duplicates/highest index). SIGTERM is a graceful
collector stop: no new connection is accepted, requests being handled finish and are
answered (every response closes its connection, so nothing idles), then the state is
pickled to ``STATE`` and reloaded by the next start on the same path — the collector
"goes away" as a process while the counts survive, and a record is never counted
without its request having been answered 200.
"""

from __future__ import annotations

import gzip
import json
import os
import pickle
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from opentelemetry.proto.collector.logs.v1 import logs_service_pb2


class Counts:
    def __init__(self, mode: str, line_bytes: int):
        self.mode = mode
        self.line_bytes = line_bytes
        self.requests = 0
        self.records = 0
        self.misaligned = 0
        self.no_identity = 0
        self.files: dict[str, bytearray] = {}
        self.seq = bytearray()
        self.starts = 0

    @staticmethod
    def _bump(arr: bytearray, i: int) -> None:
        if i >= len(arr):
            arr.extend(bytes(max(i + 1 - len(arr), len(arr) // 2, 1 << 16)))
        if arr[i] < 255:
            arr[i] += 1

    def add(self, request) -> None:
        self.requests += 1
        if self.mode == "count":
            self.records += sum(
                len(sl.log_records) for rl in request.resource_logs for sl in rl.scope_logs
            )
            return
        lb = self.line_bytes
        for rl in request.resource_logs:
            for sl in rl.scope_logs:
                for rec in sl.log_records:
                    self.records += 1
                    file_id = offset = seq = None
                    for kv in rec.attributes:
                        k = kv.key
                        if k == "sidewatch.offset":
                            offset = kv.value.int_value
                        elif k == "sidewatch.file_id":
                            file_id = kv.value.string_value
                        elif k == "seq":
                            seq = kv.value.int_value
                    if seq is not None:
                        self._bump(self.seq, seq)
                    if file_id is None or offset is None:
                        self.no_identity += 1
                        continue
                    if offset % lb:
                        self.misaligned += 1
                        continue
                    arr = self.files.get(file_id)
                    if arr is None:
                        arr = self.files[file_id] = bytearray()
                    self._bump(arr, offset // lb)

    @staticmethod
    def _tally(arr: bytearray) -> dict:
        distinct = len(arr) - arr.count(0)
        total = sum(arr) if distinct else 0
        top = len(arr.rstrip(b"\x00"))
        return {"distinct": distinct, "duplicates": total - distinct, "top": top}

    def summary(self, files: bool = False) -> dict:
        out = {
            "mode": self.mode,
            "starts": self.starts,
            "requests": self.requests,
            "records": self.records,
            "misaligned": self.misaligned,
            "no_identity": self.no_identity,
        }
        if self.mode == "identity":
            seq = self._tally(self.seq)
            out["seq"] = seq
            tallies = {fid: self._tally(arr) for fid, arr in self.files.items()}
            out["by_identity"] = {
                "files": len(tallies),
                "distinct": sum(t["distinct"] for t in tallies.values()),
                "duplicates": sum(t["duplicates"] for t in tallies.values()),
            }
            if files:
                out["files"] = tallies
        return out


def main() -> None:
    port, state_path, mode, line_bytes = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
    if os.path.exists(state_path):
        with open(state_path, "rb") as f:
            counts = pickle.load(f)
    else:
        counts = Counts(mode, line_bytes)
    counts.starts += 1
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, fmt, *args):  # noqa: A003 (stdlib API): keep the output small
            pass

        def do_GET(self):  # noqa: N802 (stdlib API)
            url = urlparse(self.path)
            if url.path != "/_summary":
                return self._answer(404, b"not found", "text/plain")
            with lock:
                body = json.dumps(counts.summary(files="files" in parse_qs(url.query))).encode()
            self._answer(200, body, "application/json")

        def do_POST(self):  # noqa: N802 (stdlib API)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            if self.path != "/v1/logs":
                return self._answer(404, b"not found", "text/plain")
            try:
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                request = logs_service_pb2.ExportLogsServiceRequest()
                request.ParseFromString(body)
            except Exception as e:  # the sender's bug: 400, as a collector answers
                return self._answer(400, str(e).encode(), "text/plain")
            with lock:
                counts.add(request)
            self._answer(
                200,
                logs_service_pb2.ExportLogsServiceResponse().SerializeToString(),
                "application/x-protobuf",
            )

        def _answer(self, status, body, content_type):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True

    class Server(ThreadingHTTPServer):
        daemon_threads = False  # server_close() joins the handlers: answered before the state is saved
        block_on_close = True
        allow_reuse_address = True

    server = Server(("127.0.0.1", port), Handler)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    print(f"otlp counter ({mode}) on 127.0.0.1:{port}, start #{counts.starts}", flush=True)
    stop.wait()
    server.shutdown()  # no new request
    server.server_close()  # joins the requests in progress
    thread.join()
    tmp = state_path + ".tmp"
    with lock, open(tmp, "wb") as f:
        pickle.dump(counts, f, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, state_path)
    print(f"otlp counter stopped: {json.dumps(counts.summary())}", flush=True)


if __name__ == "__main__":
    main()
