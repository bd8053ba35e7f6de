"""Copy an embedded deployment's database (SQLite) into PostgreSQL: batched, resumable, verified.

`manage.py migrate_to_postgres --target <DATABASE_URL>` (docs/deploy.md) drives this module:

1. The target must be an empty database (or one this copy left interrupted: then `--resume`).
   The source is only read, never written.
2. `migrate` builds the schema on the target; the rows migrations seed there (content types,
   permissions, default policies) are truncated so the source's rows, with their ids, replace them.
3. Tables are copied in foreign-key order (parents first), in primary-key order, in batches; each
   batch and the table's progress row commit together, so an interrupted copy (Ctrl-C, SIGTERM,
   SIGKILL, a lost connection) resumes after the last committed batch.
4. Sequences are moved past the copied ids; then every table's row count and checksum (SHA-256
   over its rows in primary-key order, values read through the ORM on both sides and
   canonicalised) are compared.
5. Any failure other than an interruption rolls the target back to what the first run found: an
   empty database (every table this copy made is dropped).
"""

from __future__ import annotations

import datetime
import decimal
import hashlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from django.apps import apps
from django.core.management import call_command
from django.core.management.color import no_style
from django.db import connections, transaction
from django.db.migrations.executor import MigrationExecutor
from django.db.models import Model

PROGRESS_TABLE = "homepocket_dbcopy_progress"


class CopyRefused(Exception):
    """The copy cannot start (target not empty, source not migrated, ...): nothing was changed."""


class VerificationFailed(Exception):
    pass


@dataclass(frozen=True)
class TableReport:
    table: str
    rows: int
    checksum: str


def models_in_dependency_order() -> list[type[Model]]:
    """Every concrete model, parents before the models whose foreign keys point at them."""
    models = [m for m in apps.get_models(include_auto_created=True) if not m._meta.proxy and m._meta.managed]
    by_table = {m._meta.db_table: m for m in models}
    ordered: list[type[Model]] = []
    visiting: set[str] = set()
    done: set[str] = set()

    def visit(model):
        table = model._meta.db_table
        if table in done or table in visiting:
            return  # a cycle (or self-reference): deferred FK checks cover it within a batch
        visiting.add(table)
        for field in model._meta.concrete_fields:
            if field.is_relation and field.related_model is not None:
                parent = by_table.get(field.related_model._meta.db_table)
                if parent is not None and parent is not model:
                    visit(parent)
        visiting.discard(table)
        done.add(table)
        ordered.append(model)

    for model in sorted(models, key=lambda m: m._meta.db_table):
        visit(model)
    return ordered


