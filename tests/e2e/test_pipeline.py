"""End-to-end tests of sidewatch's log pipeline: files in, JSONL sink records out.

Each test runs the real agent binary against real writers — the FastAPI/structlog app
with its stdlib handlers, Debian's logrotate, a steady O_APPEND line writer — and
checks the guarantees of SPEC.md ("Log records", "Guarantees") from the outside: every
line that existed reaches the sink exactly once (or, after a crash, with duplicates
that are counted and identifiable by file+offset), rotation and restarts lose nothing,
bad input never stops the stream, and /metrics is valid Prometheus exposition.

Run: .venv/bin/pytest tests/e2e -s   (needs target/debug/sidewatch or $SIDEWATCH_BIN,
and the Debian packages logrotate and prometheus).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import re
import shutil
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from harness import (
    Agent,
    LineWriter,
    Logrotate,
    StructlogApp,
    attr,
    line_offsets,
    seqs_in_file,
    wait_stable,
    wait_until,
)

SOURCE = "app"
# OpenTelemetry severity numbers of structlog's levels.
SEVERITY = {"debug": 5, "info": 9, "warning": 13, "error": 17, "critical": 21}
HEX32 = re.compile(r"^[0-9a-f]{32}$")
HEX16 = re.compile(r"^[0-9a-f]{16}$")


# -- helpers -----------------------------------------------------------------------------


def log_source(paths, name: str = SOURCE, **extra) -> dict:
    """One `logs:` entry: structlog, read from the beginning, 2 s rotate_wait."""
    return {
        "name": name,
        "paths": [str(p) for p in paths],
        "format": "structlog",
        "start_at": "beginning",
        "rotate_wait": "2s",
        **extra,
    }


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


def from_file(records: list[dict], path: Path) -> list[dict]:
    return [r for r in records if same_file(r.get("file", ""), path)]


def request_id_counts(records: list[dict]) -> Counter:
    return Counter(attr(r, "request_id") for r in records if attr(r, "request_id"))


def seq_counts(records: list[dict]) -> Counter:
    return Counter(attr(r, "seq") for r in records if attr(r, "seq") is not None)


def wait_for_ids(agent: Agent, expected, timeout: float, key: str = "request_id") -> None:
    """Wait until every expected id (attributes[key]) is in the sink."""
    expected = set(expected)

    def arrived(records):
        return expected <= {attr(r, key) for r in records}

    def describe():
        got = {attr(r, key) for r in agent.records()}
        missing = expected - got
        return (
            f"{len(missing)} of {len(expected)} {key}s never reached the sink "
            f"(e.g. {sorted(missing, key=str)[:5]}); the sink holds {len(got)} distinct"
        )

    agent.wait_records(arrived, timeout, describe)


def settle(agent: Agent, quiet: float = 3.0, timeout: float = 60.0) -> None:
    """Wait until the sink has not grown for `quiet` seconds — longer than rotate_wait —
    so a late duplicate (a rotated file re-read as new) shows up before we count."""

    def size():
        try:
            return agent.sink_path.stat().st_size
        except FileNotFoundError:
            return -1

    wait_stable(size, quiet, timeout, "the sink to stop growing")


def assert_exactly_once(counts: Counter, expected: list, what: str) -> None:
    missing = [x for x in expected if counts[x] == 0]
    dups = {x: c for x, c in counts.items() if c > 1}
    assert not missing and not dups, (
        f"{what}: expected each of {len(expected)} exactly once; "
        f"{len(missing)} missing (e.g. {missing[:5]}), "
        f"{len(dups)} duplicated (e.g. {list(dups.items())[:5]})"
    )


class Producer:
    """Drives app.work() from a thread until stopped; remembers every id logged."""

    def __init__(self, app: StructlogApp, batch: int = 20):
        self.app, self.batch = app, batch
        self.ids: list[str] = []
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        try:
            while not self._stop.is_set():
                self.ids.extend(self.app.work(self.batch))
        except BaseException as e:
            self._error = e

    def start(self) -> "Producer":
        self._thread.start()
        return self

    def wait_more(self, n: int, timeout: float = 60.0) -> None:
        target = len(self.ids) + n
        wait_until(
            lambda: len(self.ids) >= target or self._error,
            timeout,
            lambda: f"the app to log {target} records (at {len(self.ids)})",
        )
        assert self._error is None, f"producer failed: {self._error!r}"

    def stop(self) -> list[str]:
        self._stop.set()
        self._thread.join(60)
        assert not self._thread.is_alive(), "producer thread did not stop"
        assert self._error is None, f"producer failed: {self._error!r}"
        return self.ids


# -- the record shape --------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_structlog_app_records_have_the_documented_shape(tmp_path):
    """The app's structlog lines become records with the mapped fields of SPEC.md."""
    app = StructlogApp(tmp_path, handler="file", version="1.4.2")
    agent = Agent(tmp_path, {"logs": [log_source([app.log_path])]})
    ok_ids = app.work(3)
    err_ids = app.work(2, status=503)
    exc_id = app.error()
    wait_for_ids(agent, ok_ids + err_ids + [exc_id], 60)

    by_id = {attr(r, "request_id"): r for r in agent.records(SOURCE)}
    now = dt.datetime.now(dt.timezone.utc)
    for rid in ok_ids + err_ids:
        r = by_id[rid]
        level = "info" if rid in ok_ids else "error"
        assert r["source"] == SOURCE, r
        assert same_file(r["file"], app.log_path), r
        assert r["body"] == "request finished", f"body must be structlog's event: {r}"
        assert r["severity_text"] == level and r["severity_number"] == SEVERITY[level], r
        assert HEX32.match(r["trace_id"] or "") and HEX16.match(r["span_id"] or ""), (
            f"trace_id/span_id must be lifted from the line as hex: {r}"
        )
        t = dt.datetime.fromisoformat(r["time"].replace("Z", "+00:00"))
        assert abs((now - t).total_seconds()) < 300, f"time not taken from the line: {r}"
        a = r["attributes"]
        assert a["version"] == "1.4.2" and a["path"] == "/work", r
        assert a["status"] == (200 if level == "info" else 503), r
        for mapped in ("event", "level", "timestamp", "trace_id", "span_id"):
            assert mapped not in a, f"{mapped!r} is mapped to a top-level field, not an attribute: {r}"
        assert r["parse_error"] is False and r["truncated"] is False and r["invalid_utf8"] is False, r
        assert isinstance(r["offset"], int) and r["offset"] >= 0, r

    exc = by_id[exc_id]
    assert exc["severity_text"] == "error" and exc["severity_number"] == 17, exc
    assert exc["body"] == "unhandled error", exc
    assert "ZeroDivisionError" in attr(exc, "exception", ""), (
        f"structlog's rendered traceback must be kept as the exception attribute: {exc}"
    )

    # offset is the byte offset of the line's start: the line there carries that id.
    data = app.log_path.read_bytes()
    for rid, r in by_id.items():
        if rid is None:
            continue
        line = data[r["offset"] :].split(b"\n", 1)[0]
        assert json.loads(line).get("request_id") == rid, (
            f"offset {r['offset']} of {rid} points at another line: {line[:200]!r}"
        )


