"""Server backups as the rest of the server calls them: create, list, verify, restore, and re-wrap on rotation.

The repository (engine/repository.py) holds everything a restore needs; these functions add the
Django side: where the repository is (settings.BACKUP_REPOSITORY_DIR), which database to copy,
and which master-key custodian to use (signer/custody.py, the same one signing keys use).
"""

from __future__ import annotations

import importlib
import logging
import os
import platform
import re
import tempfile
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

import django
import dj_database_url
from django.conf import settings
from django.db import connection

from apps.audit.services import audit_event_record
from apps.backups.engine import metrics, physical
from apps.backups.engine.drills import database_drill
from apps.backups.engine.repository import Progress, Repository, RepositoryError, SourceItem, VerifyReport
from apps.backups.engine.retention import RetentionPolicy, snapshots_to_keep
from apps.backups.engine.secrets_bundle import bundle_open, bundle_seal, bundle_write_out
from apps.backups.engine.sources import OBJECTS_PREFIX, database_snapshot
from apps.photos import storage
from signer.custody import Custody, CustodyError, LocalKeyFileCustody, custody_from_environ

logger = logging.getLogger(__name__)


def repository_location(repository: str | Path | None = None) -> str:
    """The repository to use: the one named, else BACKUP_REPOSITORY (a path or s3://bucket/prefix), else BACKUP_REPOSITORY_DIR."""
    return str(repository or settings.BACKUP_REPOSITORY or settings.BACKUP_REPOSITORY_DIR)


def repository_s3_options() -> dict:
    """s3_client() options for an s3:// repository (BACKUP_S3_*, each defaulting to the photo store's S3_*)."""
    return dict(settings.BACKUP_S3)


def _source_version() -> dict:
    """What wrote the data: the restore side compares it before loading a database copy."""
    return {"api_version": settings.API_VERSION, "django": django.get_version(), "python": platform.python_version()}


def _photo_objects() -> list[SourceItem]:
    """Every photo object, read lazily; its modification time lets an unchanged one be skipped."""
    return [
        SourceItem(name=OBJECTS_PREFIX + obj.key, size=obj.size, read=partial(storage.object_read, obj.key), stamp=obj.modified_at.isoformat())
        for obj in storage.objects_list()
    ]


BACKUP_TYPES = ("database", "objects", "config", "full", "physical", "wal")
CONFIG_BUNDLE_NAME = "config/secrets-bundle.hps"


def backup_create(
    *, objects: bool = True, backup_type: str | None = None, schedule: str = "", trigger: str = "", repository: str | Path | None = None,
    progress: Progress | None = None,
) -> dict:
    """A snapshot into the repository; its manifest.

    `backup_type`: database (online backup / pg_dump), objects (the photo store), config (the
    secrets bundle sealed under BACKUP_SECRETS_PASSPHRASE_FILE), full (all three; config when a
    passphrase is configured), physical (a PostgreSQL base backup) or wal (the archived WAL in
    BACKUP_WAL_SPOOL_DIR; an empty spool makes no snapshot: the result's id is None and `message`
    says so). Without it: the database, plus the objects unless `objects=False`.
    The repository is made on first use. Objects are incremental: one listed with the size and
    modification time the previous snapshot recorded is not read again.
    """
    backup_type = backup_type or ("full" if objects else "database")
    if backup_type not in BACKUP_TYPES:
        raise RepositoryError(f"unknown backup type {backup_type!r}")
    try:
        manifest = _backup_create(backup_type=backup_type, schedule=schedule, trigger=trigger, repository=repository, progress=progress)
    except Exception as exc:
        metrics.RUNS.labels(outcome="failure").inc()
        logger.error("backup.failed", extra={"error": type(exc).__name__})
        raise
    metrics.RUNS.labels(outcome="success").inc()
    if manifest["id"] is None:
        return manifest  # a WAL push with nothing to push
    metrics.BYTES_READ.inc(manifest["stats"]["bytes_in"])
    metrics.BYTES_ADDED.inc(manifest["stats"]["bytes_stored_new"])
    metrics.DURATION.observe(manifest["duration_seconds"])
    metrics.LAST_SUCCESS.set(datetime.fromisoformat(manifest["finished_at"]).timestamp())
    return manifest


def _config_bundle_item(scratch: Path) -> SourceItem | None:
    """The secrets bundle as a file of the snapshot, or None when no passphrase file is configured."""
    if not settings.BACKUP_SECRETS_PASSPHRASE_FILE:
        return None
    passphrase = Path(settings.BACKUP_SECRETS_PASSPHRASE_FILE).read_text().strip()
    path = scratch / "secrets-bundle.hps"
    path.write_bytes(backup_secrets_export(passphrase=passphrase))
    return SourceItem.of_file(CONFIG_BUNDLE_NAME, path)


