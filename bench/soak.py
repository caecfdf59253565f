#!/usr/bin/env python3
"""Soak: hours of steady traffic through rotations, collector outages and alerts.

Issue 8: "one hour at 5,000 lines/s with rotation every minute, a collector that goes
away for 2 minutes every 15, and alerts firing and resolving — RSS and open file
descriptors flat (report start/end/max), nothing lost (count by file + offset)."

What runs (all on 127.0.0.1, in a scratch directory: see `--dir`):

- a writer (`harness.endurance.RotatingWriter`) appends numbered structlog lines of one
  fixed length (`--line-bytes`, 200) to ``logs/app.log`` at `--rate` lines/s, in 20 ms
  writes, and rotates it like Python's ``RotatingFileHandler`` every `--rotate-every`
  seconds (``app.log`` → ``app.log.1`` … ``.5``, the oldest deleted). The agent's glob
  is ``app.log`` only: a rotated file leaves the globs and is drained through its open
  descriptor, as in production;
- error bursts: for `--burst` seconds every `--burst-every`, 1% of the lines are
  ``level: error``; the rule ``ErrorBurst`` (``sum(count_over_time({source="app"} |
  level="error" [W])) > 50``, ``for: F``) fires during each burst and resolves once its
  window has no error left. Fired / resolved are counted from the agent's own log (the
  rule runner logs every transition) and checked against the bursts;
- the collector: `harness.endurance.OtlpCounter`, an OTLP/HTTP receiver on the official
  protobufs that keeps, per record, only its identity (``sidewatch.file_id`` +
  ``sidewatch.offset``: SPEC's ``file`` + ``offset``, with the inode so rotated
  generations of one name differ) and its ``seq``, in byte arrays (a line's offset is
  index × line length). Every `--outage-every` seconds it goes away for `--outage`
  seconds (a graceful process stop: in-flight requests answered, counts saved; then
  started again on the same port), halfway through each period;
- the agent (the release binary by default, `--binary`), through the test harness's
  `Agent`: the file source, the rule file (evaluation every `--interval`), export over
  OTLP/HTTP (logs only, default queue: 16 MiB memory, 1 GiB disk), no file output.

Every `--sample` seconds it reads the agent's VmRSS / VmHWM and open descriptors; every
second ``GET /healthz``. After `--duration` the writer stops and the run waits (bounded)
until the collector has every line, then a few quiet seconds for late duplicates.

Promises checked (exit 1 if any is broken, with the reason):
- nothing lost: every line written arrived, by file_id + offset and by seq;
- nothing doubled: no (file_id, offset) twice (there is no crash in this run);
- nothing dropped by the exporter (``sidewatch_export_dropped_total`` 0) and no
  record without an identity or at an offset that is not a line start;
- memory bounded: RSS max ≤ the bound derived from the config
  (`harness.endurance.memory_bound`); and, in runs of 3 outage periods or more, flat:
  the RSS max of the last period ≤ 1.10 × that of the second + 4 MiB (the first
  period fills what is meant to fill: the queue's 16 MiB memory cache during the first
  outage, the rule windows);
- descriptors flat: fds at the end ≤ fds at the start + 3, max ≤ start + 12 (a rotated
  file stays open for `rotate_wait`, 10 s; connections to the collector come and go);
- alerts: ``ErrorBurst`` fired and resolved once per burst;
- ``/healthz`` answered every probe.

  .venv/bin/python bench/soak.py                                  # the hour (release binary)
  .venv/bin/python bench/soak.py --duration 120 --rotate-every 15 --outage-every 120 \\
      --outage 30 --burst-every 120 --burst 25 --interval 1s      # the 2-minute version (CI's)
  .venv/bin/python bench/soak.py --json soak.json                 # also the figures as JSON

Needs the release binary (`cargo build --release -p sidewatch`) or `--binary`, and the
test venv (`tests/requirements.txt`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from harness import Agent, to_yaml, wait_stable, wait_until  # noqa: E402
from harness.endurance import (  # noqa: E402
    MIB,
    HealthProbe,
    OtlpCounter,
    ProcSampler,
    RotatingWriter,
    SeqLines,
    agent_alert_events,
    mark_held,
    memory_bound,
    metric,
    proc_memory,
    scratch_dir,
    report,
)

RULES = """\
groups:
  - name: soak
    interval: {interval}
    rules:
      - alert: ErrorBurst
        expr: sum(count_over_time({{source="app"}} | level="error" [{window}])) > 50
        for: {hold}
        labels: {{ severity: page }}
        annotations:
          summary: "{{{{ $value }}}} errors in {window}"
