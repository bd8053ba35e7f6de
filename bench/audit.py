"""How fast is the audit recorder, and what does it add to an audited request?

Measures, in-process against the configured database (embedded SQLite by default; set
DATABASE_URL for PostgreSQL):
- events/s: N events, each recorded in its own committed transaction, the way a request records
  one (the row is written by the on-commit hook: chain head lock, hash, insert);
- the latency one event adds to its request: the time of that on-commit write, p50 and p99.

Usage: .venv/bin/python bench/audit.py [--events 2000]
Prints progress lines and a markdown row for docs/PERFORMANCE.md.
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

    from django.db import connection, transaction

    from apps.audit import services
    from apps.audit.models import EventType, Outcome

    write_seconds: list[float] = []
    real_append = services._append

    def timed_append(events):
        started = time.perf_counter()
        real_append(events)
        write_seconds.append(time.perf_counter() - started)

    services._append = timed_append
    book, device = uuid.uuid4(), uuid.uuid4()
    started = time.perf_counter()
    for i in range(1, args.events + 1):
        with transaction.atomic():
            services.audit_event_record(
                event_type=EventType.DEVICE_PAIRED, outcome=Outcome.SUCCESS, actor_device_id=device, book_id=book
            )
        if i % 500 == 0:
            print(f"  {i}/{args.events} events", flush=True)
    elapsed = time.perf_counter() - started
    checked, broken = services.audit_chain_verify()
    assert broken is None and checked >= args.events, (checked, broken)
    quantiles = statistics.quantiles(write_seconds, n=100)
    print(
        f"| {connection.vendor} | {args.events} | {args.events / elapsed:,.0f} | "
        f"{quantiles[49] * 1000:.2f} | {quantiles[98] * 1000:.2f} |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
