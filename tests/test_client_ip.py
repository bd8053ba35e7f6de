"""Per-address limits count the client, and X-Forwarded-For is believed only from trusted proxies."""

from __future__ import annotations

import pytest
from django.test import RequestFactory, override_settings

from homepocket.client_ip import client_ip


def request(remote: str, forwarded: str | None = None):
    extra = {"REMOTE_ADDR": remote}
    if forwarded is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded
    return RequestFactory().get("/", **extra)


def test_without_a_trusted_proxy_the_peer_is_the_client():
    assert client_ip(request("203.0.113.7", "198.51.100.1")) == "203.0.113.7"


@override_settings(TRUSTED_PROXIES=["10.0.0.0/8"])
def test_behind_a_trusted_proxy_the_forwarded_client_counts():
    assert client_ip(request("10.1.2.3", "198.51.100.1")) == "198.51.100.1"


@override_settings(TRUSTED_PROXIES=["10.0.0.0/8"])
def test_a_client_cannot_forge_its_address_left_of_the_proxy():
    # The client sent "X-Forwarded-For: 1.2.3.4"; nginx appended the real peer.
    assert client_ip(request("10.1.2.3", "1.2.3.4, 198.51.100.1")) == "198.51.100.1"


@override_settings(TRUSTED_PROXIES=["10.0.0.0/8"])
def test_a_chain_of_trusted_proxies_is_skipped():
    assert client_ip(request("10.1.2.3", "198.51.100.1, 10.9.9.9")) == "198.51.100.1"


@override_settings(TRUSTED_PROXIES=["10.0.0.0/8"])
@pytest.mark.parametrize("forwarded", ["not-an-ip", ""])
def test_a_malformed_header_falls_back_to_the_peer(forwarded):
    assert client_ip(request("10.1.2.3", forwarded)) == "10.1.2.3"


@override_settings(TRUSTED_PROXIES=["10.0.0.0/8"])
def test_an_untrusted_peer_cannot_name_another_client():
    assert client_ip(request("203.0.113.7", "198.51.100.1")) == "203.0.113.7"
