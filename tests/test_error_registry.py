"""The error registry, docs/api.md and the application error types agree."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from homepocket.api.errors import ERROR_CODES, ApplicationError

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"
SEED_CODES = {
    "INVALID_TOKEN": 401, "FORBIDDEN": 403, "INVALID_SHORT_CODE": 400, "SHORT_CODE_EXPIRED": 400,
    "RATE_LIMIT_EXCEEDED": 429, "BOOK_NOT_FOUND": 404, "DEVICE_NOT_FOUND": 404, "PHOTO_NOT_FOUND": 404,
    "PHOTO_TOO_LARGE": 400, "INVALID_ARGUMENT": 400, "UNLOCK_REQUIRED": 503, "RETRY_LATER": 503,
    "INVALID_KEY": None, "INTERNAL_ERROR": 500, "DATABASE_ERROR": None, "S3_ERROR": None,
    "PAYLOAD_TOO_LARGE": 413, "DEVICE_LIMIT_REACHED": 409, "REPLAY_DETECTED": 400, "INVALID_STATE": 409,
    "COMPLIANCE_VIOLATION": None,
}  # fmt: skip


def documented_codes() -> dict[str, int]:
    rows = re.findall(r"^\| `([A-Z0-9_]+)` \| (\d{3}) \|", DOC.read_text(), flags=re.MULTILINE)
    return {code: int(status) for code, status in rows}


def test_docs_list_every_code_with_its_status():
    assert documented_codes() == {code: entry.status for code, entry in ERROR_CODES.items()}


def test_every_seed_code_is_registered_with_the_seed_status():
    for code, status in SEED_CODES.items():
        assert code in ERROR_CODES, code
        if status is not None:
            assert ERROR_CODES[code].status == status, code


def test_an_unregistered_code_cannot_be_raised():
    with pytest.raises(ValueError):
        ApplicationError(code="NOT_A_CODE")


def all_subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from all_subclasses(sub)


def test_every_application_error_class_uses_a_registered_code():
    import apps.pairing.device_tokens  # noqa: F401  (defines subclasses)
    import apps.pairing.selectors  # noqa: F401
    import apps.pairing.services  # noqa: F401

    for cls in all_subclasses(ApplicationError):
        assert cls.code in ERROR_CODES, cls
