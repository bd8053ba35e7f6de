"""Per-table row counts and checksums: recorded with each database snapshot, compared by a restore drill.

SQLite: rows in rowid order, each row's repr hashed into one SHA-256 per table. PostgreSQL: the
MD5 of each row's text form, sorted, then aggregated (32 bytes a row, so a big table does not
build a giant string). Each vendor is only ever compared with itself.
"""

from __future__ import annotations

import hashlib
import sqlite3

import psycopg
from psycopg import sql


def sqlite_table_digests(path) -> dict[str, dict]:
    """{table: {"rows", "checksum"}} of the SQLite database at `path` (read-only)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]
        out = {}
        for table in tables:
            digest, rows = hashlib.sha256(), 0
            quoted = '"' + table.replace('"', '""') + '"'
            for row in conn.execute(f"SELECT * FROM {quoted} ORDER BY rowid"):  # noqa: S608 (names from sqlite_master, quoted)
                digest.update(repr(row).encode())
                rows += 1
            out[table] = {"rows": rows, "checksum": digest.hexdigest()}
        return out
    finally:
        conn.close()


def postgres_table_digests(cursor: psycopg.Cursor) -> dict[str, dict]:
    """{table: {"rows", "checksum"}} of the public schema, seen by `cursor`'s transaction."""
    cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")
    out = {}
    for (table,) in cursor.fetchall():
        cursor.execute(
            sql.SQL("SELECT count(*), md5(coalesce(string_agg(md5(t::text), '' ORDER BY md5(t::text)), '')) FROM {} AS t").format(
                sql.Identifier("public", table)
            )
        )
        rows, checksum = cursor.fetchone()
        out[table] = {"rows": rows, "checksum": checksum}
    return out


def postgres_connect(settings_dict: dict, *, dbname: str | None = None, autocommit: bool = False) -> psycopg.Connection:
    return psycopg.connect(
        host=settings_dict.get("HOST") or None,
        port=settings_dict.get("PORT") or None,
        user=settings_dict.get("USER") or None,
        password=settings_dict.get("PASSWORD") or None,
        dbname=dbname or settings_dict["NAME"],
        autocommit=autocommit,
        connect_timeout=10,
    )


def digests_compare(recorded: dict[str, dict], restored: dict[str, dict]) -> list[dict]:
    """The tables whose restored rows or checksum differ from what the snapshot recorded."""
    mismatches = []
    for table in sorted(set(recorded) | set(restored)):
        want, got = recorded.get(table), restored.get(table)
        if want != got:
            mismatches.append({"table": table, "recorded": want, "restored": got})
    return mismatches
