"""A webhook receiver for the e2e tests: records every request, answers scripted statuses.

Run as a process by `harness.webhook.WebhookReceiver`: ``python webhook_server.py PORT DIR``.
Each request to any path but ``/_script`` is appended to ``DIR/requests.jsonl`` as
``{"path", "headers", "body", "status", "time"}`` — the status it was answered with.
``POST /_script`` with a JSON body ``{"statuses": [500, 500], "then": 200,
"retry_after": "7"}`` sets the answers of the next requests (a stdlib server with Nagle
off, as TESTING.md advises).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def main() -> None:
    port, directory = int(sys.argv[1]), Path(sys.argv[2])
    directory.mkdir(parents=True, exist_ok=True)
    log = directory / "requests.jsonl"
    lock = threading.Lock()
    script = {"statuses": [], "then": 200, "retry_after": None}

    class Handler(BaseHTTPRequestHandler):
        disable_nagle_algorithm = True
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):  # noqa: A003 (stdlib API)
            print(fmt % args, flush=True)

        def do_POST(self):  # noqa: N802 (stdlib API)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            if self.path == "/_script":
                with lock:
                    script.update(json.loads(body))
                self._answer(200, b"{}")
                return
            with lock:
                status = script["statuses"].pop(0) if script["statuses"] else script["then"]
                retry_after = script.get("retry_after")
                record = {
                    "path": self.path,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": body.decode("utf-8", "replace"),
                    "status": status,
                    "time": time.time(),
                }
                with log.open("a") as f:
                    f.write(json.dumps(record) + "\n")
            extra = {"Retry-After": retry_after} if status == 429 and retry_after else {}
            self._answer(status, b"{}", extra)

        def _answer(self, status, body, extra=None):
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print(f"webhook receiver on 127.0.0.1:{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
