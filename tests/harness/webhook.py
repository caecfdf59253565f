"""A webhook receiver as a test component (see webhook_server.py).

`WebhookReceiver(tmp_path)` starts it on a free port; `.url` is where to point a
webhook; `requests()` reads back what arrived (body parsed as JSON when it is);
`script(statuses, then=200)` scripts the next answers (500 three times, then 200);
`verify_hmac(request, secret)` checks `X-Sidewatch-Signature`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sys
from pathlib import Path

import requests as http

from .ports import free_port
from .process import Process

HERE = Path(__file__).resolve().parent


class WebhookReceiver:
    def __init__(self, tmp_path: str | os.PathLike, name: str = "webhook"):
        self.dir = Path(tmp_path) / name
        self.port = free_port()
        self.process = Process(
            name,
            [sys.executable, HERE / "webhook_server.py", self.port, self.dir],
            log_dir=Path(tmp_path),
        )
        self.process.start()
        self.base = f"http://127.0.0.1:{self.port}"
        self.script([])
        self.url = self.base + "/hook"

    def script(self, statuses: list[int], then: int = 200, retry_after: str | None = None) -> None:
        from .process import wait_until

        def post():
            try:
                return http.post(
                    self.base + "/_script",
                    json={"statuses": statuses, "then": then, "retry_after": retry_after},
                    timeout=2,
                ).ok
            except http.ConnectionError:
                return False

        wait_until(post, 10, lambda: f"webhook receiver to answer:\n{self.process.tail()}")

    def requests(self, path: str | None = None) -> list[dict]:
        log = self.dir / "requests.jsonl"
        if not log.exists():
            return []
        out = []
        for line in log.read_text().splitlines():
            record = json.loads(line)
            try:
                record["json"] = json.loads(record["body"])
            except ValueError:
                record["json"] = None
            if path is None or record["path"] == path:
                out.append(record)
        return out

    def delivered(self, path: str | None = None) -> list[dict]:
        """The requests answered with 2xx: what the receiver accepted."""
        return [r for r in self.requests(path) if 200 <= r["status"] < 300]


def verify_hmac(request: dict, secret: str) -> bool:
    want = "sha256=" + hmac.new(secret.encode(), request["body"].encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(request["headers"].get("x-sidewatch-signature", ""), want)
