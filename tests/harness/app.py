"""The instrumented FastAPI app (tests/app/app.py) as a test component.

`StructlogApp` runs the real app under uvicorn on a free 127.0.0.1 port, writing
structlog JSON to ``<tmp>/logs/app.log`` through the chosen stdlib handler, and waits
for ``/health`` (uvicorn + FastAPI take ≈3 s to answer on these machines).
`.work(n)` makes the app log n records and returns their request ids, so a test knows
exactly which lines exist and can check each arrives exactly once.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import requests

from .ports import free_port
from .process import Process

APP_DIR = Path(__file__).resolve().parent.parent / "app"


class StructlogApp:
    def __init__(
        self,
        tmp_path: str | os.PathLike,
        *,
        handler: str = "rotating",
        max_bytes: int = 0,
        backups: int = 5,
        version: str = "1.0.0",
        log_path: str | os.PathLike | None = None,
        name: str = "app",
        start: bool = True,
        start_timeout: float = 60.0,
        access_log: bool = False,
    ):
        tmp_path = Path(tmp_path)
        self.log_path = Path(log_path) if log_path else tmp_path / "logs" / "app.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.version = version
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.start_timeout = start_timeout
        self.process = Process(
            name,
            [
                sys.executable, "-m", "uvicorn", "app:app",
                "--app-dir", APP_DIR,
                "--host", "127.0.0.1", "--port", str(self.port),
                "--workers", "1",
                # uvicorn's access log is plain text on stderr; off by default so a
                # failing test's output shows the app's errors, not 100 "GET /work" lines.
                *([] if access_log else ["--no-access-log"]),
            ],
            log_dir=tmp_path,
            env={
                "APP_LOG_PATH": str(self.log_path),
                "APP_LOG_HANDLER": handler,
                "APP_LOG_MAX_BYTES": str(max_bytes),
                "APP_LOG_BACKUPS": str(backups),
                "APP_VERSION": version,
                "PYTHONUNBUFFERED": "1",
            },
        )
        # Keep-alive: thousands of /work calls should not each pay a TCP handshake.
        self.session = requests.Session()
        if start:
            self.start()

    def start(self) -> "StructlogApp":
        self.process.start()
        self.process.wait_http(self.url + "/health", timeout=self.start_timeout)
        return self

    def health(self) -> dict:
        r = self.session.get(self.url + "/health", timeout=10)
        r.raise_for_status()
        return r.json()

    def work(self, n: int, status: int = 200) -> list[str]:
        """Have the app log `n` "request finished" records; return their request ids
        (the app has written them to its handler when this returns)."""
        r = self.session.get(self.url + "/work", params={"n": n, "status": status}, timeout=60)
        assert r.status_code == 200, f"/work?n={n} answered {r.status_code}: {r.text[:500]}"
        ids = r.json()["request_ids"]
        assert len(ids) == n, f"/work?n={n} returned {len(ids)} ids"
        return ids

    def error(self) -> str:
        """Have the app log an exception; return the request id of that record."""
        r = self.session.get(self.url + "/error", timeout=30)
        assert r.status_code == 500, f"/error answered {r.status_code}: {r.text[:500]}"
        return r.json()["request_id"]

    def stop(self) -> int:
        self.session.close()
        return self.process.terminate()

    def __enter__(self) -> "StructlogApp":
        return self

    def __exit__(self, *exc) -> None:
        self.session.close()
        self.process.stop()
