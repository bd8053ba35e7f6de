"""The errors of a backup repository (engine/repository.py) and the two checks every part of it shares.

Imports nothing from Django, like the rest of the engine.
"""

from __future__ import annotations

import contextlib
from pathlib import PurePosixPath

from apps.backups.engine.stores import StoreBusy, StoreError, StoreMissing


class RepositoryError(Exception):
    """A repository that cannot be used as asked (missing, already there, unknown snapshot, damage)."""


class RepositoryBusy(RepositoryError):
    """A backup or prune holds the repository lock in a conflicting mode."""


class RepositoryUnavailable(RepositoryError):
    """The repository's store did not answer (S3 down): retry later."""


class Missing(Exception):
    """A file the caller turns into its own message (a missing chunk, an unknown snapshot, a lost key)."""


@contextlib.contextmanager
def store_errors():
    """A store that is busy or unreachable is a RepositoryError the commands and tasks already report."""
    try:
        yield
    except StoreMissing:
        raise Missing() from None
    except StoreError as exc:
        raise (RepositoryBusy if isinstance(exc, StoreBusy) else RepositoryUnavailable)(str(exc)) from None


def checked_name(name: str) -> PurePosixPath:
    """A file name inside a snapshot: relative, no `..` (a manifest must not write outside the target)."""
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise RepositoryError(f"unsafe file name in snapshot: {name!r}")
    return path
