"""Headless Chromium from Debian (chromium + chromium-driver), driven by Selenium: nothing downloaded.

The flags are this machine's (no network but loopback): no sandbox as root, no GPU, and none of
Chromium's background connections (updates, sync, QUIC probes) that would fail here by the dozen.
Each browser gets a fresh profile directory. Selenium Manager is told to stay offline, and is
never needed: the driver's and the browser's paths are given.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CHROMIUM = os.environ.get("CHROMIUM_BINARY", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER_BINARY", "/usr/bin/chromedriver")
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


@contextmanager
def chromium(*, width: int = 1280, height: int = 900, timezone: str | None = None) -> Iterator:
    """A Selenium WebDriver on headless Chromium, at this window size (and, if given, time zone)."""
    os.environ["SE_OFFLINE"] = "true"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = Path(tempfile.mkdtemp(prefix="hp-chromium-"))
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    # A click that loads a page can return before the new page is there (seen on a busy machine):
    # finding an element waits up to 5 s for it (a check that something is absent waits that long too).
    driver.implicitly_wait(5)
    try:
        if timezone:
            driver.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": timezone})
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def full_page_screenshot(driver, path: Path) -> None:
    """The whole page, not only the window: the window is grown to the document's height first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    width = driver.get_window_size()["width"]
    height = driver.execute_script("return Math.max(document.body.scrollHeight, document.documentElement.scrollHeight)")
    driver.set_window_size(width, min(int(height) + 120, 12000))
    driver.save_screenshot(str(path))
