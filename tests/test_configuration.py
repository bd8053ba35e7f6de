"""Settings: the embedded defaults, and misconfiguration failing at start-up with a system check."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

import pytest
from django.conf import settings
from django.db import connection
from django.test import override_settings

from homepocket import checks
from homepocket.env import env_bool, env_int, env_list, env_secret, local_secret
from tests.harness.live import REPO


def ids(messages) -> set[str]:
    return {message.id for message in messages}


@pytest.mark.django_db
def test_sqlite_runs_in_wal_mode_with_immediate_transactions():
    if connection.vendor != "sqlite":
        assert connection.vendor == "postgresql"
        assert "pool" in settings.DATABASES["default"]["OPTIONS"] or os.environ.get("DATABASE_POOL") == "0"
        return
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode")
        assert cursor.fetchone()[0] == "wal"
    assert connection.settings_dict["OPTIONS"]["transaction_mode"] == "IMMEDIATE"
    assert connection.settings_dict["OPTIONS"]["timeout"] >= 5


def test_the_mode_follows_the_environment():
    distributed = bool(os.environ.get("REDIS_URL"))
    cache_backend = settings.CACHES["default"]["BACKEND"]
    layer_backend = settings.CHANNEL_LAYERS["default"]["BACKEND"]
    if distributed:
        assert cache_backend == "django.core.cache.backends.redis.RedisCache"
        assert layer_backend == "channels_redis.pubsub.RedisPubSubChannelLayer"
        assert settings.STORAGES["default"]["BACKEND"] == "storages.backends.s3.S3Storage"
    else:
        assert cache_backend == "django.core.cache.backends.locmem.LocMemCache"
        assert layer_backend == "channels.layers.InMemoryChannelLayer"
        assert settings.STORAGES["default"]["BACKEND"] == "django.core.files.storage.FileSystemStorage"


def test_an_unsupported_database_fails_the_check():
    assert "homepocket.E001" in ids(checks.database_engine_errors("django.db.backends.mysql"))


def test_a_redis_url_with_another_scheme_fails_the_check():
    with override_settings(REDIS_URL="http://127.0.0.1:6379"):
        assert "homepocket.E002" in ids(checks.check_modes(None))


def test_s3_settings_without_a_bucket_fail_the_check(monkeypatch):
    monkeypatch.setenv("S3_ENDPOINT_URL", "http://127.0.0.1:9000")
    with override_settings(S3_BUCKET=""):
        assert "homepocket.E003" in ids(checks.check_modes(None))


def test_a_token_lifetime_over_24_hours_fails_the_check():
    with override_settings(DEVICE_TOKEN_MAX_LIFETIME_SECONDS=25 * 3600):
        assert "homepocket.E005" in ids(checks.check_modes(None))


def test_the_current_configuration_passes():
    assert checks.check_modes(None) == []


def test_a_malformed_number_names_the_variable(monkeypatch):
    monkeypatch.setenv("HP_TEST_INT", "ten")
    with pytest.raises(Exception, match="HP_TEST_INT"):
        env_int("HP_TEST_INT", 1)


def test_env_helpers_read_booleans_lists_and_secret_files(monkeypatch, tmp_path):
    monkeypatch.setenv("HP_TEST_BOOL", "yes")
    monkeypatch.setenv("HP_TEST_LIST", "a, b,,c")
    secret_file = tmp_path / "secret"
    secret_file.write_text("from-a-file\n")
    monkeypatch.setenv("HP_TEST_SECRET_FILE", str(secret_file))
    assert env_bool("HP_TEST_BOOL") is True
    assert env_list("HP_TEST_LIST") == ["a", "b", "c"]
    assert env_secret("HP_TEST_SECRET") == "from-a-file"


def test_the_local_secret_is_made_once_with_owner_only_permissions(tmp_path):
    path = tmp_path / "var" / "secret_key"
    first = local_secret(path)
    assert local_secret(path) == first
    assert len(first) >= 40
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_a_misconfigured_server_refuses_to_start(tmp_path):
    env = {**os.environ, "HOMEPOCKET_VAR_DIR": str(tmp_path), "REDIS_URL": "http://nope"}
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=REPO, env=env, capture_output=True, text=True)
    assert result.returncode != 0
    assert "homepocket.E002" in result.stderr


def test_check_deploy_is_clean_with_production_settings(tmp_path):
    env = {
        **os.environ,
        "HOMEPOCKET_VAR_DIR": str(tmp_path),
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "AUDIT_HASH_KEY": secrets.token_urlsafe(32),
        "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/homepocket",
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "S3_BUCKET": "homepocket",
        "S3_ENDPOINT_URL": "http://127.0.0.1:9000",
        "SECURE_SSL_REDIRECT": "1",
        "SECURE_HSTS_SECONDS": "31536000",
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": "1",
        "SECURE_HSTS_PRELOAD": "1",
        "SESSION_COOKIE_SECURE": "1",
        "CSRF_COOKIE_SECURE": "1",
        "TRUST_X_FORWARDED_PROTO": "1",
        "ALLOWED_HOSTS": "homepocket.example",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=REPO, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_warns_when_a_cluster_would_make_its_own_audit_key(tmp_path):
    env = {
        **os.environ,
        "HOMEPOCKET_VAR_DIR": str(tmp_path),
        "SECRET_KEY": secrets.token_urlsafe(50),
        "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/homepocket",
    }
    env.pop("AUDIT_HASH_KEY", None)
    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy"], cwd=REPO, env=env, capture_output=True, text=True)
    assert "homepocket.W001" in result.stderr + result.stdout
    assert "AUDIT_HASH_KEY" in result.stderr + result.stdout
