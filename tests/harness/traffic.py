"""Steady `GET /checkout` traffic against the example app, and the default pack's
deployment verifications scaled to it: what every test (and the demo) that deploys a
version needs.

`Traffic` runs in a background thread at `rate` calls a second (the pacing sleep is the
load's rate, not synchronisation), with its own session, so a redeploy's closed
connections are just refused calls, counted in `refused`: the log file, not this thread,
is what tests count.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import requests


class Traffic:
    def __init__(self, app_or_url, rate: float = 80.0):
        base = app_or_url if isinstance(app_or_url, str) else app_or_url.url
        self.url = base + "/checkout"
        self.rate = rate
        self.statuses: Counter[int] = Counter()
        self.refused = 0
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name="traffic", daemon=True)
        self.failure: BaseException | None = None

    def _run(self) -> None:
        session = requests.Session()
        try:
            next_at = time.monotonic()
            while not self.stop_event.is_set():
                try:
                    self.statuses[session.get(self.url, timeout=10).status_code] += 1
                except requests.RequestException:
                    self.refused += 1  # the app is restarting: a deployment
                    session.close()
                    session = requests.Session()
                    self.stop_event.wait(0.05)
                next_at += 1.0 / self.rate
                delay = next_at - time.monotonic()
                if delay > 0:
                    self.stop_event.wait(delay)  # pacing: the traffic's rate
                else:
                    next_at = time.monotonic()
        except BaseException as e:  # surfaced by stop(), never swallowed
            self.failure = e
        finally:
            session.close()

    @property
    def calls(self) -> int:
        return sum(self.statuses.values())

    def start(self) -> "Traffic":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()
        if self.thread.is_alive():
            self.thread.join(15)
        if self.failure:
            raise self.failure

    def __enter__(self) -> "Traffic":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


ALL_CHECKS = ("error-ratio", "latency", "new-errors", "health")


def verifications(min_samples: int = 50, min_errors: int = 3, checks=ALL_CHECKS) -> str:
    """The default pack's checks (rules/python-service.yaml; `checks` picks some) as a
    rule file's `verifications:` section, with `min_samples` scaled to test traffic (the
    pack's 100 error records per window is for real traffic)."""
    text = _all_verifications(min_samples, min_errors)
    entries = text.split("\n  - name: ")[1:]
    kept = [e for e in entries if e.split("\n", 1)[0] in checks]
    return "verifications:\n" + "".join("  - name: " + e.rstrip("\n") + "\n" for e in kept)


def _all_verifications(min_samples: int, min_errors: int) -> str:
    return f"""\
verifications:
  - name: error-ratio
    kind: ratio
    numerator:   '{{source="app"}} | event="request finished" | status >= 500'
    denominator: '{{source="app"}} | event="request finished"'
    max_increase: 1.5x
    min_samples: {min_samples}
  - name: latency
    kind: distribution
    query: '{{source="app"}} | event="request finished" | unwrap duration_ms'
    quantile: 0.95
    max_increase: 1.25x
    min_samples: {min_samples}
  - name: new-errors
    kind: new_values
    query: '{{source="app"}} | level="error"'
    field: exception_type
    max_new: 0
    min_samples: {min_errors}
  - name: health
    kind: probe
    probe: health
    max_failures: 0
"""