def _backup_create(*, backup_type: str, schedule: str, trigger: str, repository: str | Path | None, progress: Progress | None) -> dict:
    say = progress or (lambda line: None)
    repo = Repository.open_or_init(
        repository_location(repository), custody=custody_from_environ(), s3_options=repository_s3_options(), compression=settings.BACKUP_COMPRESSION
    )
    meta: dict = {"kind": backup_type if backup_type != "full" else "database+objects", "source_version": _source_version(), "host": platform.node()}
    if schedule:
        meta["schedule"] = schedule
    if trigger:
        meta["trigger"] = trigger
    if backup_type in ("physical", "wal"):
        return _physical_backup_create(repo, backup_type=backup_type, meta=meta, progress=progress)
    items: list[SourceItem] = []
    with tempfile.TemporaryDirectory(prefix="homepocket-backup-") as scratch:
        if backup_type in ("database", "full"):
            say(f"backup: copying the {connection.vendor} database")
            name, copy, tables = database_snapshot(settings_dict=connection.settings_dict, vendor=connection.vendor, scratch=Path(scratch))
            items.append(SourceItem.of_file(name, copy))
            meta |= {"database_vendor": connection.vendor, "database_tables": tables}
        if backup_type in ("objects", "full"):
            objects = _photo_objects()
            items += objects
            meta["object_store"] = "s3" if storage.s3_enabled() else "local"
            say(f"backup: {len(objects)} photo objects listed")
        if backup_type in ("config", "full"):
            bundle = _config_bundle_item(Path(scratch))
            if bundle is None and backup_type == "config":
                raise RepositoryError("a config backup needs BACKUP_SECRETS_PASSPHRASE_FILE (the bundle is sealed under that passphrase)")
            if bundle is not None:
                items.append(bundle)
                meta["kind"] = "full" if backup_type == "full" else "config"
        manifest = repo.snapshot_create(items, meta=meta, progress=progress)
    logger.info(
        "backup.created",
        extra={"snapshot_id": manifest["id"], "bytes_in": manifest["stats"]["bytes_in"], "bytes_added": manifest["stats"]["bytes_stored_new"], "duration_seconds": manifest["duration_seconds"]},
    )
    return manifest


def _physical_backup_create(repo: Repository, *, backup_type: str, meta: dict, progress: Progress | None) -> dict:
    """A base backup of the PostgreSQL server, or the WAL spool pushed (engine/physical.py)."""
    if backup_type == "wal":
        manifest = physical.wal_push(repo, spool=Path(settings.BACKUP_WAL_SPOOL_DIR), meta=meta, progress=progress)
        if manifest is None:
            now = datetime.now(timezone.utc).isoformat()
            message = f"the WAL spool {settings.BACKUP_WAL_SPOOL_DIR} is empty: no snapshot made"
            stats = {"bytes_in": 0, "chunks": 0, "chunks_new": 0, "bytes_stored_new": 0, "files": 0, "files_unchanged": 0, "parent": None}
            return {"id": None, "kind": "wal", "started_at": now, "finished_at": now, "duration_seconds": 0.0, "files": [], "stats": stats, "message": message}
    else:
        url = settings.BACKUP_PHYSICAL_DATABASE_URL
        source = physical.physical_source(
            vendor=connection.vendor, settings_dict=connection.settings_dict, url_settings=dj_database_url.parse(url) if url else None
        )
        with tempfile.TemporaryDirectory(prefix="homepocket-physical-") as scratch:
            manifest = physical.physical_backup(
                repo, settings_dict=source, scratch=Path(scratch), meta=meta, bin_dir=settings.BACKUP_POSTGRES_BIN_DIR, progress=progress
            )
    logger.info("backup.created", extra={"snapshot_id": manifest["id"], "kind": manifest["kind"], "bytes_in": manifest["stats"]["bytes_in"]})
    return manifest


def backup_repository_open(*, repository: str | Path | None = None) -> Repository:
    """The existing repository (no database needed: the disaster case)."""
    return Repository.open(repository_location(repository), custody=custody_from_environ(), s3_options=repository_s3_options())


def backup_compression_set(*, compression: str, repository: str | Path | None = None) -> dict:
    """The repository writes with `compression` from now on (chunks already stored keep their codec)."""
    repo = backup_repository_open(repository=repository)
    previous = repo.compression_set(compression)
    logger.info("backup.compression_changed", extra={"previous": previous, "compression": compression, "format_version": repo.config["version"]})
    return {"previous": previous, "compression": compression, "format_version": repo.config["version"]}


