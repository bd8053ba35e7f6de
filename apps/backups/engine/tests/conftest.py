"""Server-backup fixtures: each test has its own repository and its own master key file."""

from __future__ import annotations

import pytest


@pytest.fixture
def repository_dir(tmp_path, settings, monkeypatch):
    """A repository and a master key of this test's own (never the session's shared key file)."""
    monkeypatch.setenv("SIGNING_MASTER_KEY_FILE", str(tmp_path / "master-key.json"))
    monkeypatch.delenv("SIGNING_KMS_KEY_ID", raising=False)
    settings.BACKUP_REPOSITORY_DIR = tmp_path / "repo"
    return tmp_path / "repo"
