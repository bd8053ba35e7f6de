"""PostgreSQL physical backups for point-in-time recovery: base backups and archived WAL.

- **Base backup** (`physical_backup`): `pg_basebackup --format=tar --wal-method=fetch
  --checkpoint=fast`, uncompressed (the repository compresses each chunk, and an uncompressed tar
  deduplicates across base backups), stored as a snapshot of kind `physical`: `physical/base.tar`,
  `physical/backup_manifest`, `physical/<oid>.tar` per tablespace. `-X fetch` puts the WAL of the
  backup itself in the tar, so the base alone is a consistent cluster. The meta comes from the tar
  (backup_label, global/pg_control, PG_VERSION), the manifest's WAL range, and the server's clock
  read before and after (`backup_stop_time`: a target time later than it can be reached).
- **WAL** (`wal_push`): PostgreSQL's archive_command copies each finished segment into a spool
  directory (docs/backups.md, "Point-in-time recovery"); a `wal` backup takes every file there into
  one snapshot (`wal/<file>`) and deletes them from the spool only once the manifest is written,
  so a push killed mid-way loses nothing (the next push takes them again, deduplicated).
- **Retention** (`wal_snapshots_unneeded`): WAL older than the oldest base backup left is no use.

Imports nothing from Django: services.py passes the settings in.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import tarfile
from datetime import datetime, timezone
from pathlib import Path

from apps.backups.engine.digests import postgres_connect
from apps.backups.engine.repository import Progress, Repository, RepositoryError, SourceItem

PHYSICAL_PREFIX = "physical/"
WAL_PREFIX = "wal/"
# A WAL file name: timeline, log, segment (24 hex digits), then nothing (a segment), `.history`
# (timeline history: TLI only), `.partial`, or `.<offset>.backup` (a backup history file).
WAL_FILE = re.compile(r"^(?:[0-9A-F]{24}(?:\.partial|\.[0-9A-F]{8}\.backup)?|[0-9A-F]{8}\.history)$")
SEGMENT = re.compile(r"^[0-9A-F]{24}$")
WAL_LONG_HEADER = 0x0002  # XLP_LONG_HEADER: the first page of every segment carries the system id


class PhysicalError(RepositoryError):
    """A physical backup or WAL push that cannot be made as asked (no PostgreSQL, pg_basebackup failed)."""


def postgres_program(name: str, bin_dir: str = "") -> str:
    """The path of a PostgreSQL program: in `bin_dir`, else `pg_config --bindir`, else the PATH."""
    for directory in (bin_dir, _pg_config_bindir()):
        if directory and (Path(directory) / name).is_file():
            return str(Path(directory) / name)
    found = shutil.which(name)
    if not found:
        raise PhysicalError(f"{name} not found: install the PostgreSQL client programs or set BACKUP_POSTGRES_BIN_DIR")
    return found


def _pg_config_bindir() -> str:
    if not shutil.which("pg_config"):
        return ""
    result = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else ""


def physical_source(*, vendor: str, settings_dict: dict, url_settings: dict | None = None) -> dict:
    """The connection settings of the server to copy: `url_settings` (BACKUP_PHYSICAL_DATABASE_URL), else the app's PostgreSQL.

    Physical backups and PITR are PostgreSQL's: the embedded mode's SQLite has neither, and gets
    the `database` backup (SQLite's online backup) instead.
    """
    if url_settings:
        return url_settings
    if vendor != "postgresql":
        raise PhysicalError(
            f"physical backups (pg_basebackup, WAL, point-in-time recovery) are PostgreSQL only; this server's database is {vendor} "
            "(the embedded mode): use the `database` backup type"
        )
    return settings_dict


# -- base backups -------------------------------------------------------------------------------


def physical_backup(repo: Repository, *, settings_dict: dict, scratch: Path, meta: dict, bin_dir: str = "", progress: Progress | None = None) -> dict:
    """A `pg_basebackup` of the server `settings_dict` names, as a snapshot of kind `physical`; its manifest."""
    say = progress or (lambda line: None)
    started = _server_now(settings_dict)
    target = Path(scratch) / "base"
    label = f"homepocket-{started:%Y%m%dT%H%M%SZ}"
    command = [
        postgres_program("pg_basebackup", bin_dir), f"--pgdata={target}", "--format=tar", "--wal-method=fetch", "--checkpoint=fast",
        f"--label={label}", "--manifest-checksums=SHA256", "--no-password", "--progress",
    ]  # fmt: skip
    for flag, key in (("--host", "HOST"), ("--port", "PORT"), ("--username", "USER")):
        if settings_dict.get(key):
            command.append(f"{flag}={settings_dict[key]}")
    say(f"physical backup: pg_basebackup of {settings_dict.get('HOST') or 'localhost'}:{settings_dict.get('PORT') or 5432}")
    _run_with_progress(command, settings_dict=settings_dict, say=say)
    stopped = _server_now(settings_dict)
    tars = sorted(target.glob("*.tar"))
    items = [SourceItem.of_file(PHYSICAL_PREFIX + path.name, path) for path in tars]
    manifest_file = target / "backup_manifest"
    wal_range = {}
    if manifest_file.exists():
        items.append(SourceItem.of_file(PHYSICAL_PREFIX + "backup_manifest", manifest_file))
        ranges = json.loads(manifest_file.read_text()).get("WAL-Ranges") or [{}]
        wal_range = ranges[-1]
    label_fields = _base_tar_facts(target / "base.tar")
    meta = {
        **meta,
        "kind": "physical",
        "database_vendor": "postgresql",
        **label_fields,
        "stop_lsn": wal_range.get("End-LSN"),
        "backup_start_time": started.isoformat(),
        "backup_stop_time": stopped.isoformat(),
        "tablespaces": [path.stem for path in tars if path.name != "base.tar"],
    }
    return repo.snapshot_create(items, meta=meta, progress=progress)


def _server_now(settings_dict: dict) -> datetime:
    """The server's clock: the times a recovery target is compared with are the server's."""
    with postgres_connect({**settings_dict, "NAME": settings_dict.get("NAME") or "postgres"}, autocommit=True) as conn:
        return conn.execute("SELECT now()").fetchone()[0].astimezone(timezone.utc)


def _run_with_progress(command: list[str], *, settings_dict: dict, say: Progress) -> None:
    """Run pg_basebackup, passing its `--progress` lines (written with carriage returns) on."""
    env = {**os.environ, "PGCONNECT_TIMEOUT": "10", "PGAPPNAME": "homepocket-backup"}
    if settings_dict.get("PASSWORD"):
        env["PGPASSWORD"] = settings_dict["PASSWORD"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env)
    tail, buffer = [], b""
    while chunk := process.stderr.read1(4096):
        buffer += chunk
        *lines, buffer = re.split(rb"[\r\n]", buffer)
        for line in filter(None, (raw.decode(errors="replace").strip() for raw in lines)):
            tail = (tail + [line])[-5:]
            say(f"physical backup: {line}")
    if process.wait() != 0:
        raise PhysicalError(f"pg_basebackup failed ({process.returncode}): {' / '.join(tail)[-500:]}")


def _base_tar_facts(base_tar: Path) -> dict:
    """backup_label's start LSN, WAL file and timeline; pg_control's system id; PG_VERSION."""
    with tarfile.open(base_tar) as tar:
        label = tar.extractfile("backup_label").read().decode()
        control = tar.extractfile("global/pg_control").read(8)
        version = tar.extractfile("PG_VERSION").read().decode().strip()
    fields = dict(line.split(": ", 1) for line in label.splitlines() if ": " in line)
    start = re.match(r"(\S+) \(file ([0-9A-F]{24})\)", fields["START WAL LOCATION"])
    return {
        "backup_label": fields.get("LABEL", ""),
        "server_version": version,
        # pg_control starts with the system identifier (uint64, the server's byte order: little-endian on x86-64 and arm64).
        "system_identifier": str(struct.unpack("<Q", control)[0]),
        "timeline": int(fields["START TIMELINE"]) if "START TIMELINE" in fields else int(start.group(2)[:8], 16),
        "start_lsn": start.group(1),
        "start_wal_file": start.group(2),
    }


# -- WAL ------------------------------------------------------------------------------------------


def wal_position(name: str) -> tuple[int, int]:
    """(timeline, segment number across logs) of a WAL file name; history files sort at segment 0 of their timeline."""
    timeline = int(name[:8], 16)
    if name.endswith(".history"):
        return timeline, 0
    return timeline, int(name[8:16], 16) * 0x100000000 + int(name[16:24], 16)


def wal_system_identifier(path: Path) -> str | None:
    """The system identifier in a segment's first page header (None for another file kind or a damaged one)."""
    with open(path, "rb") as handle:
        header = handle.read(32)
    if len(header) < 32 or not struct.unpack_from("<H", header, 2)[0] & WAL_LONG_HEADER:
        return None
    return str(struct.unpack_from("<Q", header, 24)[0])


def wal_spool_files(spool: Path) -> list[Path]:
    """The finished WAL files in the spool, oldest first (a `.tmp` copy still being written is left)."""
    if not Path(spool).is_dir():
        return []
    return sorted(path for path in Path(spool).iterdir() if path.is_file() and WAL_FILE.match(path.name))


def wal_push(repo: Repository, *, spool: Path, meta: dict, progress: Progress | None = None) -> dict | None:
    """Every WAL file in the spool as one snapshot of kind `wal`, then removed from the spool; None if there is none."""
    say = progress or (lambda line: None)
    files = wal_spool_files(spool)
    if not files:
        say(f"wal: the spool {spool} holds no WAL file: nothing to push")
        return None
    segments = [path for path in files if SEGMENT.match(path.name)]
    positions = sorted(files, key=lambda path: wal_position(path.name))
    archived = [datetime.fromtimestamp(path.stat().st_mtime, timezone.utc) for path in files]
    say(f"wal: pushing {len(files)} files from {spool} ({len(segments)} segments)")
    meta = {
        **meta,
        "kind": "wal",
        "database_vendor": "postgresql",
        "wal_files": len(files),
        "wal_first_segment": min(segments, key=lambda p: wal_position(p.name)).name if segments else None,
        "wal_last_segment": max(segments, key=lambda p: wal_position(p.name)).name if segments else None,
        "wal_first_position": list(wal_position(positions[0].name)),
        "wal_last_position": list(wal_position(positions[-1].name)),
        "wal_timelines": sorted({int(path.name[:8], 16) for path in files}),
        "wal_history_files": [path.name for path in files if path.name.endswith(".history")],
        "system_identifiers": sorted({sysid for path in segments if (sysid := wal_system_identifier(path))}),
        "wal_archived_from": min(archived).isoformat(),
        "wal_archived_until": max(archived).isoformat(),
    }
    manifest = repo.snapshot_create([SourceItem.of_file(WAL_PREFIX + path.name, path) for path in files], meta=meta, progress=progress)
    # Only now that the manifest is written: a push killed before this point leaves the spool whole.
    for path in files:
        path.unlink(missing_ok=True)
    say(f"wal: {len(files)} files in snapshot {manifest['id']}, removed from the spool")
    return manifest


def wal_snapshots_unneeded(manifests: list[dict]) -> list[str]:
    """The `wal` snapshots no remaining base backup needs: every segment before the oldest base's start.

    Kept: any holding a timeline history file (small, and a recovery onto a later timeline reads
    them), and everything while the repository has no base backup (nothing to measure against).
    """
    bases = [m for m in manifests if m.get("kind") == "physical" and m.get("start_wal_file")]
    if not bases:
        return []
    # Recovery from a base reads forward from its start segment, whatever the timelines: a segment
    # number below every base's start is never read again.
    oldest = min(wal_position(m["start_wal_file"])[1] for m in bases)
    return [
        m["id"]
        for m in manifests
        if m.get("kind") == "wal" and not m.get("wal_history_files") and m.get("wal_last_position") and m["wal_last_position"][1] < oldest
    ]
