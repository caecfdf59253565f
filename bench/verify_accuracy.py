#!/usr/bin/env python3
"""Accuracy of sidewatch's deployment verification, measured through `sidewatch replay`.

For every seed and scenario of ../shared/bench/gen_corpus.py (good-deploy, bad-deploy,
low-traffic-bad-deploy: 30 min of version 1.4.2, then 20 min of 1.4.3), the corpus is
generated once into target/bench-corpus/deploy/ (zstd or gzip, reused by later runs), replayed
with the release binary and the default rule pack (rules/python-service.yaml, default
deployments settings: verify_window 10m, baseline_window 30m, confidence 0.99), and the
verdict of 1.4.3 is read from the `{"kind": "verdict"}` event. Printed: pass / fail /
inconclusive counts per scenario, the false-fail rate (good deploys) or detection rate
(bad deploys) with a 95% Wilson interval, the median and p90 time from the deployment
(t0 of 1.4.3) to the `fail` verdict, and which checks failed how often.

  .venv/bin/python bench/verify_accuracy.py                 # 300 seeds per scenario
  .venv/bin/python bench/verify_accuracy.py --quick         # 20 seeds
  .venv/bin/python bench/verify_accuracy.py --budget 40     # stop starting work after 40 min
  .venv/bin/python bench/verify_accuracy.py --show-misses   # each unexpected verdict's evidence
  .venv/bin/python bench/verify_accuracy.py --memory-replay # peak RSS of replay, 10 vs 60 min at 1000 rps
  .venv/bin/python bench/verify_accuracy.py --memory-agent 60   # the live agent for 60 min at 1000 rps

Results of a replay are cached per (binary, config, rules, generator) in
target/bench-corpus/deploy/results/, so an interrupted run resumes and a re-run with the
same binary is instant (`--fresh` replays again). Needs structlog (the repo's .venv).
"""
import argparse
import concurrent.futures
import datetime as dt
import hashlib
import json
import math
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED_BENCH = REPO.parent / "shared" / "bench"
GEN = SHARED_BENCH / "gen_corpus.py"
RULES = REPO / "rules" / "python-service.yaml"
BINARY = REPO / "target" / "release" / "sidewatch"
CACHE = REPO / "target" / "bench-corpus" / "deploy"
START = "2026-11-01T12:00:00+00:00"
SCENARIOS = ["good-deploy", "bad-deploy", "low-traffic-bad-deploy"]
NEW_VERSION = "1.4.3"
# What each scenario should end in, and the rate the table reports for it.
EXPECT = {"good-deploy": "pass", "bad-deploy": "fail", "low-traffic-bad-deploy": "inconclusive"}
Z95 = 1.959963984540054


# ---------------------------------------------------------------------------------------
# Corpora, config, replay
# ---------------------------------------------------------------------------------------

def config_text(log_dir: Path) -> str:
    # Everything not named here is the default: deployments verify_window 10m,
    # baseline_window 30m, confidence 0.99, detection from the records' `version`.
    return (
        "logs:\n"
        f"  - {{ name: app, paths: [\"{log_dir}/*.log\"] }}\n"
        "rules:\n"
        f"  files: [\"{RULES}\"]\n"
    )


def build(skip: bool) -> None:
    """Builds the release binary and copies it into the cache under its digest, so a
    rebuild by someone else during a long run cannot mix two binaries' results."""
    global BINARY
    if not skip:
        print("cargo build --release -p sidewatch", file=sys.stderr, flush=True)
        subprocess.run([os.environ.get("CARGO", "cargo"), "build", "--release", "-p", "sidewatch"],
                       cwd=REPO, check=True)
    if not BINARY.exists():
        sys.exit(f"{BINARY} does not exist: run without --no-build")
    copy = CACHE / "bin" / f"sidewatch-{file_digest(BINARY)[:16]}"
    if not copy.exists():
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(BINARY, copy.with_suffix(".tmp"))
        os.replace(copy.with_suffix(".tmp"), copy)
    BINARY = copy


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# zstd when it is installed (3x faster both ways), else gzip; a corpus is ~12 MB zstd'd.
COMPRESS = (["zstd", "-1", "-q", "-c"], ["zstd", "-dc"], ".zst") if shutil.which("zstd") \
    else (["gzip", "-1", "-c"], ["gzip", "-dc"], ".gz")


