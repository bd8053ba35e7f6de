"""A whole cluster on this machine: nginx from Debian's package in front of two web nodes with their
signers, a Celery worker and beat, on PostgreSQL, Redis and S3 (the distributed mode's).

nginx runs the operator's file, deploy/nginx.conf, changed only where a machine without Docker
differs from the compose network (`nginx_conf_for_harness`): where it listens, which addresses
each upstream lists, where it keeps its temporary files, and the loopback address it connects to
the nodes from (127.0.0.2, so the nodes trust X-Forwarded-For from nginx alone, TRUSTED_PROXIES,
while a test talking to a node directly from 127.0.0.1 is not believed). It runs in the
foreground (`daemon off;`) without privileges (as `nobody` when started by root), with its
prefix, configuration, pid file and logs in a temporary directory.

`Cluster` offers what tests use of a LiveServer (url, port, env, manage, log_text, signers), so a
fixture can hand either to the same test. `make cluster` runs `python -m tests.harness.cluster`
under tests/harness/distributed.py for people (docs/cluster.md).
"""

from __future__ import annotations

import argparse
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping
from pathlib import Path

from tests.harness.live import REPO, LiveServer, distributed
from tests.harness.ports import free_port, wait_for_port

DEPLOY_NGINX_CONF = REPO / "deploy" / "nginx.conf"
# nginx connects to the nodes from this loopback address; the nodes trust it and only it.
PROXY_ADDRESS = "127.0.0.2"
# nginx's temporary files, compiled into Debian's package under /var/lib/nginx (not ours to write).
TEMP_PATHS = ("client_body_temp_path", "proxy_temp_path", "fastcgi_temp_path", "uwsgi_temp_path", "scgi_temp_path")
UPSTREAM = re.compile(r"^(\s*)upstream (\w+) \{\n(.*?)^\s*\}", re.S | re.M)
UPSTREAM_SERVER = re.compile(r"^(\s*)server \S+(.*);\n", re.M)


def nginx_conf_for_harness(
    conf: str, *, listen: str, upstreams: Mapping[str, list[str]], default: list[str] | None = None,
    temp_dir: Path, proxy_address: str = PROXY_ADDRESS,
) -> str:
    """deploy/nginx.conf for this machine: each upstream's servers replaced by the addresses given for
    it (or `default`, for an upstream the harness does not know yet), keeping each server's
    parameters (max_fails, ...). Every change must find its anchor, so a reworked deploy file fails
    here loudly instead of being tested half-applied."""

    def one_upstream(match: re.Match) -> str:
        indent, name, body = match.groups()
        addresses = upstreams.get(name, default)
        if not addresses:
            raise ValueError(f"deploy/nginx.conf's upstream {name} has no harness addresses")
        servers = list(UPSTREAM_SERVER.finditer(body))
        if not servers:
            raise ValueError(f"deploy/nginx.conf's upstream {name} lists no server")
        server_indent, parameters = servers[0].groups()
        lines = "".join(f"{server_indent}server {address}{parameters};\n" for address in addresses)
        body = UPSTREAM_SERVER.sub("", body)
        return f"{indent}upstream {name} {{\n{lines}{body}{indent}}}"

    conf, count = UPSTREAM.subn(one_upstream, conf)
    if not count:
        raise ValueError("deploy/nginx.conf has no upstream block")
    conf, count = re.subn(r"^(\s*)listen 80;$", rf"\1listen {listen};", conf, flags=re.M)
    if count != 1:
        raise ValueError(f"deploy/nginx.conf must have one 'listen 80;', found {count}")
    harness = "".join(f"    {name} {temp_dir / name.removesuffix('_temp_path')};\n" for name in TEMP_PATHS)
    harness += f"    proxy_bind {proxy_address};   # the address the nodes' TRUSTED_PROXIES lists\n"
    conf, count = re.subn(r"^http \{\n", lambda m: m.group(0) + "    # harness (tests/harness/cluster.py):\n" + harness, conf, flags=re.M)
    if count != 1:
        raise ValueError("deploy/nginx.conf must have one top-level 'http {'")
    return conf


