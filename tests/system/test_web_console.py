"""The web console in a real headless Chromium (Debian's ``chromium`` and ``chromium-driver``,
driven by Selenium), served by a ``dsa110d run --services watcher,web`` process on a real
server, over recorded pipeline state.

Every page loads without a console error and shows the daemon's live state; the pages refresh
without reloading; the candidates table sorts and filters; light curves and the eta-V diagram
render; markup from the pipeline shows as text. Screenshots of every page are kept under
``build/screenshots/`` as artefacts of the run.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from dsa110d.config import Config, load_config
from dsa110d.state.connection import connected
from tests.integration.web.webkit import (
    XSS_FILE,
    XSS_REASON,
    XSS_SOURCE,
    Recorded,
    free_port,
    get,
    record_everything,
    record_sets,
    set_id_at,
)
from tests.system.daemonkit import REPO, SERVICES_YAML, Daemon, wait_for

pytestmark = pytest.mark.system
SCREENSHOTS = REPO / "build" / "screenshots"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
PAGE_TIMEOUT_SEC = 30.0
WINDOW = (1400, 1000)


@pytest.fixture
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 f"--window-size={WINDOW[0]},{WINDOW[1]}", "--disable-extensions"):  # fmt: skip
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(PAGE_TIMEOUT_SEC)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def console(
    daemon_env: Callable[..., dict[str, str]], daemons: list[Daemon], tmp_path: Path
) -> Iterator[tuple[str, Config, Recorded]]:
    port = free_port()
    env = daemon_env(
        DSA110__SERVICES__WEB__ENABLED="true",
        DSA110__SERVICES__WEB__PORT=port,
        DSA110__SERVICES__WEB__REFRESH_SEC="1",
        DSA110__PATHS__RESULTS_DIR=tmp_path / "results",
        DSA110__PATHS__INCOMING_DIR=tmp_path / "incoming",
        DSA110__PATHS__MS_DIR=tmp_path / "ms",
    )
    config = load_config(SERVICES_YAML, "testing", env)

    async def record() -> Recorded:
        async with connected(config) as redis:
            return await record_everything(config, redis, n_sets=30, n_blocks=8, n_sources=60)

    recorded = anyio.run(record)
    daemon = Daemon(env, "watcher,web")
    daemons.append(daemon)
    daemon.wait_event("ready", timeout=60)
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: get(url + "/api/v1/version").status == 200, timeout=30)
    yield url, config, recorded


def errors_in(driver: Any) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def refreshed(driver: Any, times: int = 1) -> None:
    """Wait until the page's script has refreshed from the API ``times`` times."""

    def done() -> bool:
        count = driver.execute_script(
            "const s = document.getElementById('refreshed');"
            "return s ? Number(s.dataset.refreshes || 0) : 0;"
        )
        return int(count) >= times

    wait_for(done, timeout=PAGE_TIMEOUT_SEC, step=0.1)


def visit(driver: Any, url: str, name: str) -> None:
    driver.get(url)
    refreshed(driver)
    assert errors_in(driver) == [], name
    assert driver.find_element("id", "error").get_attribute("hidden") is not None, (
        name, driver.find_element("id", "error").text,
    )  # fmt: skip


def shoot(driver: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))


def cells(driver: Any, table: str, column: int) -> list[str]:
    """One column's text, read in one go (the rows are re-rendered at every refresh)."""
    return list(
        driver.execute_script(
            "return Array.from(document.querySelectorAll(`#${arguments[0]} tbody tr`))"
            ".map((tr) => tr.cells[arguments[1]].textContent);",
            table,
            column,
        )
    )


def click(driver: Any, selector: str) -> None:
    """Click the element now under ``selector`` (a row may be re-rendered between a find and
    a click)."""
    driver.execute_script("document.querySelector(arguments[0]).click();", selector)


