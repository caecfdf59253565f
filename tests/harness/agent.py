"""The sidewatch agent as a test component: config, process, sink and metrics.

`Agent(tmp_path, config)` completes the test's config with what every test needs —
its own ``data_dir``, an API on a free 127.0.0.1 port, a JSONL file sink, a short
``checkpoint_interval`` — writes it as ``<tmp>/sidewatch.yaml``, runs
``sidewatch run -c <file>`` and waits for ``/readyz``. The binary is ``$SIDEWATCH_BIN``,
else ``<repo>/target/debug/sidewatch``.

What the agent produced is read back from the outside, as a user would: the sink file
(`records`), ``/metrics`` (`metrics`, `metric_sum`), ``/healthz``. `restart()` runs the
same config on the same ``data_dir``, so checkpoints carry over.
"""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path
from typing import Any, Callable, Iterable

import requests

from . import secrets
from .ports import free_port
from .process import Message, Process, wait_until

REPO = Path(__file__).resolve().parents[2]


def sidewatch_bin() -> Path:
    """The agent binary under test; fails with how to get one."""
    path = Path(os.environ.get("SIDEWATCH_BIN") or REPO / "target" / "debug" / "sidewatch")
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise AssertionError(
            f"sidewatch binary not found at {path}: run `cargo build` first, "
            f"or point SIDEWATCH_BIN at a built binary"
        )
    return path


# -- YAML ------------------------------------------------------------------------------

_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