class Nginx:
    """Debian's nginx in the foreground, without privileges, in a temporary prefix of its own."""

    def __init__(self, upstreams: Mapping[str, list[str]], *, default: list[str] | None = None, port: int | None = None):
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        if not os.path.exists(binary):
            raise RuntimeError("nginx is not installed: apt-get install -y nginx (the cluster harness runs Debian's)")
        self.binary = binary
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # Not under pytest's 0700 tmp_path: nginx's workers (and, when we are root, nginx itself)
        # run as nobody and must reach their files.
        self.prefix = Path(tempfile.mkdtemp(prefix="hp-nginx-"))
        self.conf_path = self.prefix / "nginx.conf"
        self.log_path = self.prefix / "nginx.log"  # stdout and stderr: the access log and errors
        self.conf_path.write_text(
            nginx_conf_for_harness(
                DEPLOY_NGINX_CONF.read_text(), listen=f"127.0.0.1:{self.port}", upstreams=upstreams, default=default,
                temp_dir=self.prefix,
            )
        )
        self.process: subprocess.Popen | None = None
        self._user = pwd.getpwnam("nobody") if os.geteuid() == 0 else None

    def argv(self) -> list[str]:
        return [
            self.binary, "-p", f"{self.prefix}/", "-c", str(self.conf_path), "-e", str(self.prefix / "error.log"),
            "-g", f"daemon off; pid {self.prefix / 'nginx.pid'};",
        ]  # fmt: skip

    def start(self) -> Nginx:
        log = open(self.log_path, "wb")
        kwargs = {}
        if self._user is not None:
            for path in (self.prefix, self.conf_path, self.log_path):
                os.chown(path, self._user.pw_uid, self._user.pw_gid)
            kwargs = {"user": self._user.pw_uid, "group": self._user.pw_gid, "extra_groups": []}
        # Its access log is /dev/stdout (deploy/nginx.conf), reopened by path: the file must be its own.
        self.process = subprocess.Popen(self.argv(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **kwargs)
        log.close()
        try:
            wait_for_port(self.port, timeout=20, process=self.process)
        except (RuntimeError, TimeoutError) as failed:
            raise RuntimeError(f"nginx did not start: {failed}\n{self.log_text()}") from failed
        return self

    def log_text(self) -> str:
        return "".join(p.read_text(errors="replace") for p in (self.log_path, self.prefix / "error.log") if p.exists())

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)  # graceful: finish open requests, then exit
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class ClusterSigners:
    """The nodes' signers as one: signer `i` is killed or restarted on every node at once."""

    def __init__(self, nodes: list[LiveServer]):
        self.nodes = nodes

    @property
    def paths(self) -> list[str]:
        return self.nodes[0].signers.paths

    def kill(self, index: int) -> None:
        for node in self.nodes:
            node.signers.kill(index)

    def start(self, index: int | None = None) -> ClusterSigners:
        for node in self.nodes:
            node.signers.start(index)
        return self

    def log_text(self) -> str:
        return "".join(node.signers.log_text() for node in self.nodes)


