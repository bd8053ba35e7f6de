"""The configuration-and-secrets bundle: sealed under a passphrase, and enough to reopen the backups."""

from __future__ import annotations

import json
import os
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from apps.backups.engine.repository import Repository
from signer.custody import LocalKeyFileCustody

PASSPHRASE = "correct horse battery staple"


@pytest.fixture
def passphrase_file(tmp_path):
    path = tmp_path / "passphrase"
    path.write_text(PASSPHRASE + "\n")
    return path


def _export(tmp_path, passphrase_file):
    call_command("backup", "secrets-export", "--to", str(tmp_path / "bundle.hps"), "--passphrase-file", str(passphrase_file), stdout=StringIO())
    return tmp_path / "bundle.hps"


def test_the_bundle_restores_the_master_key_and_the_deployment_secrets(repository_dir, tmp_path, passphrase_file, settings, monkeypatch):
    monkeypatch.setenv("S3_SECRET_ACCESS_KEY", "s3-secret-for-test")
    (tmp_path / "redis-url").write_text("redis://:pw@example:6379/0")
    monkeypatch.setenv("REDIS_URL_FILE", str(tmp_path / "redis-url"))
    repo = Repository.init(repository_dir, custody=LocalKeyFileCustody(tmp_path / "master-key.json"))
    bundle = _export(tmp_path, passphrase_file)
    call_command("backup", "secrets-restore", str(bundle), "--to", str(tmp_path / "recovered"), "--passphrase-file", str(passphrase_file), stdout=StringIO())
    recovered = tmp_path / "recovered"
    assert (recovered / "secret_key").read_text().strip() == settings.SECRET_KEY
    assert (recovered / "audit_hash_key").read_text().strip() == settings.AUDIT_HASH_KEY
    assert "S3_SECRET_ACCESS_KEY=s3-secret-for-test" in (recovered / "environment").read_text().splitlines()
    assert (recovered / "environment-files" / "REDIS_URL_FILE").read_text() == "redis://:pw@example:6379/0"
    assert oct((recovered / "signer" / "master-key.json").stat().st_mode & 0o777) == "0o600"
    # The disaster case: the original master key is gone; the recovered one opens the backups.
    (tmp_path / "master-key.json").unlink()
    reopened = Repository.open(repository_dir, custody=LocalKeyFileCustody(recovered / "signer" / "master-key.json"))
    assert reopened.master_key_id == repo.master_key_id


def test_the_bundle_holds_no_secret_in_the_clear(repository_dir, tmp_path, passphrase_file, settings):
    Repository.init(repository_dir, custody=LocalKeyFileCustody(tmp_path / "master-key.json"))
    blob = _export(tmp_path, passphrase_file).read_bytes()
    master = json.loads((tmp_path / "master-key.json").read_text())
    for secret in (settings.SECRET_KEY, settings.AUDIT_HASH_KEY, *master["keys"].values()):
        assert secret.encode() not in blob


def test_a_wrong_passphrase_opens_nothing_and_writes_nothing(repository_dir, tmp_path, passphrase_file):
    bundle = _export(tmp_path, passphrase_file)
    wrong = tmp_path / "wrong"
    wrong.write_text("not the passphrase at all")
    with pytest.raises(CommandError, match="wrong passphrase"):
        call_command("backup", "secrets-restore", str(bundle), "--to", str(tmp_path / "recovered"), "--passphrase-file", str(wrong), stdout=StringIO())
    assert not (tmp_path / "recovered").exists()


def test_a_short_passphrase_is_refused(repository_dir, tmp_path):
    short = tmp_path / "short"
    short.write_text("hunter2")
    with pytest.raises(CommandError, match="at least 12"):
        call_command("backup", "secrets-export", "--to", str(tmp_path / "b"), "--passphrase-file", str(short), stdout=StringIO())
    assert not os.path.exists(tmp_path / "b")


def test_an_existing_bundle_file_is_not_overwritten(repository_dir, tmp_path, passphrase_file):
    bundle = _export(tmp_path, passphrase_file)
    before = bundle.read_bytes()
    with pytest.raises(CommandError, match="exists"):
        _export(tmp_path, passphrase_file)
    assert bundle.read_bytes() == before
