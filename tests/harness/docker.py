"""A private Docker engine and the images of the container tests, made on this machine.

No registry is reachable from the test machines, and the `docker` there is only a
client. So:

- `Dockerd` runs Debian's engine (``/usr/sbin/dockerd``) on a unix socket of its own, with
  no default bridge and no iptables rules, stopped by PID (then its leftover mounts are
  unmounted). Its data root lives in the per-machine cache, so built layers survive
  between runs; a lock file keeps two test runs from sharing it at the same time.
- `Images` makes the base images itself: a Debian bookworm rootfs from ``debootstrap
  --variant=minbase`` (cached as a tarball, keyed by `CACHE_VERSION` and the package
  list) → ``docker import``, plus this machine's CA bundle (its egress may re-sign TLS)
  → the *base* (the app's Python, the pause container); the base plus the host's own
  Rust toolchain (``rustc --print sysroot``, no docs) → the *builder*; then
  ``deploy/Dockerfile`` with ``BUILDER_IMAGE=<builder>`` → the sidewatch image, and
  ``deploy/compose/app.Dockerfile`` with ``PYTHON_IMAGE=<base>`` → the app image.
  Crates and wheels come from crates.io / PyPI during the build (``--network host``).

Every container, volume and network a test makes carries the label
``sidewatch-test=<run id>``; `Dockerd.close()` removes them all before stopping the
engine, also when the test failed.

Missing prerequisites (not root, no dockerd / docker / debootstrap / docker-compose)
fail the test with what to install: `require_prerequisites`.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Sequence

from .process import Process, wait_until

REPO = Path(__file__).resolve().parents[2]

# Bump to throw away every cached rootfs and image (the tags below include it).
CACHE_VERSION = "1"
CACHE_DIR = Path(
    os.environ.get("SIDEWATCH_TEST_CACHE") or Path.home() / ".cache" / "sidewatch-tests"
)
SUITE = "bookworm"
# The base image's packages: gcc + libc6-dev for the builder (cargo's C dependencies,
# the linker), python3 + its venv module for the app, CA certificates for everyone.
INCLUDE = ("ca-certificates", "gcc", "libc6-dev", "python3", "python3-venv")

DOCKERD = "/usr/sbin/dockerd"
DEBOOTSTRAP = "/usr/sbin/debootstrap"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
LABEL = "sidewatch-test"


def _docker_client() -> str | None:
    return shutil.which("docker") or (
        "/usr/local/bin/docker" if os.access("/usr/local/bin/docker", os.X_OK) else None
    )


def require_prerequisites(compose: bool = False) -> None:
    """Fail (not skip) with what is missing: these tests are part of CI."""
    problems = []
    if os.geteuid() != 0:
        problems.append("the container tests run their own dockerd and need root")
    if not os.access(DOCKERD, os.X_OK):
        problems.append(f"{DOCKERD} not found (apt-get install docker.io)")
    if _docker_client() is None:
        problems.append("no `docker` client on PATH (apt-get install docker.io)")
    if not os.access(DEBOOTSTRAP, os.X_OK):
        problems.append(f"{DEBOOTSTRAP} not found (apt-get install debootstrap)")
    if compose and shutil.which("docker-compose") is None:
        problems.append("no `docker-compose` on PATH (apt-get install docker-compose)")
    if shutil.which("rustc") is None:
        problems.append("no `rustc` on PATH: the builder image copies the host's toolchain")
    if problems:
        raise AssertionError(
            "container test prerequisites missing (tests/setup.sh installs them):\n  - "
            + "\n  - ".join(problems)
        )


def debian_mirror() -> str:
    """The Debian mirror this machine's apt uses (deb822 or one-line sources)."""
    files = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for f in files:
        try:
            text = f.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            line = line.split("#", 1)[0].strip()
            url = None
            if line.startswith("URIs:"):
                url = line.split()[1] if len(line.split()) > 1 else None
            elif line.startswith("deb ") and "[" not in line.split()[1]:
                url = line.split()[1]
            elif line.startswith("deb ["):
                rest = line.split("]", 1)[1].split()
                url = rest[0] if rest else None
            if url and url.rstrip("/").endswith("/debian"):
                return url
    return "http://deb.debian.org/debian"


def _digest(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p if isinstance(p, bytes) else p.encode())
        h.update(b"\0")
    return h.hexdigest()[:12]


def _run(argv: Sequence[str | os.PathLike], timeout: float, what: str, **kw) -> subprocess.CompletedProcess:
    """Run a setup command; fail with its output when it fails or overruns."""
    argv = [str(a) for a in argv]
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"")[-3000:] if isinstance(e.stdout, bytes) else (e.stdout or "")[-3000:]
        raise AssertionError(f"{what}: `{' '.join(argv)}` still running after {timeout:g}s\n{out}") from None
    if r.returncode != 0:
        raise AssertionError(
            f"{what}: `{' '.join(argv)}` exited {r.returncode}\n"
            f"--- stdout (tail):\n{r.stdout[-4000:]}\n--- stderr (tail):\n{r.stderr[-4000:]}"
        )
    return r


