"""The operators' console in headless Chromium against `dispatcher run` with a warm pool:
sign in, the pools as the API counts them, an assign by type and a release through the
page, a reader without buttons, a revoked token back at the sign-in form, signing out,
and nothing loaded from another origin. Saves the screenshot README.md shows when
DISPATCHER_CONSOLE_SCREENSHOT names a file."""

import json
import os
import shutil
import subprocess
import time
from urllib.parse import urlsplit

import pytest
import requests
from helpers import (
    ADMIN_PASSWORD,
    CHROMEDRIVER,
    CHROMIUM,
    CHROMIUM_FLAGS,
    DISPATCHER,
    LOADED_URLS,
    WAIT,
    Server,
    admin_token,
)
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import Select, WebDriverWait

from harness.ports import free_port

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()),
        reason=f"needs Debian's chromium and chromium-driver ({CHROMIUM}, {CHROMEDRIVER})",
    ),
]

POOL = {"clouds": [{"cloud": "fake_driver", "image": "1", "size": "1"}], "min_ready": 2}
READER_PASSWORD = "reader-password-long-enough"
TOKEN = "return sessionStorage.getItem('dispatcher.token');"
# The pools' table rows: pool, cloud ("" for the pool's total) and the four counts.
POOL_ROWS = """
return Array.from(document.querySelectorAll('#pools-list tr[data-pool]')).map(tr =>
  [tr.dataset.pool, tr.dataset.cloud].concat(
    Array.from(tr.cells).slice(1, 5).map(td => Number(td.textContent))));
"""
HISTORY_ACTIONS = """
return Array.from(document.querySelectorAll('#history-rows tr')).map(tr => tr.cells[1].textContent);
"""
ASSIGNED_USERS = """
return Array.from(document.querySelectorAll('#assignments-rows tr'))
  .map(tr => tr.cells[3].textContent);
"""


@pytest.fixture
def browser(tmp_path):
    """Headless Chromium as for the docs page, keeping its performance log (DevTools'
    network events: every request the page sends)."""
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    # ChromeDriver on a port drawn as for every server of the suite (harness.ports).
    service = Service(str(CHROMEDRIVER), port=free_port())
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(WAIT)
    yield driver
    driver.quit()


def requested_urls(browser) -> list[str]:
    """The URL of every request sent over the network so far, from the performance log
    (the browser's own chrome:// pages, which never leave it, left out)."""
    urls = []
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            url = message["params"]["request"]["url"]
            if urlsplit(url).scheme in ("http", "https", "ws", "wss"):
                urls.append(url)
    return urls


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`dispatcher run` with the warm pool web on the Dummy cloud fake_driver, filled, and
    a user `reader` without roles."""
    settings = {"POOLS": {"web": {**POOL, "max_total": 3}}, "POOLS_INTERVAL": 1}
    instance = tmp_path_factory.mktemp("console") / "instance"
    server = Server(instance, settings, DISPATCHER_ADMIN_PASSWORD=ADMIN_PASSWORD)
    try:
        command = [str(DISPATCHER), "users", "create", "reader", f"--password={READER_PASSWORD}"]
        subprocess.run(command, env=server.env, check=True, capture_output=True, timeout=60)
        token = admin_token(server)
        deadline = time.monotonic() + 30
        while pool_counts(server, token)[("web", "")][1] < 2:
            assert time.monotonic() < deadline, server.output()
            time.sleep(0.2)
        yield server
    finally:
        server.stop()


def pool_counts(server: Server, token: str) -> dict:
    """(pool, cloud) -> [booting, free, assigned, faulty], cloud "" the pool's total."""
    answer = requests.get(f"{server.base}/pools", headers={"X-Auth-Token": token}, timeout=10)
    counts = {}
    for pool in answer.json()["pools"]:
        states = ("booting", "free", "assigned", "faulty")
        counts[(pool["name"], "")] = [pool[state] for state in states]
        for entry in pool["clouds"]:
            counts[(pool["name"], entry["cloud"])] = [entry[state] for state in states]
    return counts


def sign_in(browser, server: Server, username: str, password: str) -> None:
    browser.get(server.base.removesuffix("/api/v1") + "/console")
    wait = WebDriverWait(browser, WAIT)
    wait.until(expected_conditions.visibility_of_element_located((By.ID, "username")))
    browser.find_element(By.ID, "username").send_keys(username)
    browser.find_element(By.ID, "password").send_keys(password)
    browser.find_element(By.CSS_SELECTOR, "#sign-in-form button[type=submit]").click()
    wait.until(lambda driver: driver.execute_script(POOL_ROWS))


