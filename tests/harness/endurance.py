"""Pieces shared by the endurance runs: `bench/overload.py`, `bench/soak.py` and their
2-minute CI versions in `tests/e2e/test_endurance.py`.

- `ProcSampler`: the agent's VmRSS / VmHWM (``/proc/PID/status``) and open descriptors
  (``/proc/PID/fd``) every `interval`, with start / end / max; optionally, at each
  sample, which of the writers' file generations the agent holds open (`mark_held`).
- `SeqLines` / `BlockLines`: structlog-shaped JSON lines of one fixed length, so a
  record's byte offset says which line it is (``offset = index × line_bytes``) and a
  file's size says how many lines it holds. `SeqLines` numbers every line (``seq``)
  and can mark a share of them ``level: error``; `BlockLines` is a pre-built block of
  varied request lines (refreshed once a second for fresh timestamps) written whole,
  hundreds of MB/s from Python.
- `RotatingWriter`: one writer thread appending to one path, paced (lines/s) or flat
  out, rotating like ``logging.handlers.RotatingFileHandler`` (``app.log`` →
  ``app.log.1`` … ``.N``, the oldest deleted) every `rotate_every` seconds or
  `max_bytes`. It records every generation it made (inode, lines, bytes, created /
  rotated / deleted) so a run can account for each line; before deleting a generation
  it lets `mark_held` look at the agent's descriptors, so a file the agent never
  opened is known as such.
- `OtlpCounter`: the counting OTLP/HTTP receiver (`otlp_counter_server.py`) as a
  component that can be stopped (the collector goes away) and started again with its
  counts intact.
- `HealthProbe`: ``GET /healthz`` every `interval` from a thread, latencies and failures.
- `scratch_dir`: where the runs put their churn (see its docstring).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import requests

from .ports import free_port
from .process import Process, wait_until

HERE = Path(__file__).resolve().parent
MIB = 1024 * 1024


def scratch_dir(prefix: str, base: str | os.PathLike | None = None) -> Path:
    """A fresh directory for a run's logs and the agent's data_dir.

    `base` if given; else ``/dev/shm`` when it exists (tmpfs: an overload run writes
    gigabytes and the agent legitimately holds deleted generations open, which must
    not fill a shared machine's disk; ``fdatasync`` is cheap there, which the figures
    say), else the system temp dir.
    """
    if base is None:
        base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    return Path(tempfile.mkdtemp(prefix=prefix, dir=base))


# -- /proc ------------------------------------------------------------------------------


def proc_memory(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) in bytes."""
    rss = hwm = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) * 1024
    return rss, hwm


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def held_files(pid: int) -> dict[int, int]:
    """{inode: file position} of every regular file the process holds open (deleted
    ones included: ``stat`` of ``/proc/PID/fd/N`` follows to the open file)."""
    out: dict[int, int] = {}
    fd_dir = f"/proc/{pid}/fd"
    try:
        fds = os.listdir(fd_dir)
    except FileNotFoundError:
        return out
    for fd in fds:
        try:
            st = os.stat(f"{fd_dir}/{fd}")
            if not (st.st_mode & 0o170000 == 0o100000):
                continue
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                pos = int(f.readline().split()[1])
        except (OSError, ValueError, IndexError):
            continue  # closed meanwhile
        out[st.st_ino] = max(pos, out.get(st.st_ino, 0))
    return out


@dataclass
class Sample:
    t: float  # seconds since the sampler started
    rss: int
    hwm: int
    fds: int


