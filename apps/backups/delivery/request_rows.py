"""The two statements a share request costs the database: one read, one write.

A request needs to know three things before it can answer: whether its device is still
active, whether its nonce was seen (and what it was answered), and which delivery of the backup
is the device's. One SELECT answers all three (`request_state_load`). Once the answer is made,
the nonce and its answer are kept with one INSERT … SELECT that only inserts while the delivery is
DELIVERED (`request_record_if_delivered`): the row count decides (CONVENTIONS 6), in autocommit
that single statement is its own transaction, and on PostgreSQL it takes a FOR SHARE lock on the
delivery, so concurrent requests do not queue behind each other while a confirm (an UPDATE) still
waits for them, or they for it. SQLite has one writer at a time, which gives the same order.

Plain SQL over the models' own table and column names, for both backends; values pass through
the fields' own conversions (UUIDs as SQLite's hex text, bytes, aware datetimes).
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from datetime import datetime

from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction

from apps.backups.delivery.models import ACTIVE_STATUSES, DeliveryStatus, ShareDelivery, ShareDeliveryRequest
from apps.pairing.models import Device


@dataclass(frozen=True)
class PreviousRequest:
    delivery_id: uuid.UUID
    body_sha256: str
    encrypted_share: bytes
    signature: str
    timestamp: int


@dataclass(frozen=True)
class RequestState:
    device_revoked: bool
    tokens_valid_after: datetime | None  # the device's token cut-off (docs/cluster.md, "Revocation")
    previous: PreviousRequest | None
    delivery: ShareDelivery | None  # only the fields a request uses are loaded


def _column(model, name: str) -> str:
    return connection.ops.quote_name(model._meta.get_field(name).column)


def _table(model) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def _prep(model, name: str, value, conn):
    return model._meta.get_field(name).get_db_prep_value(value, conn)


@functools.lru_cache(maxsize=64)
def _converters(model, name: str, vendor: str) -> tuple:
    """The backend's and the field's own conversions of a column (what the ORM applies), made once."""
    conn = connection  # the converters depend on the backend, not on the thread's connection
    expression = model._meta.get_field(name).get_col(model._meta.db_table)
    return expression, tuple(conn.ops.get_db_converters(expression) + expression.get_db_converters(conn))


def _from_db(model, name: str, value, conn):
    if value is None:
        return None
    expression, converters = _converters(model, name, conn.vendor)
    for converter in converters:
        value = converter(value, expression, conn)
    return value


_REQUEST_COLUMNS = ("delivery", "body_sha256", "encrypted_share", "signature", "timestamp")
_DELIVERY_COLUMNS = ("id", "status", "book", "backup_id", "wrapped_share", "next_attempt_at", "retry_count")


@functools.lru_cache(maxsize=4)
def _state_sql(vendor: str) -> str:
    device, request, delivery = _table(Device), _table(ShareDeliveryRequest), _table(ShareDelivery)
    r = lambda name: "r." + _column(ShareDeliveryRequest, name)  # noqa: E731
    d = lambda name: "d." + _column(ShareDelivery, name)  # noqa: E731
    live = ", ".join(f"'{status}'" for status in ACTIVE_STATUSES)
    # The delivery a request is for: the live one of this backup and device, else its latest
    # (whose state then words the refusal), as services._delivery_for_request chose it.
    return (
        f"SELECT dev.{_column(Device, 'revoked_at')}, dev.{_column(Device, 'tokens_valid_after')}, "
        + ", ".join(r(name) for name in _REQUEST_COLUMNS) + ", "
        + ", ".join(d(name) for name in _DELIVERY_COLUMNS)
        + f" FROM {device} dev"
        f" LEFT JOIN {request} r ON {r('device_id')} = dev.{_column(Device, 'id')} AND {r('nonce')} = %s"
        f" LEFT JOIN {delivery} d ON {d('id')} = ("
        f"SELECT x.{_column(ShareDelivery, 'id')} FROM {delivery} x"
        f" WHERE x.{_column(ShareDelivery, 'backup_id')} = %s AND x.{_column(ShareDelivery, 'recipient_device')} = dev.{_column(Device, 'id')}"
        f" ORDER BY CASE WHEN x.{_column(ShareDelivery, 'status')} IN ({live}) THEN 0 ELSE 1 END,"
        f" x.{_column(ShareDelivery, 'created_at')} DESC LIMIT 1)"
        f" WHERE dev.{_column(Device, 'id')} = %s"
    )  # fmt: skip


def request_state_load(*, device_id: uuid.UUID, backup_id: uuid.UUID, nonce: str) -> RequestState:
    """The device's revocation, the nonce's earlier answer and the backup's delivery, in one SELECT."""
    conn = connections[DEFAULT_DB_ALIAS]  # once: `connection` looks the thread's up on every use
    params = [nonce, _prep(ShareDelivery, "backup_id", backup_id, conn), _prep(Device, "id", device_id, conn)]
    with conn.cursor() as cursor:
        cursor.execute(_state_sql(conn.vendor), params)
        row = cursor.fetchone()
    if row is None:
        return RequestState(device_revoked=True, tokens_valid_after=None, previous=None, delivery=None)  # the row is gone
    revoked_at, valid_after = row[0], _from_db(Device, "tokens_valid_after", row[1], conn)
    request_values, delivery_values = row[2 : 2 + len(_REQUEST_COLUMNS)], row[2 + len(_REQUEST_COLUMNS) :]
    previous = None
    if request_values[0] is not None:
        values = [_from_db(ShareDeliveryRequest, name, value, conn) for name, value in zip(_REQUEST_COLUMNS, request_values)]
        previous = PreviousRequest(values[0], values[1], bytes(values[2]), values[3], values[4])
    delivery = None
    if delivery_values[0] is not None:
        values = {name: _from_db(ShareDelivery, name, value, conn) for name, value in zip(_DELIVERY_COLUMNS, delivery_values)}
        values["book_id"] = values.pop("book")
        values["wrapped_share"] = bytes(values["wrapped_share"])
        delivery = ShareDelivery(recipient_device_id=device_id, **values)
        delivery._state.adding, delivery._state.db = False, conn.alias
    return RequestState(
        device_revoked=revoked_at is not None, tokens_valid_after=valid_after, previous=previous, delivery=delivery
    )


