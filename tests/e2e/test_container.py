"""sidewatch's container image and compose example, run for real on a Docker engine.

The test starts its own `dockerd` (tests/harness/docker.py) and makes every image
itself — no registry is reachable: a Debian bookworm base from debootstrap, a builder
from it with the host's Rust toolchain, then `deploy/Dockerfile` (sidewatch) and
`deploy/compose/app.Dockerfile` (the structlog FastAPI app of tests/app). The rootfs
tarball and the engine's data root are cached per machine (~/.cache/sidewatch-tests),
so a rerun reuses the layers: a cold run (debootstrap + a release build in the
container) takes minutes, a warm one about a minute.

The pod: a "pause" container (the base image running `sleep infinity`) holds the
network namespace and publishes the app's port and sidewatch's API on free 127.0.0.1
ports; the app and sidewatch join it (`--network container:PAUSE`) and share a log
volume; sidewatch runs `--read-only --user 65532:65532` with its data_dir on a volume.
The app is rolled to a new version the way a deployment does it (stop the old
container, start the new one in the same namespace and volume), and sidewatch's
verdict, health status, SIGTERM exit code and checkpoints are read from the outside.

Run: .venv/bin/python -m pytest tests/e2e/test_container.py -q -s   (as root)
"""

from __future__ import annotations

import json
import subprocess
import tarfile
import time
from collections import Counter
from pathlib import Path

import pytest
import requests

from harness import free_port, parse_prometheus, sidewatch_bin, to_yaml, wait_stable, wait_until
from harness.docker import REPO, Dockerd, Images, require_prerequisites
from harness.traffic import Traffic, verifications

COMPOSE_FILE = REPO / "deploy" / "compose" / "docker-compose.yaml"
MAX_IMAGE_BYTES = 40 * 1000 * 1000  # "under 40 MB", as docker reports sizes

# The deployment verifications of tests/e2e/test_deployments.py (seconds, not minutes).
RULES = """\
groups:
  - name: container
    interval: 1s
    rules:
      - record: http:request_errors:ratio10s
        expr: |
          sum by (path) (count_over_time({source="app"} | event="request finished" | status >= 500 [10s]))
          /
          sum by (path) (count_over_time({source="app"} | event="request finished" [10s]))
""" + verifications(checks=("error-ratio", "latency", "health"))

# 1.0.0: 1 call in 50 fails. 1.1.0: 40% fail and every call is 40ms slower.
V1 = {"APP_ERROR_RATIO": "0.02"}
V2_BAD = {"APP_ERROR_RATIO": "0.4", "APP_EXTRA_LATENCY_MS": "40"}
BASELINE_REQUESTS = 160
GRACE = 10.0  # sidewatch's default grace_period


# -- helpers ------------------------------------------------------------------------


def lines_with_offsets(path: Path) -> list[tuple[int, dict]]:
    """(byte offset, record) of every complete line of a JSON-lines file."""
    out, offset = [], 0
    if not path.exists():
        return out
    with open(path, "rb") as f:
        for raw in f:
            if raw.endswith(b"\n"):
                out.append((offset, json.loads(raw)))
            offset += len(raw)
    return out


def finished(log: Path, version: str) -> int:
    return sum(
        1 for _, r in lines_with_offsets(log)
        if r.get("event") == "request finished" and r.get("version") == version
    )


def get(url: str, timeout: float = 5) -> requests.Response | None:
    try:
        return requests.get(url, timeout=timeout)
    except requests.RequestException:
        return None


def running(d: Dockerd, container: str) -> None:
    """Fail at once (with its output) if a container we wait on has exited."""
    state = d.inspect(container)["State"]
    if not state["Running"]:
        raise AssertionError(
            f"container {container} exited with {state['ExitCode']} "
            f"(error: {state.get('Error')!r}); its output:\n{d.logs(container)}"
        )


def wait_http(d: Dockerd, container: str, url: str, timeout: float = 60) -> requests.Response:
    last = ["no answer"]

    def answered():
        running(d, container)
        r = get(url)
        last[0] = "no answer" if r is None else f"HTTP {r.status_code}"
        return r if r is not None and r.status_code == 200 else None

    return wait_until(
        answered, timeout,
        lambda: f"{url} ({container}) to answer 200, last: {last[0]}; its output:\n{d.logs(container)}",
        interval=0.2,
    )


