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
    remote = request.META.get("REMOTE_ADDR", "")
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if not forwarded or not _trusted(remote):
        return remote
    for hop in reversed([part.strip() for part in forwarded.split(",") if part.strip()]):
        if not _trusted(hop):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return remote  # a malformed hop: fall back to the proxy itself, never to a forged value
    return remote
