"""Run the whole server: the ASGI web server and the Celery worker and beat, until Ctrl-C.

This is what `make run` starts. Each child runs in its own session (so the terminal's Ctrl-C
reaches only this launcher, which then stops them in order) and with PR_SET_PDEATHSIG (so none
outlives a launcher that was killed). If one child dies, the others are stopped too: a server
half running is worse than one that says it stopped.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from homepocket.env import env_int, env_str

STOP_TIMEOUT_SECONDS = 30


def _child_preexec() -> None:
    from homepocket.process_guard import die_with_parent

    die_with_parent(signal.SIGTERM)


class Command(BaseCommand):
    help = "Run the web server with its Celery worker and beat (the embedded mode's whole server)."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=env_str("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=env_int("PORT", 8000))
        parser.add_argument("--workers", type=int, default=env_int("WEB_CONCURRENCY", 1))
        parser.add_argument("--web-only", action="store_true", help="Start the web server without Celery.")
        parser.add_argument("--without-signers", action="store_true", help="Do not start signers (they run elsewhere).")

    def handle(self, *args, host, port, workers, web_only, without_signers=False, **options):
        embedded = not settings.REDIS_URL
        if embedded and workers != 1:
            raise CommandError(
                "The embedded mode runs one web worker: its cache and channel layer live in that "
                "process. Set REDIS_URL (and DATABASE_URL) for more."
            )
        if not web_only:
            call_command("sync_periodic_tasks", verbosity=0)
        python = sys.executable
        children = {}
        if not without_signers:  # one signer sidecar per configured socket (apps/signing, signer/)
            for i, socket_path in enumerate(settings.SIGNER_SOCKETS):
                children[f"signer-{i}"] = [python, "-m", "signer", "--socket", socket_path]
        children |= {
            "web": [python, "-m", "homepocket.server", "--host", host, "--port", str(port), "--workers", str(workers)],
        }
        if not web_only:
            children["worker"] = [
                python, "-m", "celery", "-A", "homepocket", "worker", "--loglevel", "INFO",
                "--hostname", f"worker-{port}@%h",
                *(["--pool", "solo"] if embedded else ["--concurrency", str(env_int("CELERY_CONCURRENCY", 2))]),
                "--without-gossip", "--without-mingle",
            ]  # fmt: skip
            children["beat"] = [
                python, "-m", "celery", "-A", "homepocket", "beat", "--loglevel", "INFO",
                "--scheduler", "django_celery_beat.schedulers:DatabaseScheduler", "--pidfile=",
            ]  # fmt: skip
        stop = _StopRequest()
        signal.signal(signal.SIGINT, stop.handle)
        signal.signal(signal.SIGTERM, stop.handle)
        processes = {
            name: subprocess.Popen(argv, start_new_session=True, preexec_fn=_child_preexec)
            for name, argv in children.items()
        }
        self._banner(host, port, embedded, list(processes))
        failed = None
        while stop.signal is None and failed is None:
            time.sleep(0.3)
            failed = next((name for name, p in processes.items() if p.poll() is not None), None)
        if failed:
            self.stderr.write(f"{failed} exited with status {processes[failed].returncode}; stopping the others.")
        # Ctrl-C stops at once; SIGTERM (an orchestrator) lets the web server drain first.
        web_signal = signal.SIGTERM if stop.signal == signal.SIGTERM else signal.SIGINT
        for name, process in processes.items():
            if process.poll() is None:
                process.send_signal(web_signal if name == "web" else signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        for name, process in processes.items():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.stderr.write(f"{name} did not stop in {STOP_TIMEOUT_SECONDS}s; killing it.")
                process.kill()
                process.wait()
        self.stdout.write("Home Pocket server stopped.")
        if failed:
            raise CommandError(f"{failed} stopped unexpectedly")

    def _banner(self, host: str, port: int, embedded: bool, names: list[str]) -> None:
        base = f"http://{host}:{port}"
        mode = "embedded" if embedded else "distributed"
        self.stdout.write(
            "\n".join(
                [
                    f"Home Pocket server ({mode} mode) is starting on {base} with: {', '.join(names)}",
                    f"  API docs:   {base}/api/docs/",
                    f"  Admin:      {base}/admin/",
                    f"  Health:     {base}/health   Ready: {base}/ready   Metrics: {base}/metrics",
                    "  First operator: .venv/bin/python manage.py createsuperuser",
                    "  Stop with Ctrl-C.",
                ]
            )
        )
        self.stdout.flush()


class _StopRequest:
    def __init__(self):
        self.signal: int | None = None

    def handle(self, sig, frame) -> None:
        self.signal = self.signal or sig
