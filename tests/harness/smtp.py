"""A real SMTP server (aiosmtpd, STARTTLS + AUTH) as a test component.

`SmtpServer(tmp_path)` makes a self-signed certificate for ``localhost``/127.0.0.1 with
``openssl`` (a private CA and a server certificate it signed), starts ``smtp_server.py`` on
a free port and waits until it answers. The agent trusts the CA through ``ca_file:
server.ca``. `messages()` reads back
every delivered mail as `email.message.EmailMessage`; `stop()` / `start()` take the
server down and bring it back on the same port (the "SMTP down for 60 s" fault).
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from .ports import free_port
from .secrets import secret
from .process import Process, wait_until

HERE = Path(__file__).resolve().parent


def make_cert(directory: Path) -> tuple[Path, Path, Path]:
    """A private CA and a server certificate it signed for localhost and 127.0.0.1.

    Returns (ca, cert, key). The agent trusts `ca` through `ca_file`, as a user with a
    private CA does. (A lone self-signed certificate is a CA used as an end entity,
    which webpki refuses.)
    """
    ca, ca_key = directory / "ca.pem", directory / "ca-key.pem"
    cert, key, csr = directory / "smtp-cert.pem", directory / "smtp-key.pem", directory / "smtp.csr"
    ext = directory / "smtp-ext.cnf"
    ext.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n")

    def run(*argv: str) -> None:
        subprocess.run(["openssl", *argv], check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca),
        "-days", "1", "-subj", "/CN=sidewatch e2e CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", "/CN=localhost")
    run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
        "-out", str(cert), "-days", "1", "-extfile", str(ext))
    return ca, cert, key


class SmtpServer:
    def __init__(self, tmp_path: str | os.PathLike, user: str = "sidewatch", password: str = secret("s3cret-smtp-5e1d")):
        self.dir = Path(tmp_path) / "smtp"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.maildir = self.dir / "mail"
        self.user, self.password = user, password
        self.ca, self.cert, self.key = make_cert(self.dir)
        self.port = free_port()
        self.process = Process(
            "smtp",
            [sys.executable, HERE / "smtp_server.py", self.port, self.cert, self.key, user, password, self.maildir],
            log_dir=self.dir,
        )
        self.start()

    @property
    def smarthost(self) -> str:
        # The certificate names localhost, so the agent connects by that name.
        return f"localhost:{self.port}"

    def start(self) -> "SmtpServer":
        self.process.start()
        wait_until(self._answers, 15, lambda: f"smtp server on port {self.port} to answer:\n{self.process.tail()}")
        return self

    def stop(self) -> None:
        self.process.stop()

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                return s.recv(100).startswith(b"220")
        except OSError:
            return False

    def messages(self) -> list[tuple[email.message.EmailMessage, dict]]:
        """Every delivered message with its envelope (from, to, tls, authenticated)."""
        out = []
        for eml in sorted(self.maildir.glob("*.eml")):
            msg = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
            envelope = json.loads(eml.with_suffix(".json").read_text())
            out.append((msg, envelope))
        return out
