"""Shared personas for every test (CONVENTIONS 14): alice, bob and carol's devices, the family book.

alice founded the `family` book; bob is her second device in it; carol has a book of her own
(`neighbours`), so she is the outsider in authorization tests; dave's phone is new, in no book.
"""

from __future__ import annotations

import pytest

from homepocket_client import DeviceIdentity


class Persona(DeviceIdentity):
    """A DeviceIdentity of the client library, with headers for Django's test client."""

    def auth(self, token: str | None = None) -> dict[str, str]:
        return {"HTTP_AUTHORIZATION": f"Bearer {token or self.book_token()}"}


def _register(persona: Persona, book=None):
    from apps.pairing.models import Device
    from apps.pairing.services import book_create

    if book is None:
        book, _, _ = book_create(device_id=persona.device_id, public_key=persona.key.public_key_bytes, device_name=persona.name)
    else:
        Device.objects.create(id=persona.device_id, book=book, public_key=persona.key.public_key_bytes, name=persona.name)
    persona.book_id = book.id
    return book


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def alice() -> Persona:
    return Persona.new("alice's phone")


@pytest.fixture
def bob() -> Persona:
    return Persona.new("bob's phone")


@pytest.fixture
def carol() -> Persona:
    return Persona.new("carol's phone")


@pytest.fixture
def dave() -> Persona:
    """A new phone that belongs to no book yet (the joiner in pairing tests)."""
    return Persona.new("dave's new phone")


@pytest.fixture
def family(db, alice, bob):
    """The family book: alice founded it, bob's phone joined it."""
    book = _register(alice)
    _register(bob, book)
    return book


@pytest.fixture
def neighbours(db, carol):
    """Carol's own book: another family."""
    return _register(carol)


@pytest.fixture(autouse=True)
def _rate_limits_of_this_test_only(settings):
    """Each test counts from zero: its own rate-limit key namespace (and so a fresh store)."""
    import uuid

    from apps.quotas.leases import quota_leases

    settings.RATELIMIT_KEY_PREFIX = f"{settings.CACHE_KEY_PREFIX}:rl-test-{uuid.uuid4().hex[:8]}"
    quota_leases.forget()


@pytest.fixture(autouse=True)
def _device_records_read_from_the_database(settings):
    """In-process tests change rows behind the services' back (no invalidation): no device cache.

    The cache has its own tests (apps/pairing/tests/test_device_cache.py), and the live servers of
    the end-to-end tests run with it on, as production does.
    """
    settings.DEVICE_CACHE_SECONDS = 0
    settings.DEVICE_CACHE_REDIS_SECONDS = 0


@pytest.fixture(autouse=True)
def _audit_written_at_commit(settings):
    """In-process tests see their audit rows at commit; the buffer has its own tests (apps/audit)."""
    settings.AUDIT_FLUSH_INTERVAL = 0


@pytest.fixture(scope="session", autouse=True)
def signer_sidecar(tmp_path_factory):
    """One real signer process for in-process tests (the API's signing views and /ready ask it)."""
    import os

    from django.conf import settings

    from apps.signing.client import signer_clients_reset
    from tests.harness.signers import SignerProcesses, signer_environment

    workdir = tmp_path_factory.mktemp("signer")
    os.environ["SIGNING_MASTER_KEY_FILE"] = str(workdir / "master-key.json")
    signers = SignerProcesses(1, signer_environment(dict(os.environ), workdir / "master-key.json"), workdir).start()
    previous = settings.SIGNER_SOCKETS
    settings.SIGNER_SOCKETS = signers.paths
    signer_clients_reset()
    yield signers
    settings.SIGNER_SOCKETS = previous
    signer_clients_reset()
    signers.stop()


@pytest.fixture(scope="session", autouse=True)
def _hot_config_stopped_before_the_test_database_goes(django_db_setup, django_db_blocker):
    """The hot-configuration thread polls the database; it ends before pytest-django drops the
    test database (set up after it, so torn down first), or its next poll would fail at exit."""
    yield
    from apps.cluster.hot_config import hot_config_stop

    hot_config_stop()
