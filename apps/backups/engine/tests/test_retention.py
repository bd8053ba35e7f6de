"""Retention: GFS selection with a moved clock, legal holds blocking forget, prune of unreferenced chunks."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from apps.backups.engine import repository as repository_module
from apps.backups.engine.repository import Repository, RepositoryError
from apps.backups.engine.retention import RetentionPolicy, snapshots_to_keep
from signer.custody import LocalKeyFileCustody

T0 = datetime(2026, 1, 1, 3, 0, tzinfo=timezone.utc)  # a Thursday


@pytest.fixture
def repo(repository_dir, tmp_path):
    return Repository.init(repository_dir, custody=LocalKeyFileCustody(tmp_path / "master-key.json"))


@pytest.fixture
def clock(monkeypatch):
    """Moves the repository's clock: snapshots are stamped at `clock.at`."""

    class Clock:
        at = T0

    monkeypatch.setattr(repository_module, "_now", lambda: Clock.at)
    return Clock


def _snapshot(repo, tmp_path, body: bytes = b"") -> str:
    src = tmp_path / "f.bin"
    src.write_bytes(body or os.urandom(10_000))
    return repo.snapshot_create([("f.bin", src)], meta={})["id"]


def _daily_snapshots(repo, clock, tmp_path, days: int) -> list[str]:
    ids = []
    for day in range(days):
        clock.at = T0 + timedelta(days=day)
        ids.append(_snapshot(repo, tmp_path))
    return ids


def test_gfs_keeps_the_newest_snapshot_of_each_recent_day_week_and_month():
    hourly = [(f"s{i:04d}", T0 + timedelta(hours=6 * i)) for i in range(4 * 70)]  # 70 days, 4 a day
    kept = snapshots_to_keep(hourly, RetentionPolicy(keep_daily=7, keep_weekly=4, keep_monthly=3))
    by_time = dict(hourly)
    daily = sorted(i for i, rules in kept.items() if "daily" in rules)
    assert len(daily) == 7 and all(by_time[i].hour == 21 for i in daily)  # the last of each day
    assert by_time[daily[-1]] == hourly[-1][1]
    weekly = [by_time[i] for i, rules in kept.items() if "weekly" in rules]
    assert len(weekly) == 4 and len({t.isocalendar()[:2] for t in weekly}) == 4
    monthly = sorted(by_time[i] for i, rules in kept.items() if "monthly" in rules)
    assert [t.month for t in monthly] == [1, 2, 3]
    assert monthly[0] == datetime(2026, 1, 31, 21, 0, tzinfo=timezone.utc)


def test_keep_last_keeps_exactly_the_newest():
    snaps = [(f"s{i}", T0 + timedelta(minutes=i)) for i in range(5)]
    assert set(snapshots_to_keep(snaps, RetentionPolicy(keep_last=2))) == {"s3", "s4"}


def test_forget_by_policy_uses_the_snapshots_times(repo, clock, tmp_path):
    ids = _daily_snapshots(repo, clock, tmp_path, 5)
    out = StringIO()
    call_command("backup", "forget", "--keep-daily", "2", stdout=out)
    assert repo.snapshot_ids() == ids[-2:]
    assert f"forgot {ids[0]}" in out.getvalue() and f"keep {ids[-1]} (daily)" in out.getvalue()


def test_a_dry_run_shows_what_would_go_and_changes_nothing(repo, clock, tmp_path):
    ids = _daily_snapshots(repo, clock, tmp_path, 3)
    out = StringIO()
    call_command("backup", "forget", "--keep-last", "1", "--dry-run", stdout=out)
    assert f"would forget {ids[0]}" in out.getvalue()
    assert repo.snapshot_ids() == ids


def test_a_legal_hold_blocks_forget_until_released(repo, tmp_path):
    held, other = _snapshot(repo, tmp_path), _snapshot(repo, tmp_path)
    call_command("backup", "hold", held, "--reason", "case 42", stdout=StringIO())
    with pytest.raises(CommandError, match="legal hold"):
        call_command("backup", "forget", held, other, stdout=StringIO())
    assert repo.snapshot_ids() == sorted([held, other])  # all or nothing
    call_command("backup", "hold", held, "--release", stdout=StringIO())
    call_command("backup", "forget", held, stdout=StringIO())
    assert repo.snapshot_ids() == [other]


def test_prune_deletes_only_unreferenced_chunks(repo, tmp_path):
    gone = _snapshot(repo, tmp_path, os.urandom(2_000_000))
    kept = _snapshot(repo, tmp_path, os.urandom(2_000_000))
    repo.forget([gone])
    before = len(list(repo.chunk_ids()))
    assert repo.prune(dry_run=True)["chunks"] > 0 and len(list(repo.chunk_ids())) == before
    result = repo.prune()
    assert result["chunks"] > 0 and len(list(repo.chunk_ids())) == before - result["chunks"]
    assert repo.verify().ok
    repo.restore(kept, to=tmp_path / "out")
    assert (tmp_path / "out" / "f.bin").read_bytes() == (tmp_path / "f.bin").read_bytes()


def test_prune_is_refused_while_a_backup_runs(repo, tmp_path):
    def prune_midway(line):
        with pytest.raises(RepositoryError, match="busy"):
            repo.prune()
        raise StopIteration  # one check is enough

    src = tmp_path / "f.bin"
    src.write_bytes(os.urandom(100_000))
    with pytest.raises(StopIteration):
        repo.snapshot_create([("f.bin", src)], meta={}, progress=prune_midway)
    assert repo.prune()["chunks"] == 1  # the interrupted run's chunk, once the lock is free


def test_a_policy_that_keeps_nothing_is_refused(repo, tmp_path):
    _snapshot(repo, tmp_path)
    with pytest.raises(CommandError, match="not both"):
        call_command("backup", "forget", stdout=StringIO())