def backup_verify(*, snapshot_id: str | None = None, repository: str | Path | None = None, progress: Progress | None = None) -> VerifyReport:
    """Every chunk (of the snapshot, if named) re-read and its MAC checked; every snapshot's chunks present and sound."""
    report = backup_repository_open(repository=repository).verify(snapshot_id=snapshot_id, progress=progress)
    for problem in report.problems:
        metrics.VERIFY_PROBLEMS.labels(kind=problem["kind"]).inc()
    log = logger.info if report.ok else logger.error
    log("backup.verified", extra={"snapshots": report.snapshots_checked, "chunks": report.chunks_checked, "problems": len(report.problems)})
    return report


def backup_step_audit(*, event_type: str, outcome: str = "success", target: str = "", details: dict | None = None) -> None:
    """Audit an operator's step (restore, forget, prune, hold). In the disaster case there is no
    database to write to: the step still runs, and the missing audit row is logged instead."""
    try:
        audit_event_record(event_type=event_type, outcome=outcome, target=target, details=details or {})
    except Exception as exc:  # noqa: BLE001 (the database is gone: the restore must not fail for it)
        logger.warning("backup.audit_unavailable", extra={"event_type": event_type, "error": type(exc).__name__})


def backup_restore(*, snapshot_id: str, to: Path, overwrite: bool = False, repository: str | Path | None = None, progress: Progress | None = None) -> dict:
    """The snapshot's files written under `to` (never over existing files without `overwrite`)."""
    manifest = backup_repository_open(repository=repository).restore(snapshot_id, to=Path(to), overwrite=overwrite, progress=progress)
    logger.info("backup.restored", extra={"snapshot_id": snapshot_id, "files": len(manifest["files"])})
    backup_step_audit(event_type="backup.restored", target=f"snapshot:{snapshot_id}", details={"files": len(manifest["files"]), "to": "directory"})
    return manifest


def snapshot_latest_with_database(repo: Repository) -> str | None:
    """The newest snapshot that holds a database with recorded table digests (what a test restore checks)."""
    return next((m["id"] for m in reversed(repo.snapshots()) if m.get("database_tables") is not None), None)


def backup_test_restore(*, snapshot_id: str | None = None, repository: str | Path | None = None, progress: Progress | None = None) -> dict:
    """Restore the snapshot's (default: the latest's) database into scratch space and compare every table."""
    repo = backup_repository_open(repository=repository)
    if snapshot_id is None:
        snapshot_id = snapshot_latest_with_database(repo)
        if snapshot_id is None:
            raise RepositoryError("the repository has no database snapshot")
    with tempfile.TemporaryDirectory(prefix="homepocket-drill-") as scratch:
        report = database_drill(repo=repo, snapshot_id=snapshot_id, settings_dict=connection.settings_dict, scratch=Path(scratch), progress=progress)
    log = logger.info if report["ok"] else logger.error
    log("backup.test_restore", extra={"snapshot_id": snapshot_id, "tables": report["tables_checked"], "mismatches": len(report["mismatches"])})
    return report


def backup_forget(*, snapshot_ids: list[str] | None = None, policy: RetentionPolicy | None = None, dry_run: bool = False, repository: str | Path | None = None) -> dict:
    """Forget the named snapshots, or those `policy` does not keep; held snapshots refuse the whole step."""
    repo = backup_repository_open(repository=repository)
    keep: dict[str, list[str]] = {}
    if policy is not None:
        if policy.empty():
            raise RepositoryError("a retention policy that keeps nothing is refused; name snapshots to forget them")
        started = [(m["id"], datetime.fromisoformat(m["started_at"])) for m in repo.snapshots()]
        keep = snapshots_to_keep(started, policy)
        snapshot_ids = [snapshot_id for snapshot_id, _ in started if snapshot_id not in keep]
    try:
        forgotten = repo.forget(snapshot_ids or [], dry_run=dry_run)
    except RepositoryError as exc:  # a legal hold refused the step: the attempt is audited too
        backup_step_audit(event_type="backup.deleted", outcome="failure", target=f"repository:{repo.location}", details={"step": "forget", "refused": str(exc)[:300]})
        raise
    # Deletion is its own step, always logged and audited.
    logger.warning("backup.forgotten", extra={"snapshots": forgotten, "dry_run": dry_run})
    if not dry_run:
        backup_step_audit(event_type="backup.deleted", target=f"repository:{repo.location}", details={"step": "forget", "snapshots": forgotten})
    return {"forget": forgotten, "keep": keep, "dry_run": dry_run}


