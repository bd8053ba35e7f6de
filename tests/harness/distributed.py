"""Run a command in the distributed mode: PostgreSQL and Redis of this machine, moto's S3 server.

`make test-distributed` runs `python -m tests.harness.distributed -- pytest ...`: this starts
moto's standalone S3 server on a free port, creates the bucket with `manage.py storage init`
(as an operator does), exports DATABASE_URL, REDIS_URL and S3_* for the command, and stops moto
afterwards whatever the command's outcome.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

from tests.harness.ports import free_port, wait_for_port

REPO = Path(__file__).resolve().parents[2]
DEFAULTS = {
    "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/homepocket",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
}


def main(argv: list[str]) -> int:
    if "--" in argv:
        argv = argv[argv.index("--") + 1 :]
    if not argv:
        print("usage: python -m tests.harness.distributed -- COMMAND ...", file=sys.stderr)
        return 2
    port = free_port()
    moto = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, process=moto)
        endpoint = f"http://127.0.0.1:{port}"
        bucket = "homepocket-test"
        env = {
            **os.environ,
            **{name: os.environ.get(name, value) for name, value in DEFAULTS.items()},
            "S3_BUCKET": bucket,
            "S3_ENDPOINT_URL": endpoint,
            "S3_ACCESS_KEY_ID": "testing",
            "S3_SECRET_ACCESS_KEY": "testing",
            "S3_REGION": "us-east-1",
            # One run's Redis keys never meet another's.
            "CACHE_KEY_PREFIX": f"hp-test-{secrets.token_hex(4)}",
            "SECRET_KEY": secrets.token_urlsafe(50),
            # pytest-django drops its test database at the end, which an idle pooled connection
            # would block; the servers that end-to-end tests start use the pool (LiveServer).
            "DATABASE_POOL": "0",
        }
        # The bucket is made the way an operator makes it (apps/photos, docs/photos.md).
        subprocess.run([sys.executable, "manage.py", "storage", "init"], cwd=REPO, env=env, check=True)
        print(f"distributed mode: PostgreSQL {env['DATABASE_URL']}, Redis {env['REDIS_URL']}, S3 {endpoint}", flush=True)
        return subprocess.call(argv, env=env)
    finally:
        moto.terminate()
        try:
            moto.wait(10)
        except subprocess.TimeoutExpired:
            moto.kill()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