def corpus_path(scenario: str, seed: int) -> Path:
    return CACHE / "corpora" / f"{scenario}-{seed}.log{COMPRESS[2]}"


def gen_module():
    if str(SHARED_BENCH) not in sys.path:
        sys.path.insert(0, str(SHARED_BENCH))
    import gen_corpus  # ../shared/bench/gen_corpus.py
    return gen_corpus


class Compressed:
    """A compressed corpus being written: a temporary file renamed into place at `close`."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
        self.proc = subprocess.Popen(COMPRESS[0], stdin=subprocess.PIPE, stdout=open(self.tmp, "wb"))

    def write(self, data: bytes) -> None:
        self.proc.stdin.write(data)

    def close(self) -> None:
        self.proc.stdin.close()
        if self.proc.wait() != 0:
            raise RuntimeError(f"{COMPRESS[0][0]} failed for {self.path}")
        os.replace(self.tmp, self.path)


def generate(seed: int, scenarios: list[str]) -> float:
    """Writes the missing corpora of `seed`, line for line what `gen_corpus.py --scenario S
    --seed N --start START` writes (its own request_events and structlog renderer, its
    loop). Scenarios whose first phase is the same (good-deploy and bad-deploy: 30 min of
    1.4.2) share it: it is generated once and the generator's state is forked for the
    rest, which is what running gen_corpus.py twice would produce. Returns seconds spent."""
    missing = [s for s in scenarios if not corpus_path(s, seed).exists()]
    if not missing:
        return 0.0
    started = time.monotonic()
    g = gen_module()
    render = g.renderer()

    def phase(rng, t, spec, outs):
        version, seconds, rps, err, lat, new_err = spec
        end = t + dt.timedelta(seconds=seconds)
        step = dt.timedelta(seconds=1.0 / rps)
        buf = []
        while t < end:
            for event in g.request_events(rng, t, version, err, lat, new_err):
                buf.append(render(None, "info", event))
            t += step
            if len(buf) >= 4096:
                data = ("\n".join(buf) + "\n").encode()
                for out in outs:
                    out.write(data)
                buf.clear()
        if buf:
            data = ("\n".join(buf) + "\n").encode()
            for out in outs:
                out.write(data)
        return t

    groups: dict[tuple, list[str]] = {}
    for s in missing:
        groups.setdefault(tuple(g.SCENARIOS[s][0]), []).append(s)
    for first, names in groups.items():
        outs = {s: Compressed(corpus_path(s, seed)) for s in names}
        rng = random.Random(seed)
        t = phase(rng, dt.datetime.fromisoformat(START), first, list(outs.values()))
        state = rng.getstate()
        for s in names:
            fork = random.Random()
            fork.setstate(state)
            end = t
            for spec in g.SCENARIOS[s][1:]:
                end = phase(fork, end, spec, [outs[s]])
            outs[s].close()
    return time.monotonic() - started


def check_generator() -> None:
    """Once per version of gen_corpus.py: the corpora written here equal its own output."""
    marker = CACHE / f"generator-checked-{file_digest(GEN)[:16]}"
    if marker.exists():
        return
    seed = 999_999
    for s in ("good-deploy", "bad-deploy"):
        corpus_path(s, seed).unlink(missing_ok=True)
    generate(seed, ["good-deploy", "bad-deploy"])
    for s in ("good-deploy", "bad-deploy"):
        ours = subprocess.run(COMPRESS[1] + [str(corpus_path(s, seed))], capture_output=True,
                              check=True).stdout
        theirs = subprocess.run([sys.executable, str(GEN), "--scenario", s, "--seed", str(seed),
                                 "--start", START, "--out", "-"], capture_output=True, check=True).stdout
        if hashlib.sha256(ours).digest() != hashlib.sha256(theirs).digest():
            sys.exit(f"the corpora written here differ from gen_corpus.py's for {s}: fix generate()")
        corpus_path(s, seed).unlink()
    marker.write_text("the shared-phase generator writes what gen_corpus.py writes\n")


def parse_time(text: str) -> float:
    """RFC 3339 (UTC, up to nanoseconds) → seconds since the epoch."""
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z", text)
    if not m:
        raise ValueError(f"unexpected time {text!r}")
    whole = dt.datetime.fromisoformat(m.group(1)).replace(tzinfo=dt.timezone.utc).timestamp()
    return whole + (int(m.group(2)) / 10 ** len(m.group(2)) if m.group(2) else 0.0)


def replay(binary: Path, config: Path, corpus: Path) -> tuple[list[dict], float]:
    """`sidewatch replay --format json` over a compressed corpus (streamed through a
    pipe as /dev/stdin). Returns the events and the wall time."""
    started = time.monotonic()
    gz = subprocess.Popen(COMPRESS[1] + [str(corpus)], stdout=subprocess.PIPE)
    replay = subprocess.Popen(
        [str(binary), "replay", "-c", str(config), "--from", "/dev/stdin", "--format", "json"],
        stdin=gz.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    gz.stdout.close()
    out, err = replay.communicate()
    gz.wait()
    if replay.returncode != 0:
        raise RuntimeError(f"replay of {corpus} exited {replay.returncode}: {err.decode()[-2000:]}")
    events = [json.loads(line) for line in out.decode().splitlines() if line.strip()]
    return events, time.monotonic() - started


def outcome(events: list[dict]) -> dict:
    """The verdict of NEW_VERSION and the time from its deployment to the verdict."""
    deployment = next((e for e in events if e.get("kind") == "deployment"
                       and e.get("version") == NEW_VERSION), None)
    verdict = next((e for e in events if e.get("kind") == "verdict"
                    and e.get("version") == NEW_VERSION), None)
    result = {
        "deployment": deployment is not None,
        "verdict": verdict["verdict"] if verdict else "none",
        "previous": verdict.get("previous") if verdict else None,
        "checks": verdict["checks"] if verdict else [],
        "alerts": sum(1 for e in events if e.get("kind") == "alert" and e.get("state") == "firing"),
    }
    if deployment and verdict:
        result["seconds_to_verdict"] = parse_time(verdict["time"]) - parse_time(deployment["time"])
    return result


# ---------------------------------------------------------------------------------------
# Statistics and the table
# ---------------------------------------------------------------------------------------

def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    if n == 0:
        return (float("nan"), float("nan"))
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def nearest_rank(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[max(0, math.ceil(q * len(s)) - 1)]


def fmt_seconds(s: float) -> str:
    return f"{int(s // 60)}m{int(round(s % 60)):02d}s" if s >= 60 else f"{s:.0f}s"


def table(results: dict[str, list[dict]]) -> str:
    rows = ["| scenario | seeds | pass | fail | inconclusive | rate (95% Wilson) | "
            "time to fail: median / p90 | failed checks (in `fail` verdicts) |",
            "|---|---|---|---|---|---|---|---|"]
    for scenario in SCENARIOS:
        rs = results.get(scenario, [])
        if not rs:
            continue
        n = len(rs)
        counts = {v: sum(1 for r in rs if r["verdict"] == v) for v in ("pass", "fail", "inconclusive")}
        other = n - sum(counts.values())
        fails = counts["fail"]
        lo, hi = wilson(fails, n)
        if scenario == "good-deploy":
            rate = f"false-fail {fails / n:.2%} [{lo:.2%}, {hi:.2%}]"
        elif scenario == "bad-deploy":
            rate = f"detection {fails / n:.2%} [{lo:.2%}, {hi:.2%}]"
        else:
            ilo, ihi = wilson(counts["inconclusive"], n)
            rate = (f"fail {fails / n:.2%} [{lo:.2%}, {hi:.2%}]; inconclusive "
                    f"{counts['inconclusive'] / n:.2%} [{ilo:.2%}, {ihi:.2%}]")
        ttf = [r["seconds_to_verdict"] for r in rs if r["verdict"] == "fail" and "seconds_to_verdict" in r]
        ttf_text = (f"{fmt_seconds(statistics.median(ttf))} / {fmt_seconds(nearest_rank(ttf, 0.9))}"
                    if ttf else "–")
        failed: dict[str, int] = {}
        for r in rs:
            if r["verdict"] != "fail":
                continue
            for c in r["checks"]:
                if c["verdict"] == "fail":
                    failed[c["name"]] = failed.get(c["name"], 0) + 1
        failed_text = ", ".join(f"{k} {v}" for k, v in sorted(failed.items(), key=lambda kv: -kv[1])) or "–"
        rows.append(f"| {scenario} | {n} | {counts['pass']} | {fails} | {counts['inconclusive']}"
                    f"{f' (+{other} none)' if other else ''} | {rate} | {ttf_text} | {failed_text} |")
    return "\n".join(rows)


def show_misses(results: dict[str, list[dict]]) -> None:
    for scenario in SCENARIOS:
        for r in results.get(scenario, []):
            if r["verdict"] == EXPECT[scenario]:
                continue
            when = fmt_seconds(r["seconds_to_verdict"]) if "seconds_to_verdict" in r else "?"
            print(f"\n{scenario} seed {r['seed']}: {r['verdict']} after {when}")
            for c in r["checks"]:
                print(f"  {c['name']:<12} {c['verdict']:<12} baseline={c['baseline']} "
                      f"current={c['current']} n_baseline={c['n_baseline']} "
                      f"n_current={c['n_current']} p={c['p_value']}"
                      + (f" new={c['new_values']}" if c.get("new_values") else ""))


# ---------------------------------------------------------------------------------------
# Accuracy run
# ---------------------------------------------------------------------------------------

def seed_task(seed: int, scenarios: list[str], binary: str, config: str, deadline: float,
              no_keep: bool) -> tuple[list[dict], float, float]:
    """One seed, in a worker process: its corpora (generated when missing), each replayed.
    Returns the results, the generation seconds and the replay seconds."""
    if deadline and time.time() > deadline:
        return [], 0.0, 0.0
    gen_s = generate(seed, scenarios)
    results, replay_s = [], 0.0
    for scenario in scenarios:
        corpus = corpus_path(scenario, seed)
        events, secs = replay(Path(binary), Path(config), corpus)
        replay_s += secs
        results.append({"scenario": scenario, "seed": seed, **outcome(events)})
        if no_keep and scenario != "low-traffic-bad-deploy":
            corpus.unlink(missing_ok=True)
    return results, gen_s, replay_s


def accuracy(args) -> None:
    CACHE.mkdir(parents=True, exist_ok=True)
    log_dir = CACHE / "replay"
    log_dir.mkdir(exist_ok=True)
    config = CACHE / "sidewatch.yaml"
    config.write_text(config_text(log_dir))
    check_generator()
    key = hashlib.sha256("\0".join([
        file_digest(BINARY), config.read_text(), RULES.read_text(), GEN.read_text(), START,
    ]).encode()).hexdigest()[:16]
    results_file = CACHE / "results" / f"{key}.jsonl"
    results_file.parent.mkdir(exist_ok=True)
    if args.fresh:
        results_file.unlink(missing_ok=True)
    done: dict[tuple[str, int], dict] = {}
    if results_file.exists():
        for line in results_file.read_text().splitlines():
            r = json.loads(line)
            done[(r["scenario"], r["seed"])] = r

    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    scenarios = args.scenario or SCENARIOS
    todo = [(seed, [s for s in scenarios if (s, seed) not in done]) for seed in seeds]
    todo = [(seed, ss) for seed, ss in todo if ss]
    print(f"{len(seeds)} seeds × {len(scenarios)} scenarios: {len(done)} cached results "
          f"({results_file.relative_to(REPO)}), {sum(len(ss) for _, ss in todo)} replays to run "
          f"with {args.jobs} worker processes", file=sys.stderr, flush=True)

    started = time.monotonic()
    deadline = time.time() + args.budget * 60 if args.budget else 0.0
    gen_total = replay_total = 0.0
    n = 0
    with concurrent.futures.ProcessPoolExecutor(max_workers=args.jobs) as pool, \
            open(results_file, "a") as out:
        futures = [pool.submit(seed_task, seed, ss, str(BINARY), str(config), deadline, args.no_keep)
                   for seed, ss in todo]
        for future in concurrent.futures.as_completed(futures):
            results, gen_s, replay_s = future.result()
            for r in results:
                done[(r["scenario"], r["seed"])] = r
                out.write(json.dumps(r) + "\n")
            out.flush()
            if results:
                n += 1
                gen_total += gen_s
                replay_total += replay_s
                if n % 5 == 0 or n == len(todo):
                    el = time.monotonic() - started
                    print(f"  {n}/{len(todo)} seeds in {el / 60:.1f} min (per seed: generation "
                          f"{gen_total / n:.1f}s, replays {replay_total / n:.1f}s; "
                          f"eta {el / n * (len(todo) - n) / 60:.0f} min)", file=sys.stderr, flush=True)
    elapsed = time.monotonic() - started

    wanted = set(seeds)
    results = {s: sorted((r for (sc, sd), r in done.items() if sc == s and sd in wanted),
                         key=lambda r: r["seed"]) for s in scenarios}
    short = {s: len(seeds) - len(rs) for s, rs in results.items() if len(rs) < len(seeds)}
    print()
    print(f"sidewatch target/release/sidewatch (sha256 {file_digest(BINARY)[:12]}), "
          f"rules {RULES.relative_to(REPO)}, seeds {seeds[0]}..{seeds[-1]}, "
          f"this run {elapsed / 60:.1f} min wall ({n} seeds run, the rest cached)"
          + (f"; not reached within the budget: {short}" if short else ""))
    print()
    print(table(results))
    if args.show_misses:
        show_misses(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


# ---------------------------------------------------------------------------------------
# Memory: replay (10 vs 60 min of input) and the live agent, at 1000 requests/s
# ---------------------------------------------------------------------------------------

def steady_phases(minutes: int) -> list[tuple[str, float, float, float, bool]]:
    """1.4.2 until 5 min before the end, then a good 1.4.3: (version, seconds, error
    ratio, latency scale, new error)."""
    return [("1.4.2", (minutes - 5) * 60, 0.01, 1.0, False), ("1.4.3", 5 * 60, 0.01, 1.0, False)]


def write_steady(path: Path, minutes: int, rps: int, seed: int = 7) -> None:
    """`minutes` of traffic at `rps`, gen_corpus's request_events rendered by structlog."""
    if path.exists():
        return
    g = gen_module()
    render = g.renderer()
    rng = random.Random(seed)
    t = dt.datetime.fromisoformat(START)
    step = dt.timedelta(seconds=1.0 / rps)
    out = Compressed(path)
    buf = []
    for version, seconds, err, lat, new_err in steady_phases(minutes):
        for _ in range(int(seconds * rps)):
            for event in g.request_events(rng, t, version, err, lat, new_err):
                buf.append(render(None, "info", event))
            t += step
            if len(buf) > 20000:
                out.write(("\n".join(buf) + "\n").encode())
                buf.clear()
    if buf:
        out.write(("\n".join(buf) + "\n").encode())
    out.close()


