"""A steady writer of numbered structlog-shaped lines, for streams a test must account for.

`LineWriter(path, rate=...)` appends one JSON line per write(2), ``O_APPEND``, from a
background thread, keeping the file open the whole time like a logging app does (so
copytruncate and rename rotations behave as they do in production). Every line carries
a ``seq`` (0, 1, 2, …) so a test can tell exactly which lines were written, which are
in which file and which reached the sink. The pacing sleep is the writer's rate, not
test synchronisation.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
import time
from pathlib import Path

from .process import wait_until


class LineWriter:
    def __init__(
        self,
        path: str | os.PathLike,
        *,
        rate: float = 500.0,
        event: str = "tick",
        first_seq: int = 0,
        pad: int = 40,
    ):
        self.path = Path(path)
        self.rate = rate
        self.event = event
        self.next_seq = first_seq
        self.first_seq = first_seq
        self.pad = "x" * pad  # lines of a realistic size (≈150 bytes)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._lock = threading.Lock()

    def line(self, seq: int) -> bytes:
        return (
            json.dumps(
                {
                    "event": self.event,
                    "level": "info",
                    "timestamp": dt.datetime.now(dt.timezone.utc).isoformat(),
                    "seq": seq,
                    "pad": self.pad,
                }
            )
            + "\n"
        ).encode()

    @property
    def written(self) -> int:
        """Lines fully written so far."""
        with self._lock:
            return self.next_seq - self.first_seq

    def seqs(self) -> range:
        """Every seq written so far."""
        with self._lock:
            return range(self.first_seq, self.next_seq)

    def start(self) -> "LineWriter":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._run, name=f"writer:{self.path.name}", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                interval = 1.0 / self.rate
                next_at = time.monotonic()
                while not self._stop.is_set():
                    data = self.line(self.next_seq)
                    n = os.write(fd, data)
                    assert n == len(data), f"short write {n}/{len(data)}"
                    with self._lock:
                        self.next_seq += 1
                    next_at += interval
                    delay = next_at - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)  # pacing: the writer's rate
            finally:
                os.close(fd)
        except BaseException as e:  # surfaced by stop()
            self._error = e

    def wait_written(self, n: int, timeout: float = 30.0) -> None:
        """Wait until at least `n` lines (in total) have been written."""
        wait_until(
            lambda: self.written >= n or self._error,
            timeout,
            lambda: f"writer to reach {n} lines (at {self.written})",
        )
        if self._error:
            raise AssertionError(f"writer failed: {self._error!r}")

    def stop(self) -> int:
        """Stop writing; return the number of lines written."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            assert not self._thread.is_alive(), "writer thread did not stop"
        if self._error:
            raise AssertionError(f"writer failed: {self._error!r}")
        return self.written

    def __enter__(self) -> "LineWriter":
        return self.start()

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)


def seqs_in_file(path: str | os.PathLike) -> list[int]:
    """The ``seq`` of every complete JSON line of a file written by `LineWriter`."""
    out = []
    with open(path, "rb") as f:
        for raw in f:
            if not raw.endswith(b"\n"):
                continue  # a partial last line
            try:
                obj = json.loads(raw)
            except ValueError:
                continue
            if isinstance(obj, dict) and "seq" in obj:
                out.append(obj["seq"])
    return out


def line_offsets(path: str | os.PathLike) -> dict[int, int]:
    """{byte offset of the line start: seq} for every complete line of a file."""
    out, offset = {}, 0
    with open(path, "rb") as f:
        for raw in f:
            if raw.endswith(b"\n"):
                try:
                    obj = json.loads(raw)
                    if isinstance(obj, dict) and "seq" in obj:
                        out[offset] = obj["seq"]
                except ValueError:
                    pass
            offset += len(raw)
    return out
