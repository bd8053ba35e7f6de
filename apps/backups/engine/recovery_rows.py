"""Which rows a recovery loads: the tables of a database recovery, and one book's rows in every table that belongs to a book.

A recovery into a live database replaces rows, never the schema: the target's migrations must be
exactly the snapshot's (`schema_difference`). Some tables are never replaced there:

- `django_migrations`: the schema is compared instead;
- `backups_backuprun`, `backups_backupalert`: the recovery's own run, its progress and the alerts;
- `cluster_jobfence`: the fencing tokens of the locks the recovery itself runs under;
- the audit trail (`audit_auditevent`, `audit_auditchainhead`): append-only and hash-chained, it is
  never rolled back; it is loaded only into a target whose trail is empty (a new deployment), so
  the old trail comes back whole and the recovery's own event continues its chain.

A book's rows are found from the Django models' relations: the book, every model with a foreign
key to it, and every model with a foreign key to one of those (a share delivery's transitions),
each as a filter on the snapshot and on the target.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.apps import apps
from django.db import connection

PRESERVED_TABLES = frozenset({"django_migrations", "backups_backuprun", "backups_backupalert", "cluster_jobfence"})
AUDIT_TABLES = ("audit_auditevent", "audit_auditchainhead")
BOOK_MODEL = "pairing.Book"


@dataclass(frozen=True)
class TableRows:
    """The rows of `table` a recovery replaces: all of them, or those `where` selects.

    `where` is SQL with `{schema}` where a table name is qualified (the ATTACHed snapshot, or
    nothing) and `%(book)s` for the book id.
    """

    table: str
    where: str = ""


def book_tables() -> list[TableRows]:
    """Every table that belongs to a book, parents first, each with the filter that selects one book's rows."""
    book = apps.get_model(BOOK_MODEL)
    found: dict[type, str] = {book: f'"{book._meta.pk.column}" = %(book)s'}
    order = [book]
    frontier = [book]
    while frontier:
        parent = frontier.pop(0)
        for model in apps.get_models():
            if model in found or model._meta.proxy or not model._meta.managed:
                continue
            for field in model._meta.concrete_fields:
                if field.is_relation and field.related_model is parent:
                    parent_table, parent_pk = parent._meta.db_table, parent._meta.pk.column
                    found[model] = f'"{field.column}" IN (SELECT "{parent_pk}" FROM {{schema}}"{parent_table}" WHERE {found[parent]})'
                    order.append(model)
                    frontier.append(model)
                    break
    return [TableRows(model._meta.db_table, found[model]) for model in order]


def book_id_param(book_id) -> object:
    """The book id as the configured database stores it (a UUID column in PostgreSQL, 32 hex digits in SQLite)."""
    return apps.get_model(BOOK_MODEL)._meta.pk.get_db_prep_value(book_id, connection)


def database_tables(all_tables: list[str], *, audit_empty: bool) -> list[TableRows]:
    """The tables a database recovery replaces into a live database (the module docstring says which stay)."""
    skip = set(PRESERVED_TABLES) | (set() if audit_empty else set(AUDIT_TABLES))
    return [TableRows(table) for table in sorted(all_tables) if table not in skip]


def data_tables() -> list[str]:
    """The tables whose rows are the users' data: a target holding any is "live data" (overwrite needed)."""
    return [rows.table for rows in book_tables()]


def preserved_references(replaced: set[str]) -> list[tuple[str, str, str, str]]:
    """(table, column, referenced table, referenced column) of nullable foreign keys from a kept table into a
    replaced one: after the load, a reference to a row that is gone is set to NULL (a run's schedule)."""
    refs = []
    for model in apps.get_models():
        if model._meta.db_table not in PRESERVED_TABLES or model._meta.proxy:
            continue
        for field in model._meta.concrete_fields:
            target = field.related_model
            if field.is_relation and field.null and target is not None and target._meta.db_table in replaced:
                refs.append((model._meta.db_table, field.column, target._meta.db_table, target._meta.pk.column))
    return refs


def schema_difference(snapshot: set[tuple[str, str]], target: set[tuple[str, str]]) -> dict | None:
    """None when both databases applied the same migrations, else what differs (app.name lists, at most 20 each)."""
    if snapshot == target:
        return None
    return {
        "only_in_snapshot": sorted(f"{app}.{name}" for app, name in snapshot - target)[:20],
        "only_in_target": sorted(f"{app}.{name}" for app, name in target - snapshot)[:20],
    }
