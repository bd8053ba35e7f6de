"""Liveness, readiness and their answers when a component is down."""

from __future__ import annotations

import pytest
from django.test import override_settings

from homepocket import drain

DEAD_REDIS = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": "redis://127.0.0.1:1/0",
        "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
    }
}
DEAD_S3 = {
    "default": {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": "nowhere",
            "endpoint_url": "http://127.0.0.1:1",
            "access_key": "x",
            "secret_key": "y",
            "region_name": "us-east-1",
        },
    },
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}


@pytest.fixture
def draining():
    drain.drain_begin()
    yield
    drain._draining.clear()


def test_health_answers_ok(client):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_health_answers_503_while_draining(client, draining):
    response = client.get("/health")
    assert response.status_code == 503
    assert response.json() == {"status": "draining"}


@pytest.mark.django_db
def test_ready_reports_each_component_with_its_latency(client):
    response = client.get("/ready")
    assert response.status_code == 200, response.content
    components = response.json()["components"]
    assert set(components) == {"database", "cache", "channel_layer", "storage", "signer"}
    for name, component in components.items():
        assert component["status"] == "up", name
        assert component["latency_ms"] >= 0


@pytest.mark.django_db
def test_ready_answers_503_when_the_cache_is_down(client):
    with override_settings(CACHES=DEAD_REDIS):
        response = client.get("/ready")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not_ready"
    assert body["components"]["cache"]["status"] == "down"
    assert body["components"]["database"]["status"] == "up"


@pytest.mark.django_db
def test_ready_answers_503_when_object_storage_is_down(client):
    with override_settings(STORAGES=DEAD_S3, S3_BUCKET="nowhere"):
        response = client.get("/ready")
    assert response.status_code == 503
    assert response.json()["components"]["storage"]["status"] == "down"


@pytest.mark.django_db
def test_a_component_that_is_not_required_does_not_fail_readiness(client):
    with override_settings(CACHES=DEAD_REDIS, READY_REQUIRED=["database", "channel_layer", "storage"]):
        response = client.get("/ready")
    assert response.status_code == 200
    cache = response.json()["components"]["cache"]
    assert (cache["status"], cache["required"]) == ("down", False)
    assert cache["error"]


@pytest.mark.django_db
def test_ready_answers_503_while_a_signer_does_not_answer(client, settings, tmp_path):
    from apps.signing.client import signer_clients_reset

    settings.SIGNER_SOCKETS = [*settings.SIGNER_SOCKETS, str(tmp_path / "not-started.sock")]
    signer_clients_reset()
    try:
        response = client.get("/ready")
    finally:
        signer_clients_reset()
    assert response.status_code == 503
    assert response.json()["components"]["signer"]["status"] == "down"