def health_status(d: Dockerd, container: str) -> str:
    return (d.inspect(container)["State"].get("Health") or {}).get("Status", "none")


def metric(text: str, name: str, **labels: str) -> float:
    return sum(
        v for n, l, v in parse_prometheus(text)
        if n == name and all(l.get(k) == want for k, want in labels.items())
    )


# -- the tests ------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_compose_file_is_valid_and_its_sidewatch_config_checks():
    """The laptop stack validates offline; its sidewatch config passes `sidewatch check`."""
    require_prerequisites(compose=True)
    r = subprocess.run(
        ["docker-compose", "-f", COMPOSE_FILE, "config", "-q"],
        capture_output=True, text=True, timeout=30,
    )
    assert r.returncode == 0, f"docker-compose config -q: exit {r.returncode}\n{r.stdout}{r.stderr}"
    r = subprocess.run(
        ["docker-compose", "-f", COMPOSE_FILE, "config", "--services"],
        capture_output=True, text=True, timeout=30,
    )
    assert set(r.stdout.split()) == {"app", "sidewatch", "otel-collector", "mailpit"}, r.stdout
    full = subprocess.run(
        ["docker-compose", "-f", COMPOSE_FILE, "config"], capture_output=True, text=True, timeout=30
    ).stdout
    for needle in ("network_mode: service:app", "read_only: true", "user: 65532:65532",
                   "otel/opentelemetry-collector-contrib", "axllent/mailpit"):
        assert needle in full, f"{needle!r} missing from the resolved compose file:\n{full}"
    check = subprocess.run(
        [str(sidewatch_bin()), "check", "-c", REPO / "deploy" / "compose" / "sidewatch.yaml"],
        capture_output=True, text=True, timeout=30,
    )
    assert check.returncode == 0, f"sidewatch check: {check.stdout}{check.stderr}"


@pytest.mark.timeout(1200)
def test_image_is_small_non_root_and_holds_only_what_the_binary_needs(tmp_path):
    with Dockerd(tmp_path) as d:
        images = Images(d)
        image = images.sidewatch()
        print(f"\nimage build timings (s): {images.timings}")
        info = d.inspect(image, "image")
        size = info["Size"]
        print(f"{image}: {size / 1e6:.1f} MB")
        assert size < MAX_IMAGE_BYTES, f"image is {size / 1e6:.1f} MB, over {MAX_IMAGE_BYTES / 1e6:.0f} MB"

        config = info["Config"]
        assert config["User"] == "65532:65532", config["User"]
        assert config["Entrypoint"] == ["/usr/local/bin/sidewatch"], config["Entrypoint"]
        assert config["Cmd"] == ["run", "-c", "/etc/sidewatch/sidewatch.yaml"], config["Cmd"]
        assert "9777/tcp" in (config.get("ExposedPorts") or {}), config.get("ExposedPorts")
        assert "/var/lib/sidewatch" in (config.get("Volumes") or {}), config.get("Volumes")
        assert config["Healthcheck"]["Test"] == ["CMD", "/usr/local/bin/sidewatch", "healthcheck"], config["Healthcheck"]
        labels = config.get("Labels") or {}
        for key in ("title", "description", "version", "revision", "licenses", "source"):
            assert labels.get(f"org.opencontainers.image.{key}"), f"OCI label {key} missing: {labels}"

        # The files: the binary, exactly the libraries it links, CA certificates, users,
        # the default config. No shell, no package manager.
        container = d.docker("create", *d.labels(), image).stdout.strip()
        exported = tmp_path / "image.tar"
        d.docker("export", "-o", exported, container, timeout=120)
        with tarfile.open(exported) as tar:
            members = {m.name.removeprefix("./"): m for m in tar.getmembers()}
            tar.extract(members["usr/local/bin/sidewatch"], tmp_path / "rootfs", filter="data")
        # Regular files, less what `docker create` adds to every container.
        docker_made = {".dockerenv", "etc/hostname", "etc/hosts", "etc/resolv.conf", "etc/mtab"}
        files = {
            n for n, m in members.items()
            if m.isfile() and n not in docker_made and not n.startswith(("dev/", "proc/", "sys/"))
        }
        libs = {n for n in files if n.startswith(("lib", "usr/lib"))}
        assert "bin/sh" not in members and "usr/bin/sh" not in members, "the image has a shell"
        ldd = subprocess.run(
            ["ldd", tmp_path / "rootfs" / "usr/local/bin/sidewatch"], capture_output=True, text=True, timeout=30
        ).stdout
        linked = {Path(tok).name for tok in ldd.split() if tok.startswith("/")}
        assert {Path(n).name for n in libs} == linked, f"libraries in the image {sorted(libs)}, ldd says:\n{ldd}"
        expected = {
            "usr/local/bin/sidewatch", "etc/ssl/certs/ca-certificates.crt", "etc/passwd",
            "etc/group", "etc/sidewatch/sidewatch.yaml",
        }
        assert files - libs == expected, sorted(files - libs)
        data_dir = members["var/lib/sidewatch"]
        assert (data_dir.uid, data_dir.gid) == (65532, 65532), (data_dir.uid, data_dir.gid)

        # It runs with a read-only root; its default config checks.
        r = d.docker("run", "--rm", "--read-only", "--network", "none", image, "--version")
        assert r.stdout.startswith("sidewatch "), r.stdout
        r = d.docker("run", "--rm", "--read-only", "--network", "none", image, "check", check=False)
        assert r.returncode == 0, f"`sidewatch check` of the image's default config: {r.stdout}{r.stderr}"