def canonical(value) -> str:
    """One text form for a value read through the ORM from either database."""
    if value is None:
        return "\x00"
    if isinstance(value, datetime.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(datetime.timezone.utc)
        return value.isoformat()
    if isinstance(value, (datetime.date, datetime.time, uuid.UUID, decimal.Decimal)):
        return str(value)
    if isinstance(value, (bytes, memoryview, bytearray)):
        return bytes(value).hex()
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return repr(value)


def table_report(model: type[Model], alias: str) -> TableReport:
    fields = [f.attname for f in model._meta.concrete_fields]
    digest = hashlib.sha256()
    rows = 0
    for row in model._default_manager.using(alias).order_by("pk").values_list(*fields).iterator(chunk_size=2000):
        digest.update("|".join(canonical(v) for v in row).encode())
        digest.update(b"\n")
        rows += 1
    return TableReport(model._meta.db_table, rows, digest.hexdigest())


class DatabaseCopy:
    def __init__(self, *, source: str, target: str, batch_size: int, progress: Callable[[str], None]):
        self.source, self.target = source, target
        self.batch_size = batch_size
        self.progress = progress
        self.models = models_in_dependency_order()

    # --- preconditions -------------------------------------------------------------------------

    def _target_tables(self) -> set[str]:
        with connections[self.target].cursor() as cursor:
            return set(connections[self.target].introspection.table_names(cursor))

    def check_source_migrated(self) -> None:
        executor = MigrationExecutor(connections[self.source])
        if executor.migration_plan(executor.loader.graph.leaf_nodes()):
            raise CopyRefused("the source database has unapplied migrations: run `manage.py migrate` first")

    def start_state(self, *, resume: bool) -> str:
        """'fresh' or 'resume', or CopyRefused when the target holds something else."""
        tables = self._target_tables()
        if not tables:
            if resume:
                raise CopyRefused("nothing to resume: the target database is empty (run without --resume)")
            return "fresh"
        if PROGRESS_TABLE in tables:
            if not resume:
                raise CopyRefused("the target holds an interrupted copy: run again with --resume")
            return "resume"
        raise CopyRefused("the target database is not empty; give an empty database (createdb)")

    # --- the copy ------------------------------------------------------------------------------

    def prepare_fresh(self) -> None:
        self.progress("creating the schema on the target (migrate)")
        call_command("migrate", database=self.target, interactive=False, verbosity=0)
        tables = [m._meta.db_table for m in self.models]
        with transaction.atomic(using=self.target), connections[self.target].cursor() as cursor:
            quoted = ", ".join(connections[self.target].ops.quote_name(t) for t in tables)
            cursor.execute(f"TRUNCATE {quoted} RESTART IDENTITY CASCADE")
            cursor.execute(
                f"CREATE TABLE {PROGRESS_TABLE} (table_name text PRIMARY KEY, last_pk text, copied bigint NOT NULL, done boolean NOT NULL)"
            )
            cursor.executemany(
                f"INSERT INTO {PROGRESS_TABLE} (table_name, last_pk, copied, done) VALUES (%s, NULL, 0, false)",
                [(t,) for t in tables],
            )

    def _progress_row(self, table: str) -> tuple[str | None, int, bool]:
        with connections[self.target].cursor() as cursor:
            cursor.execute(f"SELECT last_pk, copied, done FROM {PROGRESS_TABLE} WHERE table_name = %s", [table])
            return cursor.fetchone()

    def copy_all(self) -> None:
        for model in self.models:
            self._copy_table(model)

    def _copy_table(self, model: type[Model]) -> None:
        table = model._meta.db_table
        last_pk, copied, done = self._progress_row(table)
        total = model._default_manager.using(self.source).count()
        if done:
            self.progress(f"{table}: done earlier ({copied} rows)")
            return
        target = connections[self.target]
        fields = list(model._meta.concrete_fields)
        pk_field = model._meta.pk
        columns = ", ".join(target.ops.quote_name(f.column) for f in fields)
        placeholders = ", ".join(["%s"] * len(fields))
        insert = f"INSERT INTO {target.ops.quote_name(table)} ({columns}) VALUES ({placeholders})"
        last = json.loads(last_pk) if last_pk is not None else None
        if last is not None:
            self.progress(f"{table}: resuming after {copied}/{total} rows")
        while True:
            queryset = model._default_manager.using(self.source).order_by("pk")
            if last is not None:
                queryset = queryset.filter(pk__gt=pk_field.to_python(last))
            rows = list(queryset.values_list(*[f.attname for f in fields])[: self.batch_size])
            if not rows:
                break
            params = [[f.get_db_prep_save(v, connection=target) for f, v in zip(fields, row)] for row in rows]
            pk_index = fields.index(pk_field)
            last = canonical_pk(rows[-1][pk_index])
            copied += len(rows)
            with transaction.atomic(using=self.target), target.cursor() as cursor:
                cursor.executemany(insert, params)
                cursor.execute(
                    f"UPDATE {PROGRESS_TABLE} SET last_pk = %s, copied = %s WHERE table_name = %s",
                    [json.dumps(last), copied, table],
                )
            self.progress(f"{table}: {copied}/{total} rows {progress_bar(copied, total)}")
        with target.cursor() as cursor:
            cursor.execute(f"UPDATE {PROGRESS_TABLE} SET done = true WHERE table_name = %s", [table])
        if copied == 0:
            self.progress(f"{table}: empty")

    def reset_sequences(self) -> None:
        target = connections[self.target]
        statements = target.ops.sequence_reset_sql(no_style(), self.models)
        with transaction.atomic(using=self.target), target.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)

    def verify(self) -> list[TableReport]:
        reports = []
        for model in self.models:
            source, target = table_report(model, self.source), table_report(model, self.target)
            if source != target:
                raise VerificationFailed(
                    f"{source.table}: source {source.rows} rows / {source.checksum[:12]}, target {target.rows} rows / {target.checksum[:12]}"
                )
            self.progress(f"verified {source.table}: {source.rows} rows, sha256 {source.checksum[:16]}")
            reports.append(source)
        return reports

    def finish(self) -> None:
        with connections[self.target].cursor() as cursor:
            cursor.execute(f"DROP TABLE {PROGRESS_TABLE}")

    def roll_back(self) -> None:
        """Back to the empty database the first run started from: drop every table of the target."""
        target = connections[self.target]
        target.close()  # a broken transaction must not hold locks on what is dropped
        tables = self._target_tables()
        if tables:
            with target.cursor() as cursor:
                cursor.execute("DROP TABLE " + ", ".join(target.ops.quote_name(t) for t in sorted(tables)) + " CASCADE")


def canonical_pk(value):
    """A primary key as JSON can hold it (and Field.to_python reads back)."""
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def progress_bar(done: int, total: int, width: int = 24) -> str:
    if not total:
        return ""
    filled = min(width, width * done // total)
    return f"[{'#' * filled}{'.' * (width - filled)}] {100 * done // total}%"
