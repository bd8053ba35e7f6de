"""Recovery: a snapshot put back into the live deployment or another location, as a run of kind `recovery`.

Types (`params["type"]`):

- `full_system`: the database, the photo objects, and the configuration bundle laid out into a
  directory (when the snapshot holds one and a passphrase file is configured or named);
- `database`: the database only;
- `selective`: the rows of chosen `tables`, or one `book_id`'s rows in every table that belongs to
  a book (engine/recovery_rows.py) and that book's photo objects;
- `point_in_time` (PostgreSQL): a base backup and the WAL up to `target_time` laid out into a data
  directory (engine/pitr.py `pitr_restore`).

Target: the live deployment (the configured database and photo store, the default), or another
location: `target_database` (a PostgreSQL database name on the same server, or a SQLite file path)
and `objects_to` (a directory, laid out as OBJECTS_DIR). A target that already holds data (a book
row, a photo object, the chosen rows) is refused with RECOVERY_TARGET_NOT_EMPTY unless `overwrite`.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.db import connection, transaction

from apps.backups.engine import runs, services
from apps.backups.engine.models import BackupRun, RunKind
from apps.backups.engine.recovery_db import (
    PostgresRows,
    RecoveryRefused,
    SqliteRows,
    TargetNotEmpty,
    postgres_copy_whole,
    postgres_database_drop,
    postgres_scratch_create,
    rows_count,
    rows_load,
    sqlite_copy_whole,
)
from apps.backups.engine.recovery_rows import AUDIT_TABLES, TableRows, book_id_param, book_tables, data_tables, database_tables
from apps.backups.engine.repository import Repository, RepositoryError
from apps.backups.engine.sources import OBJECTS_PREFIX, database_entry_names, restored_database_path
from apps.photos import storage
from homepocket.api.errors import ApplicationError

logger = logging.getLogger(__name__)

RECOVERY_TYPES = ("full_system", "database", "selective", "point_in_time")


class RecoveryTargetNotEmpty(ApplicationError):
    code = "RECOVERY_TARGET_NOT_EMPTY"
    default_message = "The recovery's target already holds data; recover over it only with overwrite."


def recovery_request(*, params: dict, requested_by: str = "", repository: str | None = None, enqueue: bool = True) -> BackupRun:
    """A QUEUED recovery run (refused at once when the live target holds data and overwrite is not set)."""
    params = {**params, "live": _database_live(params) and not params.get("objects_to")}
    if params["type"] != "point_in_time" and not params.get("overwrite"):
        try:
            _live_targets_check(params)
        except TargetNotEmpty as exc:
            raise RecoveryTargetNotEmpty(str(exc), details={"target": exc.result["target"]}) from None
    with transaction.atomic():  # the run names its repository before a worker can pick it up
        run = runs.backup_run_request(kind=RunKind.RECOVERY, requested_by=requested_by, snapshot_id=params.get("snapshot_id") or "", params=params, enqueue=enqueue)
        if repository:
            BackupRun.objects.filter(pk=run.pk).update(location_url=str(repository))
            run.location_url = str(repository)
    return run


def recovery_execute(*, run: BackupRun, progress) -> dict:
    """Carry out the recovery the run's params describe; its result (counts, what was skipped)."""
    params = run.params
    say = progress or (lambda line: None)
    if params["type"] == "point_in_time":
        return _point_in_time(params, say, repository=run.location_url or None)
    repo = services.backup_repository_open(repository=run.location_url or None)
    manifest = _snapshot(repo, params)
    say(f"recovery {params['type']}: snapshot {manifest['id']}")
    result: dict = {"snapshot_id": manifest["id"], "type": params["type"]}
    with tempfile.TemporaryDirectory(prefix="homepocket-recovery-") as scratch:
        scratch = Path(scratch)
        with_objects = params["type"] == "full_system" or (params["type"] == "selective" and params.get("book_id"))
        if not params.get("overwrite"):  # before the database changes: a refusal changes nothing
            if with_objects:
                _objects_target_check(params)
            config_to = params.get("config_to")
            if params["type"] == "full_system" and config_to and Path(config_to).is_dir() and any(Path(config_to).iterdir()):
                raise TargetNotEmpty(f"the directory {config_to}")
        result |= _database(repo, manifest, params, scratch, say)
        if with_objects:
            result["objects"] = _objects(repo, manifest, params, scratch, say)
        if params["type"] == "full_system":
            result |= _config(repo, manifest, params, scratch, run)
    logger.warning("backup.recovered", extra={"snapshot_id": manifest["id"], "type": params["type"], "rows": result.get("rows", 0), "objects": result.get("objects", 0)})
    return result


