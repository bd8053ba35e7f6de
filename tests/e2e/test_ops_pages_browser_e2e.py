"""The operator dashboard and the account page in a real browser (headless Debian Chromium + Selenium).

One server; the test makes every kind of data the panels show through the real API (a pairing,
relay frames, signatures, a failed share delivery, a scheduled backup and a missed one, a key at
85 % of its daily quota),
then an operator reads /ops/ and follows a failed delivery to the admin, and the key's holder
reads /account/ and rotates the key. Screenshots of each page go to var/screenshots/ (the README
shows a committed set from docs/screenshots/).
"""

from __future__ import annotations

import asyncio
import os
import re
import time
import uuid

import httpx
import pytest
from selenium.webdriver.common.by import By

from homepocket_client import HomePocketClient, SigningClient
from homepocket_client.delivery import RetryPolicy, ShareDeliveryClient
from homepocket_client.relay import relay_connect
from tests.e2e.relay_support import book_of, ciphertext, next_frame
from tests.harness.browser import chromium, full_page_screenshot
from tests.harness.live import PAIRING_UNLIMITED, REPO, LiveServer
from tests.harness.staff import STAFF_PASSWORD

SCREENSHOTS = REPO / "var" / "screenshots"
DAILY_QUOTA = 20
PHONE = {"width": 390, "height": 844}
# The module's server makes every panel's data first: on a machine shared by several test suites
# that set-up alone can pass the suite's 300 s default.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]


def _text(driver, css: str) -> str:
    return driver.find_element(By.CSS_SELECTOR, css).text


