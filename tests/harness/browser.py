"""Headless Chromium (Debian's ``chromium``) as a test component: a page's rendered DOM
and a screenshot of it, the way a person's browser sees it.

Each call is one short-lived browser process with a fresh profile directory (no state
between calls), no network beyond the URL (no sync, no component updates, no QUIC),
bounded by a timeout: on timeout its whole process group (the browser and its
renderer, GPU and crashpad children, all started by this call) is killed and the call
fails with what the browser printed. The binary is ``$CHROMIUM``, else
``/usr/bin/chromium``.

Credentials go in the URL (``http://user:password@host/``): Chromium answers a Basic
challenge with them, as a person would type them into its prompt.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

CHROMIUM = os.environ.get("CHROMIUM") or "/usr/bin/chromium"

_FLAGS = [
    "--headless",
    "--no-sandbox",  # tests may run as root in containers
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",  # small /dev/shm in containers
    "--hide-scrollbars",
]


def chromium_bin() -> str:
    """The browser binary; fails with how to get one."""
    path = shutil.which(CHROMIUM)
    if not path:
        raise AssertionError(
            f"chromium not found at {CHROMIUM}: `apt-get install chromium`, "
            f"or point CHROMIUM at a Chromium binary"
        )
    return path


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    profile = tempfile.mkdtemp(prefix="sidewatch-chromium-")
    argv = [chromium_bin(), *_FLAGS, f"--user-data-dir={profile}", *args]
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Its own process group, so a timeout kills the browser's children too.
        start_new_session=True,
    )
    try:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid)
            out, err = proc.communicate()
            raise AssertionError(
                f"chromium did not finish within {timeout:g}s; killed it.\n"
                f"argv: {argv}\n--- stderr tail:\n{err[-3000:]}"
            ) from None
    finally:
        # Helpers the browser left behind (crashpad) belong to the same group.
        _kill_group(proc.pid)
        shutil.rmtree(profile, ignore_errors=True)
    if proc.returncode != 0:
        raise AssertionError(
            f"chromium exited with {proc.returncode}.\nargv: {argv}\n--- stderr tail:\n{err[-3000:]}"
        )
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def dump_dom(url: str, timeout: float = 60.0) -> str:
    """The DOM of `url` after it loaded, serialized as HTML (``--dump-dom``)."""
    run = _run(["--dump-dom", url], timeout)
    assert run.stdout.strip(), f"chromium printed no DOM for {url}.\n--- stderr tail:\n{run.stderr[-3000:]}"
    return run.stdout


def screenshot(url: str, path: str | os.PathLike, width: int = 1280, height: int = 1600,
               timeout: float = 60.0) -> Path:
    """A PNG of `url` at `width`×`height`, written to `path`; returns the path."""
    path = Path(path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    run = _run([f"--screenshot={path}", f"--window-size={width},{height}", url], timeout)
    assert path.is_file() and path.stat().st_size > 0, (
        f"chromium wrote no screenshot to {path}.\n--- stderr tail:\n{run.stderr[-3000:]}"
    )
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return path