@pytest.mark.timeout(1200)
def test_sidecar_pod_detects_a_bad_rollout_stops_cleanly_and_resumes_from_checkpoints(tmp_path):
    with Dockerd(tmp_path) as d:
        images = Images(d)
        sidewatch, app_image, base = images.sidewatch(), images.app(), images.base()
        print(f"\nimage build timings (s): {images.timings}")

        net, logs, data = d.name("net"), d.name("logs"), d.name("data")
        d.docker("network", "create", *d.labels(), net)
        for volume in (logs, data):
            d.docker("volume", "create", *d.labels(), volume)
        app_port, api_port = free_port(), free_port()
        app_url, api = f"http://127.0.0.1:{app_port}", f"http://127.0.0.1:{api_port}"

        # The pod sandbox: holds the namespace (and the published ports) across app restarts.
        pause = d.name("pause")
        d.docker(
            "run", "-d", "--name", pause, *d.labels(), "--network", net,
            "-p", f"127.0.0.1:{app_port}:8000", "-p", f"127.0.0.1:{api_port}:9777",
            base, "sleep", "infinity",
        )

        def start_app(version: str, env: dict[str, str]) -> str:
            name = d.name(f"app-{version}")
            envs = [a for k, v in {**env, "APP_VERSION": version}.items() for a in ("-e", f"{k}={v}")]
            d.docker(
                "run", "-d", "--name", name, *d.labels(), "--network", f"container:{pause}",
                "-v", f"{logs}:/var/log/app", *envs, app_image,
            )
            wait_http(d, name, app_url + "/health")
            return name

        app = start_app("1.0.0", V1)
        log_file = d.volume_path(logs) / "app.log"

        config_file = tmp_path / "sidewatch.yaml"
        rules_dir = tmp_path / "rules"
        rules_dir.mkdir()
        (rules_dir / "deployments.yaml").write_text(RULES)
        config_file.write_text(to_yaml({
            "service": {"name": "checkout-api", "environment": "container-e2e"},
            "data_dir": "/var/lib/sidewatch",
            "api": {"listen": "0.0.0.0:9777"},
            "logs": [{"name": "app", "paths": ["/var/log/app/*.log"], "format": "structlog",
                      "start_at": "beginning"}],
            "probes": [{
                "name": "health", "url": "http://127.0.0.1:8000/health", "interval": "1s",
                "timeout": "2s", "expect": {"status": [200], "body_json": {"$.status": "ok"}},
                "version_from": "$.version",
            }],
            "deployments": {"verify_window": "20s", "baseline_window": "30s",
                            "probe_grace": "2s", "probe_boost": "500ms"},
            "rules": {"files": ["/etc/sidewatch/rules/*.yaml"], "evaluation_interval": "1s"},
            # Every record, with its file and offset, to check "exactly once" across a restart.
            "export": {"file": {"path": "/var/lib/sidewatch/records.jsonl"}},
        }))
        config_file.chmod(0o644)
        agent = d.name("sidewatch")
        d.docker(
            "run", "-d", "--name", agent, *d.labels(), "--network", f"container:{pause}",
            "--read-only", "--user", "65532:65532",
            "-v", f"{logs}:/var/log/app:ro", "-v", f"{data}:/var/lib/sidewatch",
            "-v", f"{config_file}:/etc/sidewatch/sidewatch.yaml:ro",
            "-v", f"{rules_dir}:/etc/sidewatch/rules:ro",
            "--health-interval", "1s", "--health-retries", "3",
            sidewatch,
        )
        wait_http(d, agent, api + "/readyz")
        records_file = d.volume_path(data) / "records.jsonl"

        def deployments() -> dict:
            r = get(api + "/api/v1/deployments")
            assert r is not None and r.status_code == 200, f"/api/v1/deployments: {r and r.text}"
            return r.json()

        # The image's HEALTHCHECK (`sidewatch healthcheck`, API address from the config).
        wait_until(
            lambda: health_status(d, agent) == "healthy", 60,
            lambda: f"{agent} to be healthy; State.Health: {d.inspect(agent)['State'].get('Health')}",
            interval=0.25,
        )

        with Traffic(app_url) as traffic:
            wait_until(
                lambda: deployments()["live"] == "1.0.0", 30,
                lambda: f"sidewatch to see 1.0.0 live: {deployments()}",
            )
            wait_until(
                lambda: finished(log_file, "1.0.0") >= BASELINE_REQUESTS, 60,
                lambda: f"{BASELINE_REQUESTS} requests of 1.0.0 in {log_file} (at {finished(log_file, '1.0.0')})",
            )
            # The rollout: the old container stops (SIGTERM), the new version starts in
            # the same namespace and log volume; sidewatch keeps running throughout.
            d.docker("stop", "-t", "10", app, timeout=30)
            d.docker("rm", app)
            app = start_app("1.1.0", V2_BAD)

            # What a pipeline runs: `sidewatch verify --wait`, here inside the sidecar's
            # own container (no shell needed: it is the image's binary).
            verify = d.docker(
                "exec", agent, "/usr/local/bin/sidewatch", "verify", "--version", "1.1.0",
                "--wait", "--timeout", "90s", timeout=120, check=False,
            )
            shown = f"exit {verify.returncode}\n{verify.stdout}{verify.stderr}"
            assert verify.returncode == 1, f"verify of a worse version should exit 1: {shown}"
            assert "1.1.0 (previous 1.0.0): fail" in verify.stdout, shown
        assert traffic.statuses[200] > 0 and traffic.statuses[500] > 0, traffic.statuses

        doc = requests.get(api + "/api/v1/deployments/1.1.0", timeout=5).json()
        assert (doc["version"], doc["previous"], doc["verdict"]) == ("1.1.0", "1.0.0", "fail"), doc
        failed = [c["name"] for c in doc["checks"] if c["verdict"] == "fail"]
        assert "error-ratio" in failed, doc["checks"]

        # Every line of the log so far reaches the sink once.
        def offsets_seen() -> list[tuple[str, int]]:
            return [(r["file"], r["offset"]) for _, r in lines_with_offsets(records_file)]

        def all_read() -> bool:
            return {o for _, o in offsets_seen()} >= {o for o, _ in lines_with_offsets(log_file)}

        wait_until(all_read, 30, lambda: f"every line of {log_file} in {records_file}")

        # SIGTERM: exit 0 within the grace period, checkpoints saved.
        started = time.monotonic()
        d.docker("stop", "-t", "15", agent, timeout=40)
        took = time.monotonic() - started
        state = d.inspect(agent)["State"]
        assert state["ExitCode"] == 0 and not state["OOMKilled"], (
            f"sidewatch exited {state['ExitCode']} on SIGTERM; output:\n{d.logs(agent)}"
        )
        assert took < GRACE + 2, f"`docker stop` took {took:.1f}s (grace {GRACE:g}s)"
        before = offsets_seen()
        assert len(before) == len(set(before)), "duplicate (file, offset) before the restart"

        # Restart on the same data volume: the app logs more; nothing is read twice, the
        # deployment history and its verdict are still there.
        d.docker("start", agent)
        wait_http(d, agent, api + "/readyz")
        r = requests.get(app_url + "/work", params={"n": 50}, timeout=30)
        assert r.status_code == 200, r.text
        wait_until(all_read, 30, lambda: f"the 50 new lines of {log_file} in {records_file}")
        after = wait_stable(offsets_seen, quiet=2, timeout=30, message=f"{records_file} to stop growing")
        dup = [k for k, n in Counter(after).items() if n > 1]
        assert not dup, f"{len(dup)} records read twice after the restart, e.g. {dup[:5]}"
        assert len(after) == len(lines_with_offsets(log_file)), (len(after), len(lines_with_offsets(log_file)))
        assert after[: len(before)] == before
        doc = requests.get(api + "/api/v1/deployments/1.1.0", timeout=5).json()
        assert doc["verdict"] == "fail", f"the verdict did not survive the restart: {doc}"

        d.docker("stop", "-t", "15", agent, timeout=40)
        assert d.inspect(agent)["State"]["ExitCode"] == 0, d.logs(agent)


