"""CPU per POST /api/v1/backup/delivery/request, lean route against Django + DRF, in one process.

Where bench/delivery.py measures throughput over sockets (and so the whole machine's load), this
counts what one request costs the server's process: the ASGI application (homepocket.asgi) is
called in this process, one request after another, with the lean route on and then off, on a
fresh SQLite database (or DATABASE_URL's PostgreSQL), and the process's CPU time (all its
threads, time.process_time) is divided by the requests. An ECIES encrypt of the same share is
timed in the same run as a yardstick of how fast the machine is at that moment.

Usage: .venv/bin/python bench/delivery_cpu.py [--requests 2000] [--share-bytes 4096]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--share-bytes", type=int, default=4096)
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="bench-delivery-cpu-")
    os.environ["HOMEPOCKET_VAR_DIR"] = workdir
    os.environ["SIGNING_MASTER_KEY_FILE"] = f"{workdir}/signer/master-key.json"
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "homepocket.settings")
    if os.environ.get("DATABASE_URL"):
        from tests.harness.live import _admin_execute, _with_database

        name = f"hp_bench_{uuid.uuid4().hex[:10]}"
        _admin_execute(f'CREATE DATABASE "{name}"')
        os.environ["DATABASE_URL"] = _with_database(os.environ["DATABASE_URL"], name)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("quota", "set", "backup.request", "--plan", "free", "--limit", str(10**9))
    from coincurve import PrivateKey

    from apps.backups.delivery import services
    from apps.pairing.models import Device
    from apps.pairing.services import book_create
    from homepocket import asgi
    from homepocket_client import DeviceIdentity
    from homepocket_client.ecies import ecies_encrypt

    alice, bob = DeviceIdentity.new("alice"), DeviceIdentity.new("bob")
    book, _, _ = book_create(device_id=alice.device_id, public_key=alice.key.public_key_bytes, device_name="alice")
    Device.objects.create(id=bob.device_id, book=book, public_key=bob.key.public_key_bytes, name="bob")
    bob.book_id = book.id
    backup_id, share = uuid.uuid4(), os.urandom(args.share_bytes)
    services.share_deposit(depositor_device_id=alice.device_id, book_id=book.id, backup_id=backup_id,
                           recipient_device_id=bob.device_id, share=share)  # fmt: skip
    client_key = PrivateKey().public_key.format()
    token = bob.book_token(lifetime_seconds=3600).encode()
    counter = 0

    async def one() -> int:
        nonlocal counter
        counter += 1
        body = json.dumps({"backup_id": str(backup_id), "client_public_key": client_key.hex(), "timestamp": int(time.time()),
                           "nonce": f"cpu-{counter:020d}"}).encode()  # fmt: skip
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
                 "path": "/api/v1/backup/delivery/request", "raw_path": b"/api/v1/backup/delivery/request",
                 "query_string": b"", "root_path": "", "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8000),
                 "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
                             (b"authorization", b"Bearer " + token), (b"content-length", str(len(body)).encode())]}  # fmt: skip
        sent = iter([{"type": "http.request", "body": body, "more_body": False}])
        status, answer = 0, []

        async def receive():
            message = next(sent, None)
            if message is None:  # as a server does: the disconnect comes only when the client goes
                await asyncio.Event().wait()
            return message

        async def send(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            else:
                answer.append(message.get("body", b""))

        await asgi.application(scope, receive, send)
        if status != 200:
            print(status, b"".join(answer)[:400], file=sys.stderr)
        return status

    async def run(lean: bool) -> dict:
        asgi._delivery_route_on = lean
        for _ in range(100):  # warm: server key, device row, leases, connections
            assert await one() == 200
        cpu, wall = time.process_time(), time.perf_counter()
        statuses = [await one() for _ in range(args.requests)]
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        assert set(statuses) == {200}, statuses
        return {"route": "lean" if lean else "django", "requests": args.requests,
                "cpu_us_per_request": round(cpu / args.requests * 1e6), "wall_us_per_request": round(wall / args.requests * 1e6)}  # fmt: skip

    def ecies_us() -> float:
        samples = []
        for _ in range(2000):
            started = time.perf_counter()
            ecies_encrypt(client_key, share, aad=backup_id.bytes)
            samples.append(time.perf_counter() - started)
        return round(statistics.median(samples) * 1e6, 1)

    report = {"mode": "distributed (PostgreSQL)" if os.environ.get("DATABASE_URL") else "embedded (SQLite)",
              "load_average_before": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
              "ecies_encrypt_median_us_before": ecies_us()}  # fmt: skip
    report["runs"] = [asyncio.run(run(lean)) for lean in (True, False)]
    report["ecies_encrypt_median_us_after"] = ecies_us()
    report["load_average_after"] = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    print(json.dumps(report, indent=2))
    if os.environ.get("DATABASE_URL"):
        from django.db import connections

        connections.close_all()
        _admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return 0


if __name__ == "__main__":
    sys.exit(main())
