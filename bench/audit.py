"""How fast is the audit recorder, and what does it add to an audited request?

Measures, in-process against the configured database (embedded SQLite by default; set
DATABASE_URL for PostgreSQL):
- N events, each recorded in its own committed transaction, the way a request records one, twice:
  written at commit in the caller (AUDIT_FLUSH_INTERVAL=0: chain-head lock, hash, insert per
  event) and buffered (the default: handed to the buffer, written in batches by its thread);
- events/s from the first record until every event is in the table, and the time of each
  audited transaction (what recording adds to a request is the difference between the modes).

Usage: .venv/bin/python bench/audit.py [--events 2000]
Prints progress lines and markdown rows for docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000)
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL"):
        os.environ["HOMEPOCKET_VAR_DIR"] = tempfile.mkdtemp(prefix="hp-bench-audit-")
        print(f"embedded mode, SQLite under {os.environ['HOMEPOCKET_VAR_DIR']}", flush=True)
        subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=REPO, check=True)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "homepocket.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    import uuid

    from django.conf import settings
    from django.db import connection, transaction

    from apps.audit import services
    from apps.audit.models import EventType, Outcome

    book, device = uuid.uuid4(), uuid.uuid4()

    def audited_transactions(label: str) -> tuple[list[float], float]:
        """N committed transactions that each record one event; the time each took, and the total."""
        took: list[float] = []
        started = time.perf_counter()
        for i in range(1, args.events + 1):
            t0 = time.perf_counter()
            with transaction.atomic():
                services.audit_event_record(
                    event_type=EventType.DEVICE_PAIRED, outcome=Outcome.SUCCESS, actor_device_id=device, book_id=book
                )
            took.append(time.perf_counter() - t0)
            if i % 500 == 0:
                print(f"  [{label}] {i}/{args.events} events", flush=True)
        return took, time.perf_counter() - started

    def ms(values: list[float], q: int) -> float:
        return statistics.quantiles(values, n=100)[q - 1] * 1000

    # 1. Written at commit, in the request (AUDIT_FLUSH_INTERVAL=0): what every request paid before the buffer.
    settings.AUDIT_FLUSH_INTERVAL = 0
    at_commit, elapsed = audited_transactions("at commit")
    print(f"| {connection.vendor} | at commit | {args.events} | {args.events / elapsed:,.0f} | {ms(at_commit, 50):.3f} | {ms(at_commit, 99):.3f} |")
    # 2. Buffered (the default): the request pays the hand-over; the background thread writes a
    #    batch whenever AUDIT_BATCH_SIZE events wait; the bench drains the rest and times it all.
    settings.AUDIT_FLUSH_INTERVAL = 3600  # only full batches and the final drain write
    started = time.perf_counter()
    buffered, _ = audited_transactions("buffered")
    services.audit_events_flush()
    services.audit_buffer.stop()
    elapsed = time.perf_counter() - started
    assert services.audit_buffer.depth() == 0
    print(
        f"| {connection.vendor} | buffered (batches of {settings.AUDIT_BATCH_SIZE}) | {args.events} | "
        f"{args.events / elapsed:,.0f} | {ms(buffered, 50):.3f} | {ms(buffered, 99):.3f} |"
    )
    checked, broken = services.audit_chain_verify()
    assert broken is None and checked >= 2 * args.events, (checked, broken)
    return 0


if __name__ == "__main__":
    sys.exit(main())