def run_measured(cmd: list[str], stdin_path: Path | None) -> tuple[int, float, bytes]:
    """Runs `cmd` (stdin from a compressed file); returns its peak RSS in KiB (ru_maxrss,
    as /usr/bin/time -v reports it), its wall time and stdout."""
    started = time.monotonic()
    gz = subprocess.Popen(COMPRESS[1] + [str(stdin_path)], stdout=subprocess.PIPE)
    out = tempfile.TemporaryFile()
    proc = subprocess.Popen(cmd, stdin=gz.stdout, stdout=out, stderr=subprocess.DEVNULL)
    gz.stdout.close()
    _, status, rusage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    gz.wait()
    out.seek(0)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd} exited {proc.returncode}")
    return rusage.ru_maxrss, time.monotonic() - started, out.read()


def memory_replay(args) -> None:
    CACHE.mkdir(parents=True, exist_ok=True)
    config = CACHE / "sidewatch.yaml"
    config.write_text(config_text(CACHE / "replay"))
    rows = []
    for minutes in (10, 60):
        path = CACHE / "memory" / f"steady-{minutes}min-{args.rps}rps.log{COMPRESS[2]}"
        path.parent.mkdir(parents=True, exist_ok=True)
        t = time.monotonic()
        write_steady(path, minutes, args.rps)
        print(f"  {path.name}: ready ({time.monotonic() - t:.0f}s)", file=sys.stderr, flush=True)
        dec = " ".join(COMPRESS[1])
        lines = int(subprocess.run(f"{dec} {path} | wc -l", shell=True, capture_output=True,
                                   text=True, check=True).stdout)
        size = int(subprocess.run(f"{dec} {path} | wc -c", shell=True, capture_output=True,
                                  text=True, check=True).stdout)
        rss, wall, out = run_measured(
            [str(BINARY), "replay", "-c", str(config), "--from", "/dev/stdin", "--format", "json"], path)
        verdicts = [json.loads(l) for l in out.decode().splitlines() if '"verdict"' in l]
        v = next((e["verdict"] for e in verdicts if e.get("kind") == "verdict"), "none")
        rows.append((minutes, lines, size, rss, wall, v))
    print("\n| input (1000 req/s) | lines | bytes | replay peak RSS | wall | verdict of 1.4.3 |")
    print("|---|---|---|---|---|---|")
    for minutes, lines, size, rss, wall, v in rows:
        print(f"| {minutes} min | {lines:,} | {size / 2**20:,.0f} MiB | {rss / 1024:,.0f} MiB | "
              f"{wall:.0f}s | {v} |")