# -- 1. RotatingFileHandler --------------------------------------------------------------


@pytest.mark.timeout(300)
def test_rotating_file_handler_every_record_exactly_once(tmp_path):
    """RotatingFileHandler renames app.log → .1 … .50 every 20 KiB while the agent tails
    `app.log*`: each of 5,000 request ids reaches the sink exactly once."""
    logs = tmp_path / "logs"
    logs.mkdir()
    agent = Agent(tmp_path, {"logs": [log_source([logs / "app.log*"])]})
    app = StructlogApp(tmp_path, handler="rotating", max_bytes=20 * 1024, backups=50)

    # ≈1,000 records/s (≈70 rotations in ≈5 s): rotation storms while the agent tails,
    # yet the 50 backups span ≈14 s of writes, so a file is deleted by the app only long
    # after it was created — time for any tailer to have found and opened it. (Unpaced,
    # the app writes 5,000 records in ≈1 s and deletes a backup ≈0.7 s after creating it.)
    sent: list[str] = []
    started = time.monotonic()
    for i in range(100):
        sent += app.work(50)
        pause = started + (i + 1) * 0.05 - time.monotonic()
        if pause > 0:
            time.sleep(pause)  # load pacing, not synchronisation
    backups = list(logs.glob("app.log.*"))
    total_bytes = sum(p.stat().st_size for p in logs.glob("app.log*"))
    # ≈1.4 MB over 20 KiB files: ~70 rotations, the oldest ~20 backups already deleted.
    assert len(backups) >= 30, f"expected many rotations, found backups {sorted(map(str, backups))}"
    print(f"\nrotating: {len(sent)} records, {len(backups)} backups kept, {total_bytes} bytes on disk")

    wait_for_ids(agent, sent, 180)
    settle(agent)
    records = agent.records(SOURCE)
    assert_exactly_once(request_id_counts(records), sent, "request ids across 70 rotations")

    # Each record is read once, so the counter and the sink agree.
    counted = agent.metric_sum("sidewatch_log_records_total", source=SOURCE)
    assert counted == len(records), (
        f"sidewatch_log_records_total{{source={SOURCE!r}}} = {counted}, "
        f"but the sink holds {len(records)} records of that source"
    )


