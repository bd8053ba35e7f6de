"""Share delivery fixtures: a movable clock, and no server key carried over between tests."""

from __future__ import annotations

from datetime import timedelta

import pytest

from apps.backups.delivery import fast_route, keys, services
from apps.backups.tests.asgi_client import AsgiClient


class Clock:
    """Patches services.now(); `advance` moves it, nothing sleeps."""

    def __init__(self, monkeypatch):
        self.offset = timedelta(0)
        real = services.timezone.now
        monkeypatch.setattr(services, "now", lambda: real() + self.offset)

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)

    def timestamp(self) -> int:
        return int(services.now().timestamp())


@pytest.fixture
def clock(monkeypatch):
    return Clock(monkeypatch)


@pytest.fixture(autouse=True)
def _server_key_of_this_test(db):
    """Each test's database has no server key yet: forget the process's copy."""
    keys.server_key_forget()
    yield
    keys.server_key_forget()


@pytest.fixture(params=["lean route", "django"])
def asgi_client(request, monkeypatch):
    """The whole ASGI application, with the request endpoint's lean route on, then off.

    Its answers come from other threads and their own database connections (the lean route's
    worker threads), so tests using it need committed data: django_db(transaction=True).
    """
    fast_route.devices_forget()
    yield AsgiClient(lean_route=request.param == "lean route", monkeypatch=monkeypatch)
    fast_route.devices_forget()
