"""Free TCP ports on 127.0.0.1 for the components a test starts.

Asking the kernel for port 0 and binding it later is racy: the kernel hands the same
ephemeral range to every outgoing connection, and a test run makes thousands, so a
client socket can take the port before the component binds it. The ports here come
from below the ephemeral range (no outgoing connection takes them), each is checked
free by binding it, and none is handed out twice in one test run; the walk starts at
an offset spread by the process id so that two runs on one machine rarely meet.
"""

from __future__ import annotations

import os
import socket

_LOW = 10_000
_handed_out: set[int] = set()
_next = 0


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(host: str = "127.0.0.1") -> int:
    """Return a port that is free on `host` now and was not returned before."""
    global _next
    span = max(_ephemeral_low() - _LOW, 1_000)
    start = (os.getpid() * 7_919) % span
    for _ in range(span):
        port = _LOW + (start + _next) % span
        _next += 1
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port on {host} in {_LOW}..{_LOW + span}")
