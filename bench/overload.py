#!/usr/bin/env python3
"""Overload: input at 10× what the agent can process, several writers, fast rotation.

Issue 8: "input at 10× what the pipeline can process (several writers, fast rotation) —
memory stays under the configured bounds, the agent keeps answering /healthz and
evaluating rules, drops (if any) are counted and logged, never silent."

The agent (release binary by default, `--binary`) runs through the test harness's
`Agent` with the production shape of config: one `logs:` entry over ``logs/*.log``
(structlog), a rule file evaluated every second (an error ratio by path, 6 series),
export over OTLP/HTTP to `harness.endurance.OtlpCounter` in `count` mode (it decodes
each request and counts its records: cheap, so the agent has the cores), default
``queue.memory`` 16 MiB and ``queue.disk`` `--queue-disk` (256 MiB). No file output.
Everything lives in a scratch directory (`--dir`; /dev/shm by default: see below).

1. **Capacity.** A writer far faster than the agent: ``logs/probe.log`` is topped up
   so that the agent always has at least 3 s of backlog (so it never waits for input),
   for `--probe-seconds`; the capacity is the slope of ``sidewatch_log_records_total``
   over the second half. Then the probe file is drained.
2. **Overload.** `--writers` threads (`harness.endurance.RotatingWriter`), each appending
   pre-built blocks of fixed-length (`--line-bytes`) request lines to its own
   ``logs/wN.log`` at `--ratio` × capacity / writers lines/s (or `--rate` in total), and
   rotating it like ``RotatingFileHandler`` every `--rotate-every` seconds with
   `--backups` kept (``wN.log.1`` …; older ones deleted), for `--duration` seconds or
   until `--max-gb` have been written. Before deleting a file the writer looks at the
   agent's descriptors (``/proc/PID/fd``), and a sampler does the same every 0.5 s, so
   each file is known as opened by the agent or never opened.
3. **After.** `--after` seconds more of probing while the agent works on its backlog,
   then the accounting and a SIGTERM.

Measured throughout: RSS / VmHWM / descriptors every 0.5 s, ``GET /healthz`` every
0.2 s (latency percentiles), ``sidewatch_rule_evaluations_total``, the OTLP queue.

Accounting (every line written during the overload is in exactly one place; the lines
have one length, so bytes say lines):
  written = read by the agent (its sidewatch_log_records_total)
          + unread in files the agent holds open (file size − its descriptor's position,
            from /proc/PID/fdinfo: the backlog, on disk)
          + in live files the agent has not opened yet
          + in rotated files deleted before the agent ever opened them (LOST: the
            agent must count each such file in sidewatch_file_events_total{event=
            "missed"} and log it)
          + in flight (parsed, not yet counted: ≤ one batch + one read per file).

Promises checked (exit 1 if any is broken, with the reason): RSS max ≤ the bound derived
from the config (`harness.endurance.memory_bound`); every /healthz probe answered, p99 ≤
`--healthz-p99` ms; rules evaluated at least half as often as scheduled during the
overload, none failed; exporter drops (``sidewatch_export_dropped_total``) logged when
counted; no file lost without the agent counting and logging it; the accounting closes; SIGTERM → exit
0 within 30 s.

Why /dev/shm: the agent keeps every rotated file it has opened until it has read it
(ARCHITECTURE: a file that leaves the globs is drained through its open descriptor), so
at 10× its speed the deleted-but-open backlog grows by ~9× its throughput every second:
gigabytes, which must not fill a shared disk (`--max-gb` caps the total written).

  .venv/bin/python bench/overload.py                        # release binary, 4 writers, 10×, 60 s
  .venv/bin/python bench/overload.py --binary target/debug/sidewatch --duration 60 --max-gb 2
  .venv/bin/python bench/overload.py --json overload.json   # also the figures as JSON
  .venv/bin/python bench/overload.py --cpu-limit 0.25       # the agent under a pod-like CPU limit (cgroup quota)
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

from harness import Agent, to_yaml, wait_until  # noqa: E402
from harness.endurance import (  # noqa: E402
    MIB,
    BlockLines,
    HealthProbe,
    OtlpCounter,
    ProcSampler,
    RotatingWriter,
    mark_held,
    memory_bound,
    metric,
    proc_memory,
    scratch_dir,
    report,
)

RULES = """\
groups:
  - name: overload
    interval: 1s
    rules:
      - record: path:errors:ratio10s
        expr: |
          sum by (path) (count_over_time({source="app"} | event="request finished" | status >= 500 [10s]))
          / sum by (path) (count_over_time({source="app"} | event="request finished" [10s]))
      - alert: HighErrorRatio
        expr: path:errors:ratio10s > 0.5
        for: 5s
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=60, help="seconds of overload (default 60)")
    ap.add_argument("--rate", type=float, default=None, help="total lines/s of the writers (default: ratio × capacity)")
    ap.add_argument("--ratio", type=float, default=10, help="the writers' rate as a multiple of the capacity (10)")
    ap.add_argument("--binary", default=None, help="the agent (default target/release/sidewatch)")
    ap.add_argument("--writers", type=int, default=4)
    ap.add_argument("--rotate-every", type=float, default=3, help="seconds between each writer's rotations (3)")
    ap.add_argument("--backups", type=int, default=2, help="rotated files each writer keeps (2)")
    ap.add_argument("--line-bytes", type=int, default=250)
    ap.add_argument("--probe-seconds", type=float, default=20, help="length of the capacity phase (20)")
    ap.add_argument("--after", type=float, default=10, help="seconds of probing after the writers stop (10)")
    ap.add_argument("--max-gb", type=float, default=4, help="stop writing after this many GB (4)")
    ap.add_argument("--queue-disk", default="256MiB", help="export.otlp.queue.disk (256MiB)")
    ap.add_argument("--healthz-p99", type=float, default=1000, help="the /healthz p99 promise, ms (1000)")
    ap.add_argument("--min-ratio", type=float, default=0,
                    help="fail if the writers reach less than this × the capacity and × the read rate during the run")
    ap.add_argument("--cpu-limit", type=float, default=None,
                    help="run the agent under this CPU limit in cores (a cgroup's CPU quota, as a pod's "
                         "`limits.cpu`); the capacity is measured under it too. Needs a writable cgroup fs")
    ap.add_argument("--dir", default=None, help="scratch parent directory (default /dev/shm, else $TMPDIR)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory")
    ap.add_argument("--json", default=None, help="also write the figures to this file")
    ap.add_argument("--save-log", default=None,
                    help="when a promise breaks, copy the agent's log into this directory (default $TMPDIR)")
    return ap.parse_args(argv)