def _snapshot(repo: Repository, params: dict) -> dict:
    """The named snapshot, else the latest one that holds what this type needs."""
    if params.get("snapshot_id"):
        manifest = repo.snapshot_get(params["snapshot_id"])
        if not database_entry_names(manifest):
            raise RecoveryRefused(f"snapshot {manifest['id']} holds no database copy", code="INVALID_ARGUMENT")
        return manifest
    for manifest in reversed(repo.snapshots()):
        has_objects = manifest.get("kind") in ("database+objects", "full")
        if database_entry_names(manifest) and (has_objects or params["type"] != "full_system"):
            return manifest
    raise RepositoryError("the repository has no snapshot suitable for this recovery")


def _database_live(params: dict) -> bool:
    target = params.get("target_database")
    return not target or str(target) in (str(connection.settings_dict["NAME"]), "live")


def _rows_plan(params: dict) -> tuple[list[TableRows] | None, object]:
    """(the tables to load, None for every table; the book id as stored) of the params."""
    if params["type"] != "selective":
        return None, None
    if params.get("book_id"):
        return book_tables(), book_id_param(params["book_id"])
    return [TableRows(table) for table in params["tables"]], None


def _live_targets_check(params: dict) -> None:
    """TargetNotEmpty when the live database or store holds what this recovery would replace."""
    plan, book = _rows_plan(params)
    if _database_live(params) and params["type"] != "point_in_time":
        with connection.cursor() as cursor:
            known = set(connection.introspection.table_names(cursor))
            for rows in plan if plan is not None else [TableRows(t) for t in data_tables()]:
                if rows.table not in known:
                    continue
                where = rows.where.replace("{schema}", "").replace("%(book)s", "%s") if rows.where else ""
                args = [book] * where.count("%s")
                cursor.execute(f'SELECT 1 FROM "{rows.table}"' + (f" WHERE {where}" if where else "") + " LIMIT 1", args)
                if cursor.fetchone():
                    raise TargetNotEmpty("the live database")
    if not params.get("objects_to"):
        _objects_target_check(params)


def _objects_target_check(params: dict) -> None:
    if params["type"] not in ("full_system", "selective") or (params["type"] == "selective" and not params.get("book_id")):
        return
    prefix = _book_prefix(params)
    if params.get("objects_to"):
        root = Path(params["objects_to"]) / prefix
        if root.exists() and any(root.rglob("*")):
            raise TargetNotEmpty(f"the directory {params['objects_to']}")
        return
    if any(obj.key.startswith(prefix) for obj in storage.objects_list()):
        raise TargetNotEmpty("the photo store")


def _book_prefix(params: dict) -> str:
    return f"{storage.KEY_PREFIX}{params['book_id']}/" if params.get("book_id") else storage.KEY_PREFIX


def _database(repo: Repository, manifest: dict, params: dict, scratch: Path, say) -> dict:
    vendor = manifest.get("database_vendor")
    if vendor != connection.vendor:
        raise RecoveryRefused(f"the snapshot holds a {vendor} database and this deployment runs {connection.vendor}")
    repo.restore(manifest["id"], to=scratch / "snapshot", only=set(database_entry_names(manifest)), progress=say)
    copy = restored_database_path(scratch / "snapshot", manifest)
    plan, book = _rows_plan(params)
    settings_dict = connection.settings_dict
    if not _database_live(params) and plan is None:  # a whole copy into another location
        if vendor == "sqlite":
            sqlite_copy_whole(copy, path=Path(params["target_database"]), overwrite=params.get("overwrite", False), say=say)
        else:
            postgres_copy_whole(copy, settings_dict=settings_dict, dbname=params["target_database"], overwrite=params.get("overwrite", False), say=say)
        return {"database": "copied", "tables": len(manifest.get("database_tables") or {}), "rows": sum(t["rows"] for t in (manifest.get("database_tables") or {}).values())}
    target_name = str(settings_dict["NAME"]) if _database_live(params) else params["target_database"]
    if vendor == "sqlite":
        if not Path(target_name).is_file():
            raise RecoveryRefused(f"no SQLite database at {target_name}: a selective recovery loads into a migrated database")
        return _rows_into(SqliteRows(source=copy, target=Path(target_name)), plan, book, params, say)
    scratch_db = postgres_scratch_create(copy, settings_dict=settings_dict, say=say)
    try:
        return _rows_into(PostgresRows(settings_dict=settings_dict, source_db=scratch_db, target_db=target_name), plan, book, params, say)
    finally:
        postgres_database_drop(scratch_db, settings_dict=settings_dict)