"""


def seconds(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    for suffix in ("ms", "s", "m", "h"):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * units[suffix]
    return float(text)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=3600, help="seconds of writing (default 3600)")
    ap.add_argument("--rate", type=float, default=5000, help="lines per second (default 5000)")
    ap.add_argument("--binary", default=None, help="the agent (default target/release/sidewatch)")
    ap.add_argument("--rotate-every", type=float, default=60, help="seconds between rotations (60)")
    ap.add_argument("--backups", type=int, default=5, help="rotated files kept (5)")
    ap.add_argument("--outage-every", type=float, default=900, help="a collector outage every … s (900)")
    ap.add_argument("--outage", type=float, default=120, help="… lasting this long (120)")
    ap.add_argument("--burst-every", type=float, default=300, help="an error burst every … s (300)")
    ap.add_argument("--burst", type=float, default=60, help="… lasting this long (60)")
    ap.add_argument("--interval", default="5s", help="rule evaluation interval (5s)")
    ap.add_argument("--line-bytes", type=int, default=200)
    ap.add_argument("--sample", type=float, default=None, help="RSS/fd sample period (duration/600, 1..5 s)")
    ap.add_argument("--dir", default=None, help="scratch parent directory (default /dev/shm, else $TMPDIR)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory")
    ap.add_argument("--json", default=None, help="also write the figures to this file")
    ap.add_argument("--save-log", default=None,
                    help="when a promise breaks, copy the agent's log into this directory (default $TMPDIR)")
    ap.add_argument("--drain-timeout", type=float, default=None, help="wait for the backlog (default 2×outage+120 s)")
    return ap.parse_args(argv)


def schedule(args) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """(outages, bursts) as [start, end) seconds into the run. Outages sit halfway
    through each period; bursts a third into each, and only those that end a whole
    window + `for` + 2 intervals before the end (so each can resolve inside the run)."""
    outages, bursts = [], []
    t = args.outage_every / 2
    while t < args.duration:
        outages.append((t, min(t + args.outage, args.duration)))
        t += args.outage_every
    window, hold, interval = rule_times(args)
    t = args.burst_every / 3
    while t + args.burst + window + hold + 2 * interval <= args.duration:
        bursts.append((t, t + args.burst))
        t += args.burst_every
    return outages, bursts


def rule_times(args) -> tuple[float, float, float]:
    interval = seconds(args.interval)
    window = max(10.0, 6 * interval)
    hold = max(5.0, 3 * interval)
    return window, hold, interval


def run(args) -> tuple[dict, list[str]]:
    """Runs the soak; returns (figures, broken promises)."""
    scratch = scratch_dir("sidewatch-soak-", args.dir)
    try:
        figures, failures = _run(args, scratch)
        if failures:  # keep the agent's own log for the report (small: file events, alerts)
            keep = Path(args.save_log or tempfile.gettempdir()) / f"soak-agent-{time.strftime('%Y%m%dT%H%M%S')}.log"
            shutil.copyfile(scratch / "sidewatch.log", keep)
            failures.append(f"the agent's log: {keep}")
        return figures, failures
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
        else:
            print(f"kept {scratch}", flush=True)


def _run(args, scratch: Path) -> tuple[dict, list[str]]:
    binary = Path(args.binary or os.environ.get("SIDEWATCH_BIN") or REPO / "target" / "release" / "sidewatch").resolve()
    outages, bursts = schedule(args)
    window, hold, interval = rule_times(args)
    sample_every = args.sample or min(5.0, max(1.0, args.duration / 600))
    logs = scratch / "logs"
    logs.mkdir()
    rules = scratch / "rules.yaml"
    rules.write_text(RULES.format(interval=args.interval, window=f"{int(window)}s", hold=f"{int(hold)}s"))

    collector = OtlpCounter(scratch, mode="identity", line_bytes=args.line_bytes)
    config = {
        "service": {"name": "soak", "environment": "bench"},
        "logs": [{"name": "app", "paths": [str(logs / "app.log")], "format": "structlog", "start_at": "beginning"}],
        "rules": {"files": [str(rules)], "evaluation_interval": args.interval},
        "export": {"otlp": {"endpoint": collector.endpoint, "protocol": "http/protobuf", "signals": ["logs"]}},
    }
    agent = Agent(scratch, config, start=False, binary=binary, ready_timeout=60)
    agent.config["export"].pop("file")  # only OTLP: an hour of a JSONL sink is gigabytes
    agent.config_path.write_text(to_yaml(agent.config))
    queue_memory = 16 * MIB  # the default queue.memory
    failures: list[str] = []
    with agent:
        agent.start()
        pid = agent.process.pid
        idle_rss = proc_memory(pid)[0]
        bound, formula = memory_bound(idle_rss, queue_memory=queue_memory)
        lines = SeqLines(args.line_bytes)
        writer = RotatingWriter(logs / "app.log", lines, rate=args.rate,
                                rotate_every=args.rotate_every, backups=args.backups)
        sampler = ProcSampler(pid, interval=sample_every, writers=[writer])
        health = HealthProbe(agent.api_url, interval=1.0)
        writer.on_delete = lambda gen: mark_held(pid, [writer])
        print(f"soak: {args.duration:g}s at {args.rate:g} lines/s, rotation every {args.rotate_every:g}s, "
              f"outages {[(round(a), round(b)) for a, b in outages]}, bursts {[(round(a), round(b)) for a, b in bursts]}; "
              f"agent pid {pid} ({binary}), scratch {scratch}", flush=True)
        t0 = time.monotonic()
        sampler.start()
        writer.start()
        health.start()
        down = bursting = False
        last_report = 0.0
        while (elapsed := time.monotonic() - t0) < args.duration:
            writer.check()
            if not agent.running:
                raise AssertionError(f"the agent exited with {agent.process.returncode}:\n{agent.process.tail()}")
            want_down = any(a <= elapsed < b for a, b in outages)
            if want_down and not down:
                collector.stop()
                down = True
                print(f"  {elapsed:7.1f}s collector down", flush=True)
            elif down and not want_down:
                collector.start()
                down = False
                print(f"  {elapsed:7.1f}s collector up", flush=True)
            want_burst = any(a <= elapsed < b for a, b in bursts)
            if want_burst != bursting:
                lines.error_ratio = 0.01 if want_burst else 0.0
                bursting = want_burst
                print(f"  {elapsed:7.1f}s error burst {'starts' if want_burst else 'ends'}", flush=True)
            if elapsed - last_report >= max(10.0, args.duration / 30):
                last_report = elapsed
                s = sampler.samples[-1]
                samples = agent.metric_samples()
                print(f"  {elapsed:7.1f}s written {writer.written:,} read {metric(samples, 'sidewatch_log_records_total'):,.0f} "
                      f"queue {metric(samples, 'sidewatch_export_queue_bytes', signal='logs') / MIB:.1f} MiB "
                      f"RSS {s.rss / MIB:.1f} MiB fds {s.fds}", flush=True)
            time.sleep(0.2)  # pacing: the schedule's resolution
        written = writer.stop()
        wrote_for = writer.stopped - writer.started
        if down:
            collector.start()
        drain_timeout = args.drain_timeout or 2 * args.outage + 120
        drain_start = time.monotonic()
        try:
            wait_until(lambda: collector.summary()["seq"]["distinct"] >= written, drain_timeout,
                       lambda: f"the collector to hold all {written:,} lines (has {collector.summary()['seq']['distinct']:,})",
                       interval=1.0)
        except AssertionError as e:
            failures.append(str(e))
        drain_seconds = time.monotonic() - drain_start
        wait_stable(lambda: collector.summary()["records"], quiet=5, timeout=120,
                    message="the collector's record count to settle", interval=1.0)
        # One more rotate_wait so the last rotated file is closed before the fd count.
        wait_until(lambda: time.monotonic() - writer.stopped > 12, 30, "rotate_wait after the last rotation")
        health.stop()
        sampler.stop()
        samples = agent.metric_samples()
        summary = collector.summary(files=True)
        log = agent.process.output()
        events = agent_alert_events(log, "ErrorBurst")
        code = agent.terminate(timeout=30, expect=None)
    gens = writer.snapshot()
    # -- accounting by file_id + offset -------------------------------------------------
    by_inode: dict[int, list] = {}
    for g in gens:
        by_inode.setdefault(g.inode, []).append(g)
    incomplete = []
    for ino, group in by_inode.items():
        arrived = [t for fid, t in summary["files"].items() if int(fid.split("-")[0], 16) == ino]
        expected = sum(g.lines for g in group)
        got = sum(t["distinct"] for t in arrived)
        if got != expected:
            incomplete.append(f"inode {ino}: {got:,} of {expected:,} lines")
    distinct_id = summary["by_identity"]["distinct"]
    dup_id = summary["by_identity"]["duplicates"]
    seq = summary["seq"]
    fired = sum(1 for _, s in events if s == "firing")
    resolved = sum(1 for _, s in events if s == "resolved")
    # Flatness: the RSS of the last outage period against the second one (the first has
    # filled the caches: the queue's memory part during the first outage, rule windows).
    cycle = args.outage_every
    second = [s.rss for s in sampler.samples if cycle <= s.t < 2 * cycle]
    last = [s.rss for s in sampler.samples if args.duration - cycle <= s.t <= args.duration]
    flat_checked = args.duration >= 3 * cycle and second and last
    fig = sampler.figures()
    hz = health.figures()
    figures = {
        "duration_s": round(wrote_for, 1),
        "rate_target": args.rate,
        "lines_written": written,
        "rate_achieved": round(written / wrote_for, 1),
        "rotations": writer.rotations,
        "files": len(gens),
        "files_never_opened": sum(1 for g in gens if not g.held),
        "outages": len(outages),
        "collector_down_s": round(collector.down_seconds, 1),
        "arrived_distinct_by_file_offset": distinct_id,
        "duplicates_by_file_offset": dup_id,
        "arrived_distinct_by_seq": seq["distinct"],
        "duplicates_by_seq": seq["duplicates"],
        "missing": written - distinct_id,
        "misaligned_or_no_identity": summary["misaligned"] + summary["no_identity"],
        "collector_requests": summary["requests"],
        "collector_records": summary["records"],
        "export_sent": metric(samples, "sidewatch_export_sent_records_total", signal="logs"),
        "export_retries": metric(samples, "sidewatch_export_retries_total", signal="logs"),
        "export_dropped": metric(samples, "sidewatch_export_dropped_total", signal="logs"),
        "drain_after_stop_s": round(drain_seconds, 1),
        "bursts": len(bursts),
        "error_lines": lines.errors,
        "alerts_fired": fired,
        "alerts_resolved": resolved,
        "rule_evaluations": metric(samples, "sidewatch_rule_evaluations_total"),
        "rule_failures": metric(samples, "sidewatch_rule_evaluation_failures_total"),
        "rss_start_mib": fig["rss_start_mib"],
        "rss_max_2nd_period_mib": round(max(second) / MIB, 1) if second else None,
        "rss_max_last_period_mib": round(max(last) / MIB, 1) if last else None,
        "rss_end_mib": fig["rss_end_mib"],
        "rss_max_mib": fig["rss_max_mib"],
        "vmhwm_mib": fig["hwm_mib"],
        "rss_bound_mib": round(bound / MIB, 1),
        "rss_bound_formula": formula,
        "fds_start": fig["fds_start"],
        "fds_end": fig["fds_end"],
        "fds_max": fig["fds_max"],
        "healthz": f"{hz['probes']} probes, {hz['failures']} failed, p50 {hz['p50_ms']} ms, p99 {hz['p99_ms']} ms, max {hz['max_ms']} ms",
        "agent_exit": code,
    }
    # -- promises -------------------------------------------------------------------------
    if figures["missing"] or seq["distinct"] != written:
        failures.append(f"lost lines: {written:,} written, {distinct_id:,} arrived by file+offset, "
                        f"{seq['distinct']:,} by seq; incomplete files: {incomplete[:10]}")
    if dup_id or seq["duplicates"]:
        failures.append(f"duplicates without a crash: {dup_id} by file+offset, {seq['duplicates']} by seq")
    if figures["misaligned_or_no_identity"]:
        failures.append(f"{summary['misaligned']} records at an offset that is no line start, "
                        f"{summary['no_identity']} without file_id/offset")
    if figures["export_dropped"]:
        failures.append(f"the exporter dropped {figures['export_dropped']:.0f} records")
    max_rss = max(s.rss for s in sampler.samples)
    if max_rss > bound:
        failures.append(f"RSS max {max_rss / MIB:.1f} MiB above the bound {formula}")
    if flat_checked and max(last) > 1.10 * max(second) + 4 * MIB:
        failures.append(f"RSS not flat: max {max(second) / MIB:.1f} MiB in the 2nd {cycle:g}s period, "
                        f"{max(last) / MIB:.1f} MiB in the last")
    if fig["fds_end"] > fig["fds_start"] + 3 or fig["fds_max"] > fig["fds_start"] + 12:
        failures.append(f"descriptors not flat: start {fig['fds_start']}, end {fig['fds_end']}, max {fig['fds_max']}")
    if fired != len(bursts) or resolved != len(bursts):
        failures.append(f"ErrorBurst fired {fired}× and resolved {resolved}× for {len(bursts)} bursts: {events}")
    if hz["failures"]:
        failures.append(f"/healthz failed {hz['failures']} times: {health.failures[:5]}")
    if code != 0:
        failures.append(f"the agent exited {code} after SIGTERM")
    return figures, failures


def main(argv: list[str] | None = None) -> int:
    return report("soak", run, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