_INSERT_FIELDS = ("device_id", "nonce", "body_sha256", "encrypted_share", "signature", "timestamp", "created_at")


@functools.lru_cache(maxsize=4)
def _record_sql(vendor: str) -> str:
    request, delivery = _table(ShareDeliveryRequest), _table(ShareDelivery)
    columns = ", ".join(_column(ShareDeliveryRequest, name) for name in ("delivery", *_INSERT_FIELDS))
    lock = " FOR SHARE" if vendor == "postgresql" else ""
    return (
        f"INSERT INTO {request} ({columns}) SELECT d.{_column(ShareDelivery, 'id')}, "
        + ", ".join(["%s"] * len(_INSERT_FIELDS))
        + f" FROM {delivery} d WHERE d.{_column(ShareDelivery, 'id')} = %s AND d.{_column(ShareDelivery, 'status')} = %s{lock}"
    )


def request_record_if_delivered(
    *, delivery_id: uuid.UUID, device_id: uuid.UUID, nonce: str, body_sha256: str, encrypted_share: bytes,
    signature: str, timestamp: int, created_at: datetime,
) -> bool:  # fmt: skip
    """Keep the nonce with its answer if the delivery is DELIVERED; False (nothing kept) if it is not.

    Raises IntegrityError when the device's nonce is already kept (a racing identical request).
    Outside a transaction the statement commits on its own (one round trip); inside one (the
    PENDING → DELIVERED transition, tests) it runs in a savepoint, so a duplicate nonce rolls back
    only this statement.
    """
    conn = connections[DEFAULT_DB_ALIAS]
    values = dict(zip(_INSERT_FIELDS, (device_id, nonce, body_sha256, encrypted_share, signature, timestamp, created_at)))
    params = [_prep(ShareDeliveryRequest, name, value, conn) for name, value in values.items()]
    params += [_prep(ShareDelivery, "id", delivery_id, conn), DeliveryStatus.DELIVERED.value]
    sql = _record_sql(conn.vendor)
    if conn.in_atomic_block:
        with transaction.atomic(), conn.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.rowcount == 1
    with conn.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount == 1