def _rows_into(target, plan: list[TableRows] | None, book, params: dict, say) -> dict:
    try:
        if plan is None:
            audit_empty = rows_count(target, [TableRows(AUDIT_TABLES[0])]) == 0
            tables = database_tables(target.tables(), audit_empty=audit_empty)
            occupied = [TableRows(t) for t in data_tables()]
        else:
            tables = occupied = plan
        if not params.get("overwrite") and rows_count(target, occupied, book=book) > 0:
            raise TargetNotEmpty("the target database")
        return rows_load(target, tables=tables, book=book, say=say)
    finally:
        target.close()


def _objects(repo: Repository, manifest: dict, params: dict, scratch: Path, say) -> int:
    """The snapshot's photo objects (one book's, for a book) put into the store or the directory; how many."""
    prefix = OBJECTS_PREFIX + _book_prefix(params)
    names = [entry["name"] for entry in manifest["files"] if entry["name"].startswith(prefix)]
    if not names:
        return 0
    root = scratch / "objects-restore"
    repo.restore(manifest["id"], to=root, only=set(names), progress=say)
    for done, name in enumerate(names, 1):
        key = name[len(OBJECTS_PREFIX):]
        path = root / name
        if params.get("objects_to"):
            destination = Path(params["objects_to"]) / key
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(path, destination)
        else:
            storage.object_put(key=key, body=path.read_bytes())
            path.unlink()
        if done % 50 == 0 or done == len(names):
            say(f"recovery: {done}/{len(names)} photo objects written")
    return len(names)


def _config(repo: Repository, manifest: dict, params: dict, scratch: Path, run: BackupRun) -> dict:
    """The configuration bundle laid out under `config_to` when the snapshot holds one and a passphrase file is at hand."""
    if services.CONFIG_BUNDLE_NAME not in {entry["name"] for entry in manifest["files"]}:
        return {"config": "not in the snapshot"}
    passphrase_file = params.get("passphrase_file") or settings.BACKUP_SECRETS_PASSPHRASE_FILE
    if not passphrase_file:
        return {"config": "skipped: no passphrase file (BACKUP_SECRETS_PASSPHRASE_FILE or --passphrase-file)"}
    repo.restore(manifest["id"], to=scratch / "config", only={services.CONFIG_BUNDLE_NAME})
    to = Path(params.get("config_to") or Path(settings.VAR_DIR) / "recovered-config" / str(run.pk))
    written = services.backup_secrets_restore(
        blob=(scratch / "config" / services.CONFIG_BUNDLE_NAME).read_bytes(), passphrase=Path(passphrase_file).read_text().strip(), to=to,
        overwrite=params.get("overwrite", False),
    )  # fmt: skip
    return {"config": str(to), "config_files": len(written)}


def point_in_time_possible() -> bool:
    """PITR restores PostgreSQL base backups: of this deployment's database, or of BACKUP_PHYSICAL_DATABASE_URL's server."""
    return connection.vendor == "postgresql" or bool(settings.BACKUP_PHYSICAL_DATABASE_URL)


def _point_in_time(params: dict, say, *, repository: str | None) -> dict:
    from apps.backups.engine.pitr import pitr_restore

    if not point_in_time_possible():
        raise RecoveryRefused("point-in-time recovery needs PostgreSQL (the embedded mode's SQLite has no WAL archive)")
    result = pitr_restore(
        target_time=datetime.fromisoformat(params["target_time"]), to=Path(params["to"]), base_snapshot=params.get("base_snapshot") or None,
        overwrite=params.get("overwrite", False), repository=repository, progress=say,
    )  # fmt: skip
    return json.loads(json.dumps(result, default=str))
