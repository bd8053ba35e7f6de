"""WAL pushed from the archive spool into the repository, and the WAL retention no base backup needs.

The files here stand in for what archive_command copies (the names PostgreSQL gives, random
content): what is pushed, kept or forgotten depends on the names and the manifests, not on WAL
records. The real WAL of a real cluster is pushed in test_pitr.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from io import StringIO

import pytest
from django.core.management import call_command

from apps.backups.engine import runs, services
from apps.backups.engine.models import BackupRun, BackupSchedule, RunStatus
from apps.backups.engine.physical import wal_push, wal_snapshots_unneeded
from apps.backups.engine.repository import Repository
from apps.backups.engine.scheduling import schedule_retention_apply
from apps.backups.engine.tests.conftest import ROOT


@pytest.fixture
def spool(tmp_path, settings):
    spool = tmp_path / "spool"
    spool.mkdir()
    settings.BACKUP_WAL_SPOOL_DIR = spool
    return spool


def _archive(spool, *names: str, size: int = 300_000) -> None:
    """What archive_command leaves: one finished file per name."""
    for name in names:
        (spool / name).write_bytes(os.urandom(size))


def _base(repo: Repository, tmp_path, *, start_wal_file: str) -> dict:
    """A physical snapshot as the base backup records it (the tar itself does not matter here)."""
    (tmp_path / "base.tar").write_bytes(os.urandom(1000))
    return repo.snapshot_create([("physical/base.tar", tmp_path / "base.tar")], meta={"kind": "physical", "start_wal_file": start_wal_file, "timeline": 1})


def test_a_push_takes_every_finished_file_and_empties_the_spool(repository_dir, spool):
    _archive(spool, "000000010000000000000003", "000000010000000000000004", "00000002.history", "000000020000000000000005")
    (spool / "000000020000000000000006.tmp").write_bytes(b"still being copied")

    manifest = services.backup_create(backup_type="wal")

    assert {entry["name"] for entry in manifest["files"]} == {
        "wal/00000002.history", "wal/000000010000000000000003", "wal/000000010000000000000004", "wal/000000020000000000000005",
    }  # fmt: skip
    assert (manifest["wal_first_segment"], manifest["wal_last_segment"]) == ("000000010000000000000003", "000000020000000000000005")
    assert manifest["wal_timelines"] == [1, 2] and manifest["wal_history_files"] == ["00000002.history"]
    assert [path.name for path in spool.iterdir()] == ["000000020000000000000006.tmp"]


def test_a_push_killed_before_its_manifest_keeps_every_spooled_file(repository_dir, spool, custody):
    Repository.init(repository_dir, custody=custody)
    _archive(spool, "000000010000000000000001", "000000010000000000000002")
    script = textwrap.dedent(
        f"""
        import os, signal
        from pathlib import Path
        from apps.backups.engine.physical import wal_push
        from apps.backups.engine.repository import Repository
        from signer.custody import LocalKeyFileCustody
        repo = Repository.open(Path({str(repository_dir)!r}), custody=LocalKeyFileCustody(Path({str(custody.path)!r})))
        def die(line):
            if "new chunks" in line and not line.endswith(" 0 new chunks"):
                os.kill(os.getpid(), signal.SIGKILL)  # a hard kill right after a chunk landed
        wal_push(repo, spool=Path({str(spool)!r}), meta={{}}, progress=die)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True)
    assert result.returncode == -signal.SIGKILL, result.stderr

    repo = Repository.open(repository_dir, custody=custody)
    assert repo.snapshot_ids() == []
    assert sorted(path.name for path in spool.iterdir()) == ["000000010000000000000001", "000000010000000000000002"]
    assert [e["name"] for e in wal_push(repo, spool=spool, meta={})["files"]] == ["wal/000000010000000000000001", "wal/000000010000000000000002"]
    assert not any(spool.iterdir())