def test_every_page_in_a_real_browser(browser: Any, console: tuple[str, Config, Recorded]) -> None:
    url, config, recorded = console

    # The overview shows the running daemon's services, live from its registry.
    visit(browser, url + "/", "overview")

    def services() -> dict[str, str]:
        return dict(zip(cells(browser, "services", 1), cells(browser, "services", 4), strict=True))

    # live: a service may be DEGRADED for a moment while the daemon settles on a busy machine
    wait_for(lambda: services() == {"watcher": "HEALTHY", "web": "HEALTHY"}, PAGE_TIMEOUT_SEC)
    assert browser.find_element("css selector", "[data-field=dead_letters]").text == "2"
    assert "dead_letters_growing" in cells(browser, "alerts", 3)
    assert browser.find_element("css selector", "#sets-per-hour canvas")
    shoot(browser, "overview")

    # The sets page refreshes without reloading when a new set is recorded.
    visit(browser, url + "/sets", "sets")
    browser.execute_script("window.notReloaded = true;")
    late = 1795200000.0

    async def one_more() -> list[str]:
        async with connected(config) as redis:
            return await record_sets(config, redis, 1, start=late)

    anyio.run(one_more)
    wait_for(lambda: set_id_at(late) in cells(browser, "sets", 0), timeout=PAGE_TIMEOUT_SEC)
    assert browser.execute_script("return window.notReloaded === true;")
    assert browser.find_element("css selector", "#sets-timeline canvas")
    shoot(browser, "sets")

    visit(browser, url + "/blocks", "blocks")
    assert "failed" in cells(browser, "blocks", 3)
    qa = cells(browser, "blocks", 10)
    assert (
        qa[0]
        == "flag: flag_fraction 0.032, flagged_total 1234, samples 38400; photometry: sources 40"
    )
    assert browser.find_element("css selector", "#blocks-timeline canvas")
    shoot(browser, "blocks")

    # Markup from the pipeline shows as text and runs nothing.
    visit(browser, url + "/dead-letters", "dead letters")
    assert XSS_REASON in cells(browser, "dead-reasons", 1)
    assert XSS_REASON in cells(browser, "dead-letters", 4)
    assert browser.execute_script("return window.xss === undefined;")
    shoot(browser, "dead-letters")
    visit(browser, url + "/files", "files")
    assert f"variability/{XSS_FILE}" in cells(browser, "files", 0)
    assert browser.execute_script("return window.xss === undefined;")
    shoot(browser, "files")

    # Candidates: sort, filter, the eta-V diagram and a light curve a click away.
    visit(browser, url + "/candidates", "candidates")
    wait_for(
        lambda: browser.find_element("id", "eta-v").get_attribute("data-sources") is not None,
        timeout=PAGE_TIMEOUT_SEC,
    )
    assert (
        int(browser.find_element("id", "eta-v").get_attribute("data-sources")) == recorded.sources
    )
    assert XSS_SOURCE in cells(browser, "candidates", 1)
    assert browser.find_elements("id", "xss") == []
    eta_header = browser.find_element("css selector", "#candidates th[data-key=eta]")
    eta_header.click()
    etas = [float(v) for v in cells(browser, "candidates", 8)]
    assert etas == sorted(etas)
    eta_header.click()
    assert [float(v) for v in cells(browser, "candidates", 8)] == sorted(etas, reverse=True)
    select = browser.find_element("id", "class-filter")
    select.find_element("css selector", "option[value=transient]").click()
    assert cells(browser, "candidates", 2) == ["transient"]
    select.find_element("css selector", "option[value=variable]").click()
    assert set(cells(browser, "candidates", 2)) == {"variable"}
    select.find_element("css selector", "option[value=transient]").click()
    click(browser, "#candidates tbody tr")
    wait_for(
        lambda: (
            browser.find_element("id", "light-curve").get_attribute("data-points")
            == str(recorded.points)
        ),
        timeout=PAGE_TIMEOUT_SEC,
    )
    assert browser.find_element("css selector", "#light-curve canvas")
    assert browser.find_element("id", "lc-title").text == recorded.transient
    time.sleep(0.5)  # let the plots settle for the picture
    assert errors_in(browser) == []
    shoot(browser, "candidates")

    # A source's own page.
    click(browser, "#candidates tbody tr td a")
    refreshed(browser)
    assert browser.current_url.endswith(f"/sources/{recorded.transient.replace('+', '%2B')}")
    wait_for(
        lambda: (
            browser.find_element("id", "light-curve").get_attribute("data-points")
            == str(recorded.points)
        ),
        timeout=PAGE_TIMEOUT_SEC,
    )
    links = browser.find_elements("css selector", "#source-files a")
    assert len(links) == recorded.points
    assert all(a.get_attribute("href").endswith(".parquet") for a in links)
    assert errors_in(browser) == []
    shoot(browser, "source")


def test_a_taken_port_makes_the_console_unhealthy_not_the_pipeline(
    daemon_env: Callable[..., dict[str, str]], daemons: list[Daemon], tmp_path: Path
) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = daemon_env(
            DSA110__SERVICES__WEB__ENABLED="true",
            DSA110__SERVICES__WEB__PORT=port,
            DSA110__PATHS__INCOMING_DIR=tmp_path / "incoming",
        )
        daemon = Daemon(env, "watcher,web")
        daemons.append(daemon)
        daemon.wait_event("ready", timeout=60)
        failure = daemon.wait_event("web_console_unavailable", timeout=30)
        assert f"cannot listen on 127.0.0.1:{port}" in str(failure["reason"])
        config = load_config(SERVICES_YAML, "testing", env)

        async def health() -> dict[str, str]:
            from dsa110d.operations.status import service_status

            rows = await service_status(config, fresh=False)
            return {r.service: r.health for r in rows}

        wait_for(lambda: anyio.run(health) == {"watcher": "HEALTHY", "web": "UNHEALTHY"}, 30)
        assert daemon.proc.poll() is None  # the pipeline goes on
