"""A real SMTP server for the e2e tests: aiosmtpd with STARTTLS and AUTH PLAIN/LOGIN.

Run as a process by `harness.smtp.SmtpServer`:
    python smtp_server.py PORT CERT KEY USER PASSWORD MAILDIR

Every accepted message is written to MAILDIR as ``<n>.eml`` (the exact bytes received,
with a ``X-Envelope-*`` preamble in a JSON sidecar ``<n>.json``), after AUTH over TLS.
aiosmtpd's CLI has no AUTH, hence this small script (see TESTING.md: an authenticator
that refuses must set ``handled=False`` or the client hangs).
"""

from __future__ import annotations

import json
import signal
import ssl
import sys
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def main() -> None:
    port, cert, key, user, password, maildir = sys.argv[1:7]
    maildir_path = Path(maildir)
    maildir_path.mkdir(parents=True, exist_ok=True)

    class Handler:
        async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd API)
            n = len(list(maildir_path.glob("*.eml")))
            (maildir_path / f"{n:04d}.json").write_text(
                json.dumps(
                    {
                        "mail_from": envelope.mail_from,
                        "rcpt_tos": envelope.rcpt_tos,
                        "tls": session.ssl is not None,
                        "authenticated": bool(session.authenticated),
                    }
                )
            )
            # The .eml last: a reader that sees it sees the sidecar too.
            tmp = maildir_path / f"{n:04d}.tmp"
            tmp.write_bytes(envelope.original_content or envelope.content)
            tmp.rename(maildir_path / f"{n:04d}.eml")
            print(f"accepted message {n} from {envelope.mail_from} to {envelope.rcpt_tos}", flush=True)
            return "250 Message accepted for delivery"

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == user
            and auth_data.password.decode() == password
        )
        print(f"AUTH {mechanism}: {'ok' if ok else 'refused'}", flush=True)
        # handled=False on refusal: aiosmtpd then answers 535 itself.
        return AuthResult(success=ok, handled=False)

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    controller = Controller(
        Handler(),
        hostname="127.0.0.1",
        port=int(port),
        tls_context=context,
        require_starttls=True,
        authenticator=authenticator,
        auth_required=True,
        auth_require_tls=True,
    )
    controller.start()
    print(f"smtp listening on 127.0.0.1:{port}", flush=True)
    try:
        signal.pause()
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
