"""manage.py migrate_to_postgres: an embedded deployment's data into PostgreSQL, resumable, verified, rolled back on failure."""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import uuid

import psycopg
import pytest

from tests.harness.live import REPO

ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres"

POPULATE = """
import uuid
from apps.audit.services import audit_event_record
from apps.pairing.services import book_create
from apps.pairing.models import Device
from apps.quotas.services import api_key_create
for n in range(3):
    book, device, _ = book_create(device_id=uuid.uuid4(), public_key=bytes([n]) * 32, device_name=f"phone {n}")
    Device.objects.create(id=uuid.uuid4(), book=book, public_key=bytes([n + 100]) * 32, name="second phone")
for n in range(150):
    audit_event_record(event_type="pairing.failed", outcome="failure", details={"reason": "invalid", "n": n})
api_key_create(name="ops", scopes=["audit:read"], rpm=60)
"""


@pytest.fixture
def embedded(tmp_path):
    """A populated embedded deployment: its own var/ with a migrated SQLite database."""
    env = {key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "REDIS_URL", "RATELIMIT_REDIS_URL")}
    env.update({"HOMEPOCKET_VAR_DIR": str(tmp_path / "var"), "AUDIT_FLUSH_INTERVAL": "0", "LOG_LEVEL": "WARNING"})
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=REPO, env=env, check=True)
    subprocess.run([sys.executable, "manage.py", "shell", "-c", POPULATE], cwd=REPO, env=env, check=True)
    return env


@pytest.fixture
def target():
    name = f"hp_copy_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"postgres://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def copy(env, target_url, *extra) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "migrate_to_postgres", "--target", target_url, *extra],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def query(url: str, sql: str):
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()


def tables(url: str) -> set[str]:
    return {row[0] for row in query(url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}


def audit_rows(env) -> int:
    with sqlite3.connect(os.path.join(env["HOMEPOCKET_VAR_DIR"], "db.sqlite3")) as conn:
        return conn.execute("SELECT count(*) FROM audit_auditevent").fetchone()[0]


def sqlite_dump(env) -> str:
    with sqlite3.connect(os.path.join(env["HOMEPOCKET_VAR_DIR"], "db.sqlite3")) as conn:
        return hashlib.sha256("\n".join(conn.iterdump()).encode()).hexdigest()


def test_every_row_arrives_verified_and_new_ids_follow_the_copied_ones(embedded, target):
    result = copy(embedded, target)
    assert result.returncode == 0, result.stderr
    assert "rows copied and verified" in result.stdout
    assert audit_rows(embedded) > 150  # 150 written here, and those of the books and the key
    assert f"verified audit_auditevent: {audit_rows(embedded)} rows" in result.stdout
    assert query(target, "SELECT count(*) FROM pairing_device") == [(6,)]
    assert query(target, "SELECT count(*) FROM quotas_apikey") == [(1,)]
    assert sorted(bytes(r[0])[0] for r in query(target, "SELECT public_key FROM pairing_device")) == [0, 1, 2, 100, 101, 102]
    assert "homepocket_dbcopy_progress" not in tables(target)
    # Sequences moved past the copied ids: the next audit row does not collide.
    (last,), = query(target, "SELECT max(id) FROM audit_auditevent")
    (next_id,), = query(target, "SELECT nextval(pg_get_serial_sequence('audit_auditevent', 'id'))")
    assert next_id > last


def test_the_embedded_database_is_only_read(embedded, target):
    before = sqlite_dump(embedded)
    assert copy(embedded, target).returncode == 0
    assert sqlite_dump(embedded) == before


def test_an_interrupted_copy_resumes_where_it_stopped(embedded, target):
    process = subprocess.Popen(
        [sys.executable, "manage.py", "migrate_to_postgres", "--target", target, "--batch-size", "10"],
        cwd=REPO, env=embedded, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    for line in process.stdout:
        if line.startswith("audit_auditevent: 50/"):
            process.send_signal(signal.SIGKILL)  # no chance to clean up: the worst interruption
            break
    process.wait(30)
    total = audit_rows(embedded)
    [(copied, done)] = query(target, "SELECT copied, done FROM homepocket_dbcopy_progress WHERE table_name = 'audit_auditevent'")
    assert 50 <= copied < total and copied % 10 == 0 and not done  # whole batches only
    assert query(target, "SELECT count(*) FROM audit_auditevent") == [(copied,)]

    refused = copy(embedded, target)
    assert refused.returncode != 0 and "--resume" in refused.stderr
    resumed = copy(embedded, target, "--resume", "--batch-size", "10")
    assert resumed.returncode == 0, resumed.stderr
    assert f"audit_auditevent: resuming after {copied}/{total} rows" in resumed.stdout
    assert f"verified audit_auditevent: {total} rows" in resumed.stdout


def test_a_failed_copy_leaves_the_target_as_it_found_it(embedded, target):
    # SQLite does not enforce a column's length; PostgreSQL does: a real mid-copy failure.
    with sqlite3.connect(os.path.join(embedded["HOMEPOCKET_VAR_DIR"], "db.sqlite3")) as conn:
        conn.execute("UPDATE pairing_device SET name = ? WHERE name = 'second phone'", ["x" * 500])
    result = copy(embedded, target)
    assert result.returncode != 0
    assert "rolled back" in result.stderr
    assert tables(target) == set()


def test_a_target_that_is_not_empty_is_refused_untouched(embedded, target):
    with psycopg.connect(target, autocommit=True) as conn:
        conn.execute("CREATE TABLE somebody_elses (id int)")
    result = copy(embedded, target)
    assert result.returncode != 0 and "not empty" in result.stderr
    assert tables(target) == {"somebody_elses"}