def run(args) -> tuple[dict, list[str]]:
    """Runs the overload; returns (figures, broken promises)."""
    scratch = scratch_dir("sidewatch-overload-", args.dir)
    try:
        figures, failures = _run(args, scratch)
        if failures:  # keep the agent's own log for the report (small: file events, alerts)
            keep = Path(args.save_log or tempfile.gettempdir()) / f"overload-agent-{time.strftime('%Y%m%dT%H%M%S')}.log"
            shutil.copyfile(scratch / "sidewatch.log", keep)
            failures.append(f"the agent's log: {keep}")
        return figures, failures
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
        else:
            print(f"kept {scratch}", flush=True)


def _records(agent: Agent) -> float:
    return agent.metric_sum("sidewatch_log_records_total")


class CpuLimit:
    """The agent's process in a cgroup of its own with a CPU quota (cgroup v2's `cpu.max`,
    or v1's `cpu.cfs_quota_us`): the kernel throttles it as it throttles a container with
    a CPU limit. Removed by `close` once the agent has exited."""

    def __init__(self, pid: int, cores: float):
        period = 100_000
        quota = max(1000, int(cores * period))
        v2 = Path("/sys/fs/cgroup/cgroup.controllers")
        if v2.exists() and "cpu" in v2.read_text().split():
            self.dir = Path("/sys/fs/cgroup") / f"sidewatch-overload-{os.getpid()}"
            self.dir.mkdir()
            (self.dir / "cpu.max").write_text(f"{quota} {period}")
        else:
            self.dir = Path("/sys/fs/cgroup/cpu") / f"sidewatch-overload-{os.getpid()}"
            self.dir.mkdir()
            (self.dir / "cpu.cfs_period_us").write_text(str(period))
            (self.dir / "cpu.cfs_quota_us").write_text(str(quota))
        (self.dir / "cgroup.procs").write_text(str(pid))
        self.cores = cores

    def close(self) -> None:
        try:
            self.dir.rmdir()
        except OSError:
            pass


