"""Real server processes for end-to-end tests, each on its own fresh database and free port.

A LiveServer gets a migrated database of its own (a new SQLite file, or a new PostgreSQL database
in the distributed mode), then starts the real entry point
(`python -m homepocket.server` or `manage.py serve`) as a child process with its output in a
log file, and talks to it over a real socket. `server="uvicorn"` runs it under uvicorn instead of
granian (ASGI_SERVER).

Migrating costs seconds of CPU, and a suite starts a hundred servers: so `manage.py migrate` runs
once per test process and configuration into a template (a var directory, with its SQLite file or
beside a PostgreSQL database), and each server starts from a copy of it (`CREATE DATABASE ...
TEMPLATE`, a file copy). A server that shares another's database (`peer_env`) migrates as before.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import httpx
import psycopg

from tests.harness.ports import free_port, wait_for_port
from tests.harness.signers import SignerProcesses

REPO = Path(__file__).resolve().parents[2]


# For servers that pair many devices from one address (the shared e2e server, the relay cluster,
# benchmarks): the pairing policies' defaults (10 codes an hour per device, 30 verifies per 10
# minutes per address) would refuse them. Limits themselves are tested on servers of their own.
PAIRING_UNLIMITED = [
    ["quota", "set", "pairing.generate", "--plan", "free", "--limit", "unlimited"],
    ["quota", "set", "pairing.verify", "--plan", "free", "--limit", "unlimited"],
]
# Benchmarks also open many sockets per device (relay.connect: 5 per 10 minutes by default).
LOAD_UNLIMITED = [*PAIRING_UNLIMITED, ["quota", "set", "relay.connect", "--plan", "free", "--limit", "unlimited"]]


def distributed() -> bool:
    return bool(os.environ.get("DATABASE_URL"))


class LiveServer:
    def __init__(
        self, workdir: Path, *, extra_env: dict[str, str] | None = None, command: str = "server", workers: int = 1,
        signers: int = 1, server: str | None = None,
    ):
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "server.log"
        self.command = command
        self.workers = workers
        self.process: subprocess.Popen | None = None
        self._database_name: str | None = None
        self.env = self._environment({**({"ASGI_SERVER": server} if server else {}), **(extra_env or {})})
        # Signer sidecars: started here for `homepocket.server`, by `manage.py serve` itself for "serve".
        (workdir / "var").mkdir(parents=True, exist_ok=True)
        self.signers = SignerProcesses(signers, self.env, workdir)
        self.env["SIGNER_SOCKETS"] = self.signers.sockets_setting

    def _environment(self, extra: dict[str, str]) -> dict[str, str]:
        env = {**os.environ, "HOMEPOCKET_VAR_DIR": str(self.workdir / "var"), "LOG_LEVEL": "INFO", "DRAIN_SECONDS": "0", "DATABASE_POOL": "1"}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        env["SIGNING_MASTER_KEY_FILE"] = str(self.workdir / "var" / "signer" / "master-key.json")  # its own master key
        # Its own rate-limit counts: every server of a run shares one Redis, and all of them count
        # the same client address (127.0.0.1) for per-address policies.
        env["RATELIMIT_KEY_PREFIX"] = f"{os.environ.get('CACHE_KEY_PREFIX', 'hp')}:rl-{uuid.uuid4().hex[:8]}"
        # Its own Redis names too (heartbeats, cache, broadcast, channel layer): a node another test
        # killed stays on the cluster page until its heartbeat's TTL, and must not show on this one's.
        env["CACHE_KEY_PREFIX"] = f"{os.environ.get('CACHE_KEY_PREFIX', 'hp')}:srv-{uuid.uuid4().hex[:8]}"
        if distributed() and "DATABASE_URL" not in extra:
            self._database_name = f"hp_e2e_{uuid.uuid4().hex[:12]}"
            env["DATABASE_URL"] = _with_database(os.environ["DATABASE_URL"], self._database_name)
        env.update(extra)
        self._extra = dict(extra)
        return env

    @property
    def _owns_database(self) -> bool:
        """A database of its own (not a peer's): it may start from a migrated template."""
        if distributed():
            return self._database_name is not None
        return "HOMEPOCKET_VAR_DIR" not in self._extra and "DATABASE_URL" not in self._extra

    def start(self, *, migrate: bool = True, wait: bool = True, setup: list[list[str]] = ()) -> LiveServer:
        """Migrate, run the `setup` management commands (e.g. a policy change), then start."""
        if migrate and self._owns_database:
            _templates.copy_to(self)
        else:
            if self._database_name:
                _admin_execute(f'CREATE DATABASE "{self._database_name}"')
            if migrate:
                _migrate(self.env)
        for command in setup:
            self.manage(*command)
        if self.command == "serve":
            argv = [sys.executable, "manage.py", "serve", "--port", str(self.port), "--workers", str(self.workers)]
        else:
            argv = [sys.executable, "-m", "homepocket.server", "--port", str(self.port), "--workers", str(self.workers)]
        if self.command != "serve" and self.signers.paths:
            self.signers.start()
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(argv, cwd=REPO, env=self.env, stdout=self._log, stderr=subprocess.STDOUT)
        if wait:
            wait_for_port(self.port, timeout=60, process=self.process)
            self.wait_healthy()
        return self

    def peer_env(self) -> dict[str, str]:
        """What a second node of this server's cluster shares with it: data, secrets, rate-limit counts."""
        shared = ("HOMEPOCKET_VAR_DIR", "DATABASE_URL", "SIGNING_MASTER_KEY_FILE", "RATELIMIT_KEY_PREFIX", "CACHE_KEY_PREFIX")
        return {name: self.env[name] for name in shared if name in self.env}

    def manage(self, *args: str) -> str:
        """Run a management command against this server's database and settings; its output."""
        done = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=REPO, env=self.env, check=True, capture_output=True, text=True
        )
        return done.stdout

    def wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{self.url}/health did not answer 200; log:\n{self.log_text()[-3000:]}")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def send_signal(self, sig: int) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30.0, *, keep_database: bool = False) -> int | None:
        """Stop the process; its PostgreSQL database is dropped unless `keep_database` (to inspect it)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.signers.stop()
        if getattr(self, "_log", None):
            self._log.close()
        if self._database_name and not keep_database:
            _admin_execute(f'DROP DATABASE IF EXISTS "{self._database_name}" WITH (FORCE)')
            self._database_name = None
        return self.process.returncode if self.process else None


class _Templates:
    """Migrated templates of this test process, one per configuration (the extra environment)."""

    # Per-server values that do not change what `migrate` writes.
    IGNORED = frozenset({"HOMEPOCKET_VAR_DIR", "DATABASE_URL", "SIGNING_MASTER_KEY_FILE", "RATELIMIT_KEY_PREFIX", "CACHE_KEY_PREFIX", "SIGNER_SOCKETS"})

    def __init__(self) -> None:
        self._made: dict[tuple, tuple[Path, str | None]] = {}  # key -> (var directory, database)
        self._lock = threading.Lock()
        self._root: Path | None = None

    def _key(self, server: LiveServer) -> tuple:
        return tuple(sorted((k, v) for k, v in server._extra.items() if k not in self.IGNORED))

    def _make(self, server: LiveServer) -> tuple[Path, str | None]:
        if self._root is None:
            self._root = Path(tempfile.mkdtemp(prefix="hp-templates-"))
            atexit.register(self.remove)
        var = self._root / f"t{len(self._made)}" / "var"
        var.mkdir(parents=True)
        env = {**server.env, "HOMEPOCKET_VAR_DIR": str(var)}
        database = None
        if distributed():
            database = f"hp_tpl_{uuid.uuid4().hex[:12]}"
            _admin_execute(f'CREATE DATABASE "{database}"')
            env["DATABASE_URL"] = _with_database(os.environ["DATABASE_URL"], database)
        _migrate(env)
        return var, database

    def copy_to(self, server: LiveServer) -> None:
        key = self._key(server)
        with self._lock:
            if key not in self._made:
                self._made[key] = self._make(server)
            var, database = self._made[key]
            # The var directory: the SQLite file and the local secrets made beside it (rows such as
            # the audit chain's may depend on them).
            shutil.copytree(var, Path(server.env["HOMEPOCKET_VAR_DIR"]), dirs_exist_ok=True)
            if database:
                _admin_execute(f'CREATE DATABASE "{server._database_name}" TEMPLATE "{database}"')

    def remove(self) -> None:
        for _, database in self._made.values():
            if database:
                try:
                    _admin_execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
                except psycopg.Error:
                    pass  # PostgreSQL already gone at exit: nothing to clean
        self._made.clear()
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)


_templates = _Templates()


def _migrate(env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=REPO, env=env, check=True)


def _with_database(url: str, name: str) -> str:
    parts = urlparse(url)
    return urlunparse(parts._replace(path=f"/{name}"))


def _admin_execute(sql: str) -> None:
    parts = urlparse(os.environ["DATABASE_URL"])
    admin_url = urlunparse(parts._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql)
