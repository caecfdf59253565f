"""Run Debian's real ``logrotate`` on a test's log file, the way ops teams do.

`Logrotate(tmp_path, log_path, mode="copytruncate"|"create")` writes a config for that
one file and `.rotate()` runs ``logrotate -f -s STATE CONF`` (forced: every call
rotates) and returns when logrotate has exited. Backups are ``<log>.1`` … ``<log>.N``
(numbered, newest ``.1``, uncompressed), so a test can read every rotated copy.

- ``copytruncate``: logrotate copies the file then truncates it in place (same inode);
  lines written between the copy and the truncate are lost by logrotate itself.
- ``create``: logrotate renames the file and creates a new empty one; an app with a
  plain ``FileHandler`` keeps writing into the renamed file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path


class Logrotate:
    def __init__(
        self,
        tmp_path: str | os.PathLike,
        log_path: str | os.PathLike,
        *,
        mode: str = "copytruncate",
        keep: int = 50,
        name: str = "logrotate",
    ):
        if mode not in ("copytruncate", "create"):
            raise ValueError(f"mode {mode!r}: expected copytruncate or create")
        binary = shutil.which("logrotate") or "/usr/sbin/logrotate"
        if not os.access(binary, os.X_OK):
            raise AssertionError("logrotate is not installed: apt-get install -y logrotate")
        self.binary = binary
        self.log_path = Path(log_path)
        self.mode = mode
        tmp_path = Path(tmp_path)
        self.conf = tmp_path / f"{name}.conf"
        self.state = tmp_path / f"{name}.state"
        self.rotations = 0
        # `keep` backups: enough that no copy a test wants to inspect is deleted.
        # nocompress/nodateext: plain `.1`…`.N` a test can read back.
        # No `su`: tmp dirs are root-owned 0700, which logrotate accepts as root.
        self.conf.write_text(
            f'"{self.log_path}" {{\n'
            f"    rotate {keep}\n"
            f"    {mode}\n"
            "    missingok\n"
            "    ifempty\n"
            "    nocompress\n"
            "    nodateext\n"
            "}\n"
        )
        # logrotate refuses a config that is group/world-writable.
        os.chmod(self.conf, 0o644)

    def rotate(self, timeout: float = 30.0) -> subprocess.CompletedProcess:
        """Force one rotation now; fail with logrotate's output if it fails."""
        result = subprocess.run(
            [self.binary, "-f", "-s", str(self.state), str(self.conf)],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert result.returncode == 0, (
            f"logrotate exited {result.returncode}\nstdout: {result.stdout}\n"
            f"stderr: {result.stderr}\nconfig:\n{self.conf.read_text()}"
        )
        self.rotations += 1
        return result

    def backups(self) -> list[Path]:
        """Rotated copies, oldest first (``.N`` … ``.1``)."""
        found = []
        for p in self.log_path.parent.iterdir():
            suffix = p.name[len(self.log_path.name) + 1 :]
            if p.name.startswith(self.log_path.name + ".") and suffix.isdigit():
                found.append((int(suffix), p))
        return [p for _, p in sorted(found, reverse=True)]