def backup_wal_forget_unneeded(*, dry_run: bool = False, repository: str | Path | None = None) -> dict:
    """Forget the WAL snapshots no remaining base backup needs (all their segments precede the oldest base's start)."""
    unneeded = physical.wal_snapshots_unneeded(backup_repository_open(repository=repository).snapshots())
    return backup_forget(snapshot_ids=unneeded, dry_run=dry_run, repository=repository)


def backup_prune(*, dry_run: bool = False, repository: str | Path | None = None, progress: Progress | None = None) -> dict:
    """Delete chunks no snapshot references (refused while a backup runs)."""
    result = backup_repository_open(repository=repository).prune(dry_run=dry_run, progress=progress)
    logger.warning("backup.pruned", extra=result)
    if not dry_run:
        backup_step_audit(event_type="backup.deleted", target=f"repository:{repository_location(repository)}", details={"step": "prune", **result})
    return result


def backup_hold(*, snapshot_id: str, reason: str = "", release: bool = False, repository: str | Path | None = None) -> None:
    """Set (or release) a legal hold on a snapshot."""
    repo = backup_repository_open(repository=repository)
    if release:
        repo.hold_release(snapshot_id)
    else:
        repo.hold_set(snapshot_id, reason=reason)
    logger.warning("backup.hold", extra={"snapshot_id": snapshot_id, "released": release})
    backup_step_audit(event_type="backup.hold", target=f"snapshot:{snapshot_id}", details={"released": release, "reason": reason[:200]})


# Variables read outside settings.py: the signer's custody (signer/custody.py) and the var dir.
_EXTRA_ENVIRONMENT_PREFIXES = ("SIGNING_", "HOMEPOCKET_")


def _configuration_variables() -> set[str]:
    """The names settings.py reads through its env_* helpers (and their NAME_FILE forms)."""
    source = Path(importlib.import_module(os.environ.get("DJANGO_SETTINGS_MODULE", "homepocket.settings")).__file__).read_text()
    names = set(re.findall(r'env_[a-z]+\(\s*"([A-Z][A-Z0-9_]*)"', source))
    return names | {f"{name}_FILE" for name in names}


def backup_secrets_export(*, passphrase: str) -> bytes:
    """The configuration-and-secrets bundle, sealed under `passphrase` (engine/secrets_bundle.py)."""
    wanted = _configuration_variables()
    environment = {name: value for name, value in os.environ.items() if name in wanted or name.startswith(_EXTRA_ENVIRONMENT_PREFIXES)}
    # A secret given as NAME_FILE (Docker/Kubernetes secrets) is kept by value: the path alone restores nothing.
    files = {name: Path(path).read_text() for name, path in environment.items() if name.endswith("_FILE") and Path(path).is_file()}
    custody = custody_from_environ()
    master_key = {"kind": type(custody).__name__, "current_key_id": custody.current_key_id()}
    if isinstance(custody, LocalKeyFileCustody):
        master_key["file"] = custody.path.read_text()
    contents = {
        "version": 1,
        "created_at": datetime.now(timezone.utc).isoformat(),
        "secrets": {"secret_key": settings.SECRET_KEY, "audit_hash_key": settings.AUDIT_HASH_KEY, "object_url_secret": settings.OBJECT_URL_SECRET},
        "environment": environment,
        "environment_files": files,
        "master_key": master_key,
    }
    blob = bundle_seal(contents, passphrase=passphrase)
    logger.warning("backup.secrets_exported", extra={"master_key": master_key["kind"], "environment_variables": len(environment)})
    return blob


def backup_secrets_restore(*, blob: bytes, passphrase: str, to: Path, overwrite: bool = False) -> list[Path]:
    """Open a bundle and lay it out under `to` (a var directory and an `environment` file); no database needed."""
    return bundle_write_out(bundle_open(blob, passphrase=passphrase), to=to, overwrite=overwrite)


def backup_master_keys_rewrap(*, custody_: Custody, new_master: str) -> set[str]:
    """Re-wrap the configured repository's keys (keys.json and every snapshot key) under `new_master`;
    the master key ids it still needs.

    Listed in apps/signing/services.py MASTER_KEY_USERS, so the master-key rotation does not retire
    a key some backup key is wrapped under (that would make those backups unreadable). Key files
    already under `new_master` are skipped, so a rotation retried after a failure finishes the rest.
    """
    location, options = repository_location(), repository_s3_options()
    if not Repository.exists_at(location, s3_options=options):
        return set()
    try:
        Repository.open(location, custody=custody_, s3_options=options).keys_rewrap(custody=custody_)
    except (CustodyError, RepositoryError):
        logger.error("backup.rewrap_failed", extra={"repository": location})
    return Repository.master_key_ids_of(location, s3_options=options) - {new_master}
