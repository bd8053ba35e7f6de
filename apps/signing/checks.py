"""Start-up checks of the signing settings: a bad socket list fails before the first signature."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, register

# sun_path is 108 bytes on Linux, one of them the terminating NUL.
MAX_SOCKET_PATH_BYTES = 107


@register()
def check_signer_sockets(app_configs, **kwargs):
    errors = []
    if not settings.SIGNER_SOCKETS:
        errors.append(Error("SIGNER_SOCKETS is empty: nothing could sign.", hint="Name at least one Unix socket path.", id="signing.E001"))
    for path in settings.SIGNER_SOCKETS:
        if len(path.encode()) > MAX_SOCKET_PATH_BYTES:
            errors.append(
                Error(
                    f"The signer socket path {path!r} is longer than {MAX_SOCKET_PATH_BYTES} bytes.",
                    hint="Unix socket paths are limited by the kernel; use a shorter directory (e.g. /run/homepocket/).",
                    id="signing.E002",
                )
            )
    if len(set(settings.SIGNER_SOCKETS)) != len(settings.SIGNER_SOCKETS):
        errors.append(Error("SIGNER_SOCKETS names a socket twice.", hint="Each signer needs its own socket.", id="signing.E003"))
    return errors
