"""`manage.py backup recover full|database|selective`: the same recovery run as the API's, in the foreground."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from apps.backups.engine import services
from apps.backups.engine.models import BackupRun, RunStatus
from apps.pairing.models import Book, Device

pytestmark = pytest.mark.django_db(transaction=True)  # the recovery loads into the live database from its own connection


def _backup(*args) -> str:
    out = StringIO()
    call_command("backup", *args, stdout=out, stderr=out)
    return out.getvalue()


def test_recover_database_brings_the_books_back_with_progress_lines(family, neighbours, repository_dir):
    devices = sorted(Device.objects.values_list("id", "book_id", "name"))
    _backup("run", "--database-only")
    Book.objects.all().delete()
    output = _backup("recover", "database")
    assert sorted(Device.objects.values_list("id", "book_id", "name")) == devices
    lines = output.splitlines()
    assert any(line.startswith("recovery: ") for line in lines)  # progress
    assert json.loads(lines[-1])["rows"] > 0
    assert BackupRun.objects.get(kind="recovery").status == RunStatus.SUCCEEDED


def test_recover_over_live_data_without_overwrite_is_refused_before_a_run_exists(family, repository_dir):
    _backup("run", "--database-only")
    with pytest.raises(CommandError, match="RECOVERY_TARGET_NOT_EMPTY"):
        _backup("recover", "selective", "--book-id", str(family.id))
    assert not BackupRun.objects.exists()


def test_recover_selective_needs_tables_or_a_book(repository_dir):
    services.backup_create(backup_type="database")
    with pytest.raises(CommandError, match="tables"):
        _backup("recover", "selective")
    with pytest.raises(CommandError, match="backups_backuprun"):
        _backup("recover", "selective", "--tables", "backups_backuprun")
    assert not BackupRun.objects.exists()