@pytest.mark.timeout(1200)
def test_compose_brings_up_the_app_and_its_sidecar(tmp_path):
    """`docker-compose up` of the laptop stack's app and sidewatch services (the
    OpenTelemetry Collector and Mailpit images come from Docker Hub, which is not
    reachable here: those two services are validated by the config test only, and
    sidewatch runs without them — its exports and mail wait in its queues)."""
    require_prerequisites(compose=True)
    with Dockerd(tmp_path) as d:
        images = Images(d)
        sidewatch, app_image = images.sidewatch(), images.app()
        app_port, api_port = free_port(), free_port()
        project = f"sw{d.run_id}"
        env = {
            **d.env,
            "SIDEWATCH_IMAGE": sidewatch,
            "APP_IMAGE": app_image,
            "APP_PORT": f"127.0.0.1:{app_port}",
            "SIDEWATCH_PORT": f"127.0.0.1:{api_port}",
        }

        def compose(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
            r = subprocess.run(
                ["docker-compose", "-p", project, "-f", COMPOSE_FILE, *args],
                env=env, capture_output=True, text=True, timeout=timeout,
            )
            assert r.returncode == 0, f"docker-compose {' '.join(args)}: exit {r.returncode}\n{r.stdout}{r.stderr}"
            return r

        try:
            # Images built above from the same Dockerfiles; --no-deps: not the collector
            # and Mailpit (not pullable here).
            compose("up", "-d", "--no-build", "--no-deps", "app", "sidewatch")
            container = f"{project}_sidewatch_1"
            app_container = f"{project}_app_1"
            wait_http(d, app_container, f"http://127.0.0.1:{app_port}/health")
            wait_http(d, container, f"http://127.0.0.1:{api_port}/healthz")
            r = requests.get(f"http://127.0.0.1:{app_port}/work", params={"n": 25}, timeout=30)
            assert r.status_code == 200, r.text
            metrics = f"http://127.0.0.1:{api_port}/metrics"
            wait_until(
                lambda: metric(requests.get(metrics, timeout=5).text, "sidewatch_log_records_total", source="app") >= 25,
                30,
                lambda: "sidewatch to read the app's 25 records; /metrics: "
                + "\n".join(l for l in requests.get(metrics, timeout=5).text.splitlines() if "log_records" in l)
                + f"\nsidewatch output:\n{d.logs(container)}",
            )
            status = requests.get(f"http://127.0.0.1:{api_port}/api/v1/status", timeout=5)
            assert status.status_code == 200, status.text
            running(d, container)
        finally:
            down = subprocess.run(
                ["docker-compose", "-p", project, "-f", COMPOSE_FILE, "down", "-v", "--remove-orphans"],
                env=env, capture_output=True, text=True, timeout=120,
            )
        assert down.returncode == 0, down.stdout + down.stderr
        left = d.docker("ps", "-aq", "--filter", f"label=com.docker.compose.project={project}").stdout.split()
        assert not left, f"containers left after docker-compose down: {left}"

