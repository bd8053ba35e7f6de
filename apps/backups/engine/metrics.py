"""Server-backup metrics (Prometheus names per CONVENTIONS 16).

Counted where the work runs: a backup run by the Celery worker (once the scheduler lands) shows
on /metrics through the worker's multiprocess directory; a one-off `manage.py backup run` in a
shell does not. Ratios (compression, dedup) are computed from these counters in the dashboard:
bytes_read / bytes_added over the same window.
"""

from prometheus_client import Counter, Gauge, Histogram

RUNS = Counter("homepocket_backup_runs_total", "Backup runs, by outcome (success, failure).", ["outcome"])
BYTES_READ = Counter("homepocket_backup_read_bytes_total", "Bytes read from the sources by backup runs (unchanged objects skipped are not read).")
BYTES_ADDED = Counter("homepocket_backup_added_bytes_total", "Sealed bytes backup runs added to the repository (after dedup and compression).")
DURATION = Histogram(
    "homepocket_backup_run_seconds",
    "Time a successful backup run took.",
    buckets=(1, 5, 15, 60, 300, 900, 3600, 4 * 3600),
)
LAST_SUCCESS = Gauge("homepocket_backup_last_success_timestamp_seconds", "Unix time of the last successful backup run.", multiprocess_mode="max")
VERIFY_PROBLEMS = Counter("homepocket_backup_verify_problems_total", "Problems verify found (corrupt, damaged or missing chunks, corrupt snapshots).", ["kind"])
