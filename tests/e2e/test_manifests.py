"""The Kubernetes manifests of deploy/kubernetes, checked offline.

- Every file validates against the Kubernetes 1.30 API schemas with
  `kubernetes-validate --strict` (unknown fields fail), and the validator does reject
  an unknown field (so a pass means something).
- The sidewatch.yaml of the ConfigMap is a valid sidewatch config: the config volume is
  written out the way the kubelet lays it out (the projected volume's ConfigMap and
  Secret `items` at their paths), the environment is the sidecar container's `env`
  resolved against the Secret's values, and `sidewatch check -c` exits 0 on it; it also
  fails when the token's variable or a secret file is missing (so the check really
  reads them), and passes with a password full of YAML's special characters.
- The ConfigMap's rule files are exact copies of rules/python-service.yaml and
  dashboards/recording-rules.yaml.
- The Deployment: sidewatch is a native sidecar (an init container with `restartPolicy:
  Always`), runs `sidewatch:0.1.0` with the mounted config, both containers have the
  hardened securityContext (non-root, read-only root, no privilege escalation, every
  capability dropped, seccomp RuntimeDefault), liveness / readiness probes on
  /healthz and /readyz of port 9777, the API token comes from the Secret (and the SMTP
  and webhook secrets are the Secret's files, never values in the config), the logs and
  data_dir are emptyDirs, and the config's `api`, `data_dir`, `logs` and
  `baseline_from` agree with the pod (port, mounts, the peers' Service and its port).
- The pod's config runs: beside the real app, with only its absolute paths and ports
  moved to this machine, /healthz, /readyz and /metrics answer without a token (the
  kubelet sends none), the rest of the API wants the Secret's token, both rule files
  load, the health probe succeeds, and SIGTERM exits 0.
- The README describes each manifest.

Run: .venv/bin/python -m pytest tests/e2e/test_manifests.py -q -s  (needs target/debug/sidewatch).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import yaml

from harness import Process, StructlogApp, free_port, parse_prometheus, sidewatch_bin, wait_until

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "kubernetes"
BENCHMARKS = REPO / "BENCHMARKS.md"
VALIDATOR = Path(sys.executable).parent / "kubernetes-validate"
KUBE_VERSION = "1.30.0"
IMAGE = "sidewatch:0.1.0"
API_PORT = 9777

pytestmark = pytest.mark.timeout(120)


# -- loading ----------------------------------------------------------------------------


def manifest_files() -> list[Path]:
    files = sorted(p for p in K8S.iterdir() if p.suffix in (".yaml", ".yml", ".json"))
    assert files, f"no manifests in {K8S}"
    return files


def documents() -> list[dict]:
    docs = []
    for path in manifest_files():
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                docs.append(doc)
    return docs


def one(kind: str, name: str | None = None) -> dict:
    found = [d for d in documents() if d.get("kind") == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''} in {K8S}, found {len(found)}"
    return found[0]


def pod_spec() -> dict:
    return one("Deployment")["spec"]["template"]["spec"]


def sidecar() -> dict:
    matches = [c for c in pod_spec().get("initContainers", []) if c["image"] == IMAGE]
    assert len(matches) == 1, (
        f"expected exactly one init container running {IMAGE} (the native sidecar), found "
        f"{[c['name'] for c in pod_spec().get('initContainers', [])]}"
    )
    return matches[0]


def app_container() -> dict:
    containers = pod_spec()["containers"]
    assert len(containers) == 1, f"expected the app as the one regular container, got {[c['name'] for c in containers]}"
    return containers[0]


def config_volume() -> dict:
    """The volume holding the sidecar's config: a configMap volume, or a projected one
    with a configMap source (and the Secret's files beside it)."""
    mounts = {m["name"]: m for m in sidecar()["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec()["volumes"]}

    def has_config_map(v: dict) -> bool:
        return "configMap" in v or any("configMap" in src for src in v.get("projected", {}).get("sources", []))

    found = [volumes[n] for n in mounts if n in volumes and has_config_map(volumes[n])]
    assert len(found) == 1, f"the sidecar should mount one volume with the ConfigMap, mounts: {list(mounts)}"
    return found[0]


def volume_sources(volume: dict) -> list[dict]:
    """[{"configMap": …}, {"secret": …}] of a configMap, secret or projected volume."""
    if "projected" in volume:
        return volume["projected"]["sources"]
    return [{k: volume[k]} for k in ("configMap", "secret") if k in volume]


def config_map() -> dict:
    names = [src["configMap"]["name"] for src in volume_sources(config_volume()) if "configMap" in src]
    assert len(names) == 1, f"one ConfigMap in the config volume, found {names}"
    return one("ConfigMap", names[0])


def secret_values(name: str) -> dict[str, str]:
    secret = one("Secret", name)
    values = dict(secret.get("stringData") or {})
    assert values, f"Secret {name} has no stringData (placeholders the tests can check with)"
    return values


def mount_of(container: dict, volume_name: str) -> dict:
    found = [m for m in container.get("volumeMounts", []) if m["name"] == volume_name]
    assert len(found) == 1, f"{container['name']} does not mount {volume_name}: {container.get('volumeMounts')}"
    return found[0]


def config_path_in_pod() -> str:
    args = sidecar().get("args", [])
    assert "-c" in args, f"the sidecar should run `sidewatch run -c FILE`, args: {args}"
    return args[args.index("-c") + 1]


def sidecar_env() -> dict[str, str]:
    """The sidecar's environment as the kubelet builds it: literal values, and
    secretKeyRef resolved against the Secret in deploy/kubernetes."""
    env = {}
    for var in sidecar().get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
            continue
        ref = var["valueFrom"]["secretKeyRef"]
        values = secret_values(ref["name"])
        assert ref["key"] in values, f"Secret {ref['name']} has no key {ref['key']} (env {var['name']})"
        env[var["name"]] = values[ref["key"]]
    return env


def write_config_dir(tmp_path: Path) -> Path:
    """The config volume laid out under `tmp_path` as the kubelet lays out /etc/sidewatch:
    each source's items (the ConfigMap's keys, the Secret's) at their paths; returns the
    config file."""
    for src in volume_sources(config_volume()):
        kind = "configMap" if "configMap" in src else "secret"
        ref = src[kind]
        data = config_map()["data"] if kind == "configMap" else secret_values(ref["name"])
        items = ref.get("items") or [{"key": k, "path": k} for k in data]
        for item in items:
            assert item["key"] in data, f"the volume maps key {item['key']!r}, which {kind} {ref['name']} lacks"
            target = tmp_path / item["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(data[item["key"]])
    mount = mount_of(sidecar(), config_volume()["name"])["mountPath"].rstrip("/")
    in_pod = config_path_in_pod()
    assert in_pod.startswith(mount + "/"), f"-c {in_pod} is not under the config mount {mount}"
    path = tmp_path / in_pod[len(mount) + 1 :]
    assert path.is_file(), f"{in_pod} is not one of the config volume's items"
    return path


def pod_config() -> dict:
    text = config_map()["data"][Path(config_path_in_pod()).name]
    return yaml.safe_load(text)


def run_check(config: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SIDEWATCH_", "OTEL_"))}
    return subprocess.run(
        [str(sidewatch_bin()), "check", "-c", str(config)],
        env={**base, **env},
        cwd=config.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )


# -- schemas ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: p.name)
def test_manifest_validates_against_the_kubernetes_schemas(path: Path) -> None:
    assert VALIDATOR.exists(), f"{VALIDATOR} missing: pip install -r tests/requirements.txt"
    run = subprocess.run(
        [str(VALIDATOR), "--strict", "-k", KUBE_VERSION, str(path)],
        capture_output=True, text=True, timeout=90,
    )
    out = run.stdout + run.stderr
    assert run.returncode == 0, f"kubernetes-validate --strict -k {KUBE_VERSION} {path.name} failed:\n{out}"
    assert "passed" in out, f"kubernetes-validate validated nothing in {path.name}:\n{out}"


def test_the_validator_rejects_an_unknown_field(tmp_path: Path) -> None:
    deployment = one("Deployment")
    deployment["spec"]["template"]["spec"]["initContainers"][0]["restartPolicyy"] = "Always"
    bad = tmp_path / "deployment.yaml"
    bad.write_text(yaml.safe_dump(deployment))
    run = subprocess.run(
        [str(VALIDATOR), "--strict", "-k", KUBE_VERSION, str(bad)],
        capture_output=True, text=True, timeout=90,
    )
    assert run.returncode != 0, f"--strict accepted an unknown field:\n{run.stdout}{run.stderr}"


def test_yamllint_relaxed() -> None:
    yamllint = Path(sys.executable).parent / "yamllint"
    assert yamllint.exists(), "yamllint is missing from the venv: run tests/setup.sh (tests/requirements.txt)"
    run = subprocess.run([str(yamllint), "-d", "relaxed", str(K8S)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr


# -- the config inside the ConfigMap ------------------------------------------------------


def test_configmap_config_passes_sidewatch_check(tmp_path: Path) -> None:
    config = write_config_dir(tmp_path)
    env = sidecar_env()
    check = run_check(config, env)
    out = check.stdout + check.stderr
    print(out)
    assert check.returncode == 0, f"sidewatch check -c {config} exited {check.returncode}:\n{out}"
    # Both rule files were loaded (the glob is relative to the config file).
    assert "2 file(s)" in out and "python-service.yaml" in out and "recording-rules.yaml" in out, out
    # Every variable the config references comes from the container's env.
    uncommented = re.sub(r"(?m)(^|\s)#.*$", "", config.read_text())
    # (Only `${VAR}` without a default must be set.)
    referenced = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", uncommented))
    assert referenced, "the config references no secret from the environment"
    assert referenced <= set(env), f"variables without a value in the sidecar's env: {referenced - set(env)}"
    # ... and check really needs them: without one it fails, naming it.
    missing = sorted(referenced)[0]
    without = run_check(config, {k: v for k, v in env.items() if k != missing})
    assert without.returncode == 1, f"check passed without ${missing}:\n{without.stdout}{without.stderr}"
    assert missing in without.stdout + without.stderr
    # The `*_file` secrets are read from the Secret's files beside the config: without
    # one, check fails naming it; with a value full of YAML's special characters, it passes.
    files = re.findall(r"\b\w+_file:\s*([^\s,}]+)", uncommented)
    assert files, "the config reads no secret from a file"
    for rel in files:
        assert (config.parent / rel).is_file(), f"{rel} is not one of the Secret's projected items"
    secret_file = config.parent / files[0]
    kept = secret_file.read_text()
    secret_file.unlink()
    gone = run_check(config, env)
    assert gone.returncode == 1 and files[0] in gone.stdout + gone.stderr, gone.stdout + gone.stderr
    secret_file.write_text(kept)
    password = [f for f in files if "password" in f]
    assert password, f"the SMTP password should be a file: {files}"
    (config.parent / password[0]).write_text('p"a:s s\\w#o}r,d\n')
    tricky = run_check(config, env)
    assert tricky.returncode == 0, f"a password with quotes and colons broke the config:\n{tricky.stdout}{tricky.stderr}"


def test_configmap_rule_files_are_copies_of_the_repository_ones() -> None:
    data = config_map()["data"]
    for key, source in {
        "python-service.yaml": REPO / "rules" / "python-service.yaml",
        "recording-rules.yaml": REPO / "dashboards" / "recording-rules.yaml",
    }.items():
        assert key in data, f"the ConfigMap lacks {key}"
        assert data[key] == source.read_text(), (
            f"the ConfigMap's {key} differs from {source.relative_to(REPO)}: copy it again"
        )


def test_config_agrees_with_the_pod() -> None:
    config = pod_config()
    # The API on every interface, on the port the probes and the Service use.
    assert config["api"]["listen"] == f"0.0.0.0:{API_PORT}", config["api"]
    assert config["api"]["token"] == "${SIDEWATCH_TOKEN}", "api.token should come from the Secret's env var"
    # data_dir and the log paths are on the emptyDirs the sidecar mounts.
    volumes = {v["name"]: v for v in pod_spec()["volumes"]}
    mounts = {m["mountPath"].rstrip("/"): m for m in sidecar()["volumeMounts"]}
    data_mount = mounts.get(config["data_dir"].rstrip("/"))
    assert data_mount, f"data_dir {config['data_dir']} is not a mount of the sidecar: {list(mounts)}"
    assert "emptyDir" in volumes[data_mount["name"]], "data_dir should be an emptyDir (read-only root)"
    assert not data_mount.get("readOnly"), "data_dir must be writable"
    for pattern in config["logs"][0]["paths"]:
        log_dir = str(Path(pattern).parent)
        log_mount = mounts.get(log_dir)
        assert log_mount, f"the log glob {pattern} is not under a mount of the sidecar: {list(mounts)}"
        assert "emptyDir" in volumes[log_mount["name"]], f"{log_dir} should be an emptyDir shared with the app"
        app_mount = mount_of(app_container(), log_mount["name"])
        assert not app_mount.get("readOnly"), "the app must be able to write its logs"
    # The probe reaches the app's container port in the same pod.
    app_ports = {p["containerPort"] for p in app_container()["ports"]}
    probe_port = int(re.match(r"http://127\.0\.0\.1:(\d+)/", config["probes"][0]["url"]).group(1))
    assert probe_port in app_ports, f"the probe's port {probe_port} is not the app's {app_ports}"
    # baseline_from: the Service over the pods' sidecars, on the sidecar's port.
    peers = config["deployments"]["baseline_from"]
    assert peers, "baseline_from should name the sidecars' Service"
    m = re.match(r"http://([a-z0-9-]+)(?:\.[a-z0-9.-]+)?:(\d+)$", peers[0])
    assert m, f"baseline_from {peers[0]} is not http://SERVICE:PORT"
    service = one("Service", m.group(1))
    pod_labels = one("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert all(pod_labels.get(k) == v for k, v in service["spec"]["selector"].items()), (
        f"Service {m.group(1)} does not select the Deployment's pods"
    )
    port = [p for p in service["spec"]["ports"] if p["port"] == int(m.group(2))]
    assert port, f"Service {m.group(1)} has no port {m.group(2)}"
    target = port[0]["targetPort"]
    sidecar_ports = {p["name"]: p["containerPort"] for p in sidecar()["ports"]}
    assert target in (API_PORT, "sidewatch") and sidecar_ports.get("sidewatch") == API_PORT, (
        f"Service port {m.group(2)} targets {target}, the sidecar's API is {sidecar_ports}"
    )


# -- the Deployment -----------------------------------------------------------------------


def test_sidewatch_is_a_native_sidecar() -> None:
    c = sidecar()
    assert c.get("restartPolicy") == "Always", "the sidecar is an init container with restartPolicy: Always"
    assert c["image"] == IMAGE
    assert config_path_in_pod() == "/etc/sidewatch/sidewatch.yaml", config_path_in_pod()
    assert c["args"][0] == "run", c["args"]
    assert mount_of(c, config_volume()["name"]).get("readOnly") is True


@pytest.mark.parametrize("which", ["sidewatch", "app"])
def test_security_context(which: str) -> None:
    container = sidecar() if which == "sidewatch" else app_container()
    pod = pod_spec().get("securityContext", {})
    sc = container.get("securityContext")
    assert sc, f"{container['name']} has no securityContext"
    assert sc.get("runAsNonRoot") is True or pod.get("runAsNonRoot") is True
    assert sc.get("runAsNonRoot") is True, f"{container['name']}: runAsNonRoot"
    assert sc.get("readOnlyRootFilesystem") is True, f"{container['name']}: readOnlyRootFilesystem"
    assert sc.get("allowPrivilegeEscalation") is False, f"{container['name']}: allowPrivilegeEscalation"
    assert sc.get("privileged") in (None, False)
    assert sc.get("capabilities", {}).get("drop") == ["ALL"], f"{container['name']}: capabilities.drop"
    assert not sc.get("capabilities", {}).get("add"), f"{container['name']}: adds capabilities"
    seccomp = sc.get("seccompProfile") or pod.get("seccompProfile") or {}
    assert seccomp.get("type") == "RuntimeDefault", f"{container['name']}: seccompProfile"
    uid = sc.get("runAsUser", pod.get("runAsUser"))
    assert uid and uid != 0, f"{container['name']}: runAsUser {uid}"
    if which == "sidewatch":
        assert uid == 65532, "the image's user is 65532"
    assert pod_spec().get("automountServiceAccountToken") is False


def test_probes_hit_healthz_and_readyz_on_the_api_port() -> None:
    c = sidecar()
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}

    def target(probe: str) -> tuple[str, int]:
        assert probe in c, f"the sidecar has no {probe}"
        get = c[probe]["httpGet"]
        port = get["port"] if isinstance(get["port"], int) else ports[get["port"]]
        assert get.get("scheme", "HTTP") == "HTTP"
        assert not get.get("httpHeaders"), "/healthz and /readyz need no token: no headers"
        return get["path"], port

    assert target("livenessProbe") == ("/healthz", API_PORT)
    assert target("readinessProbe") == ("/readyz", API_PORT)
    if "startupProbe" in c:
        assert target("startupProbe")[1] == API_PORT


def test_token_and_secrets_come_from_the_secret() -> None:
    env = {v["name"]: v for v in sidecar().get("env", [])}
    assert "SIDEWATCH_TOKEN" in env, "the API token's env var"
    ref = env["SIDEWATCH_TOKEN"].get("valueFrom", {}).get("secretKeyRef")
    assert ref, "SIDEWATCH_TOKEN must come from a Secret (secretKeyRef), not a literal"
    secret = one("Secret", ref["name"])
    # No secret is a literal anywhere in the pod.
    for var in sidecar().get("env", []) + app_container().get("env", []):
        if re.search(r"TOKEN|PASSWORD|SECRET|WEBHOOK", var["name"]):
            assert "valueFrom" in var, f"{var['name']} is a literal in the Deployment"
    # The SMTP password and the webhook's URL and HMAC secret are files of that Secret,
    # projected beside the config: the config names them, never their values.
    projected = [src["secret"] for src in volume_sources(config_volume()) if "secret" in src]
    assert [p["name"] for p in projected] == [secret["metadata"]["name"]], projected
    paths = {item["path"] for item in projected[0]["items"]}
    receivers = pod_config()["alerting"]["receivers"]
    email = next(r["email"] for r in receivers if "email" in r)
    webhook = next(r["webhook"] for r in receivers if "webhook" in r)
    assert "password" not in email and email["password_file"] in paths, email
    assert "url" not in webhook and webhook["url_file"] in paths, webhook
    assert "hmac_secret" not in webhook and webhook["hmac_secret_file"] in paths, webhook
    # No Secret value is written in the ConfigMap.
    cm_text = yaml.safe_dump(config_map()["data"])
    for value in secret_values(secret["metadata"]["name"]).values():
        assert value not in cm_text, f"a Secret value ({value[:8]}…) is written in the ConfigMap"


def test_resources_are_set() -> None:
    for container in (sidecar(), app_container()):
        res = container.get("resources", {})
        assert res.get("requests", {}).get("memory"), f"{container['name']}: memory request"
        assert res.get("limits", {}).get("memory"), f"{container['name']}: memory limit"
    res = sidecar()["resources"]
    assert res["requests"].get("cpu") and res["limits"].get("cpu")

    def mib(q: str) -> float:
        m = re.fullmatch(r"(\d+)(Mi|Gi)", q)
        assert m, f"memory quantity {q} (write it in Mi or Gi)"
        return int(m.group(1)) * (1024 if m.group(2) == "Gi" else 1)

    def millicores(q: str) -> float:
        m = re.fullmatch(r"(\d+)(m?)", q)
        assert m, f"cpu quantity {q} (write it in m or whole cores)"
        return int(m.group(1)) * (1 if m.group(2) else 1000)

    assert mib(res["limits"]["memory"]) >= 2 * mib(res["requests"]["memory"]) >= 64
    # The requests cover what BENCHMARKS.md "Sidecar footprint" measured loaded (its
    # table: agent CPU in cores, RSS peak), and the limits are above both.
    section = BENCHMARKS.read_text().split("## Sidecar footprint", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (?:idle|\d+/s)[^|]*\|[^|]*\|[^|]*\| ([0-9.]+) \|[^|]*\| ([0-9.]+) MiB \|$", section, re.M)
    assert len(rows) >= 3, f"the footprint table of BENCHMARKS.md was not found: {rows}"
    cpu = max(float(c) for c, _ in rows)
    peak = max(float(p) for _, p in rows)
    assert millicores(res["requests"]["cpu"]) >= 1000 * cpu, (res["requests"], cpu)
    assert mib(res["requests"]["memory"]) >= peak, (res["requests"], peak)
    assert millicores(res["limits"]["cpu"]) >= 5 * 1000 * cpu and mib(res["limits"]["memory"]) >= 2 * peak


def test_readme_describes_every_manifest() -> None:
    readme = (K8S / "README.md").read_text()
    for path in manifest_files():
        assert path.name in readme, f"deploy/kubernetes/README.md does not mention {path.name}"
    for needle in ("alertmanagers", "restartPolicy: Always", "baseline_from", "emptyDir"):
        assert needle in readme, f"README should explain {needle}"


# -- the pod's config, running --------------------------------------------------------------


@pytest.mark.timeout(120)
def test_the_pods_config_runs(tmp_path: Path) -> None:
    """The ConfigMap's config as the sidecar runs it, beside the real app: only the pod's
    absolute paths, its listen address and the app's port are moved to this machine's
    (data_dir, the log directory, 127.0.0.1 on a free port). The kubelet's probes and
    Prometheus get /healthz, /readyz and /metrics without a token; the rest of the API
    wants the Secret's token; the probe reaches the app; SIGTERM exits 0."""
    config = write_config_dir(tmp_path / "etc")
    port = free_port()
    app = StructlogApp(tmp_path, version="1.4.3")
    text = config.read_text()
    for pod_value, here in {
        f"0.0.0.0:{API_PORT}": f"127.0.0.1:{port}",
        "/var/lib/sidewatch": str(tmp_path / "data"),
        "/var/log/app/": str(app.log_path.parent) + "/",
        "http://127.0.0.1:8000/health": app.url + "/health",
    }.items():
        assert pod_value in text, f"the pod's config no longer has {pod_value!r}: update this test"
        text = text.replace(pod_value, here)
    config.write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIDEWATCH_", "OTEL_"))}
    agent = Process(
        "sidewatch",
        [sidewatch_bin(), *sidecar()["args"][:-1], config],  # `run -c CONFIG`
        log_dir=tmp_path,
        cwd=tmp_path,
    )
    # Exactly the container's environment (Process starts from this one's).
    agent.env = {**env, **sidecar_env(), "SIDEWATCH_CONFIG": str(config)}
    api = f"http://127.0.0.1:{port}"
    agent.start()
    agent.wait_http(api + "/readyz", timeout=30)
    token = sidecar_env()["SIDEWATCH_TOKEN"]
    for path in ("/healthz", "/readyz", "/metrics"):
        r = requests.get(api + path, timeout=5)
        assert r.status_code == 200, f"{path} answered {r.status_code} without a token (the kubelet sends none)"
    r = requests.get(api + "/api/v1/status", timeout=5)
    assert r.status_code == 401, f"/api/v1/status answered {r.status_code} without the token"
    r = requests.get(api + "/api/v1/status", headers={"Authorization": f"Bearer {token}"}, timeout=5)
    assert r.status_code == 200, f"/api/v1/status answered {r.status_code} with the Secret's token"
    # Both rule files of the ConfigMap run (the glob relative to the config file).
    files = {Path(g["file"]).name for g in r.json()["rule_groups"]}
    assert files == {"python-service.yaml", "recording-rules.yaml"}, f"rule groups from {files}"

    def probe_ok() -> bool:
        samples = parse_prometheus(requests.get(api + "/metrics", timeout=5).text)
        return any(n == "probe_success" and l.get("probe") == "health" and v == 1 for n, l, v in samples)

    wait_until(probe_ok, 30, lambda: f"probe_success{{probe=\"health\"}} 1 in /metrics:\n{agent.tail()}")
    code = agent.terminate(timeout=20)
    assert code == 0, f"sidewatch exited {code} on SIGTERM:\n{agent.tail()}"
    app.stop()
