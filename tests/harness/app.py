"""The instrumented FastAPI app (tests/app/app.py) as a test component.

`StructlogApp` runs the real app under uvicorn on a free 127.0.0.1 port, writing
structlog JSON to ``<tmp>/logs/app.log`` through the chosen stdlib handler, and waits
for ``/health`` (uvicorn + FastAPI take ≈3 s to answer on these machines).
`.work(n)` makes the app log n records and returns their request ids, so a test knows
exactly which lines exist and can check each arrives exactly once.

Deployments: `env=` sets the app's per-version behaviour (``APP_ERROR_RATIO``,
``APP_EXCEPTION_TYPE``, ``APP_EXTRA_LATENCY_MS``, see tests/app/app.py) and
`.redeploy(version, env)` stops the process and starts it again on the same port and
log file as another version, the way a deployment restarts the app.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Mapping

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
        env: Mapping[str, str] | None = None,
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
                **(env or {}),
            },
        )
        # Keep-alive: thousands of /work calls should not each pay a TCP handshake.
        self.session = requests.Session()
        if start:
            self.start()

    def start(self, wait: bool = True) -> "StructlogApp":
        """Start the process; with `wait`, until /health answers (else call
        `wait_ready()`: other components can start meanwhile)."""
        self.process.start()
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self) -> "StructlogApp":
        self.process.wait_http(self.url + "/health", timeout=self.start_timeout)
        return self

    def redeploy(
        self, version: str, env: Mapping[str, str] | None = None, wait: bool = True
    ) -> "StructlogApp":
        """Stop the app (SIGTERM) and start it again as `version`, on the same port and
        log file; `env` replaces the previous per-version settings (``APP_*`` other
        than the log ones; unset means the app's defaults)."""
        self.process.terminate()
        keep = {"APP_LOG_PATH", "APP_LOG_HANDLER", "APP_LOG_MAX_BYTES", "APP_LOG_BACKUPS"}
        self.process.env = {
            k: v for k, v in self.process.env.items() if not k.startswith("APP_") or k in keep
        }
        self.process.env.update({**(env or {}), "APP_VERSION": version})
        self.version = version
        # The old process's pooled connections are dead.
        self.session.close()
        self.session = requests.Session()
        return self.start(wait=wait)

    def checkout(self) -> requests.Response:
        """One `/checkout` call (200, or 500 when this version's call fails)."""
        return self.session.get(self.url + "/checkout", timeout=30)

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

    def login(self, user: str, password: str, token: str) -> str:
        """A `/login` call whose handler logs the password and the bearer token it got;
        return the request id of that record."""
        r = self.session.get(
            self.url + "/login",
            params={"user": user, "password": password},
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        assert r.status_code == 200, f"/login answered {r.status_code}: {r.text[:500]}"
        return r.json()["request_id"]

    def stop(self) -> int:
        self.session.close()
        return self.process.terminate()

    def __enter__(self) -> "StructlogApp":
        return self

    def __exit__(self, *exc) -> None:
        self.session.close()
        self.process.stop()
