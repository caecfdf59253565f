"""sidewatch's end-to-end test harness: real components on free 127.0.0.1 ports.

One module per component, all built on `process.Process` (start by argv, output to a
file in the test's tmp dir, stop by PID) and bounded waits (`wait_until`,
`wait_stable`): the app, logrotate, an SMTP server (aiosmtpd with STARTTLS and AUTH),
a webhook receiver, Alertmanager, an OTLP receiver (gRPC and HTTP). Add new components
as sibling modules in the same shape: a class that starts in its constructor, exposes
`.url`/ports and read-back helpers, and registers its `Process` so the fixtures in
tests/conftest.py stop it and print its output on failure.
"""

from .alertmanager import Alertmanager
from .agent import Agent, attr, parse_prometheus, series_key, sidewatch_bin, to_yaml, values_of
from .app import StructlogApp
from .logrotate import Logrotate
from .otlp import OtlpReceiver
from .ports import free_port
from .process import LIVE, Process, wait_stable, wait_until
from .promtool import promtool_check
from .smtp import SmtpServer
from .webhook import WebhookReceiver, verify_hmac
from .writer import LineWriter, line_offsets, seqs_in_file

__all__ = [
    "Agent",
    "Alertmanager",
    "LIVE",
    "LineWriter",
    "OtlpReceiver",
    "Logrotate",
    "Process",
    "SmtpServer",
    "StructlogApp",
    "WebhookReceiver",
    "attr",
    "free_port",
    "line_offsets",
    "parse_prometheus",
    "promtool_check",
    "seqs_in_file",
    "series_key",
    "sidewatch_bin",
    "to_yaml",
    "values_of",
    "verify_hmac",
    "wait_stable",
    "wait_until",
]
