"""The client's address: REMOTE_ADDR, or X-Forwarded-For when the peer is a trusted proxy.

Per-address limits (pairing guesses, quotas) must count the phone, not nginx. X-Forwarded-For is
believed only when the direct peer is listed in TRUSTED_PROXIES; then the rightmost address that
is not itself a trusted proxy is the client (anything left of it could be forged by the client).
"""

from __future__ import annotations

import ipaddress

from django.conf import settings


def _trusted(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(network, strict=False) for network in settings.TRUSTED_PROXIES)


def client_ip(request) -> str:
    return client_address(request.META.get("REMOTE_ADDR", ""), request.META.get("HTTP_X_FORWARDED_FOR", ""))


def scope_client_ip(scope) -> str:
    """client_ip() of an ASGI scope, for the lean routes that answer before Django makes a request."""
    client = scope.get("client")
    forwarded = b",".join(value for name, value in scope.get("headers") or () if name == b"x-forwarded-for")
    return client_address(client[0] if client else "", forwarded.decode("latin-1"))


def client_address(remote: str, forwarded: str) -> str:
    """The client among the peer (`remote`) and an X-Forwarded-For value, as the module says."""
    if not forwarded or not _trusted(remote):
        return remote
    for hop in reversed([part.strip() for part in forwarded.split(",") if part.strip()]):
        if not _trusted(hop):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return remote  # a malformed hop: fall back to the proxy itself, never to a forged value
    return remote