def proc_status(pid: int) -> dict[str, int]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS", "VmHWM")):
                k, v = line.split(":")
                out[k] = int(v.split()[0])
    return out


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def metric(port: int, name: str) -> float:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return float("nan")
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def memory_agent(args) -> None:
    """The agent tails a log written in real time at `rps` for `minutes` (1.4.2, then a
    good 1.4.3 for the last 15 minutes, so a verification runs and decides), and its
    VmRSS / VmHWM are sampled every 10 s."""
    g = gen_module()
    render = g.renderer()
    minutes = args.memory_agent
    work = Path(tempfile.mkdtemp(prefix="sidewatch-mem-"))
    (work / "logs").mkdir()
    port = free_port()
    config = work / "sidewatch.yaml"
    config.write_text(
        f"data_dir: {work / 'data'}\n"
        f"api: {{ listen: 127.0.0.1:{port} }}\n"
        "logs:\n"
        f"  - {{ name: app, paths: [\"{work / 'logs'}/*.log\"], start_at: beginning }}\n"
        f"rules: {{ files: [\"{RULES}\"] }}\n")
    log = open(work / "logs" / "app.log", "w", buffering=1 << 20)
    agent = subprocess.Popen([str(BINARY), "run", "-c", str(config)],
                             stdout=subprocess.DEVNULL, stderr=open(work / "agent.log", "w"))
    rng = random.Random(11)
    switch = (minutes - 15) * 60
    step = 1.0 / args.rps
    t0 = time.time()
    n = 0
    samples = []
    next_sample = t0 + 10
    (CACHE / "memory").mkdir(parents=True, exist_ok=True)
    csv = open(CACHE / "memory" / f"agent-{minutes}min-{args.rps}rps.csv", "w")
    csv.write("seconds,requests,lines_read,vmrss_kib,vmhwm_kib\n")
    try:
        while True:
            now = time.time()
            if now - t0 >= minutes * 60:
                break
            # Every request whose time has come, stamped with its own scheduled time.
            lines = []
            while t0 + n * step <= now:
                ts = t0 + n * step
                version = "1.4.2" if ts - t0 < switch else "1.4.3"
                t = dt.datetime.fromtimestamp(ts, dt.timezone.utc)
                for event in g.request_events(rng, t, version, 0.01, 1.0, False):
                    lines.append(render(None, "info", event))
                n += 1
            if lines:
                log.write("\n".join(lines) + "\n")
                log.flush()
            if now >= next_sample:
                next_sample += 10
                st = proc_status(agent.pid)
                read = metric(port, "sidewatch_log_records_total")
                samples.append((now - t0, n, read, st["VmRSS"], st["VmHWM"]))
                csv.write(",".join(str(int(x)) if x == x else "" for x in samples[-1]) + "\n")
                csv.flush()
                if len(samples) % 30 == 0:
                    print(f"  {(now - t0) / 60:.0f} min: {n:,} requests, VmRSS "
                          f"{st['VmRSS'] / 1024:.1f} MiB, VmHWM {st['VmHWM'] / 1024:.1f} MiB",
                          file=sys.stderr, flush=True)
            time.sleep(0.05)
        time.sleep(5)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/deployments", timeout=5) as r:
            deployments = json.loads(r.read())
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=30)
        log.close()
        csv.close()
    print("\n| after | requests written | records read | VmRSS | VmHWM (peak) |")
    print("|---|---|---|---|---|")
    marks = range(10, minutes + 1, 10) if minutes >= 10 else range(1, minutes + 1)
    for mark in marks:
        s = max((x for x in samples if x[0] <= mark * 60 + 1), key=lambda x: x[0])
        print(f"| {mark} min | {s[1]:,} | {s[2]:,.0f} | {s[3] / 1024:.1f} MiB | {s[4] / 1024:.1f} MiB |")
    for d in deployments.get("deployments", []):
        print(f"deployment {d.get('version')}: verdict {d.get('verdict')}")
    shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=300, help="seeds per scenario (default 300)")
    ap.add_argument("--quick", action="store_true", help="20 seeds per scenario")
    ap.add_argument("--first-seed", type=int, default=1)
    ap.add_argument("--scenario", action="append", choices=SCENARIOS, help="only this scenario (repeatable)")
    ap.add_argument("--jobs", type=int, default=2, help="corpora generated and replayed at once (default 2)")
    ap.add_argument("--budget", type=float, default=0, help="start no new corpus after this many minutes")
    ap.add_argument("--no-keep", action="store_true",
                    help="delete each 50-rps corpus (~12 MB zstd, 17 MB gzip) after its replay instead of "
                         "keeping it for later runs (600 of them: 7-10 GB)")
    ap.add_argument("--fresh", action="store_true", help="forget cached results for this binary")
    ap.add_argument("--show-misses", action="store_true", help="print the evidence of each unexpected verdict")
    ap.add_argument("--json", help="write every result to this file")
    ap.add_argument("--no-build", action="store_true", help="use the existing target/release/sidewatch")
    ap.add_argument("--memory-replay", action="store_true",
                    help="peak RSS of `sidewatch replay` on 10 and 60 min of traffic at --rps")
    ap.add_argument("--memory-agent", type=int, metavar="MINUTES",
                    help="run the agent on a log written in real time at --rps for MINUTES")
    ap.add_argument("--rps", type=int, default=1000)
    args = ap.parse_args()
    if args.quick:
        args.seeds = 20
    build(args.no_build)
    if args.memory_replay:
        memory_replay(args)
    elif args.memory_agent:
        memory_agent(args)
    else:
        accuracy(args)


if __name__ == "__main__":
    main()
