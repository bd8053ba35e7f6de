"""Home Pocket client library: device keys, device tokens, the REST API (books, pairing) and its typed errors.

    from homepocket_client import DeviceIdentity, HomePocketClient

    with HomePocketClient("http://127.0.0.1:8000") as client:
        alice = DeviceIdentity.new("Alice's phone")
        client.create_book(alice)
        devices = client.list_devices(alice)

See docs/client.md.
"""

import logging

from homepocket_client.books import BookCreated, DeviceInfo, DeviceList
from homepocket_client.client import API_PREFIX, DEFAULT_TOKEN_LIFETIME_SECONDS, HomePocketClient
from homepocket_client.envelope import Envelope
from homepocket_client.errors import (
    ERROR_CLASSES,
    Conflict,
    Forbidden,
    HomePocketError,
    InvalidArgument,
    InvalidToken,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    RetryableError,
    ServerError,
    ServiceUnavailable,
    TransportError,
    UnsupportedRequest,
    error_class_for,
)
from homepocket_client.identity import DeviceIdentity
from homepocket_client.keys import DeviceKey
from homepocket_client.quotas import QuotaUsage, QuotaWarning, Usage
from homepocket_client.pairing import (
    EXCHANGE_MAX_WAIT_SECONDS,
    DeviceRevoked,
    PairingCode,
    PairingExchange,
    PairingMatch,
    pairing_sas,
)
from homepocket_client.request_log import LOGGER_NAME
from homepocket_client.signing import Signature, SigningClient, SigningKey
from homepocket_client.tokens import MAX_TOKEN_LIFETIME_SECONDS, device_token_mint

# A library adds no output of its own; the application decides where log records go.
logging.getLogger(LOGGER_NAME).addHandler(logging.NullHandler())

__all__ = [
    "QuotaUsage",
    "QuotaWarning",
    "Usage",
    "API_PREFIX",
    "BookCreated",
    "Conflict",
    "DEFAULT_TOKEN_LIFETIME_SECONDS",
    "DeviceIdentity",
    "DeviceInfo",
    "DeviceKey",
    "DeviceList",
    "DeviceRevoked",
    "ERROR_CLASSES",
    "EXCHANGE_MAX_WAIT_SECONDS",
    "Envelope",
    "Forbidden",
    "HomePocketClient",
    "HomePocketError",
    "InvalidArgument",
    "InvalidToken",
    "LOGGER_NAME",
    "MAX_TOKEN_LIFETIME_SECONDS",
    "NotFound",
    "PairingCode",
    "PairingExchange",
    "PairingMatch",
    "PayloadTooLarge",
    "RateLimited",
    "RetryableError",
    "ServerError",
    "ServiceUnavailable",
    "Signature",
    "SigningClient",
    "SigningKey",
    "TransportError",
    "UnsupportedRequest",
    "device_token_mint",
    "error_class_for",
    "pairing_sas",
]
