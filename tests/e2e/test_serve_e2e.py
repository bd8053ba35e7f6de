"""`manage.py serve`, what `make run` starts: web, Celery worker and beat, docs, and a clean stop."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time

import httpx
import pytest
import yaml
from openapi_spec_validator import validate

from tests.harness.live import REPO, LiveServer
from tests.harness.processes import alive, children_of, descendants_of

pytestmark = pytest.mark.e2e


def manage(server: LiveServer, *args: str) -> str:
    return subprocess.run(
        [sys.executable, "manage.py", *args, *(["-v", "0"] if args[0] == "shell" else [])], cwd=REPO, env=server.env, check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    server = LiveServer(tmp_path_factory.mktemp("serve"), command="serve").start()
    yield server
    server.stop()


def test_it_answers_health_and_ready(whole):
    assert httpx.get(f"{whole.url}/health").status_code == 200
    ready = httpx.get(f"{whole.url}/ready")
    assert ready.status_code == 200, ready.text
    assert all(c["status"] == "up" for c in ready.json()["components"].values())


def test_it_prints_where_the_docs_and_the_admin_are(whole):
    log = whole.log_text()
    assert f"{whole.url}/api/docs/" in log
    assert f"{whole.url}/admin/" in log
    assert "createsuperuser" in log


def test_the_swagger_ui_renders_from_local_files_only(whole):
    page = httpx.get(f"{whole.url}/api/docs/")
    assert page.status_code == 200
    urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
    assert urls, "the page loads its scripts and styles"
    for url in urls:
        assert not re.match(r"^(https?:)?//", url), f"external URL in the docs page: {url}"
        assert httpx.get(f"{whole.url}{url}").status_code == 200, url
    assert "cdn" not in page.text.lower()


def test_the_schema_is_valid_openapi_3(whole):
    response = httpx.get(f"{whole.url}/api/schema/")
    assert response.status_code == 200
    schema = yaml.safe_load(response.text)
    assert schema["openapi"].startswith("3.")
    validate(schema)
    assert "/api/v1/books" in schema["paths"]


def test_the_celery_worker_runs_tasks(whole):
    manage(
        whole, "shell", "-c",
        "from django.contrib.sessions.backends.db import SessionStore;"
        "from django.contrib.sessions.models import Session;"
        "from django.utils import timezone; import datetime;"
        "s = SessionStore(); s['x'] = 1; s.create();"
        "Session.objects.filter(pk=s.session_key).update(expire_date=timezone.now() - datetime.timedelta(days=1))",
    )  # fmt: skip
    count = "from django.contrib.sessions.models import Session; print(Session.objects.count())"
    assert manage(whole, "shell", "-c", count).strip() == "1"
    subprocess.run(
        [sys.executable, "-m", "celery", "-A", "homepocket", "call", "homepocket.sessions_clear_expired"],
        cwd=REPO, env=whole.env, check=True, capture_output=True,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while manage(whole, "shell", "-c", count).strip() != "0":
        assert time.monotonic() < deadline, f"the worker did not run the task; log:\n{whole.log_text()[-3000:]}"
        time.sleep(0.5)


def test_the_periodic_tasks_are_in_the_beat_schedule(whole):
    names = manage(whole, "shell", "-c", "from django_celery_beat.models import PeriodicTask; print(list(PeriodicTask.objects.filter(enabled=True).values_list('name', flat=True)))")
    assert "homepocket:sessions-clear-expired" in names


both_servers = pytest.mark.parametrize("asgi_server", ["granian", "uvicorn"])


@both_servers
def test_ctrl_c_stops_every_process(tmp_path, asgi_server):
    server = LiveServer(tmp_path, command="serve", server=asgi_server).start()
    launcher = server.process.pid
    assert len(children_of(launcher)) == 4  # signer, web, worker, beat
    everyone = descendants_of(launcher)
    assert len(everyone) >= 5  # and the web server's ASGI server (granian: and its worker)
    server.send_signal(signal.SIGINT)
    assert server.process.wait(40) == 0
    for pid in everyone:
        deadline = time.monotonic() + 5
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(pid), f"process {pid} outlived the launcher"
    assert "Home Pocket server stopped." in server.log_text()
    server.stop()


@both_servers
def test_a_killed_launcher_leaves_no_orphans(tmp_path, asgi_server):
    server = LiveServer(tmp_path, command="serve", server=asgi_server).start()
    everyone = descendants_of(server.process.pid)
    server.process.kill()  # SIGKILL: the launcher cannot clean up; PR_SET_PDEATHSIG must
    server.process.wait()
    for pid in everyone:
        deadline = time.monotonic() + 30
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not alive(pid), f"process {pid} outlived a killed launcher"
    server.stop()