def _yaml_scalar(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    if isinstance(value, (str, os.PathLike)):
        # A JSON string is a valid YAML double-quoted scalar (JSON's escapes are a
        # subset of YAML's), so paths, globs and '| level="debug"' need no care.
        return json.dumps(os.fspath(value), ensure_ascii=False)
    if isinstance(value, dict) and not value:
        return "{}"
    if isinstance(value, (list, tuple)) and not value:
        return "[]"
    raise TypeError(f"cannot write {type(value).__name__} {value!r} as YAML")


def _yaml_lines(value: Any, indent: int, out: list[str]) -> None:
    pad = "  " * indent
    if isinstance(value, dict):
        for key, item in value.items():
            k = key if _PLAIN_KEY.match(str(key)) else json.dumps(str(key))
            if isinstance(item, (dict, list, tuple)) and item:
                out.append(f"{pad}{k}:")
                _yaml_lines(item, indent + 1, out)
            else:
                out.append(f"{pad}{k}: {_yaml_scalar(item)}")
    elif isinstance(value, (list, tuple)):
        for item in value:
            if isinstance(item, dict) and item:
                sub: list[str] = []
                _yaml_lines(item, indent + 1, sub)
                sub[0] = f"{pad}- " + sub[0][len(pad) + 2 :]
                out.extend(sub)
            elif isinstance(item, (list, tuple)) and item:
                out.append(f"{pad}-")
                _yaml_lines(item, indent + 1, out)
            else:
                out.append(f"{pad}- {_yaml_scalar(item)}")
    else:
        out.append(pad + _yaml_scalar(value))


def to_yaml(value: Any) -> str:
    """Block-style YAML for plain dict/list/scalar data (readable in failure output,
    and its line numbers make the agent's file:line:col errors useful)."""
    out: list[str] = []
    _yaml_lines(value, 0, out)
    return "\n".join(out) + "\n"


def deep_merge(base: dict, override: dict) -> dict:
    """`override` wins; nested dicts merge; lists and scalars are replaced."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


# -- Prometheus text -------------------------------------------------------------------

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(,?)')
_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


def parse_prometheus(text: str) -> list[tuple[str, dict[str, str], float]]:
    """Samples of a Prometheus text exposition as (name, labels, value).

    Strict on purpose: a malformed sample line raises, since a scraper would reject it.
    """
    samples = []
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = _NAME.match(line)
        if not m:
            raise ValueError(f"/metrics line {lineno}: no metric name: {line!r}")
        name, pos, labels = m.group(0), m.end(), {}
        if pos < len(line) and line[pos] == "{":
            pos += 1
            while True:
                if line[pos:].lstrip().startswith("}"):
                    pos = line.index("}", pos) + 1
                    break
                lm = _LABEL.match(line, pos)
                if not lm:
                    raise ValueError(f"/metrics line {lineno}: bad labels: {line!r}")
                labels[lm.group(1)] = re.sub(
                    r'\\[\\"n]', lambda e: _UNESCAPE[e.group(0)], lm.group(2)
                )
                pos = lm.end()
                if not lm.group(3) and not line[pos:].lstrip().startswith("}"):
                    raise ValueError(f"/metrics line {lineno}: bad labels: {line!r}")
        rest = line[pos:].split()
        if len(rest) not in (1, 2):  # value [timestamp]
            raise ValueError(f"/metrics line {lineno}: bad value: {line!r}")
        samples.append((name, labels, float(rest[0])))
    return samples


def series_key(name: str, labels: dict[str, str]) -> str:
    """Canonical 'name{a="x",b="y"}' (labels sorted), the key of `Agent.metrics()`."""
    if not labels:
        return name
    inner = ",".join(f"{k}={json.dumps(v)}" for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}"


# -- the agent -------------------------------------------------------------------------


class Agent:
    def __init__(
        self,
        tmp_path: str | os.PathLike,
        config: dict,
        *,
        name: str = "sidewatch",
        start: bool = True,
        ready_timeout: float = 30.0,
        binary: str | os.PathLike | None = None,
    ):
        self.tmp_path = Path(tmp_path)
        defaults = {
            "data_dir": str(self.tmp_path / "data"),
            # Short, so a crash re-sends at most ~200 ms worth of lines.
            "checkpoint_interval": "200ms",
            "api": {"listen": f"127.0.0.1:{free_port()}"},
            "export": {"file": {"path": str(self.tmp_path / "records.jsonl")}},
        }
        self.config = deep_merge(defaults, config)
        self.api_url = "http://" + self.config["api"]["listen"]
        self.sink_path = Path(self.config["export"]["file"]["path"])
        self.config_path = self.tmp_path / f"{name}.yaml"
        self.config_path.write_text(to_yaml(self.config))
        self.ready_timeout = ready_timeout
        self.binary = Path(binary) if binary else sidewatch_bin()
        self.process = Process(
            name,
            [self.binary, "run", "-c", self.config_path],
            log_dir=self.tmp_path,
            env={"RUST_BACKTRACE": "1"},
            cwd=self.tmp_path,
        )
        self.session = requests.Session()
        # With `api.token` set, the harness's own API calls carry it.
        self.token = (self.config.get("api") or {}).get("token")
        if self.token:
            self.session.headers["Authorization"] = f"Bearer {self.token}"
        secrets.agent_output(self.process.log_path)
        secrets.agent_output(self.sink_path)
        if start:
            self.start()

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> "Agent":
        self.process.start()
        self.process.wait_http(self.api_url + "/readyz", timeout=self.ready_timeout)
        return self

    def restart(self) -> "Agent":
        """Start again on the same config and data_dir (after terminate or kill9)."""
        assert not self.process.running, "restart() needs the agent stopped first"
        return self.start()

    def terminate(self, timeout: float = 20.0, expect: int | None = 0) -> int:
        """SIGTERM; by default assert the documented clean exit code 0."""
        code = self.process.terminate(timeout)
        if expect is not None:
            assert code == expect, (
                f"sidewatch exited with {code} after SIGTERM, expected {expect}. "
                f"Output tail:\n{self.process.tail()}"
            )
        return code

    def kill9(self) -> int:
        return self.process.kill9()

    @property
    def running(self) -> bool:
        return self.process.running

    def __enter__(self) -> "Agent":
        return self

    def __exit__(self, *exc) -> None:
        self.session.close()
        self.process.stop()

    # -- HTTP ------------------------------------------------------------------------

    def get(self, path: str, **kw) -> requests.Response:
        return self.session.get(self.api_url + path, timeout=kw.pop("timeout", 10), **kw)

    def healthz(self) -> int:
        return self.get("/healthz").status_code

    def metrics_text(self) -> str:
        r = self.get("/metrics")
        assert r.status_code == 200, f"/metrics answered {r.status_code}: {r.text[:500]}"
        return r.text

    def metric_samples(self) -> list[tuple[str, dict[str, str], float]]:
        return parse_prometheus(self.metrics_text())

    def metrics(self) -> dict[str, float]:
        """{'name{a="x",b="y"}': value} for every sample of /metrics."""
        return {series_key(n, l): v for n, l, v in self.metric_samples()}

    def metric_sum(self, name: str, **label_filter: str) -> float:
        """Sum of the samples of `name` whose labels include `label_filter`
        (0.0 when there is none: an untouched counter may not be exposed yet)."""
        return sum(
            v
            for n, labels, v in self.metric_samples()
            if n == name and all(labels.get(k) == want for k, want in label_filter.items())
        )

    # -- the sink --------------------------------------------------------------------

    def records(self, source: str | None = None) -> list[dict]:
        """Every record in the JSONL sink so far, in file order.

        A last line without its newline may be half-written: it is ignored unless it
        already parses. Any other line that is not a JSON object fails the test — the
        sink is a contract too.
        """
        try:
            data = self.sink_path.read_bytes()
        except FileNotFoundError:
            return []
        lines = data.split(b"\n")
        complete, last = lines[:-1], lines[-1]
        out = []
        for i, raw in enumerate(complete, 1):
            try:
                rec = json.loads(raw)
            except ValueError as e:
                raise AssertionError(
                    f"{self.sink_path} line {i} is not JSON ({e}): {raw[:300]!r}"
                ) from None
            assert isinstance(rec, dict), f"{self.sink_path} line {i} is not an object: {raw[:300]!r}"
            out.append(rec)
        if last:
            try:
                rec = json.loads(last)
                if isinstance(rec, dict):
                    out.append(rec)
            except ValueError:
                pass  # being written right now
        if source is not None:
            out = [r for r in out if r.get("source") == source]
        return out

    def wait_records(
        self,
        predicate: Callable[[list[dict]], Any],
        timeout: float,
        message: Message,
    ) -> list[dict]:
        """Poll the sink until predicate(records) is truthy; return the records."""
        seen: list[list[dict]] = [[]]

        def check():
            if not self.process.running:
                raise AssertionError(
                    f"sidewatch exited with code {self.process.returncode} while waiting for "
                    f"records. Output tail:\n{self.process.tail()}"
                )
            seen[0] = self.records()
            return predicate(seen[0])

        wait_until(check, timeout, message, interval=0.2)
        return seen[0]


def attr(record: dict, key: str, default: Any = None) -> Any:
    """An attribute of a sink record (``attributes[key]``)."""
    return (record.get("attributes") or {}).get(key, default)


def values_of(records: Iterable[dict], key: str) -> list[Any]:
    """``attributes[key]`` of every record that has it, in order."""
    return [r["attributes"][key] for r in records if key in (r.get("attributes") or {})]
