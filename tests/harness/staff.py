"""A person's session on a live server: a user made with manage.py, logged in through the real login form."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from tests.harness.live import LiveServer

STAFF_PASSWORD = "correct horse battery staple"  # test users only


def user_create(server: LiveServer, username: str, *, staff: bool, password: str = STAFF_PASSWORD) -> None:
    """Create a user (a superuser when `staff`) in the server's database."""
    flags = "is_staff=True, is_superuser=True" if staff else "is_staff=False"
    server.manage(
        "shell", "-c",
        "from django.contrib.auth import get_user_model; "
        f"get_user_model().objects.create_user({username!r}, password={password!r}, {flags})",
    )  # fmt: skip


@contextmanager
def logged_in(server: LiveServer, username: str, *, login_path: str = "/admin/login/", password: str = STAFF_PASSWORD) -> Iterator[httpx.Client]:
    """An HTTP client with the session cookie of `username`, after the login form's CSRF dance."""
    with httpx.Client(base_url=server.url, timeout=10) as client:
        yield _login(client, server, login_path, username, password)


def _login(client: httpx.Client, server: LiveServer, login_path: str, username: str, password: str) -> httpx.Client:
    form = client.get(login_path)
    form.raise_for_status()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text).group(1)
    answer = client.post(
        login_path, data={"username": username, "password": password, "csrfmiddlewaretoken": token},
        headers={"Referer": f"{server.url}{login_path}"},
    )  # fmt: skip
    assert answer.status_code == 302, answer.text[:500]
    return client
