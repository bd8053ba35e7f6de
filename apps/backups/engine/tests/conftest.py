"""Server-backup fixtures: each test has its own repository and its own master key file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from signer.custody import LocalKeyFileCustody
from tests.harness.live import distributed

ROOT = Path(__file__).resolve().parents[4]

# PostgreSQL's own dumps need the PostgreSQL of the distributed run (as tests/e2e/conftest.py does
# for the cluster): the embedded run, on SQLite, has none, so it does not collect them.
collect_ignore = [] if distributed() else ["test_postgres_sources.py"]


@pytest.fixture
def custody(tmp_path):
    """The master key of this test's own (tmp_path/master-key.json, the same file `repository_dir` points the server at)."""
    return LocalKeyFileCustody(tmp_path / "master-key.json")


def backup_killed_mid_run(*, open_repository: str, source: Path) -> None:
    """Run a backup of `source` in a child process that SIGKILLs itself right after a chunk landed.

    `open_repository` is the Python expression (Repository, LocalKeyFileCustody and Path in scope)
    that opens the repository in the child.
    """
    script = textwrap.dedent(
        f"""
        import os, signal
        from pathlib import Path
        from apps.backups.engine.repository import Repository
        from signer.custody import LocalKeyFileCustody
        repo = {open_repository}
        def die(line):
            if "new chunks" in line and not line.endswith(" 0 new chunks"):
                os.kill(os.getpid(), signal.SIGKILL)  # a hard kill right after a chunk landed
        repo.snapshot_create([("objects/random.bin", Path({str(source)!r}))], meta={{}}, progress=die)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True)
    assert result.returncode == -signal.SIGKILL, result.stderr


@pytest.fixture
def repository_dir(tmp_path, settings, monkeypatch):
    """A repository and a master key of this test's own (never the session's shared key file)."""
    monkeypatch.setenv("SIGNING_MASTER_KEY_FILE", str(tmp_path / "master-key.json"))
    monkeypatch.delenv("SIGNING_KMS_KEY_ID", raising=False)
    settings.BACKUP_REPOSITORY_DIR = tmp_path / "repo"
    return tmp_path / "repo"


@pytest.fixture(scope="session")
def _own_moto():
    from apps.photos.tests.moto_server import MotoS3

    server = MotoS3().start(create_bucket=False)
    yield server
    server.stop()


@pytest.fixture
def s3_repository(request, settings):
    """An s3://bucket/prefix repository location of this test's own, with its s3_client() options.

    The distributed run (tests/harness/distributed.py) serves S3 through its moto: the repository
    gets a bucket of its own there, as a deployment gives backups a bucket apart from the photos.
    The embedded run starts a moto of this session's own.
    """
    import uuid

    import boto3

    endpoint = os.environ.get("S3_ENDPOINT_URL") or request.getfixturevalue("_own_moto").endpoint
    options = {"endpoint_url": endpoint, "region": "us-east-1", "access_key": "testing", "secret_key": "testing"}
    bucket = f"backups-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1").create_bucket(Bucket=bucket)
    settings.BACKUP_S3 = options
    return f"s3://{bucket}/repository", options


@pytest.fixture
def as_role(client):
    """Sign the test client in as a staff member holding one backup role (or none)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    def sign_in(role: str | None, *, staff: bool = True):
        user = get_user_model().objects.create_user(username=f"{role or 'nobody'}-{staff}", password="x", is_staff=staff)
        if role:
            user.groups.add(Group.objects.get(name=role))
        client.force_login(user)
        return client

    return sign_in


@pytest.fixture
def eager_runs(monkeypatch):
    """Enqueued runs are carried out at once, in this process (what the worker would do after the commit)."""
    from apps.backups.engine import runs, tasks

    monkeypatch.setattr(tasks.backup_run_task, "apply_async", lambda args, priority: runs.backup_run_execute(run_id=args[0]))
    monkeypatch.setattr(runs, "transaction", SimpleNamespace(on_commit=lambda fn: fn()))
