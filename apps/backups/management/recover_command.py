"""`manage.py backup recover full|database|selective`: a recovery run in the foreground, with its progress lines.

The same run as the API's (a BackupRun of kind recovery, once per cluster, audited, RECOVERY_FAILED
on failure), carried out in this process instead of a worker; the input is checked by the API's
serializers, so both refuse the same things.
"""

from __future__ import annotations

import json
import time

from django.core.management.base import CommandError

RECOVER_TYPES = ("full", "database", "selective")


def recover_arguments(sub) -> None:
    recover = sub.add_parser("recover", help="Recover a snapshot into this deployment (or another location): full, database or selective.")
    recover.add_argument("recovery_type", choices=RECOVER_TYPES)
    recover.add_argument("--snapshot", help="A snapshot id (default: the latest one that holds what the type needs).")
    recover.add_argument("--tables", help="selective: comma-separated table names.")
    recover.add_argument("--book-id", help="selective: one book's rows in every table of a book, and its photo objects.")
    recover.add_argument("--overwrite", action="store_true", help="Recover over a target that holds data (rows, photo objects).")
    recover.add_argument("--target-database", help="Another location: a PostgreSQL database name on the same server, or a SQLite file path.")
    recover.add_argument("--objects-to", help="Another location for the photo objects: a directory (laid out as OBJECTS_DIR).")
    recover.add_argument("--config-to", help="full: where to lay out the configuration bundle (default: VAR_DIR/recovered-config/<run>).")
    recover.add_argument("--passphrase-file", help="full: the bundle's passphrase file (default: BACKUP_SECRETS_PASSPHRASE_FILE).")


def _params(options: dict) -> dict:
    from apps.backups.engine.recovery_api import FullSystemInputSerializer, SelectiveInputSerializer, _target_params

    kind = options["recovery_type"]
    body = {"snapshot_id": options["snapshot"], "target_database": options["target_database"], "objects_to": options["objects_to"], "overwrite": options["overwrite"]}
    if kind == "selective":
        if options["tables"]:
            body["tables"] = [name.strip() for name in options["tables"].split(",") if name.strip()]
        if options["book_id"]:
            body["book_id"] = options["book_id"]
        payload = SelectiveInputSerializer(data=body)
    else:
        payload = FullSystemInputSerializer(data={**body, "database_only": kind == "database", "config_to": options["config_to"]})
    if not payload.is_valid():
        raise CommandError("; ".join(f"{field}: {' '.join(map(str, errors))}" for field, errors in payload.errors.items()))
    data = payload.validated_data
    params = {"type": {"full": "full_system", "database": "database", "selective": "selective"}[kind], **_target_params(data)}
    if kind == "selective":
        params |= {"book_id": str(data["book_id"])} if "book_id" in data else {"tables": data["tables"]}
    params |= {key: options[key] for key in ("config_to", "passphrase_file") if kind == "full" and options[key]}
    return params


def _echo(write):
    """Every line that is not a percentage; percentages at most once a second (a progress bar in a log)."""
    state = {"at": 0.0}

    def echo(line: str) -> None:
        now = time.monotonic()
        if "%" not in line or now - state["at"] >= 1.0:
            state["at"] = now
            write(line)

    return echo


def recover_handle(command, *, options: dict, repository: str | None) -> None:
    from apps.backups.engine import runs
    from apps.backups.engine.models import RunStatus
    from apps.backups.engine.recovery import RecoveryTargetNotEmpty, recovery_request

    try:
        run = recovery_request(params=_params(options), requested_by="manage.py backup recover", repository=repository, enqueue=False)
    except RecoveryTargetNotEmpty as exc:
        raise CommandError(f"{exc.message} (RECOVERY_TARGET_NOT_EMPTY); pass --overwrite to replace it") from None
    command.stdout.write(f"recovery {run.pk}: {run.params['type']}")
    run = runs.backup_run_execute(run_id=run.pk, echo=_echo(command.stdout.write))
    if run.status != RunStatus.SUCCEEDED:
        raise CommandError(f"recovery {run.pk} {run.status}: {run.error}")
    command.stdout.write(json.dumps(run.result, sort_keys=True))