# -- 2. logrotate copytruncate -----------------------------------------------------------


@pytest.mark.timeout(300)
def test_logrotate_copytruncate_loses_only_logrotates_own_window(tmp_path, record_property):
    """Real `logrotate copytruncate` under continuous O_APPEND writes, 5 rotations.

    Lines in neither the copies nor the live file afterwards were lost by logrotate
    (written between its copy and its truncate) — reported, not held against us. Every
    line that is in the live file or a copy must be in the sink, exactly once, although
    only the live file is tailed: the agent must read fast enough to have every line
    before logrotate truncates it.
    """
    logs = tmp_path / "logs"
    live = logs / "app.log"
    writer = LineWriter(live, rate=400)
    agent = Agent(tmp_path, {"logs": [log_source([live])]})
    rot = Logrotate(tmp_path, live, mode="copytruncate")

    writer.start()
    writer.wait_written(1)
    inode = live.stat().st_ino
    for _ in range(5):
        writer.wait_written(writer.written + 600)  # ≈1.5 s of lines between rotations
        rot.rotate()
    writer.wait_written(writer.written + 400)
    total = writer.stop()

    assert live.stat().st_ino == inode, "copytruncate must keep the live file's inode"
    copies = rot.backups()
    assert len(copies) == 5, f"expected 5 rotated copies, got {copies}"

    in_live = set(seqs_in_file(live))
    in_copies: set[int] = set()
    for c in copies:
        in_copies |= set(seqs_in_file(c))
    # What is in the live file now is readable: it must all arrive.
    wait_for_ids(agent, in_live, 60, key="seq")
    settle(agent)

    counts = seq_counts(agent.records(SOURCE))
    written = set(range(total))
    in_files = in_live | in_copies
    logrotate_lost = written - in_files
    ours_lost = in_files - set(counts)
    dups = {s: c for s, c in counts.items() if c > 1}
    summary = (
        f"copytruncate: {total} lines written over {rot.rotations} rotations; "
        f"logrotate's own copy→truncate residue {len(logrotate_lost)} lines "
        f"({len(logrotate_lost & set(counts))} of them still delivered by the agent); "
        f"lost by the agent: {len(ours_lost)} (in copies only: {len(ours_lost - in_live)}, "
        f"in the live file: {len(ours_lost & in_live)}); duplicates: {len(dups)}"
    )
    print("\n" + summary)
    record_property("logrotate_residue_lines", len(logrotate_lost))
    record_property("agent_lost_lines", len(ours_lost))
    assert not ours_lost, f"{summary}; e.g. lost seqs {sorted(ours_lost)[:10]}"
    assert not dups, f"{summary}; duplicated seqs (no crash happened) {sorted(dups.items())[:10]}"
    assert not set(counts) - written, "the sink holds seqs the writer never wrote"


# -- 3. logrotate create + FileHandler --------------------------------------------------


