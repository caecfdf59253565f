"""Free TCP ports on 127.0.0.1 for the components a test starts.

The kernel picks an unused ephemeral port; we remember what we handed out so two
components started by the same test run never get the same port even if neither has
bound it yet (the classic race of "ask for a port, bind it later").
"""

from __future__ import annotations

import socket

_handed_out: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """Return a port that is free on `host` now and was not returned before."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port
    raise RuntimeError("could not find a free port on %s after 100 attempts" % host)
