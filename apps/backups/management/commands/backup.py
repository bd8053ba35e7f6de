"""`manage.py backup run (alias create)|list|verify|test-restore|restore|recover|pitr|forget|prune|hold|catalog|retention|compression|secrets-export|secrets-restore`: server backups (docs/backups.md).

`list` and `restore` need only the repository and the master key, not the database: pass
`--repository DIR` to use a repository other than settings.BACKUP_REPOSITORY_DIR.
"""

from __future__ import annotations

import argparse
import json
import os
from datetime import datetime
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from apps.backups.engine import services
from apps.backups.engine.codecs import CODEC_NAMES
from apps.backups.engine.repository import RepositoryError
from apps.backups.engine.retention import RetentionPolicy
from apps.backups.engine.secrets_bundle import BundleError
from apps.backups.engine.sources import SourceError
from apps.backups.management.recover_command import recover_arguments, recover_handle
from signer.custody import CustodyError, CustodyUnavailable


class Command(BaseCommand):
    help = "Server backups: create a database snapshot, list snapshots, verify the repository, restore a snapshot."

    def add_arguments(self, parser):
        parser.add_argument("--repository", help="Repository: a directory or s3://bucket/prefix (default: BACKUP_REPOSITORY, else BACKUP_REPOSITORY_DIR).")
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("run", aliases=["create"], help="Snapshot the database and the photo objects into the repository.")
        create.add_argument("--database-only", action="store_true", help="Leave the photo objects out.")
        create.add_argument("--type", choices=services.BACKUP_TYPES, dest="backup_type", help="What to back up (default: full, or database with --database-only).")
        listing = sub.add_parser("list", help="Snapshots, oldest first.")
        listing.add_argument("--json", action="store_true", help="One JSON object per snapshot.")
        sub.add_parser("verify", help="Re-read every chunk and check its MAC; exit 1 on any problem.")
        drill = sub.add_parser("test-restore", help="Restore a snapshot's database into scratch space and compare every table; exit 1 on a mismatch.")
        drill.add_argument("snapshot_id", nargs="?", default="latest", help="A snapshot id, or `latest` (default).")
        forget = sub.add_parser("forget", help="Remove snapshots (named, or those a GFS policy does not keep); held ones refuse.")
        forget.add_argument("snapshot_ids", nargs="*")
        for rule in ("last", "daily", "weekly", "monthly", "yearly"):
            forget.add_argument(f"--keep-{rule}", type=int, default=0)
        forget.add_argument("--dry-run", action="store_true", help="Show what would go; change nothing.")
        forget.add_argument("--unneeded-wal", action="store_true", help="Forget the WAL snapshots no remaining base backup needs.")
        prune = sub.add_parser("prune", help="Delete chunks no snapshot references, then the data keys nothing is sealed under.")
        prune.add_argument("--dry-run", action="store_true")
        hold = sub.add_parser("hold", help="Set or release a legal hold on a snapshot.")
        hold.add_argument("snapshot_id")
        hold.add_argument("--reason", default="")
        hold.add_argument("--release", action="store_true")
        export = sub.add_parser("secrets-export", help="Seal the configuration-and-secrets bundle (master key included) under a passphrase.")
        export.add_argument("--to", required=True, help="Bundle file to write (must not exist).")
        export.add_argument("--passphrase-file", required=True, help="File holding the passphrase (never on the command line).")
        secrets_restore = sub.add_parser("secrets-restore", help="Open a bundle into a var directory and an `environment` file.")
        secrets_restore.add_argument("bundle")
        secrets_restore.add_argument("--to", required=True)
        secrets_restore.add_argument("--passphrase-file", required=True)
        secrets_restore.add_argument("--overwrite", action="store_true")
        compression = sub.add_parser("compression", help="Show the repository's codec, or set the one new chunks are written with.")
        compression.add_argument("codec", nargs="?", choices=CODEC_NAMES, help="zstd, gzip, lz4 or none; stored chunks keep theirs.")
        sub.add_parser("catalog", help="Rebuild the database catalog of snapshots from the repository (admin, API).")
        retention = sub.add_parser("retention", help="Apply each schedule's retention rules (GFS, delete/archive after days; holds respected).")
        retention.add_argument("--schedule", help="Only this schedule (its name).")
        retention.add_argument("--dry-run", action="store_true", help="Show what would be forgotten and archived; change nothing.")
        restore = sub.add_parser("restore", help="Restore a snapshot's files into a directory.")
        restore.add_argument("snapshot_id", help="A snapshot id, or `latest`.")
        restore.add_argument("--to", required=True, help="Target directory (must be empty unless --overwrite).")
        restore.add_argument("--overwrite", action="store_true")
        # Point-in-time recovery (engine/pitr.py).
        pitr = sub.add_parser("pitr", help="Lay out a PostgreSQL data directory that recovers to a point in time when started.")
        pitr.add_argument("--target-time", required=True, type=_aware_time, help="ISO 8601 with a zone, e.g. 2026-11-25T01:02:03Z; `latest`: every archived transaction.")
        pitr.add_argument("--to", required=True, help="The data directory to make (must be empty unless --overwrite); WAL goes to DIR-wal.")
        pitr.add_argument("--base", help="The physical snapshot to start from (default: the latest that finished before the target).")
        pitr.add_argument("--overwrite", action="store_true")
        recover_arguments(sub)

    def handle(self, *args, action, repository=None, **options):
        progress = self.stdout.write
        try:
            if action in ("run", "create"):
                manifest = services.backup_create(
                    objects=not options["database_only"], backup_type=options["backup_type"], repository=repository, progress=progress
                )
                self.stdout.write(manifest["message"] if manifest["id"] is None else self._line(manifest))
            elif action == "list":
                for manifest in services.backup_repository_open(repository=repository).snapshots():
                    self.stdout.write(json.dumps(_summary(manifest)) if options["json"] else self._line(manifest))
            elif action == "verify":
                report = services.backup_verify(repository=repository, progress=progress)
                for problem in report.problems:
                    self.stderr.write("problem: " + json.dumps(problem))
                if not report.ok:
                    raise CommandError(f"verify found {len(report.problems)} problems", returncode=1)
                self.stdout.write(f"ok: {report.snapshots_checked} snapshots, {report.chunks_checked} chunks verified")
            elif action == "test-restore":
                snapshot_id = None if options["snapshot_id"] == "latest" else options["snapshot_id"]
                report = services.backup_test_restore(snapshot_id=snapshot_id, repository=repository, progress=progress)
                for mismatch in report["mismatches"]:
                    self.stderr.write("mismatch: " + json.dumps(mismatch))
                if not report["ok"]:
                    raise CommandError(f"test restore of {report['snapshot']}: {len(report['mismatches'])} tables differ", returncode=1)
                self.stdout.write(f"ok: {report['snapshot']} restored, {report['tables_checked']} tables and {report['rows']} rows match")
            elif action == "forget" and options["unneeded_wal"]:
                if options["snapshot_ids"]:
                    raise CommandError("--unneeded-wal chooses the snapshots itself: name none")
                result = services.backup_wal_forget_unneeded(dry_run=options["dry_run"], repository=repository)
                for snapshot_id in result["forget"]:
                    self.stdout.write(f"{'would forget' if options['dry_run'] else 'forgot'} {snapshot_id}")
            elif action == "forget":
                policy = RetentionPolicy(**{f"keep_{r}": options[f"keep_{r}"] for r in ("last", "daily", "weekly", "monthly", "yearly")})
                if policy.empty() == (not options["snapshot_ids"]):
                    raise CommandError("name snapshots or give --keep-* rules (not both)")
                result = services.backup_forget(
                    snapshot_ids=options["snapshot_ids"] or None, policy=None if policy.empty() else policy, dry_run=options["dry_run"], repository=repository
                )
                verb = "would forget" if options["dry_run"] else "forgot"
                for snapshot_id in result["forget"]:
                    self.stdout.write(f"{verb} {snapshot_id}")
                for snapshot_id, reasons in sorted(result["keep"].items()):
                    self.stdout.write(f"keep {snapshot_id} ({', '.join(reasons)})")
            elif action == "prune":
                services.backup_prune(dry_run=options["dry_run"], repository=repository, progress=progress)
            elif action == "hold":
                services.backup_hold(snapshot_id=options["snapshot_id"], reason=options["reason"], release=options["release"], repository=repository)
                self.stdout.write(f"hold {'released' if options['release'] else 'set'} on {options['snapshot_id']}")
            elif action == "secrets-export":
                blob = services.backup_secrets_export(passphrase=_passphrase(options["passphrase_file"]))
                try:
                    fd = os.open(options["to"], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                except FileExistsError:
                    raise CommandError(f"{options['to']} exists; choose a new file") from None
                with os.fdopen(fd, "wb") as handle:
                    handle.write(blob)
                self.stdout.write(f"secrets bundle written to {options['to']}: keep the passphrase apart from it")
            elif action == "secrets-restore":
                written = services.backup_secrets_restore(
                    blob=Path(options["bundle"]).read_bytes(), passphrase=_passphrase(options["passphrase_file"]), to=Path(options["to"]), overwrite=options["overwrite"]
                )
                for path in written:
                    self.stdout.write(f"wrote {path}")
            elif action == "compression":
                if options["codec"] is None:
                    repo = services.backup_repository_open(repository=repository)
                    self.stdout.write(f"compression: {repo.compression} (format version {repo.config['version']})")
                else:
                    result = services.backup_compression_set(compression=options["codec"], repository=repository)
                    self.stdout.write(
                        f"compression: {result['previous']} -> {result['compression']} (format version {result['format_version']}); stored chunks keep their codec"
                    )
            elif action == "catalog":
                from apps.backups.engine.catalog import backup_catalog_rebuild

                counts = backup_catalog_rebuild(repository=repository)
                self.stdout.write(f"catalog: {counts['added']} added, {counts['updated']} updated, {counts['removed']} removed")
            elif action == "retention":
                self._retention(schedule_name=options["schedule"], dry_run=options["dry_run"])
            elif action == "restore":
                snapshot_id = options["snapshot_id"]
                if snapshot_id == "latest":
                    ids = services.backup_repository_open(repository=repository).snapshot_ids()
                    if not ids:
                        raise CommandError("the repository has no snapshots")
                    snapshot_id = ids[-1]
                services.backup_restore(snapshot_id=snapshot_id, to=options["to"], overwrite=options["overwrite"], repository=repository, progress=progress)
            elif action == "pitr":
                from apps.backups.engine.pitr import pitr_restore

                result = pitr_restore(
                    target_time=options["target_time"], to=Path(options["to"]), base_snapshot=options["base"], overwrite=options["overwrite"],
                    repository=repository, progress=progress,
                )  # fmt: skip
                self.stdout.write(json.dumps(result, indent=2))
            elif action == "recover":
                recover_handle(self, options=options, repository=repository)
        except (RepositoryError, SourceError, CustodyError, BundleError) as exc:
            raise CommandError(str(exc)) from None
        except CustodyUnavailable:
            raise CommandError("the master key custodian is unreachable; retry later") from None

    def _retention(self, *, schedule_name: str | None, dry_run: bool) -> None:
        from apps.backups.engine.models import BackupSchedule
        from apps.backups.engine.scheduling import schedule_retention_apply

        schedules = BackupSchedule.objects.select_related("location").order_by("name")
        if schedule_name:
            schedules = schedules.filter(name=schedule_name)
            if not schedules:
                raise CommandError(f"no schedule named {schedule_name!r}")
        verb = "would forget" if dry_run else "forgot"
        for schedule in schedules:
            result = schedule_retention_apply(schedule=schedule, dry_run=dry_run, progress=self.stdout.write)
            for snapshot_id in result["forgotten"]:
                self.stdout.write(f"{schedule.name}: {verb} {snapshot_id}")
            for snapshot_id in result["held"]:
                self.stdout.write(f"{schedule.name}: held, kept {snapshot_id}")
            for snapshot_id in result["archived"]:
                self.stdout.write(f"{schedule.name}: archive {snapshot_id}")

    @staticmethod
    def _line(manifest: dict) -> str:
        s = _summary(manifest)
        return (
            f"{s['id']}  {s['kind']}  {s['finished_at']}  {s['bytes_in']} bytes, {s['bytes_added']} added, "
            f"{s['chunks']} chunks ({s['chunks_new']} new), {s['duration_seconds']} s"
        )


def _aware_time(text: str) -> datetime | None:
    """An ISO 8601 time with its zone (a recovery target is never guessed in some local time); `latest`: None."""
    if text == "latest":
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no time zone: add Z or +HH:MM")
    return value


def _passphrase(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError as exc:
        raise CommandError(f"cannot read the passphrase file: {exc.strerror}") from None


def _summary(manifest: dict) -> dict:
    stats = manifest["stats"]
    return {
        "id": manifest["id"],
        "kind": manifest.get("kind", ""),
        "finished_at": manifest["finished_at"],
        "files": [f["name"] for f in manifest["files"]],
        "bytes_in": stats["bytes_in"],
        "bytes_added": stats["bytes_stored_new"],
        "chunks": stats["chunks"],
        "chunks_new": stats["chunks_new"],
        "duration_seconds": manifest["duration_seconds"],
    }