@pytest.mark.timeout(240)
def test_logrotate_create_keeps_draining_the_renamed_file(tmp_path):
    """`logrotate create` renames app.log to app.log.1; a plain FileHandler keeps
    writing into app.log.1. Only `app.log` is tailed, so the agent must keep reading
    its open descriptor of the renamed file — then close it once idle."""
    app = StructlogApp(tmp_path, handler="file")
    live = app.log_path
    agent = Agent(tmp_path, {"logs": [log_source([live])]})
    rot = Logrotate(tmp_path, live, mode="create")

    before: list[str] = []
    for _ in range(10):
        before += app.work(50)
    rot.rotate()
    # Right away (well within rotate_wait): these land in the renamed file.
    after: list[str] = []
    for _ in range(10):
        after += app.work(50)

    renamed = live.with_name(live.name + ".1")
    renamed_text = renamed.read_text()
    assert live.stat().st_size == 0 and after[-1] in renamed_text, (
        "scenario broken: the FileHandler should keep writing into the renamed file"
    )

    wait_for_ids(agent, before + after, 90)
    settle(agent)
    assert_exactly_once(
        request_id_counts(agent.records(SOURCE)), before + after, "ids before+after the rename"
    )

    # "never keeps rotated files open": idle for rotate_wait (2 s) → closed.
    wait_until(
        lambda: not any(f.startswith(str(renamed)) for f in agent.process.open_files()),
        30,
        lambda: f"the agent to close {renamed} after rotate_wait; open: {agent.process.open_files()}",
    )


# -- 4. kill -9 ---------------------------------------------------------------------------


@pytest.mark.timeout(240)
def test_kill9_and_restart_loses_nothing_and_duplicates_are_identifiable(tmp_path, record_property):
    """SIGKILL mid-stream, restart on the same data_dir: no line lost; re-sent lines
    are duplicates of a (file, offset) already in the sink, with an identical record."""
    live = tmp_path / "logs" / "app.log"
    writer = LineWriter(live, rate=500)
    agent = Agent(tmp_path, {"logs": [log_source([live])]})
    writer.start()

    agent.wait_records(lambda r: len(r) >= 1500, 60, lambda: f"1500 records (writer at {writer.written})")
    at_kill = len(agent.records())
    agent.kill9()
    writer.wait_written(writer.written + 500)  # lines written while the agent is down
    agent.restart()
    writer.wait_written(writer.written + 500)
    total = writer.stop()

    wait_for_ids(agent, range(total), 90, key="seq")
    settle(agent)
    records = agent.records(SOURCE)

    first: dict[tuple[str, int], dict] = {}
    duplicates = 0
    for r in records:
        key = (r["file"], r["offset"])
        if key in first:
            duplicates += 1
            seen = first[key]
            assert (seen["body"], seen["attributes"]) == (r["body"], r["attributes"]), (
                f"two different records claim {key}:\n{seen}\n{r}"
            )
        else:
            first[key] = r
    counts = seq_counts(records)
    extra = sum(c - 1 for c in counts.values())
    print(f"\nkill -9: {total} lines, {at_kill} in the sink at the kill, {duplicates} duplicates after restart")
    record_property("kill9_duplicates", duplicates)

    assert set(range(total)) <= set(counts), "lines lost across kill -9"
    assert extra == duplicates, (
        f"{extra} re-sent lines but only {duplicates} repeat a (file, offset): "
        f"duplicates must be identifiable by file+offset"
    )
    # Checkpoints every 200 ms: a restart re-sends a fraction of a second of lines,
    # not the stream from its start.
    assert duplicates <= at_kill // 2, (
        f"{duplicates} duplicates of the {at_kill} records sent before the kill: "
        f"offsets are not being checkpointed every checkpoint_interval"
    )
    # offset is the byte offset of the line start, in this (never rotated) file.
    offsets = line_offsets(live)
    wrong = [r for r in first.values() if offsets.get(r["offset"]) != attr(r, "seq")]
    assert not wrong, f"{len(wrong)} records with a wrong offset, e.g. {wrong[:3]}"