class ProcSampler:
    """Samples a process every `interval` s from a thread (the sampling is the
    measurement's own pace, not synchronisation). `writers`: also mark which of their
    generations the process holds open at each sample."""

    def __init__(self, pid: int, interval: float = 1.0, writers: Sequence["RotatingWriter"] = ()):
        self.pid = pid
        self.interval = interval
        self.writers = list(writers)
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="proc-sampler", daemon=True)
        self._t0 = time.monotonic()

    def start(self) -> "ProcSampler":
        self._t0 = time.monotonic()
        self.sample()
        self._thread.start()
        return self

    def sample(self) -> Sample | None:
        try:
            rss, hwm = proc_memory(self.pid)
            fds = fd_count(self.pid)
        except (FileNotFoundError, ProcessLookupError):
            return None
        if self.writers:
            mark_held(self.pid, self.writers)
        s = Sample(time.monotonic() - self._t0, rss, hwm, fds)
        self.samples.append(s)
        return s

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            if self.sample() is None:
                return

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        self.sample()

    def since(self, t: float) -> list[Sample]:
        return [s for s in self.samples if s.t >= t]

    def figures(self, after: float = 0.0) -> dict:
        """start / end / max of RSS (MiB), peak VmHWM (MiB) and open fds."""
        s = self.since(after) or self.samples
        mib = lambda b: round(b / MIB, 1)  # noqa: E731
        return {
            "rss_start_mib": mib(s[0].rss),
            "rss_end_mib": mib(s[-1].rss),
            "rss_max_mib": mib(max(x.rss for x in s)),
            "rss_median_mib": mib(statistics.median(x.rss for x in s)),
            "hwm_mib": mib(self.samples[-1].hwm),
            "fds_start": s[0].fds,
            "fds_end": s[-1].fds,
            "fds_max": max(x.fds for x in s),
            "samples": len(s),
        }


# -- lines ------------------------------------------------------------------------------


def _now_iso() -> str:
    # Always with microseconds: a fixed-width timestamp keeps lines one length.
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _fixed(obj: dict, line_bytes: int) -> bytes:
    """`obj` as one JSON line of exactly `line_bytes` bytes (its ``pad`` field grown)."""
    obj["pad"] = ""
    base = len(json.dumps(obj, separators=(",", ":"))) + 1
    if base > line_bytes:
        raise ValueError(f"a line needs {base} bytes, more than line_bytes={line_bytes}")
    obj["pad"] = "x" * (line_bytes - base)
    out = (json.dumps(obj, separators=(",", ":")) + "\n").encode()
    assert len(out) == line_bytes, (len(out), line_bytes)
    return out


class SeqLines:
    """Numbered lines (``seq`` 0, 1, 2, …), each `line_bytes` long; while `error_ratio`
    is above 0 that share of them (every k-th) is ``level: error``."""

    def __init__(self, line_bytes: int = 200, event: str = "tick"):
        self.line_bytes = line_bytes
        self.event = event
        self.next_seq = 0
        self.error_ratio = 0.0
        self.errors = 0
        self._lock = threading.Lock()

    def take(self, n: int) -> tuple[bytes, int]:
        ts = _now_iso()
        out = []
        with self._lock:
            every = round(1 / self.error_ratio) if self.error_ratio > 0 else 0
            for seq in range(self.next_seq, self.next_seq + n):
                error = every and seq % every == 0
                self.errors += bool(error)
                out.append(
                    _fixed(
                        {"timestamp": ts, "level": "error" if error else "info",
                         "event": self.event, "seq": seq},
                        self.line_bytes,
                    )
                )
            self.next_seq += n
        return b"".join(out), n


class BlockLines:
    """A block of `block_lines` varied request lines (paths, statuses, durations; ~1%
    errors), each `line_bytes` long, written whole; rebuilt at most once a second so
    timestamps stay current."""

    PATHS = ["/api/products", "/api/cart", "/api/checkout", "/api/orders", "/api/login", "/api/search"]

    def __init__(self, line_bytes: int = 300, block_lines: int = 4096, seed: int = 1):
        self.line_bytes = line_bytes
        self.block_lines = block_lines
        self.rng = random.Random(seed)
        self._block = b""
        self._built = 0.0

    def _build(self) -> bytes:
        ts, rng = _now_iso(), self.rng
        lines = []
        for i in range(self.block_lines):
            error = rng.random() < 0.01
            lines.append(
                _fixed(
                    {"timestamp": ts, "level": "error" if error else "info",
                     "event": "request finished", "logger": "app.access",
                     "method": "GET", "path": rng.choice(self.PATHS),
                     "status": 500 if error else 200,
                     "duration_ms": round(rng.lognormvariate(3, 0.6), 2),
                     "request_id": f"{rng.getrandbits(64):016x}"},
                    self.line_bytes,
                )
            )
        return b"".join(lines)

    def take(self, n: int) -> tuple[bytes, int]:
        now = time.monotonic()
        if now - self._built >= 1.0:
            self._block, self._built = self._build(), now
        return self._block, self.block_lines