class Cluster:
    """nginx, N web nodes sharing one database, secrets and Redis, a Celery worker and beat.

    Needs the distributed mode (tests/harness/distributed.py sets DATABASE_URL, REDIS_URL, S3_*).
    """

    def __init__(
        self, workdir: Path, *, nodes: int = 2, extra_env: Mapping[str, str] | None = None, signers: int = 1,
        workers: int = 1, port: int | None = None, celery: bool = True,
    ):
        if not distributed():
            raise RuntimeError("the cluster needs the distributed mode: run it under tests.harness.distributed")
        self.workdir = workdir
        self.celery = celery
        shared = {
            "TRUSTED_PROXIES": f"{PROXY_ADDRESS}/32",
            "CELERY_QUEUE": f"hp-cluster-{uuid.uuid4().hex[:8]}",  # never another run's tasks
            **(extra_env or {}),
        }
        first = LiveServer(workdir / "node1", extra_env={**shared, "NODE_NAME": "node1"}, signers=signers, workers=workers)
        self.nodes = [first] + [
            LiveServer(workdir / f"node{i}", extra_env={**shared, **first.peer_env(), "NODE_NAME": f"node{i}"},
                       signers=signers, workers=workers)  # fmt: skip
            for i in range(2, nodes + 1)
        ]
        self.nginx = Nginx({"homepocket_web": [f"127.0.0.1:{node.port}" for node in self.nodes]},
                           default=[f"127.0.0.1:{node.port}" for node in self.nodes], port=port)  # fmt: skip
        self.url, self.port = self.nginx.url, self.nginx.port
        self.signers = ClusterSigners(self.nodes)
        self.celery_processes: dict[str, subprocess.Popen] = {}

    @property
    def env(self) -> dict[str, str]:
        """The first node's environment: management commands and Celery run with it."""
        return self.nodes[0].env

    def start(self, *, setup: list[list[str]] = ()) -> Cluster:
        """Migrate once (the first node) and run `setup`; then start the other nodes, the worker and
        beat side by side; nginx last, once every node answers."""
        try:
            self.nodes[0].start(setup=[*setup, ["sync_periodic_tasks"]])
            for node in self.nodes[1:]:
                node.start(migrate=False, wait=False)
            if self.celery:
                self._start_celery("worker", ["worker", "--concurrency", "1", "--without-gossip", "--without-mingle"])
                self._start_celery("beat", ["beat", "--pidfile=", "--schedule", str(self.workdir / "beat-schedule")])
            for node in self.nodes[1:]:
                wait_for_port(node.port, timeout=60, process=node.process)
            self._wait_celery({"worker": "ready.", "beat": "beat: Starting"})
            self.nginx.start()
            self.wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_celery(self, name: str, args: list[str]) -> None:
        with open(self.workdir / f"{name}.log", "wb") as log:
            self.celery_processes[name] = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "homepocket", *args, "--loglevel", "INFO"],
                cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip

    def _wait_celery(self, ready_lines: dict[str, str], timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        for name, process in self.celery_processes.items():
            log_path = self.workdir / f"{name}.log"
            while ready_lines[name] not in log_path.read_text(errors="replace"):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"celery {name} did not start:\n{log_path.read_text(errors='replace')[-3000:]}")
                time.sleep(0.1)

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Every node's /health answers 200 directly, and /ready answers 200 through nginx."""
        import httpx

        for node in self.nodes:
            node.wait_healthy(timeout)
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{self.url}/ready", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.url}/ready is not 200 through nginx:\n{self.nginx.log_text()[-3000:]}")
            time.sleep(0.1)

    def manage(self, *args: str) -> str:
        return self.nodes[0].manage(*args)

    def log_text(self) -> str:
        """Every node's log: what a test looks for may have happened on any of them."""
        return "".join(node.log_text() for node in self.nodes)

    def celery_log_text(self) -> str:
        return "".join((self.workdir / f"{name}.log").read_text(errors="replace") for name in self.celery_processes)

    def stop(self) -> None:
        """nginx, the Celery processes, the later nodes, then the first (which drops the database)."""
        self.nginx.stop()
        if self.nginx.log_path.exists():
            shutil.copy(self.nginx.log_path, self.workdir / "nginx.log")  # the prefix is removed below
        for process in self.celery_processes.values():
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        for node in reversed(self.nodes):
            node.stop()
        shutil.rmtree(self.nginx.prefix, ignore_errors=True)


def server_kinds(*single: str) -> list[str]:
    """A server fixture's params: the single-node kinds given, and "cluster" in the distributed run."""
    return [*single, "cluster"] if distributed() else list(single)


def start_server(kind: str, workdir, *, extra_env=None, signers: int = 1, setup=()):
    """A started LiveServer, or for "cluster" a started Cluster, which tests use the same way."""
    if kind == "cluster":
        return Cluster(workdir, extra_env=extra_env, signers=signers).start(setup=setup)
    return LiveServer(workdir, extra_env=extra_env, signers=signers).start(setup=setup)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="Run a local cluster behind nginx until Ctrl-C (docs/cluster.md).")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")), help="nginx's port (8080)")
    parser.add_argument("--nodes", type=int, default=2)
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="hp-cluster-"))
    from tests.harness.live import PAIRING_UNLIMITED

    cluster = Cluster(workdir, nodes=args.nodes, port=args.port)
    print(f"starting {args.nodes} nodes, their signers, a Celery worker and beat, nginx (logs in {workdir})", flush=True)
    cluster.start(setup=PAIRING_UNLIMITED)
    for node in cluster.nodes:
        print(f"  {node.env['NODE_NAME']}: {node.url}  (log {node.log_path})")
    print(f"  nginx: {cluster.url}  (log {cluster.nginx.log_path})\ncluster ready at {cluster.url}; Ctrl-C stops it", flush=True)
    stopped: list[int] = []
    signal.signal(signal.SIGINT, lambda *_: stopped.append(1))
    signal.signal(signal.SIGTERM, lambda *_: stopped.append(1))
    try:
        while not stopped:
            time.sleep(0.5)
    finally:
        print("stopping the cluster", flush=True)
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
