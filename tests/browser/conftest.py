"""Headless Chromium (Debian's `chromium` and `chromium-driver`) against a running server.

Selenium is given both paths, so Selenium Manager never runs and nothing is downloaded.
`make test` installs the two packages when they are missing.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service as DriverService
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.wait import WebDriverWait

from tests.e2e.conftest import Service, service

__all__ = ["service"]  # the e2e tier's running server, on SQLite and on PostgreSQL

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOTS = Path("test-output/screenshots")
WIDTHS = {"desktop": 1280, "320px": 320}
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,900",
)


@pytest.fixture(scope="session")
def chrome(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not path.exists():
            pytest.fail(
                f"{path} is missing: run `make test`, which installs Debian's chromium and"
                " chromium-driver, or `apt-get install -y chromium chromium-driver`.",
                pytrace=False,
            )
    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    driver = webdriver.Chrome(service=DriverService(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def _replaced(element: WebElement) -> Callable[[WebDriver], bool]:
    """Whether the document `element` belonged to was replaced by the next page.

    Chromium sometimes answers a question about a node of a replaced document with an inspector
    error ("does not belong to the document") instead of a stale-element error: both mean gone.
    """

    def gone(_: WebDriver) -> bool:
        try:
            element.is_enabled()
        except WebDriverException:  # StaleElementReferenceException is one of them
            return True
        return False

    return gone


class Page:
    """One browser on one server: sign in through the form, look, click, photograph."""

    def __init__(self, driver: WebDriver, service: Service) -> None:
        self.driver = driver
        self.service = service
        self.backend = "postgres" if "DATABASE_URL" in service.env else "sqlite"
        self.sign_out()

    def sign_out(self) -> None:
        # Cookies are kept per host, not per port: forget every earlier server's session.
        self.driver.execute_cdp_cmd("Network.clearBrowserCookies", {})

    def open(self, path: str) -> None:
        self.driver.get(self.service.url + path)
        self.loaded()

    def sign_in(self, sub: str, role: str, *sites: str, then: str) -> None:
        """Open `then` signed out, sign in on the form it sends us to, and land on `then`."""
        self.sign_out()
        self.open(then)
        assert "/signin?next=" in self.driver.current_url
        token = self.service.token(sub, role, "acme", *sites)["Authorization"].split()[1]
        self.driver.find_element(By.ID, "token").send_keys(token)
        self.click(self.button("Sign in"))
        assert self.driver.current_url == self.service.url + then

    def loaded(self) -> None:
        """Wait until the current page has finished loading (elements found before may go stale)."""
        WebDriverWait(self.driver, 15).until(
            lambda d: d.execute_script("return document.readyState") == "complete"
        )

    def button(self, label: str) -> WebElement:
        self.loaded()
        return self.driver.find_element(By.XPATH, f"//button[normalize-space()='{label}']")

    def link(self, name: str) -> WebElement:
        """The link whose text, visually hidden parts included (its accessible name), is `name`."""
        self.loaded()
        return self.driver.find_element(By.XPATH, f"//a[normalize-space()='{name}']")

    def click(self, control: WebElement, *keys: str) -> None:
        """Click `control` (or press `keys` on it) and wait until the next page has loaded."""
        before = self.driver.find_element(By.TAG_NAME, "html")
        if keys:
            control.send_keys(*keys)
        else:
            control.click()
        WebDriverWait(self.driver, 15).until(_replaced(before))
        WebDriverWait(self.driver, 15).until(
            lambda d: d.execute_script("return document.readyState") == "complete"
        )

    def main(self) -> str:
        return " ".join(self.driver.find_element(By.TAG_NAME, "main").text.split())

    def main_shows(self, text: str, timeout: float = 15) -> str:
        """Reload until `text` is on the page: another user's write reaches the views a moment
        later (the projector runs in its own process), as it would for a real admin."""
        deadline = time.monotonic() + timeout
        while text not in self.main() and time.monotonic() < deadline:
            time.sleep(0.2)
            self.driver.refresh()
        return self.main()

    def shoot(self, name: str) -> None:
        """Save the whole page at desktop width and at 320 px, and check 320 px needs no scroll."""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        for label, width in WIDTHS.items():
            self._viewport(width, 800)
            overflow = self.driver.execute_script(
                "return document.documentElement.scrollWidth - window.innerWidth"
            )
            assert overflow <= 0, f"{name} scrolls sideways by {overflow}px at {width}px"
            height = self.driver.execute_script("return document.documentElement.scrollHeight")
            self._viewport(width, min(int(height), 6000))
            shot = self.driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})
            path = SCREENSHOTS / f"{self.backend}-{name}-{label}.png"
            path.write_bytes(base64.b64decode(shot["data"]))
        self.driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})

    def _viewport(self, width: int, height: int) -> None:
        self.driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )


@pytest.fixture
def page(chrome: WebDriver, service: Service, request: pytest.FixtureRequest) -> Iterator[Page]:
    browser = Page(chrome, service)
    yield browser
    report = request.node.stash.get(_CALL_REPORT, None)
    if report is not None and report.failed:
        # What the browser showed when the test failed, for whoever reads the CI log.
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        stem = SCREENSHOTS / f"FAILED-{request.node.name}"
        chrome.save_screenshot(f"{stem}.png")
        stem.with_suffix(".html").write_text(chrome.page_source, encoding="utf-8")
        print(f"failed at {chrome.current_url}; see {stem}.png and .html")


_CALL_REPORT = pytest.StashKey[pytest.TestReport]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call":
        item.stash[_CALL_REPORT] = report
    return report