# -- the rotating writer ------------------------------------------------------------------


@dataclass
class Generation:
    """One file a writer made: from its creation at `path` to its deletion."""

    writer: str
    inode: int
    first_seq: int
    created: float
    lines: int = 0
    bytes: int = 0
    rotated: float | None = None
    deleted: float | None = None
    held: bool = False  # seen open in the agent at least once

    @property
    def file_id_prefix(self) -> str:
        """The inode part of the agent's ``sidewatch.file_id`` (``{ino:x}-{fingerprint}``)."""
        return f"{self.inode:x}-"


class RotatingWriter:
    """Appends `lines` to `path` from a thread, paced at `rate` lines/s (``None``: as
    fast as it can), in writes of `tick` seconds' worth; rotates like
    ``RotatingFileHandler`` every `rotate_every` seconds or past `max_bytes`, keeping
    `backups` old files. `on_delete(generation)` runs just before a generation is
    deleted (`mark_held` uses it)."""

    def __init__(
        self,
        path: str | os.PathLike,
        lines: SeqLines | BlockLines,
        *,
        rate: float | None,
        rotate_every: float | None = None,
        max_bytes: int | None = None,
        backups: int = 5,
        tick: float = 0.02,
        on_delete: Callable[[Generation], None] | None = None,
    ):
        self.path = Path(path)
        self.lines = lines
        self.rate = rate
        self.rotate_every = rotate_every
        self.max_bytes = max_bytes
        self.backups = backups
        self.tick = tick
        self.on_delete = on_delete
        self.generations: list[Generation] = []
        self.by_inode: dict[int, Generation] = {}  # the latest generation of each inode
        self.on_disk: list[Generation] = []  # [live, .1, .2, …]
        self.written = 0
        self.bytes = 0
        self.rotations = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None
        self.started = self.stopped = 0.0

    # -- files ------------------------------------------------------------------------

    def _open(self) -> int:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o644)
        gen = Generation(self.path.name, os.fstat(fd).st_ino, self._next_seq(), time.monotonic())
        with self._lock:
            self.generations.append(gen)
            self.by_inode[gen.inode] = gen
            self.on_disk.insert(0, gen)
        return fd

    def _next_seq(self) -> int:
        return self.lines.next_seq if isinstance(self.lines, SeqLines) else self.written

    def _rotate(self, fd: int) -> int:
        os.close(fd)
        now = time.monotonic()
        with self._lock:
            self.on_disk[0].rotated = now
            doomed = self.on_disk[self.backups] if len(self.on_disk) > self.backups else None
        if doomed is not None:
            if self.on_delete:
                self.on_delete(doomed)
            os.remove(f"{self.path}.{self.backups}" if self.backups else self.path)
            with self._lock:
                doomed.deleted = time.monotonic()
                self.on_disk.remove(doomed)
        for i in range(self.backups - 1, 0, -1):
            src = Path(f"{self.path}.{i}")
            if src.exists():
                os.rename(src, f"{self.path}.{i + 1}")
        if self.backups:
            os.rename(self.path, f"{self.path}.1")
        self.rotations += 1
        return self._open()

    # -- the thread -------------------------------------------------------------------

    def start(self) -> "RotatingWriter":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._run, name=f"writer:{self.path.name}", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            fd = self._open()
            self.started = time.monotonic()
            next_at = self.started
            try:
                while not self._stop.is_set():
                    if self.rate is None:
                        data, n = self.lines.take(0)
                    else:
                        due = int((time.monotonic() - self.started) * self.rate) - self.written
                        if isinstance(self.lines, BlockLines) and due < self.lines.block_lines:
                            due = 0
                        data, n = self.lines.take(due) if due > 0 else (b"", 0)
                    if n:
                        view = memoryview(data)
                        while view:
                            k = os.write(fd, view)
                            view = view[k:]
                        with self._lock:
                            gen = self.on_disk[0]
                            gen.lines += n
                            gen.bytes += len(data)
                            self.written += n
                            self.bytes += len(data)
                    gen = self.on_disk[0]
                    if (self.rotate_every and time.monotonic() - gen.created >= self.rotate_every) or (
                        self.max_bytes and gen.bytes >= self.max_bytes
                    ):
                        fd = self._rotate(fd)
                    if self.rate is not None:
                        next_at += self.tick
                        delay = next_at - time.monotonic()
                        if delay > 0:
                            time.sleep(delay)  # pacing: the writer's rate
                        else:
                            next_at = time.monotonic()
            finally:
                os.close(fd)
                self.stopped = time.monotonic()
        except BaseException as e:  # surfaced by stop()
            self.error = e

    def stop(self) -> int:
        """Stop writing; return the lines written."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
            assert not self._thread.is_alive(), f"writer {self.path.name} did not stop"
        if self.error:
            raise AssertionError(f"writer {self.path.name} failed: {self.error!r}")
        return self.written

    def check(self) -> None:
        if self.error:
            raise AssertionError(f"writer {self.path.name} failed: {self.error!r}")

    def snapshot(self) -> list[Generation]:
        with self._lock:
            return list(self.generations)


def mark_held(pid: int, writers: Sequence[RotatingWriter]) -> dict[int, int]:
    """Marks every generation of `writers` that `pid` holds open now; returns
    ``held_files(pid)``. An inode the agent holds cannot be reused by a new file, so
    the latest generation with that inode is the one held."""
    held = held_files(pid)
    for w in writers:
        with w._lock:
            for ino in held:
                gen = w.by_inode.get(ino)
                if gen is not None:
                    gen.held = True
    return held


# -- the counting collector -------------------------------------------------------------


class OtlpCounter:
    """`otlp_counter_server.py` on a free port: ``.endpoint`` for ``export.otlp``
    (http/protobuf); `summary()`; `stop()` / `start()` on the same port and state file."""

    def __init__(self, directory: str | os.PathLike, *, mode: str = "identity",
                 line_bytes: int = 200, name: str = "otlp-counter"):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.state = self.dir / f"{name}.state"
        self.process = Process(
            name,
            [sys.executable, HERE / "otlp_counter_server.py", self.port, self.state, mode, line_bytes],
            log_dir=self.dir,
        )
        self.down_seconds = 0.0
        self._down_since: float | None = None
        self.start()

    def start(self) -> "OtlpCounter":
        self.process.start()
        wait_until(self._answers, 30, lambda: f"otlp counter to answer:\n{self.process.tail()}",
                   interval=0.05)
        if self._down_since is not None:
            self.down_seconds += time.monotonic() - self._down_since
            self._down_since = None
        return self

    def stop(self) -> None:
        """The collector goes away: a graceful stop (in-flight requests answered, the
        counts saved). Fails if it does not exit within 60 s."""
        code = self.process.terminate(timeout=60)
        assert code == 0, f"otlp counter exited {code}:\n{self.process.tail()}"
        self._down_since = time.monotonic()

    @property
    def running(self) -> bool:
        return self.process.running

    def _answers(self) -> bool:
        if not self.process.running:
            raise AssertionError(f"otlp counter exited:\n{self.process.tail()}")
        try:
            return requests.get(self.endpoint + "/_summary", timeout=2).ok
        except requests.RequestException:
            return False

    def summary(self, files: bool = False) -> dict:
        r = requests.get(self.endpoint + "/_summary" + ("?files=1" if files else ""), timeout=30)
        r.raise_for_status()
        return r.json()


# -- /healthz under load ------------------------------------------------------------------


class HealthProbe:
    """``GET /healthz`` every `interval` s from a thread (a kubelet's liveness probe,
    denser); every latency and every failure (timeout `timeout` s, non-200) kept."""

    def __init__(self, url: str, interval: float = 0.2, timeout: float = 5.0):
        self.url = url.rstrip("/") + "/healthz"
        self.interval = interval
        self.timeout = timeout
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="healthz", daemon=True)

    def start(self) -> "HealthProbe":
        self._thread.start()
        return self

    def _run(self) -> None:
        session = requests.Session()
        while not self._stop.wait(self.interval):
            t = time.monotonic()
            try:
                r = session.get(self.url, timeout=self.timeout)
                if r.status_code != 200:
                    self.failures.append(f"HTTP {r.status_code}")
            except requests.RequestException as e:
                self.failures.append(type(e).__name__)
            self.latencies.append(time.monotonic() - t)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(self.timeout + 5)

    def figures(self) -> dict:
        lat = sorted(self.latencies) or [0.0]
        q = lambda p: round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000, 1)  # noqa: E731
        return {"probes": len(self.latencies), "failures": len(self.failures),
                "p50_ms": q(0.5), "p99_ms": q(0.99), "max_ms": round(lat[-1] * 1000, 1)}


def metric(samples: list[tuple[str, dict, float]], name: str, **labels: str) -> float:
    """Sum of `name`'s samples whose labels include `labels` (from `Agent.metric_samples()`)."""
    return sum(v for n, l, v in samples if n == name and all(l.get(k) == x for k, x in labels.items()))