# -- 5. inode reuse -----------------------------------------------------------------------


def _lines(event: str, n: int) -> bytes:
    return b"".join(
        (json.dumps({"event": event, "level": "info", "seq": i, "pad": "y" * 60}) + "\n").encode()
        for i in range(n)
    )


@pytest.mark.timeout(180)
def test_new_file_reusing_an_inode_is_read_from_the_start(tmp_path):
    """A file deleted while the agent is stopped, and a new one created on the same
    inode: the checkpoint of the old file must not apply (dev/inode + fingerprint), so
    every line of the new file arrives — including those before the old offset."""
    logs = tmp_path / "logs"
    logs.mkdir()
    live = logs / "app.log"
    live.write_bytes(_lines("first file", 100))
    old = live.stat()

    agent = Agent(tmp_path, {"logs": [log_source([live])]})
    agent.wait_records(lambda r: len(r) >= 100, 60, "the first file's 100 lines")
    agent.terminate()  # closes the file, so its inode can be freed and reused

    # Same filesystem, not tailed: holds the files whose inode was not the one we want.
    # Made before the unlink, or the directory itself may take the freed inode.
    aside = tmp_path / "aside"
    aside.mkdir()
    live.unlink()
    for attempt in range(500):
        fd = os.open(live, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.close(fd)
        if live.stat().st_ino == old.st_ino:
            break
        live.rename(aside / f"skip{attempt}")
    else:
        pytest.skip(f"the filesystem did not reuse inode {old.st_ino} within 500 files")

    # Three times the old checkpoint offset: resuming there would skip most lines.
    second = _lines("second file", 300)
    assert len(second) > 2 * old.st_size
    live.write_bytes(second)
    assert live.stat().st_ino == old.st_ino and live.stat().st_dev == old.st_dev

    agent.restart()
    second_seqs = list(range(300))

    def second_arrived(records):
        return set(second_seqs) <= {attr(r, "seq") for r in records if r["body"] == "second file"}

    agent.wait_records(
        second_arrived,
        60,
        lambda: "every line of the new file on the reused inode (got "
        f"{sum(1 for r in agent.records() if r['body'] == 'second file')} of 300)",
    )
    settle(agent)
    records = agent.records(SOURCE)
    assert_exactly_once(
        seq_counts([r for r in records if r["body"] == "second file"]), second_seqs, "new file's lines"
    )
    assert_exactly_once(
        seq_counts([r for r in records if r["body"] == "first file"]), list(range(100)), "old file's lines"
    )


# -- 6. bad input -------------------------------------------------------------------------


@pytest.mark.timeout(240)
def test_bad_input_is_flagged_counted_and_never_stops_the_stream(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()

    malformed = logs / "malformed.log"
    malformed_lines = [
        b'{"event": "good before", "level": "info", "n": 1}',
        b'{"event": "unterminated',
        b"not json at all",
        b'{"event": "trailing comma", }',
        b'{"event": "good after", "level": "warning", "n": 2}',
    ]
    malformed.write_bytes(b"\n".join(malformed_lines) + b"\n")

    huge = logs / "huge.log"
    huge_lines = [
        b'{"event": "before huge", "level": "info"}\n',
        b'{"event": "huge", "level": "info", "pad": "' + b"a" * (10 * 1024 * 1024) + b'"}\n',
        b'{"event": "after huge", "level": "info", "marker": "after"}\n',
    ]
    huge.write_bytes(b"".join(huge_lines))

    badutf8 = logs / "badutf8.log"
    badutf8_lines = [
        b'{"event": "caf\xe9 latin-1", "level": "info"}',
        b"plain text \xff\xfe bytes",
        b'{"event": "clean utf8 caf\xc3\xa9", "level": "info"}',
    ]
    badutf8.write_bytes(b"\n".join(badutf8_lines) + b"\n")

    binary = logs / "binary.log"
    binary.write_bytes(random.Random(42).randbytes(64 * 1024) + b"\x00\n")

    empty = logs / "empty.log"
    empty.write_bytes(b"")

    notrail = logs / "notrail.log"
    complete = b'{"event": "complete 1", "level": "info"}\n{"event": "complete 2", "level": "info"}\n'
    partial = b'{"event": "partial li'
    notrail.write_bytes(complete + partial)

    agent = Agent(
        tmp_path, {"logs": [log_source([logs / "*.log"], name="bad", max_line_bytes="1MiB")]}
    )

    def counts_reached(records):
        return (
            len(from_file(records, malformed)) >= 5
            and len(from_file(records, huge)) >= 3
            and len(from_file(records, badutf8)) >= 3
            and len(from_file(records, notrail)) >= 2
        )

    agent.wait_records(
        counts_reached,
        90,
        lambda: "records of every file: "
        + ", ".join(f"{p.name}={len(from_file(agent.records(), p))}" for p in (malformed, huge, badutf8, notrail)),
    )
    settle(agent)
    records = agent.records()

    # Malformed JSON: kept as text records, flagged, in order, the good lines parsed.
    got = from_file(records, malformed)
    assert len(got) == 5, f"malformed.log: expected 5 records, got {got}"
    for rec, raw in zip(got, malformed_lines):
        bad = raw not in (malformed_lines[0], malformed_lines[4])
        assert rec["parse_error"] is bad, f"parse_error should be {bad} for {raw!r}: {rec}"
        if bad:
            assert rec["body"] == raw.decode(), f"a malformed line is kept as its text: {rec}"
    assert got[0]["body"] == "good before" and got[4]["body"] == "good after", got

    # The 10 MiB line: one record, flagged and cut; the lines around it intact.
    got = from_file(records, huge)
    assert len(got) == 3, (
        f"huge.log: expected 3 records (the long line as one truncated record), got "
        f"{len(got)}: {[(r['offset'], r['truncated'], len(json.dumps(r))) for r in got]}"
    )
    before, cut, after = got
    assert before["body"] == "before huge" and before["offset"] == 0, before
    assert cut["truncated"] is True, f"the 10 MiB line must be flagged truncated: {json.dumps(cut)[:300]}"
    assert len(json.dumps(cut)) <= 1024 * 1024 + 64 * 1024, (
        f"the truncated record is {len(json.dumps(cut))} bytes: body/attributes must be cut to max_line_bytes"
    )
    assert cut["offset"] == len(huge_lines[0]), cut["offset"]
    assert after["body"] == "after huge" and attr(after, "marker") == "after", after
    assert after["truncated"] is False and after["parse_error"] is False, after
    assert after["offset"] == len(huge_lines[0]) + len(huge_lines[1]), (
        f"the line after the long one must start at its real offset: {after}"
    )

    # Invalid UTF-8: lossy text, flagged; a valid line after it is untouched.
    got = from_file(records, badutf8)
    assert len(got) == 3, got
    latin, text, clean = got
    # Lossy: each invalid byte becomes U+FFFD (whether the line is then parsed or kept as text).
    assert latin["invalid_utf8"] is True and "caf\ufffd latin-1" in latin["body"], latin
    assert text["invalid_utf8"] is True and text["parse_error"] is True, text
    assert text["body"] == badutf8_lines[1].decode("utf-8", "replace"), text
    assert clean["invalid_utf8"] is False and clean["body"] == "clean utf8 caf\u00e9", clean

    # Binary garbage: whatever it yields is flagged as unparsed; nothing from empty.log.
    got = from_file(records, binary)
    assert all(r["parse_error"] for r in got), [r for r in got if not r["parse_error"]][:3]
    print(f"\nbinary.log: {len(got)} records from 64 KiB of random bytes")
    assert from_file(records, empty) == [], from_file(records, empty)

    # No trailing newline: the complete lines arrived, the partial one is held back…
    got = from_file(records, notrail)
    assert [r["body"] for r in got] == ["complete 1", "complete 2"], (
        f"notrail.log: a line without its newline must not be emitted yet: {got}"
    )

    # …and the stream goes on: finish it, append to the malformed file, add a new file.
    with open(notrail, "ab") as f:
        f.write(b'ne", "level": "info", "marker": "completed"}\n')
    with open(malformed, "ab") as f:
        f.write(b'{"event": "good after all the bad", "level": "info"}\n')
    good = logs / "good.log"
    good.write_bytes(b'{"event": "fresh file", "level": "info"}\n')

    wanted = {"partial line", "good after all the bad", "fresh file"}
    agent.wait_records(
        lambda rs: wanted <= {r["body"] for r in rs},
        60,
        lambda: f"good lines after the bad input: missing {wanted - {r['body'] for r in agent.records()}}",
    )
    settle(agent)
    records = agent.records()
    got = from_file(records, notrail)
    assert len(got) == 3 and got[2]["body"] == "partial line", got
    assert attr(got[2], "marker") == "completed" and got[2]["offset"] == len(complete), got[2]

    assert agent.healthz() == 200, "the agent must stay healthy after bad input"
    bad = [r for r in records if r["source"] == "bad"]
    for metric, flag in (
        ("sidewatch_log_parse_errors_total", "parse_error"),
        ("sidewatch_log_truncated_total", "truncated"),
        ("sidewatch_log_invalid_utf8_total", "invalid_utf8"),
    ):
        flagged = sum(1 for r in bad if r[flag])
        value = agent.metric_sum(metric, source="bad")
        assert value > 0 and value == flagged, (
            f"{metric}{{source=\"bad\"}} = {value}; the sink has {flagged} records flagged {flag}"
        )


# -- 7. SIGTERM --------------------------------------------------------------------------


@pytest.mark.timeout(240)
def test_sigterm_exits_0_and_restart_neither_loses_nor_duplicates(tmp_path):
    app = StructlogApp(tmp_path, handler="file")
    agent = Agent(tmp_path, {"logs": [log_source([app.log_path])]})
    producer = Producer(app).start()

    agent.wait_records(lambda r: len(r) >= 500, 60, "500 records before the SIGTERM")
    agent.terminate(timeout=15)  # asserts exit code 0, within the 10 s grace + slack
    producer.wait_more(500)  # the app keeps logging while the agent is down
    agent.restart()
    producer.wait_more(500)
    sent = producer.stop()

    wait_for_ids(agent, sent, 90)
    settle(agent)
    records = agent.records(SOURCE)
    assert_exactly_once(request_id_counts(records), sent, "ids across a clean restart")
    positions = Counter((r["file"], r["offset"]) for r in records)
    repeated = {k: c for k, c in positions.items() if c > 1}
    assert not repeated, f"a clean shutdown must leave no duplicates: {list(repeated.items())[:5]}"


# -- 8. promtool -------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_metrics_pass_promtool_check(tmp_path):
    promtool = shutil.which("promtool")
    # tests/setup.sh installs it (Debian package `prometheus`): its absence is a failure.
    assert promtool, "promtool not found: run tests/setup.sh (apt-get install prometheus)"
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "app.log").write_bytes(
        b'{"event": "hello", "level": "info"}\n{"event": "oops", "level": "error"}\nnot json\n'
    )
    agent = Agent(tmp_path, {"logs": [log_source([logs / "app.log"])]})
    agent.wait_records(lambda r: len(r) >= 3, 60, "3 records")

    r = agent.get("/metrics")
    assert r.status_code == 200, r.status_code
    ctype = r.headers.get("Content-Type", "")
    assert ctype.startswith("text/plain") and "version=0.0.4" in ctype, (
        f"/metrics Content-Type {ctype!r}, want text/plain; version=0.0.4; charset=utf-8"
    )
    check = subprocess.run([promtool, "check", "metrics"], input=r.content, capture_output=True, timeout=30)
    out = (check.stdout + check.stderr).decode(errors="replace")
    assert check.returncode == 0, f"promtool check metrics exited {check.returncode}:\n{out}\n--- /metrics:\n{r.text}"
    for name in ("sidewatch_log_records_total", "sidewatch_log_parse_errors_total"):
        assert f"# TYPE {name} counter" in r.text and f"# HELP {name} " in r.text, (
            f"{name} must be exposed as a documented counter:\n{r.text}"
        )
    assert agent.metric_sum("sidewatch_log_records_total", source=SOURCE, level="error") == 1
