"""Start, watch and stop real processes for end-to-end tests; bounded waits.

Every component a test needs (the app, the agent, and later SMTP, OTLP receiver,
Alertmanager) is a `Process`: started with an argv, its stdout+stderr captured to
``<tmp>/<name>.log`` (appended across restarts, with a header per start), stopped by
PID — never by name. Each started process is remembered in `LIVE` so the test
fixtures in ``tests/conftest.py`` stop whatever a test left running and print every
component's output when a test fails.

Synchronisation is always a bounded poll (`wait_until`, `wait_stable`) that fails with
a message saying what was awaited and what was seen; tests never sleep to "let things
happen".
"""

from __future__ import annotations

import atexit
import ctypes
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import requests

# Processes started during the current test, in start order (see tests/conftest.py).
LIVE: list["Process"] = []

Message = str | Callable[[], str]


def _render(message: Message) -> str:
    return message() if callable(message) else message


def wait_until(
    predicate: Callable[[], Any],
    timeout: float,
    message: Message,
    interval: float = 0.05,
) -> Any:
    """Poll `predicate` until it returns something truthy; return that value.

    Raises AssertionError("timed out after Ns waiting for: <message>") otherwise.
    `message` may be a callable so it can describe the state at the moment of failure
    (e.g. "4990 of 5000 ids arrived, missing: ...").
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for: {_render(message)}")
        time.sleep(interval)


def wait_stable(
    sample: Callable[[], Any],
    quiet: float,
    timeout: float,
    message: Message,
    interval: float = 0.1,
) -> Any:
    """Poll `sample` until its value has not changed for `quiet` seconds; return it.

    Used after everything expected has arrived, to give late (wrong) extra output —
    a duplicate from a rotated file found late, a partial line flushed on a timer — the
    chance to show up before the test asserts "exactly once" / "not emitted".
    """
    deadline = time.monotonic() + timeout
    value = sample()
    since = time.monotonic()
    while True:
        time.sleep(interval)
        now = time.monotonic()
        new = sample()
        if new != value:
            value, since = new, now
        elif now - since >= quiet:
            return value
        if now >= deadline:
            raise AssertionError(
                f"timed out after {timeout:g}s waiting for {quiet:g}s of quiet: {_render(message)}"
            )


def _prepare_die_with_parent() -> Callable[[], None] | None:
    # PR_SET_PDEATHSIG: a child gets SIGKILL when the thread that forked it dies, so a
    # crashed or killed pytest leaves no agent or app behind holding ports and files.
    # Resolved before fork: the child only makes one libc call. Processes are started
    # from the test's (main) thread, which lives as long as the test.
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def _preexec() -> None:
        prctl(pr_set_pdeathsig, signal.SIGKILL)

    return _preexec


_PREEXEC = _prepare_die_with_parent()


class Process:
    """One external process of a test, restartable, stopped by PID."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str | os.PathLike],
        *,
        log_dir: str | os.PathLike,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike | None = None,
    ):
        self.name = name
        self.argv = [str(a) for a in argv]
        self.env = {**os.environ, **(env or {})}
        self.cwd = str(cwd) if cwd is not None else None
        self.log_path = Path(log_dir) / f"{name}.log"
        self.popen: subprocess.Popen | None = None
        self.exit_codes: list[int] = []  # one per finished run, in order
        self._log_file = None
        self._exit_recorded = True

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> "Process":
        if self.running:
            raise AssertionError(f"{self.name} is already running (pid {self.pid})")
        self._close_log()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = open(self.log_path, "ab", buffering=0)
        run = len(self.exit_codes) + 1
        self._log_file.write(
            f"===== {self.name} start #{run} at {time.strftime('%H:%M:%S')}: "
            f"{' '.join(self.argv)}\n".encode()
        )
        self.popen = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=self.cwd,
            # Own session: a Ctrl-C on pytest does not hit the components before the
            # harness stops them in order (and reads their exit codes).
            start_new_session=True,
            preexec_fn=_PREEXEC,
        )
        self._exit_recorded = False
        if self not in LIVE:
            LIVE.append(self)
        return self

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.popen.poll() if self.popen else None

    def wait(self, timeout: float) -> int:
        """Wait for the process to exit by itself; return its exit code."""
        assert self.popen is not None, f"{self.name} was never started"
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{self.name} (pid {self.pid}) still running after {timeout:g}s"
            ) from None
        return self._finished(code)

    def terminate(self, timeout: float = 20.0) -> int:
        """SIGTERM, wait up to `timeout`, return the exit code (negative: signal).

        A process that ignores SIGTERM is SIGKILLed and the call fails: graceful
        shutdown within a bounded time is part of what the tests check.
        """
        if not self.running:
            return self._finished(self.returncode)
        os.kill(self.pid, signal.SIGTERM)
        try:
            return self.wait(timeout)
        except AssertionError:
            self.kill9()
            raise AssertionError(
                f"{self.name} (pid {self.pid}) did not exit within {timeout:g}s of SIGTERM; "
                f"killed it. Output tail:\n{self.tail()}"
            ) from None

    def kill9(self) -> int:
        """SIGKILL (a crash, as far as the process can tell) and reap it."""
        if self.running:
            os.kill(self.pid, signal.SIGKILL)
        return self.wait(10)

    def stop(self) -> None:
        """Best-effort stop for cleanup: SIGTERM, then SIGKILL; never raises."""
        try:
            if self.running:
                self.terminate(timeout=10)
        except AssertionError:
            pass
        finally:
            if self.running:
                os.kill(self.pid, signal.SIGKILL)
                self.popen.wait()
            self._close_log()

    def _finished(self, code: int | None) -> int:
        # Record each run's exit once, even if wait/terminate are called again.
        if code is not None and not self._exit_recorded:
            self.exit_codes.append(code)
            self._exit_recorded = True
        return code

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> "Process":
        return self if self.running else self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- observation -----------------------------------------------------------------

    def wait_http(self, url: str, timeout: float = 30.0, status: int = 200) -> requests.Response:
        """Poll GET `url` until it answers `status`; fail early if the process exits."""
        last: list[str] = ["no answer yet"]

        def probe():
            if not self.running:
                raise AssertionError(
                    f"{self.name} exited with code {self.returncode} while waiting for "
                    f"{url} to answer {status}. Output tail:\n{self.tail()}"
                )
            try:
                r = requests.get(url, timeout=2)
            except requests.RequestException as e:
                last[0] = f"{type(e).__name__}"
                return None
            last[0] = f"HTTP {r.status_code}"
            return r if r.status_code == status else None

        return wait_until(
            probe,
            timeout,
            lambda: f"{self.name} (pid {self.pid}) to answer {status} on {url} "
            f"(last: {last[0]}). Output tail:\n{self.tail()}",
            interval=0.1,
        )

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self, lines: int = 80) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    def open_files(self) -> list[str]:
        """Targets of the process's open descriptors (/proc/PID/fd), e.g. to check that
        a rotated file was closed. Deleted files read as '<path> (deleted)'."""
        if not self.running:
            return []
        fd_dir = Path(f"/proc/{self.pid}/fd")
        out = []
        for fd in fd_dir.iterdir():
            try:
                out.append(os.readlink(fd))
            except OSError:  # closed between listdir and readlink
                pass
        return out

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running else f"exited {self.returncode}"
        return f"<Process {self.name} {state}>"


@atexit.register
def _kill_leftovers() -> None:
    for p in LIVE:
        if p.running:
            os.kill(p.pid, signal.SIGKILL)
