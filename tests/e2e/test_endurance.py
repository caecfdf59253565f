"""Issue 8's endurance promises in CI: 2-minute versions of `bench/overload.py` and
`bench/soak.py`, on the debug binary, through the harness's `Agent`.

Both tests run the bench scripts' own `run()` (so CI checks exactly what the scripts
measure; their docstrings describe the setup) with CI-sized parameters and bounds, and
fail with the list of broken promises and the figures. Everything they write goes to
/dev/shm when it exists (`harness.endurance.scratch_dir`): the overload writes 2.5 GB.

- overload: capacity measured first (~15 s), then 4 writers at 15× it (≥ 10× asserted)
  for up to 45 s or 2.5 GB, each rotating its file every 3 s (2 backups): RSS under
  the bound derived from the config, every
  `/healthz` answered (p99 ≤ 1.5 s on a debug build), rules evaluated, exporter drops
  logged, a rotated file deleted before the agent opened it (if any) counted as
  `missed` and logged, the line accounting closes, SIGTERM → 0.
- soak: 120 s at 5,000 lines/s, rotation every 15 s, the collector away for 30 s,
  one error burst that fires and resolves `ErrorBurst`: nothing lost or doubled by
  file_id + offset and by seq, no exporter drop, RSS under the bound, descriptors
  flat, `/healthz` always answered.

Run: .venv/bin/pytest tests/e2e/test_endurance.py -s   (needs target/debug/sidewatch).
The full-length runs: BENCHMARKS.md "Reliability".
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest

from harness import sidewatch_bin

BENCH = Path(__file__).resolve().parents[2] / "bench"


def bench_script(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cpu_quota_available() -> bool:
    """A writable cgroup cpu controller (v2 or v1): bench/overload.py --cpu-limit needs one."""
    v2 = Path("/sys/fs/cgroup/cgroup.controllers")
    if v2.exists():
        return "cpu" in v2.read_text().split() and os.access("/sys/fs/cgroup", os.W_OK)
    return os.access("/sys/fs/cgroup/cpu", os.W_OK)


def report(kind: str, figures: dict, failures: list[str]) -> str:
    return f"{kind} broke promises:\n- " + "\n- ".join(failures) + "\nfigures:\n" + json.dumps(figures, indent=1)


@pytest.mark.timeout(420)
def test_overload_keeps_memory_bounded_health_and_rules_and_counts_drops(tmp_path):
    overload = bench_script("overload")
    # --min-ratio 8, not the 10 (which `make bench-overload` holds with the release
    # binary): since checkpoints are committed off the sink stage the debug agent reads
    # ~90,000 lines/s, and four Python writers on two cores top out near 850,000 lines/s
    # (9.3× in a CI run). 8× is still an overload the agent cannot keep up with.
    args = overload.parse_args([
        "--binary", str(sidewatch_bin()),
        # Under a CPU quota (as a pod's limit) the agent's capacity does not depend on how
        # fast this machine is: the writers outrun it by the same factor on any machine.
        *(["--cpu-limit", "0.1"] if cpu_quota_available() else []),
        "--duration", "45", "--probe-seconds", "15", "--after", "5",
        "--ratio", "15", "--min-ratio", "8", "--writers", "4",
        "--rotate-every", "3", "--backups", "2",
        # /healthz p99 ≤ 1.5 s: the API has its own thread and never waits for a lock, so
        # under the 0.1-core quota it answers within a few 100 ms throttling periods
        # (0.3-0.4 s max here). With it on the shared runtime (behind a gzip or a rule
        # evaluation waiting for the engine) a CI run measured p99 2.7 s.
        "--max-gb", "2.5", "--healthz-p99", "1500",
        "--save-log", str(tmp_path),  # the agent's log, when a promise breaks
    ])
    figures, failures = overload.run(args)
    print(json.dumps(figures, indent=1))
    broken = [f for f in failures if not f.startswith("the agent's log:")]
    assert not broken, report("overload", figures, failures)
    assert figures["rss_max_mib"] <= figures["rss_bound_mib"]
    assert figures["rule_evaluations_during"] > 0
    assert figures["agent_missed_files"] >= figures["lost_files_deleted_unopened"]


@pytest.mark.timeout(480)
def test_soak_two_minutes_loses_nothing_with_rotation_outage_and_alerts(tmp_path):
    soak = bench_script("soak")
    args = soak.parse_args([
        "--binary", str(sidewatch_bin()),
        "--duration", "120", "--rate", "5000",
        "--rotate-every", "15", "--backups", "5",
        "--outage-every", "120", "--outage", "30",
        "--burst-every", "120", "--burst", "25",
        "--interval", "1s", "--sample", "1",
        "--save-log", str(tmp_path),
    ])
    figures, failures = soak.run(args)
    print(json.dumps(figures, indent=1))
    assert not failures, report("soak", figures, failures)
    assert figures["missing"] == 0 and figures["duplicates_by_file_offset"] == 0
    assert figures["alerts_fired"] == figures["alerts_resolved"] == figures["bursts"] >= 1
    assert figures["export_retries"] > 0, "the outage made the exporter retry"
