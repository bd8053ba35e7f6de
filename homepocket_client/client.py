"""The REST client: one httpx.Client, a fresh token per request, the envelope unwrapped into values or typed errors.

Tokens are minted per request rather than cached: minting is one Ed25519 signature (well under a
millisecond), and a short-lived token that is never reused limits what a leaked one is worth.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import httpx

from homepocket_client.books import BookCreated, DeviceList, book_created_parse, device_list_parse
from homepocket_client.envelope import REQUEST_ID_HEADER, Envelope, envelope_unwrap
from homepocket_client.errors import HomePocketError, TransportError
from homepocket_client.identity import DeviceIdentity
from homepocket_client.pairing import (
    DeviceRevoked,
    PairingCode,
    PairingExchange,
    PairingMatch,
    device_revoked_parse,
    exchange_wait_check,
    pairing_code_parse,
    pairing_exchange_parse,
    pairing_match_parse,
    short_code_check,
)
from homepocket_client.quotas import Usage, usage_parse
from homepocket_client.request_log import logger, request_log

API_PREFIX = "/api/v1"
# Long enough for a slow request and modest clock skew, short enough that a token copied out
# of a proxy log is soon useless. The server's own cap is 24 h (tokens.MAX_TOKEN_LIFETIME_SECONDS).
DEFAULT_TOKEN_LIFETIME_SECONDS = 300
USER_AGENT = "homepocket-client/python"


class HomePocketClient:
    """A client for one Home Pocket server, shared by any number of device identities.

    `log_level`, when given, sets the level of the "homepocket_client" logger (process-wide, as
    loggers are); by default the library leaves logging configuration to the application.
    `transport` is passed to httpx, e.g. httpx.MockTransport in tests.
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 10.0,
        log_level: int | str | None = None,
        transport: httpx.BaseTransport | None = None,
        token_lifetime_seconds: int = DEFAULT_TOKEN_LIFETIME_SECONDS,
    ) -> None:
        if log_level is not None:
            logger.setLevel(log_level)
        self.token_lifetime_seconds = token_lifetime_seconds
        self._http = httpx.Client(
            base_url=base_url,
            timeout=timeout,
            transport=transport,
            headers={"Accept": "application/json", "User-Agent": USER_AGENT},
            # The API never redirects: a redirect means a wrong base URL (http for https, a missing
            # prefix), which should fail loudly as TransportError instead of being followed.
            follow_redirects=False,
        )

    @property
    def base_url(self) -> str:
        return str(self._http.base_url)

    def close(self) -> None:
        """Close the pooled connections."""
        self._http.close()

    def __enter__(self) -> HomePocketClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # The books API.

    def create_book(self, identity: DeviceIdentity) -> BookCreated:
        """Create a book with `identity` as its first device and record the book id on the identity.

        Safe to call again after a lost answer: the server returns the same book (created=False).
        """
        envelope = self.request_envelope(
            "POST",
            f"{API_PREFIX}/books",
            identity=identity,
            registration=True,
            json={
                "device_id": str(identity.device_id),
                "public_key": identity.key.public_key_b64,
                "device_name": identity.name,
            },
        )
        result = book_created_parse(envelope)
        identity.book_id = result.book_id
        return result

    def list_devices(self, identity: DeviceIdentity, book_id: uuid.UUID | str | None = None) -> DeviceList:
        """The active devices of the identity's book (or of `book_id`, to probe access to another)."""
        target = book_id if book_id is not None else identity.book_id
        if target is None:
            raise ValueError("this device has no book yet: create a book or pair it first")
        envelope = self.request_envelope("GET", f"{API_PREFIX}/books/{target}/devices", identity=identity)
        return device_list_parse(envelope)

    def device_revoke(
        self, identity: DeviceIdentity, device_id: uuid.UUID | str, *, book_id: uuid.UUID | str | None = None
    ) -> DeviceRevoked:
        """Revoke a device of the identity's book (or of `book_id`); its tokens are refused from then on.

        The identity object is left as it is, even when it revokes itself.
        """
        book = _uuid_of(book_id if book_id is not None else _book_id_required(identity), "book_id")
        device = _uuid_of(device_id, "device_id")
        envelope = self.request_envelope("DELETE", f"{API_PREFIX}/books/{book}/devices/{device}", identity=identity)
        return device_revoked_parse(envelope)

    # The pairing API: device A (in a book) generates a code, device B (new) verifies it.

    def pairing_generate(self, identity: DeviceIdentity) -> PairingCode:
        """Device A: get a short code that lets one new device join the identity's book."""
        book_id = _book_id_required(identity)
        envelope = self.request_envelope(
            "POST", f"{API_PREFIX}/pairing/generate", identity=identity, json={"book_id": str(book_id)}
        )
        return pairing_code_parse(envelope)

    def pairing_verify(self, identity: DeviceIdentity, short_code: str) -> PairingMatch:
        """Device B: join the book of the code with this identity's key, and record the book on it.

        Sent with a registration token: B is not in any book until the server accepts the code.
        A malformed code raises ValueError before anything is sent, so it costs no attempt.
        """
        code = short_code_check(short_code)
        envelope = self.request_envelope(
            "POST",
            f"{API_PREFIX}/pairing/verify",
            identity=identity,
            registration=True,
            json={"short_code": code, "public_key": identity.key.public_key_b64, "device_name": identity.name},
        )
        result = pairing_match_parse(envelope)
        if result.device_id != identity.device_id:
            # Recording a book the server registered for some other device would lock this one out.
            raise TransportError(
                "the pairing verification names a device other than the one that asked",
                status=envelope.status,
                request_id=envelope.request_id,
            )
        identity.book_id = result.book_id
        return result

    def pairing_exchange(
        self, identity: DeviceIdentity, short_code: str, *, wait: int | None = None
    ) -> PairingExchange:
        """Device A: ask whether a device has joined with the code, holding up to `wait` seconds.

        The server answers `completed` with the joiner's key only once: keep it before anything
        else. The read timeout of this request is the client's plus `wait`, so a long poll the
        server holds is not cut off as a TransportError.
        """
        body: dict[str, Any] = {"short_code": short_code_check(short_code)}
        path = f"{API_PREFIX}/pairing/exchange"
        timeout: httpx.Timeout | None = None
        if wait is not None:
            path += f"?wait={exchange_wait_check(wait)}"  # a query parameter, as long polls are
            timeout = self._timeout_beyond(wait)
        envelope = self.request_envelope("POST", path, identity=identity, json=body, timeout=timeout)
        return pairing_exchange_parse(envelope)

    def _timeout_beyond(self, wait: int) -> httpx.Timeout:
        base = self._http.timeout
        read = None if base.read is None else base.read + wait
        return httpx.Timeout(connect=base.connect, read=read, write=base.write, pool=base.pool)

    def usage(self, identity: DeviceIdentity | None = None, *, api_key: str | None = None) -> Usage:
        """The caller's quotas: a device's (and its book's) with an identity, or an API key's."""
        headers = {"Authorization": f"Api-Key {api_key}"} if api_key else None
        return usage_parse(self.request_envelope("GET", f"{API_PREFIX}/usage", identity=identity, headers=headers))

    # The generic layer the typed methods are built on.

    def request(
        self,
        method: str,
        path: str,
        *,
        identity: DeviceIdentity | None = None,
        json: Any = None,
        registration: bool = False,
        headers: Mapping[str, str] | None = None,
        timeout: httpx.Timeout | float | None = None,
    ) -> Any:
        """Send a request and return the envelope's `data`; see request_envelope()."""
        return self.request_envelope(
            method, path, identity=identity, json=json, registration=registration, headers=headers, timeout=timeout
        ).data

    def request_envelope(
        self,
        method: str,
        path: str,
        *,
        identity: DeviceIdentity | None = None,
        json: Any = None,
        registration: bool = False,
        headers: Mapping[str, str] | None = None,
        timeout: httpx.Timeout | float | None = None,
    ) -> Envelope:
        """Send a request and return the success envelope, or raise a HomePocketError subclass.

        With an identity the request carries a fresh token: a registration token (no book_id)
        when `registration` is true, a book token otherwise. `headers` are applied last, so a
        test can replace Authorization or X-Request-ID. `timeout` replaces the client's for this
        request only (a long poll); None keeps the client's. The client sends its own request id,
        so even a request that never got an answer can be found in the server's logs.
        """
        method = method.upper()
        request_headers = httpx.Headers({REQUEST_ID_HEADER: uuid.uuid4().hex})
        token = self._token_for(identity, registration=registration)
        if token is not None:
            request_headers["Authorization"] = f"Bearer {token}"
        if headers:
            request_headers.update(headers)
        request_id = request_headers.get(REQUEST_ID_HEADER)
        started = time.perf_counter()
        try:
            response = self._http.request(
                method,
                path,
                json=json,
                headers=request_headers,
                timeout=httpx.USE_CLIENT_DEFAULT if timeout is None else timeout,
            )
        except httpx.RequestError as exc:
            reason = f"{method} {self.base_url} failed: {type(exc).__name__}: {exc}"
            error = TransportError(reason, request_id=request_id)
            self._log(method, path, None, error.request_id, started, error.code)
            raise error from exc
        try:
            envelope = envelope_unwrap(response)
        except HomePocketError as error:
            self._log(method, path, response.status_code, error.request_id or request_id, started, error.code)
            raise
        self._log(method, path, response.status_code, envelope.request_id or request_id, started, None)
        return envelope

    def _token_for(self, identity: DeviceIdentity | None, *, registration: bool) -> str | None:
        if identity is None:
            if registration:
                raise ValueError("a registration request needs the identity that registers")
            return None
        if registration:
            return identity.registration_token(lifetime_seconds=self.token_lifetime_seconds)
        return identity.book_token(lifetime_seconds=self.token_lifetime_seconds)

    @staticmethod
    def _log(
        method: str, path: str, status: int | None, request_id: str | None, started: float, error_code: str | None
    ) -> None:
        request_log(
            method=method,
            path=path,
            status=status,
            request_id=request_id,
            duration_seconds=time.perf_counter() - started,
            error_code=error_code,
        )


def _book_id_required(identity: DeviceIdentity) -> uuid.UUID:
    if identity.book_id is None:
        raise ValueError("this device has no book yet: create a book or pair it first")
    return identity.book_id


def _uuid_of(value: uuid.UUID | str, name: str) -> uuid.UUID:
    # Ids go into the URL path: anything but a UUID ("x/../..") must not reach another route.
    try:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    except ValueError:
        raise ValueError(f"{name} must be a UUID, got {value!r}") from None
