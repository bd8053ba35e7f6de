"""A process running one job through job_run_once (tests/test_jobs.py starts two of these).

argv: job name, a directory. The job writes `started` there and holds the lease until `release`
appears (bounded), so the test decides when it ends; the process prints `ran` or `skipped`.
"""

import os
import sys
import time
from pathlib import Path

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "homepocket.settings")
django.setup()

from apps.cluster.jobs import job_run_once  # noqa: E402


def main() -> None:
    name, directory = sys.argv[1], Path(sys.argv[2])

    def hold(lease) -> str:
        (directory / f"started-{os.getpid()}").write_text(str(lease.token))
        deadline = time.monotonic() + 60
        while not (directory / "release").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        return "ran"

    print(job_run_once(name, hold) or "skipped", flush=True)


if __name__ == "__main__":
    main()
