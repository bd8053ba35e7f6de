"""What the dashboard reads: the aggregates as per-group series, and the apps' own tables, as counts only."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from apps.ops.aggregates import HOUR, MINUTE, SECONDS, aggregates_store
from homepocket.tally import LATENCY_BOUNDS


def quantile(buckets: list[int], bounds: tuple[float, ...], q: float) -> float | None:
    """The q-quantile (seconds) of a histogram (bucket i: ≤ bounds[i], the last: above them all),
    interpolated inside its bucket like Prometheus' histogram_quantile; None without observations,
    the last bound when it lies above it."""
    count = sum(buckets)
    if count <= 0:
        return None
    rank = q * count
    lower, below = 0.0, 0
    for bound, inside in zip(bounds, buckets):
        if inside and below + inside >= rank:
            return lower + (bound - lower) * ((rank - below) / inside)
        lower, below = bound, below + inside
    return bounds[-1]


@dataclass
class GroupStats:
    group: str
    requests: int = 0
    client_errors: int = 0
    server_errors: int = 0
    buckets: list[int] = field(default_factory=list)

    def add(self, row: dict[str, int], bounds_count: int) -> None:
        prefix = f"{self.group}|"
        self.requests += row.get(prefix + "n", 0)
        self.client_errors += row.get(prefix + "4xx", 0)
        self.server_errors += row.get(prefix + "5xx", 0)
        if not self.buckets:
            self.buckets = [0] * bounds_count
        for i in range(bounds_count):
            self.buckets[i] += row.get(f"{prefix}b{i}", 0)

    @property
    def error_rate(self) -> float:
        """The share of requests answered 5xx (a 4xx is the caller's mistake, shown apart)."""
        return self.server_errors / self.requests if self.requests else 0.0

    def p(self, q: float) -> float | None:
        return quantile(self.buckets, LATENCY_BOUNDS, q)


def groups_of(rows: list[dict[str, int]]) -> list[str]:
    """The endpoint groups with requests in these rows (relay|deliveries and the like are not groups)."""
    return sorted({name[: -len("|n")] for row in rows for name in row if name.endswith("|n")})


@dataclass(frozen=True)
class Series:
    resolution: str
    first: int  # bucket number of rows[0] (Unix minute or hour)
    rows: list[dict[str, int]]

    def starts(self) -> list[float]:
        return [(self.first + i) * SECONDS[self.resolution] for i in range(len(self.rows))]

    def per_group(self, rows: list[dict[str, int]] | None = None) -> dict[str, GroupStats]:
        bounds_count = len(LATENCY_BOUNDS) + 1
        stats: dict[str, GroupStats] = {}
        for row in self.rows if rows is None else rows:
            for group in groups_of([row]):
                stats.setdefault(group, GroupStats(group)).add(row, bounds_count)
        return dict(sorted(stats.items()))

    def field(self, name: str) -> list[int]:
        return [row.get(name, 0) for row in self.rows]

    def requests(self) -> list[int]:
        return [sum(v for k, v in row.items() if k.endswith("|n")) for row in self.rows]

    def server_errors(self) -> list[int]:
        return [sum(v for k, v in row.items() if k.endswith("|5xx")) for row in self.rows]


def series_last(resolution: str, count: int, *, now: float | None = None, store=None) -> Series:
    """The last `count` minutes or hours, the current (partial) one last."""
    now = time.time() if now is None else now
    last = int(now) // SECONDS[resolution]
    first = last - count + 1
    return Series(resolution, first, (store or aggregates_store()).series(resolution, first, count))


def last_hour(**kwargs) -> Series:
    return series_last(MINUTE, 60, **kwargs)


def last_day(**kwargs) -> Series:
    return series_last(HOUR, 24, **kwargs)
