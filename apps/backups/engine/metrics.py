"""Server-backup metrics (Prometheus names per CONVENTIONS 16).

Counted where the work runs: a backup run by the Celery worker shows on /metrics through the
worker's multiprocess directory; a one-off `manage.py backup run` in a shell does not. Per
schedule (label `schedule`: its name, or `on-demand-<type>`): runs by kind and outcome, the time
of the last success and its age (refreshed by the delay check every few minutes), the last run's
stored/read ratio (compression and dedup together) and throughput. Success rate = rate of
runs_total{outcome="success"} over all.
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
ALERTS = Counter("homepocket_backup_alerts_total", "Backup alerts raised, by kind (BACKUP_FAILED, BACKUP_DELAYED, ...).", ["kind"])
SCHEDULE_RUNS = Counter("homepocket_backup_schedule_runs_total", "Backup runs by schedule, kind (backup, test_restore, verify, retention) and outcome.", ["schedule", "kind", "outcome"])
SCHEDULE_LAST_SUCCESS = Gauge(
    "homepocket_backup_schedule_last_success_timestamp_seconds", "Unix time of the schedule's last successful backup.", ["schedule"], multiprocess_mode="max"
)
SCHEDULE_LAST_SUCCESS_AGE = Gauge(
    "homepocket_backup_schedule_last_success_age_seconds", "Age of the schedule's last successful backup at the last delay check.", ["schedule"], multiprocess_mode="mostrecent"
)
SCHEDULE_SIZE_RATIO = Gauge(
    "homepocket_backup_schedule_stored_ratio", "Bytes the last run stored / bytes it read (compression and dedup; lower is better).", ["schedule"], multiprocess_mode="mostrecent"
)
SCHEDULE_THROUGHPUT = Gauge("homepocket_backup_schedule_throughput_bytes_per_second", "Bytes read per second by the schedule's last run.", ["schedule"], multiprocess_mode="mostrecent")
