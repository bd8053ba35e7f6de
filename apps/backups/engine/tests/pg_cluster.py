"""Throwaway PostgreSQL clusters for the point-in-time recovery tests: `initdb`, WAL archiving on.

PostgreSQL refuses to run as root: as root (the test machines), initdb, pg_ctl and postgres run as
the `postgres` OS user (`runuser -u postgres --`) in a directory under /tmp it owns; otherwise they
run as the current user. Each cluster listens on its own unix socket only (listen_addresses = '').
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

from tests.harness.ports import free_port

POSTGRES_USER = "postgres"


def postgres_bindir() -> Path:
    """The PostgreSQL server programs (pg_config --bindir); a clear failure when they are missing."""
    pg_config = shutil.which("pg_config")
    assert pg_config, "pg_config is not on the PATH: these tests need the PostgreSQL server programs (apt-get install postgresql)"
    bindir = Path(subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=True).stdout.strip())
    for program in ("initdb", "pg_ctl", "postgres", "pg_basebackup", "pg_waldump"):
        assert (bindir / program).is_file(), f"{bindir / program} is missing: these tests need the PostgreSQL server programs"
    return bindir


def as_postgres_owner(*paths: Path) -> None:
    """Hand `paths` (recursively) to the user the clusters run as: nothing to do unless we are root."""
    if os.geteuid() == 0:
        subprocess.run(["chown", "-R", f"{POSTGRES_USER}:{POSTGRES_USER}", *map(str, paths)], check=True)


def _as_server_user(command: list[str]) -> list[str]:
    return ["runuser", "-u", POSTGRES_USER, "--", *command] if os.geteuid() == 0 else command


class Cluster:
    """One cluster: made by `initdb` (or on a restored data directory), started, stopped."""

    def __init__(self, data: Path, *, socket_dir: Path, bindir: Path):
        self.data, self.socket_dir, self.bindir = data, socket_dir, bindir
        self.port = free_port()
        self.log = socket_dir / f"postgres-{self.port}.log"
        self.running = False

    @property
    def url(self) -> str:
        return f"postgres://postgres@{str(self.socket_dir).replace('/', '%2F')}:{self.port}/postgres"

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(host=str(self.socket_dir), port=self.port, user="postgres", dbname="postgres", autocommit=True)

    def run(self, *command: str) -> subprocess.CompletedProcess:
        return subprocess.run(_as_server_user([str(self.bindir / command[0]), *command[1:]]), capture_output=True, text=True)

    def initdb(self, *, spool: Path) -> Cluster:
        result = self.run("initdb", "--pgdata", str(self.data), "--auth=trust", "--username=postgres", "--no-sync", "--encoding=UTF8")
        assert result.returncode == 0, result.stderr
        archive = f"test ! -f {spool}/%f && cp %p {spool}/%f.tmp && mv {spool}/%f.tmp {spool}/%f"  # the line docs/backups.md gives
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(f"wal_level = replica\narchive_mode = on\narchive_command = '{archive}'\nmax_wal_senders = 4\nfsync = off\n")
        return self

    def start(self) -> Cluster:
        options = f"-c port={self.port} -c listen_addresses='' -c unix_socket_directories='{self.socket_dir}'"
        result = self.run("pg_ctl", "--pgdata", str(self.data), "--log", str(self.log), "--options", options, "--wait", "--timeout=120", "start")
        self.running = result.returncode == 0
        assert self.running, f"pg_ctl start failed: {result.stdout}{result.stderr}\n{self.log_text()}"
        return self

    def stop(self) -> None:
        if self.running:
            self.run("pg_ctl", "--pgdata", str(self.data), "--mode=immediate", "--wait", "stop")
            self.running = False

    def log_text(self) -> str:
        return self.log.read_text() if self.log.exists() else "(no log)"

    def wal_switch_and_archive(self, *, timeout: float = 120.0) -> str:
        """Switch to a new WAL segment and wait until the archiver has copied the finished one; its name."""
        with self.connect() as conn:
            (segment,) = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                archived, failed = conn.execute("SELECT last_archived_wal, last_failed_wal FROM pg_stat_archiver").fetchone()
                if archived and archived[8:] >= segment[8:]:
                    return segment
                time.sleep(0.1)
        raise AssertionError(f"segment {segment} not archived (last failure: {failed}):\n{self.log_text()}")

    def wait_until_promoted(self, *, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with self.connect() as conn:
                    if not conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
                        return
            except psycopg.OperationalError:
                pass  # still starting up
            time.sleep(0.1)
        raise AssertionError(f"recovery did not end:\n{self.log_text()}")


class Workspace:
    """A directory under /tmp the server user may write (pytest's tmp_path is private to root), removed at the end."""

    def __init__(self):
        self.root = Path(tempfile.mkdtemp(prefix="hp-pitr-", dir="/tmp"))
        self.root.chmod(0o755)
        self.bindir = postgres_bindir()
        self.spool = self.root / "spool"
        self.spool.mkdir()
        as_postgres_owner(self.root)
        self.clusters: list[Cluster] = []

    def cluster(self, data: Path) -> Cluster:
        cluster = Cluster(data, socket_dir=self.root, bindir=self.bindir)
        self.clusters.append(cluster)
        return cluster

    def close(self) -> None:
        for cluster in self.clusters:
            cluster.stop()
        shutil.rmtree(self.root, ignore_errors=True)