def _mounts_under(*roots: Path) -> list[str]:
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if any(point == str(r) or point.startswith(str(r) + "/") for r in roots):
                out.append(point)
    return out


def _unmount_under(*roots: Path) -> None:
    # Deepest first; lazy, so a busy leftover cannot wedge the cleanup.
    for point in sorted(_mounts_under(*roots), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)


class Dockerd:
    """A Docker engine of the test's own: `dockerd` on a private socket.

    `data_root` defaults to the per-machine cache (layers survive between runs); the
    exec root (runtime state, containerd's sockets, network namespaces) is a fresh short
    directory under /tmp, removed on `close()`.
    """

    def __init__(self, log_dir: str | os.PathLike, data_root: Path | None = None, start_timeout: float = 60):
        require_prerequisites()
        self.data_root = Path(data_root or CACHE_DIR / "docker")
        self.data_root.mkdir(parents=True, exist_ok=True)
        self.run_id = uuid.uuid4().hex[:8]
        self._lock = self._take_lock()
        self._clean_previous()
        # Short: unix socket paths are limited to 108 bytes.
        self.exec_root = Path(tempfile.mkdtemp(prefix="swd-", dir="/tmp"))
        (CACHE_DIR / "exec-root").write_text(str(self.exec_root))
        self.socket = self.exec_root / "docker.sock"
        self.env = {**os.environ, "DOCKER_HOST": f"unix://{self.socket}"}
        # The classic builder: this engine has BuildKit, but the client has no buildx.
        self.env.pop("DOCKER_BUILDKIT", None)
        self.env["DOCKER_BUILDKIT"] = "0"
        self.client = _docker_client()
        self.process = Process(
            "dockerd",
            [
                DOCKERD, "--bridge=none", "--iptables=false", "--ip-masq=false",
                "-H", f"unix://{self.socket}",
                "--data-root", self.data_root,
                "--exec-root", self.exec_root,
                "--pidfile", self.exec_root / "dockerd.pid",
            ],
            log_dir=log_dir,
        )
        self.process.start()
        try:
            self._wait_ready(start_timeout)
        except BaseException:
            self.close()
            raise

    # -- lifecycle -------------------------------------------------------------------

    def _take_lock(self):
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        f = open(CACHE_DIR / "dockerd.lock", "w")

        def locked() -> bool:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                return False

        wait_until(
            locked, 900,
            f"the lock on {CACHE_DIR}/dockerd.lock (another test run uses the cached docker data root)",
            interval=0.5,
        )
        return f

    def _clean_previous(self) -> None:
        """A run killed before its cleanup leaves its exec root's mounts behind."""
        marker = CACHE_DIR / "exec-root"
        if marker.exists():
            old = Path(marker.read_text().strip())
            if old.name.startswith("swd-"):
                _unmount_under(old)
                shutil.rmtree(old, ignore_errors=True)
        _unmount_under(self.data_root)

    def _wait_ready(self, timeout: float) -> None:
        last = ["no answer"]

        def ready() -> bool:
            if not self.process.running:
                raise AssertionError(
                    f"dockerd exited with {self.process.returncode} while starting:\n{self.process.tail(40)}"
                )
            r = subprocess.run(
                [self.client, "info", "--format", "{{.ServerVersion}}"],
                env=self.env, capture_output=True, text=True, timeout=20,
            )
            last[0] = (r.stdout + r.stderr).strip()[-300:]
            return r.returncode == 0

        wait_until(
            ready, timeout,
            lambda: f"`docker info` to answer on {self.socket} (last: {last[0]}); dockerd:\n{self.process.tail(20)}",
            interval=0.25,
        )

    def close(self) -> None:
        """Remove this run's containers, volumes and networks, stop dockerd (SIGTERM by
        PID, SIGKILL after 30s), unmount what it left, drop the exec root. Never raises."""
        try:
            if self.process.running:
                for kind, ls in (
                    ("container", ["ps", "-aq"]),
                    ("network", ["network", "ls", "-q"]),
                    ("volume", ["volume", "ls", "-q"]),
                ):
                    ids = self.docker(*ls, "--filter", f"label={LABEL}={self.run_id}", check=False, timeout=30).stdout.split()
                    if ids:
                        rm = ["rm", "-f", "-v"] if kind == "container" else [kind, "rm"]
                        self.docker(*rm, *ids, check=False, timeout=60)
        except Exception:  # noqa: BLE001 - cleanup goes on regardless
            pass
        try:
            if self.process.running:
                self.process.terminate(timeout=30)
        except AssertionError:
            pass
        finally:
            self.process.stop()
            _unmount_under(self.exec_root, self.data_root)
            shutil.rmtree(self.exec_root, ignore_errors=True)
            try:
                fcntl.flock(self._lock, fcntl.LOCK_UN)
                self._lock.close()
            except (OSError, ValueError):
                pass

    def __enter__(self) -> "Dockerd":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the client --------------------------------------------------------------------

    def docker(
        self,
        *args: str | os.PathLike,
        timeout: float = 60,
        check: bool = True,
        input: str | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess:
        """`docker ARGS` against this engine; with `check`, fail on a non-zero exit
        with the command's output."""
        argv = [self.client, *[str(a) for a in args]]
        try:
            r = subprocess.run(
                argv, env={**self.env, **(env or {})}, capture_output=True, text=True,
                timeout=timeout, input=input,
            )
        except subprocess.TimeoutExpired:
            raise AssertionError(f"`docker {' '.join(argv[1:])}` still running after {timeout:g}s") from None
        if check and r.returncode != 0:
            raise AssertionError(
                f"`docker {' '.join(argv[1:])}` exited {r.returncode}\n"
                f"--- stdout:\n{r.stdout[-4000:]}\n--- stderr:\n{r.stderr[-4000:]}"
            )
        return r

    def labels(self) -> list[str]:
        """`--label` arguments that mark an object as this run's (for `close`)."""
        return ["--label", f"{LABEL}={self.run_id}"]

    def name(self, what: str) -> str:
        return f"sw-{self.run_id}-{what}"

    def inspect(self, obj: str, kind: str = "container") -> dict[str, Any]:
        return json.loads(self.docker(kind, "inspect", obj).stdout)[0]

    def has_image(self, tag: str) -> bool:
        return self.docker("image", "inspect", tag, check=False).returncode == 0

    def logs(self, container: str, tail: int = 80) -> str:
        r = self.docker("logs", "--tail", str(tail), container, check=False)
        return (r.stdout + r.stderr)[-8000:]

    def volume_path(self, volume: str) -> Path:
        """Where a local volume's files are on the host (we are root)."""
        return Path(self.inspect(volume, "volume")["Mountpoint"])


class Images:
    """The images of the container tests, made (or found in the cached data root) on
    `dockerd`. Each property builds once; tags carry a digest of their inputs, so a
    change of toolchain, package list or CA bundle makes new ones."""

    SIDEWATCH = "sidewatch-test/sidewatch:latest"
    APP = "sidewatch-test/example-app:latest"
    BUILD_STAGE = "sidewatch-test/sidewatch-build:latest"

    def __init__(self, dockerd: Dockerd):
        self.d = dockerd
        self.timings: dict[str, float] = {}

    # -- base: debootstrap → import → + CA bundle -----------------------------------

    def base(self) -> str:
        ca = HOST_CA_BUNDLE.read_bytes() if HOST_CA_BUNDLE.exists() else b""
        key = _digest(CACHE_VERSION, SUITE, *INCLUDE)
        tag = f"sidewatch-test/debian:{SUITE}-{key}-{_digest(key, ca)}"
        if self.d.has_image(tag):
            return tag
        started = time.monotonic()
        rootfs_tag = f"sidewatch-test/debian-rootfs:{SUITE}-{key}"
        if not self.d.has_image(rootfs_tag):
            tarball = self._rootfs_tarball(key)
            self.d.docker("import", tarball, rootfs_tag, timeout=300)
        with tempfile.TemporaryDirectory(dir=CACHE_DIR) as ctx:
            # This machine's trust roots (the egress may re-sign TLS), for apt, pip and
            # cargo in the builds; and the variables pip and cargo read them from.
            (Path(ctx) / "ca-certificates.crt").write_bytes(ca)
            (Path(ctx) / "Dockerfile").write_text(
                f"FROM {rootfs_tag}\n"
                + ("COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt\n" if ca else "")
                + "ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"
                " PIP_CERT=/etc/ssl/certs/ca-certificates.crt"
                " CARGO_HTTP_CAINFO=/etc/ssl/certs/ca-certificates.crt"
                " PIP_DISABLE_PIP_VERSION_CHECK=1\n"
            )
            self.d.docker("build", "-q", "-t", tag, ctx, timeout=300)
        self.timings["base"] = time.monotonic() - started
        return tag

    def _rootfs_tarball(self, key: str) -> Path:
        tarball = CACHE_DIR / f"debian-{SUITE}-minbase-{key}.tar"
        if tarball.exists():
            return tarball
        for old in CACHE_DIR.glob(f"debian-{SUITE}-minbase-*.tar"):
            old.unlink()  # an older package list or CACHE_VERSION
        started = time.monotonic()
        with tempfile.TemporaryDirectory(dir=CACHE_DIR, prefix="rootfs-") as tmp:
            rootfs = Path(tmp) / "rootfs"
            _run(
                [DEBOOTSTRAP, "--variant=minbase", f"--include={','.join(INCLUDE)}",
                 SUITE, rootfs, debian_mirror()],
                timeout=600, what="debootstrap of the base image",
            )
            # Empty the apt caches the image does not need.
            for sub in ("var/cache/apt/archives", "var/lib/apt/lists"):
                for p in (rootfs / sub).glob("*"):
                    if p.is_file():
                        p.unlink()
            partial = tarball.with_suffix(".tar.partial")
            _run(["tar", "-C", rootfs, "--numeric-owner", "-cf", partial, "."], timeout=300, what="tar of the rootfs")
            partial.rename(tarball)
        self.timings["debootstrap"] = time.monotonic() - started
        return tarball

    # -- builder: base + the host's Rust toolchain ----------------------------------

    def builder(self) -> str:
        base = self.base()
        sysroot = Path(_run(["rustc", "--print", "sysroot"], 30, "rustc --print sysroot").stdout.strip())
        version = _run([sysroot / "bin" / "rustc", "-V"], 30, "rustc -V").stdout.strip()
        if not (sysroot / "bin" / "cargo").exists():
            raise AssertionError(f"no cargo in the toolchain at {sysroot} (the builder image copies it)")
        tag = f"sidewatch-test/rust:{version.split()[1]}-{_digest(version, base)}"
        if self.d.has_image(tag):
            return tag
        started = time.monotonic()
        with tempfile.TemporaryDirectory(dir=CACHE_DIR, prefix="rust-ctx-") as ctx:
            rust = Path(ctx) / "rust"
            rust.mkdir()
            for part in ("bin", "lib", "libexec", "etc"):
                src = sysroot / part
                if src.exists():
                    # Hard links when the cache shares the toolchain's filesystem.
                    _run(["cp", "-al" if _same_fs(src, Path(ctx)) else "-a", src, rust / part], 300, "copy of the toolchain")
            (Path(ctx) / "Dockerfile").write_text(
                f"FROM {base}\n"
                "COPY rust /usr/local/rust\n"
                "ENV PATH=/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
                " CARGO_HOME=/usr/local/cargo\n"
                "RUN rustc -V && cargo -V\n"
            )
            self.d.docker("build", "-q", "-t", tag, ctx, timeout=600)
        self.timings["builder"] = time.monotonic() - started
        return tag

    # -- the images under test ------------------------------------------------------

    def sidewatch(self) -> str:
        """deploy/Dockerfile on the local builder; the classic builder's layer cache in
        the data root makes an unchanged rebuild take seconds, a source change only
        recompile the crate (the dependency layer stays)."""
        builder = self.builder()
        started = time.monotonic()
        build = [
            "build", "--network", "host", "-f", REPO / "deploy" / "Dockerfile",
            "--build-arg", f"BUILDER_IMAGE={builder}", "--build-arg", "REVISION=test",
        ]
        out = self.d.docker(*build, "-t", self.SIDEWATCH, REPO, timeout=1200).stdout
        # Tag the build stage's last layer: the classic builder leaves it untagged, and
        # pruning the dangling images of superseded builds (to keep the cache's disk use
        # flat) would otherwise take the whole stage — the compiled dependencies — with it.
        stage = _build_stage_image(out)
        if stage:
            self.d.docker("tag", stage, self.BUILD_STAGE)
            self.d.docker("image", "prune", "-f", timeout=120)
        self.timings["sidewatch"] = time.monotonic() - started
        return self.SIDEWATCH

    def app(self) -> str:
        base = self.base()
        started = time.monotonic()
        self.d.docker(
            "build", "--network", "host", "-f", REPO / "deploy" / "compose" / "app.Dockerfile",
            "--build-arg", f"PYTHON_IMAGE={base}",
            "-t", self.APP, REPO / "tests" / "app",
            timeout=600,
        )
        self.timings["app"] = time.monotonic() - started
        return self.APP


def _build_stage_image(output: str) -> str | None:
    """The image id of the first stage's last step, from the classic builder's output
    (``Step N/M : FROM …`` headers, `` ---> <id>`` after each step)."""
    lines = output.splitlines()
    froms = [i for i, line in enumerate(lines) if re.match(r"Step \d+/\d+ : FROM ", line)]
    if len(froms) < 2:
        return None
    for line in reversed(lines[: froms[-1]]):
        m = re.match(r" ---> ([0-9a-f]{12,})$", line)
        if m:
            return m.group(1)
    return None


def _same_fs(a: Path, b: Path) -> bool:
    return os.stat(a).st_dev == os.stat(b).st_dev
