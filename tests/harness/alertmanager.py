"""A real Alertmanager (Debian's `prometheus-alertmanager`) as a test component.

`Alertmanager(tmp_path, webhook_url)` writes a config that routes every alert to the
webhook (grouped by alertname and service, `group_wait: 1s`), starts Alertmanager on a
free 127.0.0.1 port with gossip off (`--cluster.listen-address=`, TESTING.md) and waits
for ``/-/ready``. `alerts()` reads its `/api/v2/alerts`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import requests

from .ports import free_port
from .process import Process


def alertmanager_bin() -> str:
    path = shutil.which("prometheus-alertmanager") or "/usr/bin/prometheus-alertmanager"
    if not os.access(path, os.X_OK):
        raise AssertionError("prometheus-alertmanager not found: run tests/setup.sh (apt)")
    return path


class Alertmanager:
    def __init__(self, tmp_path: str | os.PathLike, webhook_url: str):
        self.dir = Path(tmp_path) / "alertmanager"
        self.dir.mkdir(parents=True, exist_ok=True)
        config = self.dir / "am.yml"
        config.write_text(
            "route:\n"
            "  receiver: hook\n"
            "  group_by: [alertname, service]\n"
            "  group_wait: 1s\n"
            "  group_interval: 5m\n"
            "  repeat_interval: 4h\n"
            "receivers:\n"
            "  - name: hook\n"
            "    webhook_configs:\n"
            f"      - url: {webhook_url}\n"
            "        send_resolved: true\n"
        )
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = Process(
            "alertmanager",
            [
                alertmanager_bin(),
                f"--config.file={config}",
                f"--storage.path={self.dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--cluster.listen-address=",
            ],
            log_dir=Path(tmp_path),
        )
        self.process.start()
        self.process.wait_http(self.url + "/-/ready", timeout=20)

    def alerts(self) -> list[dict]:
        return requests.get(self.url + "/api/v2/alerts", timeout=5).json()