def cpu_limit(pid: int, cores: float) -> CpuLimit:
    try:
        return CpuLimit(pid, cores)
    except OSError as e:
        raise SystemExit(f"--cpu-limit needs a writable cgroup cpu controller: {e}") from e


def _capacity(agent: Agent, logs: Path, args) -> tuple[float, int]:
    """Phase 1: keep ≥ 3 s of backlog in probe.log; the read rate over the second half."""
    lines = BlockLines(args.line_bytes, block_lines=1024, seed=99)
    fd = os.open(logs / "probe.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    written, rate = 0, 10_000.0
    points: list[tuple[float, float]] = []
    t0 = time.monotonic()
    try:
        while (now := time.monotonic()) - t0 < args.probe_seconds:
            read = _records(agent)
            points.append((now - t0, read))
            if len(points) > 4:
                (ta, ra), (tb, rb) = points[-5], points[-1]
                rate = max(rate, (rb - ra) / (tb - ta)) if tb > ta else rate
            while written - read < max(50_000, 3 * rate):
                data, n = lines.take(0)
                os.write(fd, data)
                written += n
            time.sleep(0.25)  # pacing: the sampling of the read counter
    finally:
        os.close(fd)
    half = [p for p in points if p[0] >= args.probe_seconds / 2]
    capacity = (half[-1][1] - half[0][1]) / (half[-1][0] - half[0][0])
    wait_until(lambda: _records(agent) >= written, 120,
               lambda: f"the agent to finish probe.log ({_records(agent):,.0f} of {written:,})", interval=0.5)
    return capacity, written


def _run(args, scratch: Path) -> tuple[dict, list[str]]:
    binary = Path(args.binary or os.environ.get("SIDEWATCH_BIN") or REPO / "target" / "release" / "sidewatch").resolve()
    logs = scratch / "logs"
    logs.mkdir()
    rules = scratch / "rules.yaml"
    rules.write_text(RULES)
    collector = OtlpCounter(scratch, mode="count", line_bytes=args.line_bytes)
    config = {
        "service": {"name": "overload", "environment": "bench"},
        "logs": [{"name": "app", "paths": [str(logs / "*.log")], "format": "structlog", "start_at": "beginning"}],
        "rules": {"files": [str(rules)], "evaluation_interval": "1s"},
        "export": {"otlp": {"endpoint": collector.endpoint, "protocol": "http/protobuf", "signals": ["logs"],
                            "queue": {"disk": args.queue_disk}}},
    }
    agent = Agent(scratch, config, start=False, binary=binary, ready_timeout=60)
    agent.config["export"].pop("file")  # no JSONL sink: gigabytes
    agent.config_path.write_text(to_yaml(agent.config))
    failures: list[str] = []
    with agent:
        agent.start()
        pid = agent.process.pid
        limit = cpu_limit(pid, args.cpu_limit) if args.cpu_limit else None
        idle_rss = proc_memory(pid)[0]
        bound, formula = memory_bound(idle_rss, queue_memory=16 * MIB)
        sampler = ProcSampler(pid, interval=0.5).start()
        health = HealthProbe(agent.api_url, interval=0.2, timeout=10).start()
        print(f"overload: agent pid {pid} ({binary}), scratch {scratch}", flush=True)

        capacity, probe_lines = _capacity(agent, logs, args)
        target = args.rate or args.ratio * capacity
        print(f"  capacity {capacity:,.0f} lines/s ({probe_lines:,} probe lines); writers at {target:,.0f} lines/s "
              f"({target / capacity:.1f}×), rotation every {args.rotate_every:g}s", flush=True)

        before = agent.metric_samples()
        r0 = metric(before, "sidewatch_log_records_total")
        ev0 = metric(before, "sidewatch_rule_evaluations_total")
        per = target / args.writers
        block = int(min(8192, max(256, per / 50)))
        writers = [
            RotatingWriter(logs / f"w{i}.log", BlockLines(args.line_bytes, block_lines=block, seed=i),
                           rate=per, rotate_every=args.rotate_every, backups=args.backups,
                           on_delete=lambda gen: mark_held(pid, writers))
            for i in range(args.writers)
        ]
        sampler.writers = writers
        t_over = time.monotonic()
        for w in writers:
            w.start()
        budget = args.max_gb * 1e9
        budget_hit = None
        timeline = []
        while (elapsed := time.monotonic() - t_over) < args.duration:
            for w in writers:
                w.check()
            if not agent.running:
                raise AssertionError(f"the agent exited with {agent.process.returncode}:\n{agent.process.tail()}")
            total = sum(w.bytes for w in writers)
            if total >= budget:
                budget_hit = elapsed
                break
            s = agent.metric_samples()
            timeline.append((elapsed, sum(w.written for w in writers), metric(s, "sidewatch_log_records_total") - r0,
                             metric(s, "sidewatch_rule_evaluations_total") - ev0,
                             metric(s, "sidewatch_export_queue_bytes", signal="logs"), sampler.samples[-1]))
            if len(timeline) % 10 == 1:
                e, wr, rd, ev, q, smp = timeline[-1]
                print(f"  {e:6.1f}s written {wr:,} read {rd:,.0f} evals {ev:.0f} queue {q / MIB:.1f} MiB "
                      f"RSS {smp.rss / MIB:.1f} MiB fds {smp.fds} written {total / 1e9:.2f} GB", flush=True)
            time.sleep(1.0)  # pacing: the figures' resolution
        for w in writers:
            w.stop()
        over_s = max(w.stopped for w in writers) - min(w.started for w in writers)
        during = agent.metric_samples()
        ev_over = metric(during, "sidewatch_rule_evaluations_total") - ev0
        health_over = HealthProbe.figures(health)
        t_after = time.monotonic()
        wait_until(lambda: time.monotonic() - t_after >= args.after, args.after + 5, "the after phase")
        # -- the accounting, at one moment ----------------------------------------------
        # The agent keeps reading meanwhile: the read count before the descriptor
        # positions and after them bound the in-flight lines from both sides.
        final = agent.metric_samples()
        held = mark_held(pid, writers)
        read_after = metric(agent.metric_samples(), "sidewatch_log_records_total") - r0
        health.stop()
        sampler.stop()
        log_text = agent.process.output()
        code = agent.terminate(timeout=30, expect=None)
        summary = collector.summary()
    if limit is not None:
        limit.close()
    gens = [g for w in writers for g in w.snapshot()]
    written = sum(g.lines for g in gens)
    written_bytes = sum(g.bytes for g in gens)
    read = metric(final, "sidewatch_log_records_total") - r0
    lb = args.line_bytes
    unread_bytes = 0
    for w in writers:
        for ino, pos in held.items():
            g = w.by_inode.get(ino)
            if g is not None:
                unread_bytes += max(0, g.bytes - pos)
    unread = unread_bytes // lb
    lost_gens = [g for g in gens if not g.held and g.rotated is not None]
    lost = sum(g.lines for g in lost_gens)
    live_unopened = sum(g.lines for g in gens if not g.held and g.rotated is None)
    in_flight = written - read - unread - lost - live_unopened
    tolerance = 4096 + (len(held) + 1) * (256 * 1024 // lb + 1) + int(read_after - read)
    achieved = written / over_s
    dropped = metric(final, "sidewatch_export_dropped_total", signal="logs")
    discovered = metric(final, "sidewatch_file_events_total", event="discovered")
    missed = metric(final, "sidewatch_file_events_total", event="missed")
    max_rss = max(s.rss for s in sampler.samples)
    fig = sampler.figures()
    evals_expected = 2 * over_s  # 2 rules every 1s (the counter counts rule evaluations)
    figures = {
        "cpu_limit_cores": args.cpu_limit,
        "capacity_lines_s": round(capacity),
        "capacity_mb_s": round(capacity * lb / 1e6, 1),
        "target_lines_s": round(target),
        "writers": args.writers,
        "overload_s": round(over_s, 1),
        "budget_reached_at_s": round(budget_hit, 1) if budget_hit is not None else None,
        "written_lines": written,
        "written_gb": round(written_bytes / 1e9, 2),
        "achieved_lines_s": round(achieved),
        "achieved_ratio": round(achieved / capacity, 1),
        "ratio_to_read_rate": round(achieved / max(read / over_s, 1), 1),
        "rotations": sum(w.rotations for w in writers),
        "files": len(gens),
        "files_opened_by_agent": sum(1 for g in gens if g.held),
        "agent_discovered_files": int(discovered) - 1,  # minus probe.log
        "read_during_run": int(read),
        "read_share": round(read / written, 3) if written else None,
        "unread_in_open_files": int(unread),
        "unread_in_open_files_gb": round(unread_bytes / 1e9, 2),
        "files_open_at_end": len([1 for w in writers for ino in held if ino in w.by_inode]),
        "live_not_yet_opened": live_unopened,
        "lost_files_deleted_unopened": len(lost_gens),
        "lost_lines_deleted_unopened": lost,
        "agent_missed_files": int(missed),
        "in_flight": int(in_flight),
        "collector_records": summary["records"],
        "export_dropped": dropped,
        "export_queue_mib_end": round(metric(final, "sidewatch_export_queue_bytes", signal="logs") / MIB, 1),
        "rule_evaluations_during": int(ev_over),
        "rule_evaluations_expected": int(evals_expected),
        "rule_failures": metric(final, "sidewatch_rule_evaluation_failures_total"),
        "healthz_during": health_over,
        "rss_idle_mib": round(idle_rss / MIB, 1),
        "rss_max_mib": round(max_rss / MIB, 1),
        "rss_end_mib": fig["rss_end_mib"],
        "vmhwm_mib": fig["hwm_mib"],
        "rss_bound_mib": round(bound / MIB, 1),
        "rss_bound_formula": formula,
        "fds_start": fig["fds_start"],
        "fds_max": fig["fds_max"],
        "fds_end": fig["fds_end"],
        "agent_exit": code,
    }
    if max_rss > bound:
        failures.append(f"RSS max {max_rss / MIB:.1f} MiB above the bound {formula}")
    if health_over["failures"]:
        failures.append(f"/healthz failed {health_over['failures']} times during the overload: {health.failures[:5]}")
    if health_over["p99_ms"] > args.healthz_p99:
        failures.append(f"/healthz p99 {health_over['p99_ms']} ms > {args.healthz_p99:g} ms")
    if ev_over < 0.5 * evals_expected:
        failures.append(f"{ev_over:.0f} rule evaluations in {over_s:.0f}s of overload (2 rules every 1s)")
    if figures["rule_failures"]:
        failures.append(f"{figures['rule_failures']:.0f} rule evaluations failed")
    if dropped and "export queue full" not in log_text:
        failures.append(f"{dropped:.0f} records dropped by the exporter without the log line")
    # A file rotated away unopened is a drop: allowed if the agent counts and logs it
    # (sidewatch_file_events_total{event="missed"} and a warning), never silently.
    if lost and (missed < len(lost_gens) or "before sidewatch could open it" not in log_text):
        failures.append(
            f"{lost:,} lines in {len(lost_gens)} rotated files were deleted before the agent opened them: "
            f"the agent counted {int(missed)} missed files (discovered {int(discovered) - 1} of {len(gens)} files)")
    if not 0 <= in_flight <= tolerance:
        failures.append(f"the accounting does not close: {in_flight:,} lines unaccounted (tolerance 0…{tolerance:,})")
    # The input's ratio to what the agent processes: against the capacity measured before,
    # or against what it read during the overload (lower when the writers take CPU from it).
    ratio = max(achieved / capacity, figures["ratio_to_read_rate"])
    if ratio < args.min_ratio:
        failures.append(f"the writers reached {achieved / capacity:.1f}× the capacity "
                        f"({figures['ratio_to_read_rate']}× the read rate), below --min-ratio {args.min_ratio:g}")
    if code != 0:
        failures.append(f"the agent exited {code} after SIGTERM")
    return figures, failures


def main(argv: list[str] | None = None) -> int:
    return report("overload", run, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