def _wait_for(predicate, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def _log_in(driver, server: LiveServer, path: str, username: str) -> None:
    driver.get(f"{server.url}{path}")
    driver.find_element(By.NAME, "username").send_keys(username)
    driver.find_element(By.NAME, "password").send_keys(STAFF_PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    # The click returns before the POST's answer has loaded: a `get` now could be overtaken by it.
    _wait_for(lambda: "/login/" not in driver.current_url, "the sign-in to land")


def _daily_used(http: HomePocketClient, api_key: str) -> int:
    return http.usage(api_key=api_key).quotas["api_key.day"].used


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A server with fast flushes and heartbeats, and every panel's data made through its API."""
    server = LiveServer(
        tmp_path_factory.mktemp("ops-pages"),
        extra_env={"OPS_FLUSH_SECONDS": "0.5", "HEARTBEAT_INTERVAL_SECONDS": "1", "SHARE_DELIVERY_RETRY_BASE_SECONDS": "0.01"},
    ).start(setup=PAIRING_UNLIMITED)
    # One manage.py run for the people and their keys: each run is a Django start-up.
    keys = server.manage("shell", "-c", "; ".join([
        "from django.contrib.auth import get_user_model",
        "from apps.accounts.services import account_api_key_create",
        "User = get_user_model()",
        f"User.objects.create_user('operator', password={STAFF_PASSWORD!r}, is_staff=True, is_superuser=True)",
        f"holder = User.objects.create_user('holder', password={STAFF_PASSWORD!r})",
        f"neighbour = User.objects.create_user('neighbour', password={STAFF_PASSWORD!r})",
        f"print(account_api_key_create(user=holder, name='shop signer', scopes=['signing'], daily={DAILY_QUOTA}, monthly=400)[1])",
        "print(account_api_key_create(user=neighbour, name='neighbour key')[1])",
    ])).split()  # fmt: skip
    api_key, other_key = keys[-2], keys[-1]
    with HomePocketClient(server.url, timeout=10) as http:
        alice, bob = book_of(http, 2, "family phone")  # a pairing

        async def relay_frames():
            async with await relay_connect(server.url, bob) as socket:
                for _ in range(3):
                    await asyncio.to_thread(http.relay_send, alice, ciphertext(64))
                    await next_frame(socket)

        asyncio.run(relay_frames())

        signing = SigningClient(http, api_key=api_key, unlock_budget=10.0)
        key = signing.create_key()
        while _daily_used(http, api_key) < DAILY_QUOTA * 85 // 100:  # signatures, up to 85 % of the day's quota
            signing.sign(key.key_id, os.urandom(32))

        pinned = bytes.fromhex(httpx.get(f"{server.url}/api/v1/backup/delivery/server_key").json()["data"]["public_key"])
        delivery = ShareDeliveryClient(http, server_public_key=pinned, retry=RetryPolicy(base_seconds=0.01))
        backup_id = uuid.uuid4()
        delivery.deposit(alice, backup_id=backup_id, recipient_device_id=bob.device_id, share=os.urandom(64))
        for _ in range(5):  # five failed tries: FAILED
            delivery.report_failure(bob, delivery.request(bob, backup_id=backup_id).delivery_id)
    # A backup schedule run the way beat runs it, and one that has missed its run: a real
    # BACKUP_DELAYED alert from the delay check (its Celery task's body, called here).
    server.manage("shell", "-c", "; ".join([
        "from datetime import timedelta",
        "from django.utils import timezone",
        "from apps.backups.engine.models import BackupSchedule",
        "from apps.backups.engine.scheduling import backup_delays_check, backup_schedule_save",
        "from apps.backups.engine.tasks import backup_scheduled_run_task",
        "hourly = backup_schedule_save(schedule=BackupSchedule(name='database-hourly', backup_type='database', crontab='0 * * * *'))",
        "assert backup_scheduled_run_task(hourly.pk) == 'succeeded'",
        "late = backup_schedule_save(schedule=BackupSchedule(name='objects-nightly', backup_type='objects', crontab='30 2 * * *'))",
        "BackupSchedule.objects.filter(pk=late.pk).update(created_at=timezone.now() - timedelta(days=2))",
        "assert backup_delays_check()",
    ]))  # fmt: skip
    yield server, api_key, other_key, alice.book_id
    server.stop()


def test_an_operator_sees_every_panel_with_the_tests_data_and_follows_a_failed_delivery_to_the_admin(served):
    server, _, _, book_id = served
    with chromium(timezone="Asia/Tokyo") as driver:
        _log_in(driver, server, "/admin/login/?next=/ops/", "operator")

        def loaded():
            driver.get(f"{server.url}/ops/")
            return int(_text(driver, "#signing-count") or 0) >= DAILY_QUOTA * 85 // 100 - 1 and driver

        _wait_for(loaded, "the signatures to reach the aggregates")
        groups = {row.get_attribute("data-group") for row in driver.find_elements(By.CSS_SELECTOR, "#groups-hour tr.group")}
        assert {"pairing", "books", "relay", "signing", "backup"} <= groups
        assert len(driver.find_elements(By.CSS_SELECTOR, "#panel-nodes tr.node")) == 1
        assert int(_text(driver, "#relay-deliveries-hour")) >= 3
        assert _text(driver, "#signing-p99").endswith("ms")
        assert "failed 1" in _text(driver, "#delivery-states").lower()
        assert "ago" in _text(driver, "#backup-age")
        hourly = _text(driver, 'tr[data-schedule="database-hourly"]')
        assert "ago" in hourly and "overdue" not in hourly  # its last success, and its next run
        assert "overdue" in _text(driver, 'tr[data-schedule="objects-nightly"]')
        assert _text(driver, "#backup-alerts-open") == "1" and "BACKUP_DELAYED" in _text(driver, "#backup-alerts")
        # The signers' key cache, through the heartbeats: the key the test signed with is cached.
        assert re.search(r"warm\s+[1-9]\d* keys?", _text(driver, "#key-cache"))
        assert int(_text(driver, "#quota-subjects")) >= 1
        assert "api_key.day" in _text(driver, "#quota-policies")
        assert int(_text(driver, "#audit-day")) > 0
        # Every bar is labelled; times are the viewer's (Tokyo: UTC+9, no daylight saving).
        assert driver.find_elements(By.CSS_SELECTOR, "#chart-requests-hour text.value")
        generated = driver.find_element(By.CSS_SELECTOR, "header time")
        utc_hour = int(re.search(r"T(\d\d):", generated.get_attribute("datetime")).group(1))
        assert f"{(utc_hour + 9) % 24:02d}:" in generated.text
        # Nothing but aggregates: no device or book id anywhere on the page.
        page = driver.page_source
        assert str(book_id) not in page
        full_page_screenshot(driver, SCREENSHOTS / "ops-dashboard.png")

        link = driver.find_element(By.CSS_SELECTOR, "#failed-deliveries a")
        link.click()
        assert "/admin/backups/sharedelivery/" in driver.current_url
        assert "FAILED" in driver.page_source
        full_page_screenshot(driver, SCREENSHOTS / "admin-failed-delivery.png")

    with chromium(**PHONE) as phone:
        _log_in(phone, server, "/admin/login/?next=/ops/", "operator")
        phone.get(f"{server.url}/ops/")
        # One column at phone width: nothing wider than the screen.
        assert phone.execute_script("return document.documentElement.scrollWidth <= window.innerWidth + 1")
        full_page_screenshot(phone, SCREENSHOTS / "ops-dashboard-phone.png")


def test_a_holder_sees_its_key_at_85_percent_and_rotates_it_and_never_sees_another_accounts_key(served):
    server, api_key, other_key, _ = served
    prefix = api_key.split("_")[1]
    with chromium() as driver:
        _log_in(driver, server, "/account/login/", "holder")
        assert driver.current_url.endswith("/account/")
        section = driver.find_element(By.ID, f"key-{prefix}")
        assert f"{DAILY_QUOTA * 85 // 100} of {DAILY_QUOTA} requests today (85 %)" in section.text
        assert "of 400 requests this month" in section.text
        assert section.find_elements(By.CSS_SELECTOR, "ul.notifications li")  # the 80 % warning
        assert section.find_elements(By.CSS_SELECTOR, f"#chart-key-{prefix} text.value")
        assert other_key.split("_")[1] not in driver.page_source  # the neighbour's key is not here
        full_page_screenshot(driver, SCREENSHOTS / "account.png")

        driver.find_element(By.ID, f"rotate-{prefix}").click()
        new_key = _text(driver, "#new-key")
        assert new_key.startswith("hp_") and new_key != api_key
        full_page_screenshot(driver, SCREENSHOTS / "account-rotated.png")
        with HomePocketClient(server.url, timeout=10) as http:
            assert http.usage(api_key=new_key).plan == "service"  # the new key works
            assert http.usage(api_key=api_key).plan == "service"  # and the old one, within its grace
        driver.find_element(By.ID, "back-to-account").click()
        assert new_key not in driver.page_source  # shown once
        assert "stops working at" in driver.find_element(By.ID, f"key-{prefix}").text


def test_a_holder_who_is_not_staff_gets_no_dashboard(served):
    server, _, _, _ = served
    with chromium() as driver:
        _log_in(driver, server, "/account/login/", "holder")
        driver.get(f"{server.url}/ops/")
        assert "/admin/login/" in driver.current_url
        assert not driver.find_elements(By.ID, "panel-traffic")