def test_a_segment_pushed_again_adds_nothing_to_the_repository(repository_dir, spool):
    _archive(spool, "000000010000000000000007")
    copy = (spool / "000000010000000000000007").read_bytes()
    services.backup_create(backup_type="wal")
    (spool / "000000010000000000000007").write_bytes(copy)  # archived again (a restart before PostgreSQL noted it done)

    again = services.backup_create(backup_type="wal")

    assert again["stats"]["bytes_in"] == len(copy) and again["stats"]["bytes_stored_new"] == 0


@pytest.mark.django_db
def test_an_empty_spool_makes_no_snapshot_and_the_run_still_succeeds(repository_dir, spool):
    out = StringIO()
    call_command("backup", "run", "--type", "wal", stdout=out)
    run = runs.backup_run_request(backup_type="wal", enqueue=False)

    assert "is empty: no snapshot made" in out.getvalue()
    assert runs.backup_run_execute(run_id=run.pk).status == RunStatus.SUCCEEDED
    assert BackupRun.objects.get(pk=run.pk).snapshot_id == ""
    assert services.backup_repository_open().snapshot_ids() == []


def test_only_wal_wholly_before_the_oldest_base_backup_is_unneeded(repository_dir, spool, custody, tmp_path):
    repo = Repository.init(repository_dir, custody=custody)
    pushed = {}
    for batch in (["000000010000000000000001", "000000010000000000000002"], ["000000010000000000000003", "000000010000000000000004"], ["000000010000000000000005"]):
        _archive(spool, *batch, size=1000)
        pushed[batch[-1][-2:]] = wal_push(repo, spool=spool, meta={})["id"]
    _archive(spool, "00000002.history", size=100)
    history = wal_push(repo, spool=spool, meta={})["id"]
    _base(repo, tmp_path, start_wal_file="000000010000000000000004")  # needs segments 4 and later

    assert wal_snapshots_unneeded(repo.snapshots()) == [pushed["02"]]
    assert history not in wal_snapshots_unneeded(repo.snapshots())


def test_without_a_base_backup_no_wal_is_unneeded(repository_dir, spool, custody):
    repo = Repository.init(repository_dir, custody=custody)
    _archive(spool, "000000010000000000000001", size=1000)
    wal_push(repo, spool=spool, meta={})

    assert wal_snapshots_unneeded(repo.snapshots()) == []


@pytest.mark.django_db
def test_a_wal_schedule_forgets_exactly_the_wal_no_kept_base_needs(repository_dir, spool, custody, tmp_path):
    repo = Repository.init(repository_dir, custody=custody)
    schedule = BackupSchedule.objects.create(name="wal-every-minute", backup_type="wal", crontab="* * * * *", keep_last=1)
    ids = []
    for segment in ("000000010000000000000001", "000000010000000000000002", "000000010000000000000003"):
        _archive(spool, segment, size=1000)
        ids.append(wal_push(repo, spool=spool, meta={"schedule": schedule.name})["id"])
    _base(repo, tmp_path, start_wal_file="000000010000000000000002")

    result = schedule_retention_apply(schedule=schedule)

    assert result["forgotten"] == [ids[0]]  # keep_last=1 would also have dropped segment 2, which the base needs
    assert repo.snapshot_ids() == sorted(ids[1:] + [m["id"] for m in repo.snapshots() if m["kind"] == "physical"])


def test_forget_unneeded_wal_on_the_command_line(repository_dir, spool, custody, tmp_path):
    repo = Repository.init(repository_dir, custody=custody)
    _archive(spool, "000000010000000000000001", size=1000)
    old = wal_push(repo, spool=spool, meta={})["id"]
    _base(repo, tmp_path, start_wal_file="000000010000000000000002")
    out = StringIO()

    call_command("backup", "forget", "--unneeded-wal", "--dry-run", stdout=out)
    assert f"would forget {old}" in out.getvalue() and old in repo.snapshot_ids()