def table(rows: list[tuple[str, object]], title: str) -> str:
    """The figures as an aligned two-column table."""
    width = max(len(k) for k, _ in rows)
    out = [title, "-" * len(title)]
    out += [f"{k.ljust(width)}  {v}" for k, v in rows]
    return "\n".join(out)


# -- the memory bound -----------------------------------------------------------------------

#: ARCHITECTURE "Bounded memory": batches of 832 KiB (320 KiB of text, 1,024 records of
#: 128 B, 16,384 fields of 24 B), 2 in flight + at most 16 recycled (the recycled ones
#: are as many as were ever in use at once: 20 is generous).
BATCHES = 20 * 832 * 1024
#: One 64 KiB read buffer per source.
READ_BUFFER = 64 * 1024
#: `export/otlp/sender.rs` MAX_REQUEST_BYTES: one request's payload in three copies. Since
#: 2026-11-24 the request read from the queue counts inside `queue.memory` and only the
#: gzip output (or tonic's copy for gRPC) is outside it; the allowance is kept generous.
OTLP_REQUEST = 3 * 3 * MIB
#: Allocator slack (glibc arenas of the tokio and blocking threads) and what the
#: formula does not itemise (status, telemetry, the notifier): a flat allowance.
SLACK = 24 * MIB


def memory_bound(idle_rss: int, *, queue_memory: int, sources: int = 1, rules: int = 0) -> tuple[int, str]:
    """The RSS the agent may reach whatever the input rate, from its config: the idle
    process + batches + read buffers + the OTLP queue's memory cache (`queue.memory`)
    + one OTLP request in flight + the rule windows (`rules` bytes, the caller's
    estimate from `rules.max_series`) + a flat slack. Returns (bytes, the formula)."""
    parts = [("idle", idle_rss), ("batches 20×832KiB", BATCHES), (f"read buffers {sources}×64KiB", sources * READ_BUFFER),
             ("otlp queue.memory", queue_memory), ("otlp request 3×3MiB", OTLP_REQUEST)]
    if rules:
        parts.append(("rule windows", rules))
    parts.append(("slack", SLACK))
    total = sum(b for _, b in parts)
    formula = " + ".join(f"{name} {b / MIB:.1f}" for name, b in parts) + f" = {total / MIB:.1f} MiB"
    return total, formula


def agent_alert_events(log_text: str, alertname: str) -> list[tuple[str, str]]:
    """(timestamp, state) of every `alert firing` / `alert resolved` line the agent
    logged for `alertname` (its JSON log, rule_runner's transitions)."""
    out = []
    for line in log_text.splitlines():
        if alertname not in line or not line.startswith("{"):
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if obj.get("alertname") == alertname and obj.get("state") in ("firing", "resolved"):
            out.append((obj.get("timestamp", ""), obj["state"]))
    return out


def report(name: str, run, args) -> int:
    """A bench script's main: runs `run(args)` (→ figures, broken promises), prints the
    figures as a table and what broke, writes `args.json` if asked; 0 when every promise
    held."""
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    figures, failures = run(args)
    figures["started"] = started
    print()
    print(table([(k, v) for k, v in figures.items()], f"{name} figures"))
    if args.json:
        Path(args.json).write_text(json.dumps({"figures": figures, "failures": failures}, indent=2))
    if failures:
        print("\nBROKEN PROMISES:\n- " + "\n- ".join(failures))
        return 1
    print("\nall promises held")
    return 0
