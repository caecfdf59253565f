#!/usr/bin/env python3
"""The sidecar's footprint: the agent's memory and CPU beside a real app, idle and loaded.

What sizes the Kubernetes sidecar's `resources:` (deploy/kubernetes/deployment.yaml).
The real FastAPI + structlog app (tests/app/app.py, uvicorn, 1% of `/checkout` calls
failing with a logged traceback) runs on 127.0.0.1; the release agent runs beside it
with the config of the Kubernetes ConfigMap (deploy/kubernetes/configmap.yaml, read from
it): the app's log tailed as structlog, the `/health` probe every 10s with
`version_from`, deployment detection, the default rule pack plus the dashboards'
recording rules, no file/stdout/OTLP output; only `alerting` (notifications go to the
built-in log receiver) and the `baseline_from` peers are left out. Then, one phase
after the other:

  idle    --idle seconds without traffic (only the probe);
  N/s     --duration seconds of `GET /checkout` at each --rates rate (paced, keep-alive,
          from a separate load-generator process), each call one `request finished`
          line (≈ 300 bytes); 1% also log one `unhandled error` line with its traceback.

Every second it samples the agent's /proc/PID/status (VmRSS, VmHWM) and /proc/PID/stat
(utime + stime). Per phase it prints the RSS (median, max), the peak so far (VmHWM), the
CPU used (cores = CPU-seconds / wall-seconds over the phase), the request rate the app
actually served and the lines per second the agent read (its own /metrics). After each
loaded phase it waits (bounded) until the agent has read every line the app wrote, so
a lagging agent cannot look cheap.

  .venv/bin/python bench/footprint.py                          # idle 30s, 200/s and 1000/s for 60s
  .venv/bin/python bench/footprint.py --rates 200 --duration 20 # quicker
  .venv/bin/python bench/footprint.py --json footprint.json     # also the figures as JSON

Needs the release binary (`cargo build --release -p sidewatch`) or $SIDEWATCH_BIN, and
the test venv (`tests/requirements.txt`).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from harness import Process, free_port, parse_prometheus, to_yaml, wait_until  # noqa: E402

APP_DIR = REPO / "tests" / "app"
CLK_TCK = os.sysconf("SC_CLK_TCK")
MIB = 1024 * 1024


# -- the load generator (run as a child process: its CPU is not the sampler's) --------


async def _load(host: str, port: int, rate: float, duration: float, conns: int) -> dict:
    """`GET /checkout` at `rate` per second for `duration` s over `conns` keep-alive
    connections; a request is sent only on an idle connection (no pipelining), so when
    the app cannot keep up the rate served drops instead of a backlog piling up."""
    request = f"GET /checkout HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    sent = done = errors = 0
    latencies: list[float] = []
    tokens = asyncio.Queue()
    start = time.monotonic()
    stop_at = start + duration

    async def pacer() -> None:
        i = 0
        while True:
            at = start + i / rate
            if at >= stop_at:
                break
            delay = at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)  # pacing: the load's rate
            tokens.put_nowait(at)
            i += 1
        for _ in range(conns):
            tokens.put_nowait(None)

    async def connection() -> None:
        nonlocal sent, done, errors
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while True:
                at = await tokens.get()
                if at is None:
                    return
                if time.monotonic() - at > 1.0:
                    continue  # over a second late: the app is saturated; not sent
                sent += 1
                t0 = time.monotonic()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
                latencies.append(time.monotonic() - t0)
                if head.startswith(b"HTTP/1.1 200") or head.startswith(b"HTTP/1.1 500"):
                    done += 1
                else:
                    errors += 1
        finally:
            writer.close()

    await asyncio.gather(pacer(), *(connection() for _ in range(conns)))
    wall = time.monotonic() - start
    latencies.sort()
    return {
        "target_rate": rate,
        "sent": sent,
        "answered": done,
        "errors": errors,
        "wall_s": wall,
        "rate": done / wall,
        "p50_ms": 1000 * latencies[len(latencies) // 2] if latencies else None,
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)] if latencies else None,
    }


def load_main(argv: list[str]) -> int:
    host, port, rate, duration, conns = argv
    result = asyncio.run(_load(host, int(port), float(rate), float(duration), int(conns)))
    print(json.dumps(result))
    return 0


# -- sampling ---------------------------------------------------------------------------


def sample(pid: int) -> dict:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    kib = lambda k: int(fields[k].split()[0])  # noqa: E731
    stat = Path(f"/proc/{pid}/stat").read_text()
    after_comm = stat[stat.rindex(")") + 2 :].split()
    utime, stime = int(after_comm[11]), int(after_comm[12])  # fields 14 and 15
    return {
        "t": time.monotonic(),
        "rss": kib("VmRSS") * 1024,
        "hwm": kib("VmHWM") * 1024,
        "cpu": (utime + stime) / CLK_TCK,
        "threads": int(fields["Threads"]),
    }


def records_read(api: str) -> float:
    import requests

    text = requests.get(api + "/metrics", timeout=5).text
    return sum(v for n, _l, v in parse_prometheus(text) if n == "sidewatch_log_records_total")


def count_lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))


def summarize(name: str, samples: list[dict], extra: dict) -> dict:
    first, last = samples[0], samples[-1]
    wall = last["t"] - first["t"]
    rss = [s["rss"] for s in samples]
    return {
        "phase": name,
        "seconds": round(wall, 1),
        "rss_median_mib": round(statistics.median(rss) / MIB, 1),
        "rss_max_mib": round(max(rss) / MIB, 1),
        "hwm_mib": round(last["hwm"] / MIB, 1),
        "cpu_cores": round((last["cpu"] - first["cpu"]) / wall, 4) if wall > 0 else 0.0,
        "threads": last["threads"],
        **extra,
    }


def config(tmp: Path, log_path: Path, app_url: str, api_listen: str) -> dict:
    """The Kubernetes ConfigMap's config (deploy/kubernetes/configmap.yaml) as the pod
    runs it, its rule files beside it, with the pod's paths and addresses moved to this
    machine's, and minus what cannot run here: `alerting` (SMTP and webhook receivers:
    alerts go to the built-in log receiver instead) and the `baseline_from` peers."""
    import yaml

    data = yaml.safe_load((REPO / "deploy" / "kubernetes" / "configmap.yaml").read_text())["data"]
    rules = tmp / "rules"
    rules.mkdir()
    for key in ("python-service.yaml", "recording-rules.yaml"):
        (rules / key).write_text(data[key])
    cfg = yaml.safe_load(data["sidewatch.yaml"])
    cfg.pop("alerting", None)
    cfg["deployments"]["baseline_from"] = []
    cfg["service"]["environment"] = "bench"
    cfg["data_dir"] = str(tmp / "data")
    cfg["api"] = {"listen": api_listen}  # no token: /metrics needs none anyway
    cfg["logs"][0]["paths"] = [str(log_path.parent / Path(p).name) for p in cfg["logs"][0]["paths"]]
    cfg["probes"][0]["url"] = app_url + "/health"
    return cfg


def run_phase(name: str, pid: int, seconds: float, load: subprocess.Popen | None) -> list[dict]:
    samples = [sample(pid)]
    end = samples[0]["t"] + seconds
    while True:
        # Once a second (the sampling interval, not synchronisation); the last sample of
        # the phase at its end, then once a second until the load generator has exited.
        left = end - time.monotonic()
        time.sleep(min(1.0, left) if left > 0.05 else 1.0 if left <= 0 else left)
        samples.append(sample(pid))
        if time.monotonic() >= end and (load is None or load.poll() is not None):
            return samples


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--load":
        return load_main(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--idle", type=float, default=30.0, help="seconds of the idle phase")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of each loaded phase")
    parser.add_argument("--rates", default="200,1000", help="request rates, comma-separated")
    parser.add_argument("--conns", type=int, default=32, help="keep-alive connections of the load")
    parser.add_argument("--app-workers", type=int, default=2, help="uvicorn worker processes")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--csv", help="also write every 1 s sample (phase, s, rss, hwm, cpu) to this file")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args()
    binary = Path(os.environ.get("SIDEWATCH_BIN") or REPO / "target" / "release" / "sidewatch")
    if not binary.is_file():
        print(f"{binary} not found: cargo build --release -p sidewatch", file=sys.stderr)
        return 2
    rates = [float(r) for r in args.rates.split(",") if r]

    tmp = Path(tempfile.mkdtemp(prefix="sidewatch-footprint-"))
    log_path = tmp / "logs" / "app.log"
    log_path.parent.mkdir()
    port = free_port()
    app_url = f"http://127.0.0.1:{port}"
    app = Process(
        "app",
        [sys.executable, "-m", "uvicorn", "app:app", "--app-dir", APP_DIR, "--host", "127.0.0.1",
         "--port", str(port), "--workers", str(args.app_workers), "--no-access-log",
         "--log-level", "warning"],
        log_dir=tmp,
        # Plain FileHandler: every worker appends (O_APPEND) to the one file, no rotation.
        env={"APP_LOG_PATH": str(log_path), "APP_LOG_HANDLER": "file", "APP_VERSION": "1.0.0",
             "APP_ERROR_RATIO": "0.01", "PYTHONUNBUFFERED": "1"},
    )
    api_listen = f"127.0.0.1:{free_port()}"
    api = "http://" + api_listen
    cfg_path = tmp / "sidewatch.yaml"
    cfg_path.write_text(to_yaml(config(tmp, log_path, app_url, api_listen)))
    agent = Process("sidewatch", [binary, "run", "-c", cfg_path], log_dir=tmp, cwd=tmp)
    results: list[dict] = []
    trace: list[str] = ["phase,seconds,rss_bytes,hwm_bytes,cpu_seconds"]

    def keep(name: str, samples: list[dict]) -> None:
        t0 = samples[0]["t"]
        trace.extend(f"{name},{s['t'] - t0:.1f},{s['rss']},{s['hwm']},{s['cpu']:.2f}" for s in samples)

    try:
        app.start()
        app.wait_http(app_url + "/health", timeout=60)
        agent.start()
        agent.wait_http(api + "/readyz", timeout=30)
        pid = agent.pid
        print(f"binary {binary} ({time.strftime('%Y-%m-%d %H:%M', time.localtime(binary.stat().st_mtime))}), "
              f"app: uvicorn --workers {args.app_workers}, {os.cpu_count()} CPUs, scratch {tmp}", flush=True)

        samples = run_phase("idle", pid, args.idle, None)
        keep("idle", samples)
        # Lines the app wrote before the agent started (start_at: end skips them).
        skipped = count_lines(log_path) - records_read(api)
        results.append(summarize("idle", samples, {"target_rate": 0, "rate": 0.0, "lines_per_s": 0.0}))
        print(json.dumps(results[-1]), flush=True)

        for rate in rates:
            lines_before, read_before = count_lines(log_path), records_read(api)
            load = subprocess.Popen(
                [sys.executable, __file__, "--load", "127.0.0.1", str(port), str(rate), str(args.duration), str(args.conns)],
                stdout=subprocess.PIPE, text=True,
            )
            samples = run_phase(f"{rate:g}/s", pid, args.duration, load)
            keep(f"{rate:g}/s", samples)
            out, _ = load.communicate(timeout=30)
            served = json.loads(out)
            written = count_lines(log_path)
            # The agent must have read everything the app wrote (else it only looks cheap).
            wait_until(lambda: records_read(api) >= written - skipped, 60,
                       lambda: f"the agent to read all {written - skipped} lines (read {records_read(api):.0f})")
            read = records_read(api) - read_before
            phase_wall = samples[-1]["t"] - samples[0]["t"]
            results.append(summarize(f"{rate:g}/s", samples, {
                "target_rate": rate, "rate": round(served["rate"], 1),
                "answered": served["answered"], "p50_ms": served["p50_ms"], "p99_ms": served["p99_ms"],
                "lines_written": written - lines_before, "lines_per_s": round(read / phase_wall, 1),
            }))
            print(json.dumps(results[-1]), flush=True)
        code = agent.terminate(timeout=20)
        assert code == 0, f"sidewatch exited {code} on SIGTERM:\n{agent.tail()}"
    finally:
        agent.stop()
        app.stop()
        if not args.keep:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)

    print()
    print("| phase | requests/s served (target) | lines/s read | agent CPU (cores) | RSS median | RSS max | peak (VmHWM) |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        target = f"{r['target_rate']:g}" if r["target_rate"] else "–"
        print(f"| {r['phase']} | {r['rate']:.0f} ({target}) | {r['lines_per_s']:.0f} | {r['cpu_cores']:.3f} | "
              f"{r['rss_median_mib']} MiB | {r['rss_max_mib']} MiB | {r['hwm_mib']} MiB |")
    idle = results[0]
    print(f"\nidle RSS {idle['rss_median_mib']} MiB, peak RSS {max(r['hwm_mib'] for r in results)} MiB, "
          + ", ".join(f"{r['phase']}: {r['cpu_cores']:.3f} cores" for r in results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    if args.csv:
        Path(args.csv).write_text("\n".join(trace) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
