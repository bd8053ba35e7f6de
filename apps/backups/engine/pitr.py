"""Point-in-time recovery of PostgreSQL from the repository: a base backup, the WAL after it, a target time.

`pitr_restore` lays out a data directory PostgreSQL recovers by itself when started: the base
tar extracted (straight from the repository's chunks, checked against its SHA-256), the archived
WAL files restored into a directory beside it, `recovery.signal`, and the recovery settings in
`postgresql.auto.conf` (restore_command from that directory, recovery_target_time,
recovery_target_action = 'promote'). It needs only the repository and the master key (the disaster
case), and pg_waldump to check that the archived WAL reaches past the target.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
import shlex
import shutil
import subprocess
import tarfile
from datetime import datetime, timezone
from pathlib import Path

from django.conf import settings

from apps.backups.engine import services
from apps.backups.engine.physical import PHYSICAL_PREFIX, SEGMENT, WAL_FILE, WAL_PREFIX, PhysicalError, postgres_program, wal_position
from apps.backups.engine.repository import Progress, Repository, RepositoryError

logger = logging.getLogger(__name__)

RECOVERY_MARK = "# Point-in-time recovery by Home Pocket (apps/backups/engine/pitr.py)"
# pg_waldump's Transaction records: "desc: COMMIT 2026-11-25 01:02:03.123456 UTC" (ABORT and *_PREPARED alike);
# recovery_target_time stops at the first of these later than the target.
_XACT_TIME = re.compile(r"desc: (?:COMMIT|ABORT)\S*(?: \d+:)? (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) UTC")


LATEST = "latest"  # the target that recovers every archived transaction


class PitrError(RepositoryError):
    """A point-in-time recovery that cannot be done as asked (no base backup, a target outside the archive)."""


def pitr_restore(
    *, target_time: datetime | None, to: Path, base_snapshot: str | None = None, overwrite: bool = False, repository: str | Path | None = None,
    progress: Progress | None = None,
) -> dict:
    """A PostgreSQL data directory at `to` that recovers to `target_time` when started; what was laid out and how to start it.

    `target_time` None: to the end of the archived WAL ("latest", the disaster case: as much as
    was archived), from the latest base backup (or the one named).
    Returns {base_snapshot, target_time (ISO, or "latest"), wal_snapshots, wal_files (count),
    wal_directory, data_directory, newest_commit_time (ISO, or None without pg_waldump), start_command}.
    """
    say = progress or (lambda line: None)
    if target_time is not None and target_time.tzinfo is None:
        raise PitrError("the target time needs a time zone (for example 2026-11-25T01:02:03Z)")
    target_time = target_time.astimezone(timezone.utc) if target_time is not None else None
    to = Path(to).absolute()
    wal_dir = to.with_name(to.name + "-wal")
    for directory in (to, wal_dir):
        _target_check(directory, overwrite=overwrite)
    repo = services.backup_repository_open(repository=repository)
    manifests = repo.snapshots()
    base = _base_choose(manifests, target_time=target_time, base_snapshot=base_snapshot)
    if base.get("tablespaces"):
        raise PitrError(f"base backup {base['id']} has tablespaces {base['tablespaces']}: restore it with `backup restore` and lay them out by hand")
    target_label = target_time.isoformat() if target_time is not None else LATEST
    say(f"pitr: base backup {base['id']} (finished {base['backup_stop_time']}), target {target_label}")
    wal_names, wal_snapshots = _wal_restore(repo, manifests, base=base, wal_dir=wal_dir, say=say)
    try:
        newest = _newest_transaction_time(wal_dir, base=base)
        if newest is not None and target_time is not None and newest <= target_time:
            raise PitrError(
                f"the archived WAL reaches only to the transaction of {newest.isoformat()}: recovery to {target_time.isoformat()} would "
                "end before its target. Push the newer WAL first (`backup run --type wal`) or choose an earlier time"
            )
    except Exception:
        shutil.rmtree(wal_dir, ignore_errors=True)  # refused: nothing left behind
        raise
    _base_extract(repo, base, to=to, say=say)
    _recovery_configure(to, wal_dir=wal_dir, target_time=target_time, base_id=base["id"])
    start = shlex.join([_program_or_name("pg_ctl"), "--pgdata", str(to), "--log", f"{to}.log", "start"])
    result = {
        "base_snapshot": base["id"],
        "target_time": target_label,
        "wal_snapshots": wal_snapshots,
        "wal_files": len(wal_names),
        "wal_directory": str(wal_dir),
        "data_directory": str(to),
        "newest_commit_time": newest.isoformat() if newest else None,
        "start_command": start,
    }
    say(f"pitr: {to} ready ({len(wal_names)} WAL files in {wal_dir}); as the postgres user: {start}")
    logger.warning("backup.pitr_restored", extra={"snapshot_id": base["id"], "wal_files": len(wal_names), "target_time": result["target_time"]})
    services.backup_step_audit(
        event_type="backup.restored", target=f"snapshot:{base['id']}", details={"point_in_time": result["target_time"], "wal_files": len(wal_names), "to": "directory"}
    )
    return result


def _target_check(directory: Path, *, overwrite: bool) -> None:
    if directory.exists() and not directory.is_dir():
        raise PitrError(f"{directory} is a file, not a directory")
    if not directory.exists() or not any(directory.iterdir()):
        return
    if not overwrite:
        raise PitrError(f"{directory} is not empty; pass --overwrite to restore over it")
    # --overwrite replaces a data directory or a WAL directory this made, never any directory (a typo must not empty /srv).
    names = {path.name for path in directory.iterdir()}
    if "PG_VERSION" not in names and not all(WAL_FILE.match(name.removesuffix(".partial-restore")) for name in names):
        raise PitrError(f"{directory} is neither a PostgreSQL data directory nor a WAL directory: --overwrite replaces only those")
    if (directory / "postmaster.pid").exists():
        raise PitrError(f"{directory} has a postmaster.pid: a server may be running on it; stop it (and remove the file) first")


def _base_choose(manifests: list[dict], *, target_time: datetime | None, base_snapshot: str | None) -> dict:
    """The named base backup, or the latest that finished before the target (the server's clock; None: the latest)."""
    bases = [m for m in manifests if m.get("kind") == "physical"]
    if base_snapshot is not None:
        chosen = next((m for m in manifests if m["id"] == base_snapshot), None)
        if chosen is None or chosen.get("kind") != "physical":
            raise PitrError(f"{base_snapshot} is not a physical snapshot (base backup) of this repository")
        if target_time is not None and _stop_time(chosen) >= target_time:
            raise PitrError(f"base backup {base_snapshot} finished at {chosen['backup_stop_time']}, after the target {target_time.isoformat()}")
        return chosen
    if not bases:
        raise PitrError("the repository has no physical snapshot (base backup): point-in-time recovery needs `backup run --type physical` first")
    earlier = [m for m in bases if target_time is None or _stop_time(m) < target_time]
    if not earlier:
        first = min(bases, key=_stop_time)
        raise PitrError(
            f"the target {target_time.isoformat()} is before the earliest base backup, which finished at {first['backup_stop_time']}: "
            "no recovery can reach it"
        )
    return max(earlier, key=_stop_time)


def _stop_time(manifest: dict) -> datetime:
    return datetime.fromisoformat(manifest["backup_stop_time"])


def _wal_restore(repo: Repository, manifests: list[dict], *, base: dict, wal_dir: Path, say: Progress) -> tuple[list[str], list[str]]:
    """Every archived WAL file from the base's start segment on (and every timeline history), into `wal_dir`."""
    start = wal_position(base["start_wal_file"])[1]
    system = base.get("system_identifier")
    wanted: dict[str, tuple[dict, dict]] = {}  # file name -> (snapshot, entry); a later push of the same name wins
    used = []
    for manifest in manifests:
        if manifest.get("kind") != "wal" or (system and manifest.get("system_identifiers") and system not in manifest["system_identifiers"]):
            continue
        picked = 0
        for entry in manifest["files"]:
            name = entry["name"].removeprefix(WAL_PREFIX)
            if name.endswith(".history") or wal_position(name)[1] >= start:
                wanted[name] = (manifest, entry)
                picked += 1
        if picked:
            used.append(manifest["id"])
    if wal_dir.exists():
        shutil.rmtree(wal_dir)
    wal_dir.mkdir(parents=True, mode=0o700)
    total = sum(entry["size"] for _, entry in wanted.values())
    done = 0
    for n, (name, (_, entry)) in enumerate(sorted(wanted.items()), 1):
        reader = EntryReader(repo, entry)
        partial = wal_dir / (name + ".partial-restore")
        with open(partial, "wb") as out:
            shutil.copyfileobj(reader, out, 1 << 20)
        reader.finish()
        partial.rename(wal_dir / name)
        done += entry["size"]
        say(f"pitr: WAL {n}/{len(wanted)} files, {done}/{total} bytes ({100 * done // max(total, 1)}%)")
    if not any(SEGMENT.match(name) for name in wanted):
        say("pitr: no archived WAL segment after the base backup: recovery can reach only the base's own end")
    return sorted(wanted), used


def _program_or_name(name: str) -> str:
    """The full path of a PostgreSQL program when this machine has it, else its bare name (for the operator's machine)."""
    try:
        return postgres_program(name, settings.BACKUP_POSTGRES_BIN_DIR)
    except PhysicalError:
        return name


def _newest_transaction_time(wal_dir: Path, *, base: dict) -> datetime | None:
    """The time of the last commit or abort in the archived WAL (pg_waldump), scanning back from the newest
    segment; None when pg_waldump is not installed (PostgreSQL itself then refuses a target past the WAL)."""
    waldump = _program_or_name("pg_waldump")
    if not Path(waldump).is_absolute():
        return None
    start = wal_position(base["start_wal_file"])
    segments = sorted((p.name for p in wal_dir.iterdir() if SEGMENT.match(p.name)), key=wal_position, reverse=True)
    for name in segments:
        if wal_position(name)[1] < start[1]:
            break
        result = subprocess.run([waldump, f"--path={wal_dir}", "--rmgr=Transaction", name, name], capture_output=True, text=True, env={"TZ": "UTC", "PATH": "/usr/bin:/bin"})
        times = _XACT_TIME.findall(result.stdout)
        if times:
            return datetime.fromisoformat(times[-1]).replace(tzinfo=timezone.utc)
    return datetime.fromisoformat(base["backup_stop_time"])  # no transaction after the base: it reaches only its own end


def _base_extract(repo: Repository, base: dict, *, to: Path, say: Progress) -> None:
    """The base tar extracted into `to` as it is read from the repository (no second copy on disk)."""
    entry = next((e for e in base["files"] if e["name"] == PHYSICAL_PREFIX + "base.tar"), None)
    if entry is None:
        raise PitrError(f"snapshot {base['id']} holds no {PHYSICAL_PREFIX}base.tar")
    if to.exists():
        shutil.rmtree(to)  # empty, or --overwrite: a tar over an old data directory would leave stale files
    to.mkdir(parents=True, mode=0o700)
    last = {"percent": -1}

    def on_read(line: str) -> None:
        percent = 100 * reader.done // max(entry["size"], 1)
        if percent != last["percent"]:
            last["percent"] = percent
            say(f"pitr: base {line}")

    reader = EntryReader(repo, entry, on_read=on_read)
    with tarfile.open(fileobj=reader, mode="r|") as tar:
        tar.extractall(to, filter="data")
    reader.finish()
    to.chmod(0o700)


class EntryReader(io.RawIOBase):
    """A snapshot entry read chunk by chunk (a base tar is extracted straight from the repository,
    without a second copy on disk); `finish()` checks the whole file's SHA-256."""

    def __init__(self, repo: Repository, entry: dict, *, on_read: Progress | None = None):
        self._repo, self._entry, self._chunks = repo, entry, iter(entry["chunks"])
        self._buffer, self._digest, self.done = b"", hashlib.sha256(), 0
        self._on_read = on_read or (lambda line: None)

    def readable(self) -> bool:
        return True

    def readinto(self, target) -> int:
        while not self._buffer:
            chunk_id = next(self._chunks, None)
            if chunk_id is None:
                return 0
            self._buffer = self._repo.chunk_get(chunk_id)
            self._digest.update(self._buffer)
            self.done += len(self._buffer)
            self._on_read(f"{self._entry['name']}: {self.done}/{self._entry['size']} bytes ({100 * self.done // max(self._entry['size'], 1)}%)")
        n = min(len(target), len(self._buffer))
        target[:n], self._buffer = self._buffer[:n], self._buffer[n:]
        return n

    def finish(self) -> None:
        while self.read(1 << 20):
            pass
        if self._digest.hexdigest() != self._entry["sha256"]:
            raise RepositoryError(f"{self._entry['name']} does not match its recorded checksum")


def _conf_quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _recovery_configure(to: Path, *, wal_dir: Path, target_time: datetime | None, base_id: str) -> None:
    """recovery.signal and the recovery settings, last in postgresql.auto.conf (which overrides postgresql.conf).

    Without a target time PostgreSQL replays every restored WAL file and then promotes by itself."""
    (to / "recovery.signal").write_text("")
    restore_command = f"cp {shlex.quote(str(wal_dir))}/%f %p"
    target = [f"recovery_target_time = {_conf_quote(target_time.isoformat())}", "recovery_target_action = 'promote'"] if target_time else []
    lines = [
        "",
        f"{RECOVERY_MARK}: base {base_id}, target {target_time.isoformat() if target_time else LATEST}",
        f"restore_command = {_conf_quote(restore_command)}",
        *target,
        # The copy must not archive its new timeline into the live server's spool: turn archiving
        # back on (and point it at a spool of its own) once this copy becomes the live server.
        "archive_mode = 'off'",
        "",
    ]
    with open(to / "postgresql.auto.conf", "a") as conf:
        conf.write("\n".join(lines))
