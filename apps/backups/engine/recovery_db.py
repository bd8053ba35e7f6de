"""Loading a snapshot's database copy into a database: rows into a live one, or a whole copy into a new one.

Rows (the live database, or a selective recovery into another one): every replaced table's rows
(or one book's) are deleted and copied from the snapshot **in one transaction**, with foreign keys
checked at commit, so a failure leaves the target as it was. SQLite: the snapshot file is ATTACHed
to a `sqlite3` connection of the target and copied with INSERT ... SELECT (never a file copy over
a live database). PostgreSQL: the dump is restored into a scratch database
(`<name>_recover_<hex>`, dropped afterwards), and rows stream from it to the target with COPY;
sequences are then set past the loaded ids. The target must have applied exactly the snapshot's
migrations, else the load is refused before anything changes.

A whole copy (a database or full recovery into another location): SQLite, the restored file put
at the path (an atomic rename); PostgreSQL, the database created and the dump restored into it.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

from psycopg import sql

from apps.backups.engine.digests import postgres_connect
from apps.backups.engine.recovery_rows import TableRows, preserved_references, schema_difference
from apps.backups.engine.sources import postgres_restore

_MIGRATIONS = 'SELECT app, name FROM {schema}"django_migrations"'
_UUIDISH = re.compile(r"^[0-9a-fA-F-]{32,36}$")


class RecoveryRefused(Exception):
    """The recovery would not be safe or cannot apply (schema, vendor, target): nothing was changed."""

    def __init__(self, message: str, *, code: str = "INVALID_STATE", details: dict | None = None):
        super().__init__(message)
        self.code = code
        self.result = {"refused": code, **(details or {})}


class TargetNotEmpty(RecoveryRefused):
    def __init__(self, what: str):
        super().__init__(f"{what} already holds data; recover over it only with overwrite", code="RECOVERY_TARGET_NOT_EMPTY", details={"target": what})


def _where(rows: TableRows, schema: str, book_literal: str) -> str:
    if not rows.where:
        return ""
    return " WHERE " + rows.where.replace("{schema}", schema).replace("%(book)s", book_literal)


def _literal(book) -> str:
    text = str(book) if book is not None else ""
    if book is not None and not _UUIDISH.match(text):
        raise RecoveryRefused("a book id is a UUID", code="INVALID_ARGUMENT")
    return f"'{text}'"


class SqliteRows:
    """The target SQLite file, with the snapshot's copy ATTACHed as `snap`."""

    main, snap = "main.", "snap."

    def __init__(self, *, source: Path, target: Path):
        self.conn = sqlite3.connect(target, timeout=60, isolation_level=None)
        self.conn.execute("PRAGMA foreign_keys = ON")
        self.conn.execute("ATTACH DATABASE ? AS snap", (str(source),))

    def query(self, statement: str) -> list[tuple]:
        return self.conn.execute(statement).fetchall()

    def tables(self) -> list[str]:
        rows = self.query("SELECT name FROM snap.sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        return [name for (name,) in rows]

    def columns(self, table: str) -> list[str]:
        return [row[1] for row in self.conn.execute(f'PRAGMA snap.table_info("{table}")')]

    def begin(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.execute("PRAGMA defer_foreign_keys = ON")  # checked at COMMIT, so the order of tables does not matter

    def execute(self, statement: str) -> int:
        return self.conn.execute(statement).rowcount

    def copy(self, rows: TableRows, book: str) -> int:
        cols = ", ".join(f'"{c}"' for c in self.columns(rows.table))
        return self.execute(f'INSERT INTO main."{rows.table}" ({cols}) SELECT {cols} FROM snap."{rows.table}"{_where(rows, self.snap, book)}')

    def sequences_reset(self, tables: list[str]) -> None:
        pass  # AUTOINCREMENT's sqlite_sequence follows the largest id inserted

    def commit(self) -> None:
        self.conn.execute("COMMIT")

    def rollback(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")

    def close(self) -> None:
        self.rollback()
        self.conn.close()


class PostgresRows:
    """The target PostgreSQL database, and the scratch database the snapshot's dump was restored into."""

    main, snap = "", ""

    def __init__(self, *, settings_dict: dict, source_db: str, target_db: str):
        self.source = postgres_connect(settings_dict, dbname=source_db, autocommit=True)
        self.conn = postgres_connect(settings_dict, dbname=target_db)

    def query(self, statement: str, *, on_source: bool = False) -> list[tuple]:
        with (self.source if on_source else self.conn).cursor() as cursor:
            cursor.execute(statement)
            return cursor.fetchall()

    def tables(self) -> list[str]:
        rows = self.query("SELECT tablename FROM pg_tables WHERE schemaname = 'public'", on_source=True)
        return [name for (name,) in rows]

    def columns(self, table: str) -> list[str]:
        with self.source.cursor() as cursor:
            cursor.execute("SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' AND table_name = %s ORDER BY ordinal_position", (table,))
            return [name for (name,) in cursor.fetchall()]

    def begin(self) -> None:
        self.conn.execute("SET CONSTRAINTS ALL DEFERRED")  # Django's foreign keys are DEFERRABLE: checked at COMMIT

    def execute(self, statement: str) -> int:
        with self.conn.cursor() as cursor:
            cursor.execute(statement)
            return cursor.rowcount

    def copy(self, rows: TableRows, book: str) -> int:
        cols = ", ".join(f'"{c}"' for c in self.columns(rows.table))
        count = 0
        with self.source.cursor() as out_cursor, self.conn.cursor() as in_cursor:
            with out_cursor.copy(f'COPY (SELECT {cols} FROM "{rows.table}"{_where(rows, "", book)}) TO STDOUT') as out, \
                    in_cursor.copy(f'COPY "{rows.table}" ({cols}) FROM STDIN') as into:  # fmt: skip
                for block in out:
                    into.write(block)
            count = in_cursor.rowcount
        return count

    def sequences_reset(self, tables: list[str]) -> None:
        owned = self.query(
            "SELECT s.oid::regclass::text, t.relname, a.attname FROM pg_class s JOIN pg_depend d ON d.objid = s.oid "
            "JOIN pg_class t ON d.refobjid = t.oid JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid "
            "WHERE s.relkind = 'S' AND t.relnamespace = 'public'::regnamespace"
        )
        for sequence, table, column in owned:
            if table in tables:
                self.execute(f"SELECT setval('{sequence}', COALESCE(MAX(\"{column}\"), 1), MAX(\"{column}\") IS NOT NULL) FROM \"{table}\"")

    def commit(self) -> None:
        self.conn.commit()

    def rollback(self) -> None:
        self.conn.rollback()

    def close(self) -> None:
        self.conn.close()
        self.source.close()


def migrations_of(target, *, on_source: bool) -> set[tuple[str, str]]:
    if isinstance(target, SqliteRows):
        return set(target.query(_MIGRATIONS.replace("{schema}", "snap." if on_source else "main.")))
    return set(target.query(_MIGRATIONS.replace("{schema}", ""), on_source=on_source))


def rows_count(target, rows: list[TableRows], *, book=None) -> int:
    """How many of these rows the target holds now."""
    literal = _literal(book) if book is not None else ""
    return sum(target.query(f'SELECT COUNT(*) FROM {target.main}"{r.table}"{_where(r, target.main, literal)}')[0][0] for r in rows)


def rows_load(target, *, tables: list[TableRows], book=None, say: Callable[[str], None]) -> dict:
    """Replace these rows (a book's, when `book` is given) with the snapshot's, in one transaction; the counts loaded."""
    difference = schema_difference(migrations_of(target, on_source=True), migrations_of(target, on_source=False))
    if difference is not None:
        raise RecoveryRefused("the target's migrations differ from the snapshot's: migrate one to match the other first", details=difference)
    known = set(target.tables())
    missing = [r.table for r in tables if r.table not in known]
    if missing:
        raise RecoveryRefused(f"the snapshot has no table {missing[0]}", code="INVALID_ARGUMENT", details={"tables": missing[:20]})
    literal = _literal(book) if book is not None else ""
    say(f"recovery: loading {len(tables)} tables in one transaction")
    loaded: dict[str, int] = {}
    target.begin()
    try:
        for rows in reversed(tables):  # children first: a child's filter reads its parent's rows
            target.execute(f'DELETE FROM {target.main}"{rows.table}"{_where(rows, target.main, literal)}')
        for rows in tables:
            loaded[rows.table] = target.copy(rows, literal)
        replaced = {r.table for r in tables}
        for table, column, ref_table, ref_column in preserved_references(replaced) if book is None else ():
            target.execute(
                f'UPDATE {target.main}"{table}" SET "{column}" = NULL WHERE "{column}" IS NOT NULL '
                f'AND "{column}" NOT IN (SELECT "{ref_column}" FROM {target.main}"{ref_table}")'
            )
        target.sequences_reset(sorted(replaced))
        target.commit()
    except Exception:
        target.rollback()
        raise
    say(f"recovery: {sum(loaded.values())} rows loaded into {len(loaded)} tables")
    return {"tables": len(loaded), "rows": sum(loaded.values())}


def postgres_scratch_create(dump: Path, *, settings_dict: dict, say) -> str:
    """A scratch database holding the dump (the caller drops it with postgres_database_drop)."""
    name = f"{settings_dict['NAME'][:40]}_recover_{secrets.token_hex(4)}"
    postgres_database_create(name, settings_dict=settings_dict)
    say(f"recovery: pg_restore into scratch database {name}")
    postgres_restore(dump, settings_dict=settings_dict, dbname=name)
    return name


def postgres_database_create(name: str, *, settings_dict: dict) -> None:
    with postgres_connect(settings_dict, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def postgres_database_drop(name: str, *, settings_dict: dict) -> None:
    with postgres_connect(settings_dict, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def postgres_database_holds_tables(name: str, *, settings_dict: dict) -> bool | None:
    """None when there is no such database; else whether it has any table."""
    with postgres_connect(settings_dict, autocommit=True) as admin:
        if not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            return None
    with postgres_connect(settings_dict, dbname=name, autocommit=True) as conn:
        return bool(conn.execute("SELECT 1 FROM pg_tables WHERE schemaname = 'public' LIMIT 1").fetchone())


def postgres_copy_whole(dump: Path, *, settings_dict: dict, dbname: str, overwrite: bool, say) -> None:
    """The dump restored into database `dbname` (made; an existing one with tables only with overwrite, then replaced)."""
    holds = postgres_database_holds_tables(dbname, settings_dict=settings_dict)
    if holds and not overwrite:
        raise TargetNotEmpty(f"database {dbname}")
    if holds is not None:
        postgres_database_drop(dbname, settings_dict=settings_dict)
    postgres_database_create(dbname, settings_dict=settings_dict)
    say(f"recovery: pg_restore into database {dbname}")
    postgres_restore(dump, settings_dict=settings_dict, dbname=dbname)


def sqlite_copy_whole(source: Path, *, path: Path, overwrite: bool, say) -> None:
    """The restored SQLite file put at `path` by an atomic rename (a file that exists only with overwrite)."""
    path = Path(path)
    if path.exists() and path.stat().st_size and not overwrite:
        raise TargetNotEmpty(f"SQLite file {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{secrets.token_hex(4)}.partial")
    shutil.copyfile(source, partial)
    os.replace(partial, path)
    say(f"recovery: database written to {path}")
