"""Which snapshots a GFS retention policy keeps (grandfather-father-son, as restic's `forget` counts).

Each rule keeps the newest snapshot of each of the last N periods (days, ISO weeks, months, years)
that have one; a snapshot kept by any rule stays. Pure: the times come from the snapshots'
manifests, so a test moves the clock by making snapshots at chosen times.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class RetentionPolicy:
    keep_last: int = 0
    keep_daily: int = 0
    keep_weekly: int = 0
    keep_monthly: int = 0
    keep_yearly: int = 0

    def empty(self) -> bool:
        return not any((self.keep_last, self.keep_daily, self.keep_weekly, self.keep_monthly, self.keep_yearly))


_PERIODS = {
    "keep_daily": lambda t: t.date(),
    "keep_weekly": lambda t: t.isocalendar()[:2],
    "keep_monthly": lambda t: (t.year, t.month),
    "keep_yearly": lambda t: t.year,
}


def snapshots_to_keep(snapshots: list[tuple[str, datetime]], policy: RetentionPolicy) -> dict[str, list[str]]:
    """{snapshot id: the rules that keep it} for the snapshots `policy` keeps."""
    newest_first = sorted(snapshots, key=lambda s: s[1], reverse=True)
    kept: dict[str, list[str]] = {}
    for snapshot_id, _ in newest_first[: policy.keep_last]:
        kept.setdefault(snapshot_id, []).append("last")
    for rule, period in _PERIODS.items():
        limit, seen = getattr(policy, rule), set()
        for snapshot_id, started in newest_first:
            if len(seen) >= limit:
                break
            bucket = period(started)
            if bucket not in seen:
                seen.add(bucket)
                kept.setdefault(snapshot_id, []).append(rule.removeprefix("keep_"))
    return kept
