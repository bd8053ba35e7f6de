"""`manage.py migrate_to_postgres --target postgres://… [--resume] [--batch-size N] [--objects] [--object-batch-size N]`

Copies this (embedded, SQLite) deployment's database into an empty PostgreSQL database, with
progress lines, a resumable copy, a row-count and checksum verification of every table, and a
full rollback on failure. The embedded database is only read. See homepocket/dbcopy.py and
docs/deploy.md ("From the embedded mode to PostgreSQL").

`--objects` first copies the local photo objects into the S3 store of the S3_* settings, each
verified by reading it back (apps/photos/objectcopy.py). Objects go before rows: a run that fails
in the objects leaves the target database untouched, and rows are only copied once every object
they may point to is in S3 and verified. The local files are only read.
"""

from __future__ import annotations

import dj_database_url
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connections

from apps.photos.objectcopy import ObjectCopy, ObjectCopyFailed, ObjectCopyRefused
from homepocket.dbcopy import CopyRefused, DatabaseCopy

TARGET = "migration_target"


class Command(BaseCommand):
    help = "Copy the embedded SQLite database into an empty PostgreSQL database, verified."

    def add_arguments(self, parser):
        parser.add_argument("--target", required=True, help="postgres://user:pass@host:5432/name (an empty database)")
        parser.add_argument("--resume", action="store_true", help="continue an interrupted copy into the same target")
        parser.add_argument("--batch-size", type=int, default=1000)
        parser.add_argument("--objects", action="store_true",
                            help="first copy the local photo objects into S3 (the S3_* settings), verified")
        parser.add_argument("--object-batch-size", type=int, default=50, help="objects per progress line")  # fmt: skip

    def handle(self, *args, target, resume, batch_size, objects, object_batch_size, **options):
        source = settings.DATABASES["default"]
        if source["ENGINE"] != "django.db.backends.sqlite3":
            raise CommandError("the source must be the embedded SQLite database: unset DATABASE_URL for this command")
        config = dj_database_url.parse(target)
        if config["ENGINE"] != "django.db.backends.postgresql":
            raise CommandError("--target must be a postgres:// URL")
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        if object_batch_size < 1:
            raise CommandError("--object-batch-size must be at least 1")
        object_copy = ObjectCopy(batch_size=object_batch_size, progress=self.stdout.write) if objects else None
        if object_copy is not None:
            try:
                object_copy.check_target()
            except ObjectCopyRefused as refused:
                raise CommandError(f"{refused}; nothing was changed") from None
        # The target's own settings: no pool (a one-off process), the project's time zone handling.
        connections.settings[TARGET] = {**config, "OPTIONS": {}, "CONN_MAX_AGE": 0, "TIME_ZONE": None, "ATOMIC_REQUESTS": False,
                                        "AUTOCOMMIT": True, "CONN_HEALTH_CHECKS": False, "TEST": {}}  # fmt: skip
        settings.DATABASES[TARGET] = connections.settings[TARGET]
        copy = DatabaseCopy(source="default", target=TARGET, batch_size=batch_size, progress=self.stdout.write)
        try:
            copy.check_source_migrated()
            state = copy.start_state(resume=resume)
        except CopyRefused as refused:
            raise CommandError(f"{refused}; nothing was changed") from None
        if object_copy is not None:
            self.stdout.write(f"copying the objects of {settings.OBJECTS_DIR} into S3 bucket {settings.S3_BUCKET}")
            try:
                object_report = object_copy.copy_all()
            except KeyboardInterrupt:
                self.stderr.write("interrupted: run again to continue (objects verified in S3 are not uploaded again)")
                raise SystemExit(130) from None
            except ObjectCopyFailed as exc:
                self.stderr.write(f"failed: {exc}")
                raise CommandError(
                    "the object copy failed: the target database was not touched and the local files are unchanged; "
                    "fix the cause and run again (objects verified in S3 are not uploaded again)"
                ) from None
            self.stdout.write(
                f"objects done: {object_report.objects} in S3 and verified "
                f"({object_report.uploaded} uploaded, {object_report.already_there} already there)"
            )
        self.stdout.write(f"copying {source['NAME']} into {config['NAME']} on {config['HOST']} ({state})")
        try:
            if state == "fresh":
                copy.prepare_fresh()
            copy.copy_all()
            copy.reset_sequences()
            reports = copy.verify()
            copy.finish()
        except KeyboardInterrupt:
            self.stderr.write("interrupted: run again with --resume to continue where this stopped")
            raise SystemExit(130) from None
        except Exception as exc:
            self.stderr.write(f"failed: {type(exc).__name__}: {exc}; rolling the target back to an empty database")
            copy.roll_back()
            raise CommandError("the copy failed and the target was rolled back; the embedded database is unchanged") from exc
        rows = sum(report.rows for report in reports)
        self.stdout.write(self.style.SUCCESS(f"done: {len(reports)} tables, {rows} rows copied and verified"))
        if object_copy is None:
            self.stdout.write("the local photo objects were not copied: --objects copies them into S3 (docs/deploy.md)")
        else:
            self.stdout.write(f"the local objects in {settings.OBJECTS_DIR} were left in place: delete them once the "
                              "distributed deployment serves its photos")  # fmt: skip
        self.stdout.write("next: set DATABASE_URL (and REDIS_URL, S3_*) to switch this deployment to the distributed mode")
