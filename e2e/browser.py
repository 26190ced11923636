"""A real browser for the admin's end-to-end tests: Debian's Chromium, driven by Selenium through
the system's chromedriver, so that nothing is downloaded.

Without the browser the tests are skipped on a developer's machine and fail under CI (`CI=true`),
where `.ci/run` installs it. Screenshots go to `SCREENSHOTS_DIR` when it is set (the images of
docs/admin.md: `SCREENSHOTS_DIR=docs/screenshots`), else to the test session's temporary folder.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from core.testing import unavailable

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
# The narrowest screen the admin is made for.
WIDTH, HEIGHT = 1366, 900


def _chromium():
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--window-size={WIDTH},{HEIGHT}",
        "--force-device-scale-factor=1",
        "--lang=en-US",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    return driver


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if missing:
        message = f"{' and '.join(missing)} missing: apt-get install chromium chromium-driver"
        unavailable(message)
    # Selenium must not look for (or fetch) a driver of its own.
    os.environ["SE_OFFLINE"] = "true"
    driver = _chromium()
    yield driver
    driver.quit()


@pytest.fixture
def admin_browser(browser, live_server):
    """The browser, logged out, pointed at the live server."""
    browser.delete_all_cookies()
    yield Admin(browser, live_server.url)
    browser.delete_all_cookies()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory) -> Path:
    folder = Path(os.environ["SCREENSHOTS_DIR"]) if os.environ.get("SCREENSHOTS_DIR") else None
    folder = folder or tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class Admin:
    """A person at the admin: opens pages, clicks, types, reads."""

    def __init__(self, driver, base_url: str) -> None:
        self.driver = driver
        self.base_url = base_url

    def open(self, path: str) -> None:
        self.driver.get(self.base_url + path)

    def log_in(self, username: str, password: str) -> None:
        from selenium.webdriver.common.by import By

        self.open("/admin/login/")
        self.driver.find_element(By.ID, "id_username").send_keys(username)
        self.driver.find_element(By.ID, "id_password").send_keys(password)
        self.driver.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
        self.wait_for(lambda: "/admin/login/" not in self.driver.current_url, "the login to go through")

    def find(self, selector: str):
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, selector)

    def find_all(self, selector: str) -> list:
        from selenium.webdriver.common.by import By

        return self.driver.find_elements(By.CSS_SELECTOR, selector)

    def click(self, selector: str) -> None:
        self.find(selector).click()

    def text(self, selector: str = "body") -> str:
        return self.find(selector).text

    def messages(self) -> str:
        """The messages the last action left (waiting for the page that shows them)."""
        self.wait_for(lambda: self.find_all("ul.messagelist li"), "a message", timeout=10)
        return " ".join(element.text for element in self.find_all("ul.messagelist li"))

    def submit(self, selector: str) -> None:
        """Click a button that loads another page, and wait until that page is there."""
        from selenium.webdriver.support import expected_conditions
        from selenium.webdriver.support.wait import WebDriverWait

        page = self.find("html")
        self.click(selector)
        WebDriverWait(self.driver, 15).until(expected_conditions.staleness_of(page))

    def field(self, name: str) -> str:
        """The value shown for a read-only field of an admin page."""
        return self.find(f".field-{name} .readonly").text

    def too_wide(self) -> list[str]:
        """What makes the page scroll sideways (empty when it fits): elements past the window's
        right edge, and lists whose table is wider than its box (Django lets it scroll inside)."""
        return self.driver.execute_script(
            "const room = document.documentElement.clientWidth;"
            "const name = e => e.tagName.toLowerCase()"
            "  + (e.id ? '#' + e.id : '') + (e.className ? '.' + e.className : '');"
            "const past = [...document.querySelectorAll('body *')]"
            "  .filter(e => e.getBoundingClientRect().right > room + 1).map(e => name(e));"
            "const lists = [...document.querySelectorAll('#changelist .results')]"
            "  .filter(r => r.scrollWidth > r.clientWidth).map(e => 'table wider than its list: ' + name(e));"
            "return past.concat(lists).slice(0, 10);"
        )

    def wait_for(self, condition: Callable[[], object], what: str, timeout: float = 30, reload: bool = False):
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            time.sleep(0.3)
            if reload:
                self.driver.refresh()

    def screenshot(self, folder: Path, name: str) -> Path:
        """The whole page (as tall as its content), at the window's width."""
        height = self.driver.execute_script("return document.documentElement.scrollHeight")
        self.driver.set_window_size(WIDTH, max(HEIGHT, min(height + 140, 3000)))
        path = folder / f"{name}.png"
        self.driver.save_screenshot(str(path))
        self.driver.set_window_size(WIDTH, HEIGHT)
        return path