def test_an_operator_signs_in_assigns_releases_and_signs_out(server, browser, tmp_path):
    origin = "{0.scheme}://{0.netloc}/".format(urlsplit(server.base))
    wait = WebDriverWait(browser, WAIT)
    sign_in(browser, server, "admin", ADMIN_PASSWORD)
    token = browser.execute_script(TOKEN)
    assert token

    shown = {(pool, cloud): counts for pool, cloud, *counts in browser.execute_script(POOL_ROWS)}
    assert shown == pool_counts(server, token)

    browser.find_element(By.ID, "assign-vm-type").send_keys("web")
    browser.find_element(By.ID, "assign-user").send_keys("ada")
    browser.find_element(By.CSS_SELECTOR, "#assign-form button[type=submit]").click()
    wait.until(lambda driver: "ada" in driver.execute_script(ASSIGNED_USERS))
    status = requests.get(
        f"{server.base}/vm/status/fake_driver", headers={"X-Auth-Token": token}, timeout=10
    ).json()["nodes"]
    [held] = [vm for vm in status if vm["user"] == "ada"]
    assert held["status"] == 2  # ASSIGNED
    browser.save_screenshot(str(tmp_path / "console.png"))
    if os.environ.get("DISPATCHER_CONSOLE_SCREENSHOT"):
        shutil.copyfile(tmp_path / "console.png", os.environ["DISPATCHER_CONSOLE_SCREENSHOT"])

    row = browser.find_element(
        By.CSS_SELECTOR, f'#assignments-rows tr[data-vm="fake_driver/{held["id_vm"]}"]'
    )
    row.find_element(By.XPATH, ".//button[text()='Release']").click()
    wait.until(expected_conditions.alert_is_present()).accept()
    wait.until(lambda driver: "ada" not in driver.execute_script(ASSIGNED_USERS))
    status = requests.get(
        f"{server.base}/vm/status/fake_driver", headers={"X-Auth-Token": token}, timeout=10
    ).json()["nodes"]
    assert [vm for vm in status if vm["user"] == "ada"] == []

    Select(browser.find_element(By.ID, "history-cloud")).select_by_visible_text("fake_driver")
    browser.find_element(By.ID, "history-user").send_keys("ada")
    browser.find_element(By.CSS_SELECTOR, "#history-filter button[type=submit]").click()
    wait.until(lambda driver: driver.execute_script(HISTORY_ACTIONS) == ["release", "assign"])

    browser.find_element(By.ID, "reconcile-dry-run").click()
    wait.until(lambda driver: driver.find_element(By.ID, "reconcile-apply").is_enabled())
    assert "orphans:" in browser.find_element(By.ID, "reconcile-result").text

    loaded = browser.execute_script(LOADED_URLS)
    assert any("/api/v1/pools" in url for url in loaded)
    assert [url for url in loaded if not url.startswith(origin)] == []
    requested = requested_urls(browser)
    assert f"{origin}api/v1/auth" in requested and len(requested) > 10
    assert [url for url in requested if not url.startswith(origin)] == []

    browser.find_element(By.ID, "sign-out").click()
    wait.until(expected_conditions.visibility_of_element_located((By.ID, "sign-in-form")))
    assert browser.execute_script(TOKEN) is None
    check = requests.put(f"{server.base}/test/start", headers={"X-Auth-Token": token}, timeout=10)
    assert check.status_code == 401


def test_a_reader_sees_no_buttons_and_a_revoked_token_signs_out(server, browser):
    sign_in(browser, server, "reader", READER_PASSWORD)
    token = browser.execute_script(TOKEN)

    assert not browser.find_element(By.ID, "assign-form").is_displayed()
    assert not browser.find_element(By.ID, "reconcile").is_displayed()
    assert browser.find_elements(By.CSS_SELECTOR, "#assignments-rows button") == []
    refused = requests.put(
        f"{server.base}/vm/action/assign",
        json={"vm_type": "web", "user": "reader"},
        headers={"X-Auth-Token": token},
        timeout=10,
    )
    assert refused.status_code == 403

    requests.delete(f"{server.base}/auth", headers={"X-Auth-Token": token}, timeout=10)

    wait = WebDriverWait(browser, WAIT)
    wait.until(expected_conditions.visibility_of_element_located((By.ID, "sign-in-form")))
    message = browser.find_element(By.ID, "sign-in-message").text
    assert message.startswith("Your session has ended")
