"""The operators' console in headless Chromium against `dispatcher run` with a warm pool:
sign in, the pools as the API counts them, an assign by type and a release through the
page, a reader without buttons, a revoked token back at the sign-in form, signing out,
and nothing loaded from another origin; an agent's quota beside the assign form, and
every quota rule for an admin; the month's usage by pool and by user, and its CSV. Saves
the screenshot README.md shows when DISPATCHER_CONSOLE_SCREENSHOT names a file."""

import datetime
import json
import os
import re
import shutil
import subprocess
import time
from urllib.parse import urlsplit

import pytest
import requests
import sqlalchemy
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
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import Select, WebDriverWait

from dispatcher.models import ASSIGNED, FAULTY, FREE, Span
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
AGENT_PASSWORD = "agent-password-long-enough"
# One VM at once for every agent (the admin, who has role agent too, and `ops`).
QUOTAS = [{"scope": "role", "name": "agent", "max_vms": 1}]
# What an hour of a VM of fake_driver costs: the pool web's (size "1") a little, a "large"
# one more.
PRICES = {"fake_driver": {"large": 3.0, "*": 0.1}}
TOKEN = "return sessionStorage.getItem('dispatcher.token');"
# The pools' table rows: pool, cloud ("" for the pool's total) and the five counts.
POOL_ROWS = """
return Array.from(document.querySelectorAll('#pools-list tr[data-pool]')).map(tr =>
  [tr.dataset.pool, tr.dataset.cloud].concat(
    Array.from(tr.cells).slice(1, 6).map(td => Number(td.textContent))));
"""
HISTORY_ACTIONS = """
return Array.from(document.querySelectorAll('#history-rows tr')).map(tr => tr.cells[1].textContent);
"""
ASSIGNED_USERS = """
return Array.from(document.querySelectorAll('#assignments-rows tr'))
  .map(tr => tr.cells[3].textContent);
"""
# The text of each row of a table's body, cell by cell, as the page shows it.
TABLE_ROWS = """
return Array.from(document.querySelectorAll(arguments[0] + ' tr'))
  .map(tr => Array.from(tr.cells).map(td => td.textContent));
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
    """`dispatcher run` with the warm pool web on the Dummy cloud fake_driver, filled, a
    user `reader` without roles and a user `ops` with role agent, every agent allowed one
    VM at once (QUOTAS), and fake_driver's VMs priced (PRICES)."""
    settings = {
        "POOLS": {"web": {**POOL, "max_total": 3}},
        "POOLS_INTERVAL": 1,
        # The Dummy numbers a new node by the count of its nodes, so after a destroy it can
        # give a live VM's id again: the create is refused and the cloud left alone for a
        # while. A second here, not POOLS_BACKOFF_SECONDS' half minute, before the next try.
        "POOLS_BACKOFF_SECONDS": 1,
        "POOLS_BACKOFF_MAX_SECONDS": 2,
        "QUOTAS": QUOTAS,
        "PRICES": PRICES,
    }
    instance = tmp_path_factory.mktemp("console") / "instance"
    server = Server(instance, settings, DISPATCHER_ADMIN_PASSWORD=ADMIN_PASSWORD)
    try:
        for command in (
            ["reader", f"--password={READER_PASSWORD}"],
            ["ops", f"--password={AGENT_PASSWORD}", "--role=agent"],
        ):
            command = [str(DISPATCHER), "users", "create", *command]
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
    """(pool, cloud) -> [booting, free, reserved, assigned, faulty], cloud "" the pool's
    total."""
    answer = requests.get(f"{server.base}/pools", headers={"X-Auth-Token": token}, timeout=10)
    counts = {}
    for pool in answer.json()["pools"]:
        states = ("booting", "free", "reserved", "assigned", "faulty")
        counts[(pool["name"], "")] = [pool[state] for state in states]
        for entry in pool["clouds"]:
            counts[(pool["name"], entry["cloud"])] = [entry[state] for state in states]
    return counts


def wait_for_a_free_vm(server: Server, token: str) -> None:
    """Until the pool web has a VM free (it refills after a release)."""
    deadline = time.monotonic() + 30
    while pool_counts(server, token)[("web", "")][1] < 1:
        assert time.monotonic() < deadline, server.output()
        time.sleep(0.2)


def click_afresh(browser, find) -> None:
    """Click what ``find(driver)`` finds, found again if the page redrew it first: the
    console redraws its tables every few seconds, and a button found just before a redraw
    is gone (stale) by the time it is clicked."""
    WebDriverWait(browser, WAIT, ignored_exceptions=(StaleElementReferenceException,)).until(
        lambda driver: find(driver).click() or True
    )


def click_in_row(browser, row: str, button: str) -> None:
    """Click the button labelled ``button`` in the table row the CSS selector ``row``
    finds."""
    click_afresh(
        browser,
        lambda driver: driver.find_element(By.CSS_SELECTOR, row).find_element(
            By.XPATH, f".//button[text()='{button}']"
        ),
    )


def token_of(server: Server, username: str, password: str) -> str:
    answer = requests.post(
        f"{server.base}/auth", json={"username": username, "password": password}, timeout=10
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["token"]


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

    click_in_row(browser, f'#assignments-rows tr[data-vm="fake_driver/{held["id_vm"]}"]', "Release")
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
    assert not browser.find_element(By.ID, "my-quota").is_displayed()
    assert not browser.find_element(By.ID, "quotas").is_displayed()
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


def test_an_agent_sees_its_quota_beside_the_assign_form(server, browser):
    wait = WebDriverWait(browser, WAIT)
    wait_for_a_free_vm(server, admin_token(server))
    sign_in(browser, server, "ops", AGENT_PASSWORD)

    def vms_used(driver) -> list[str]:
        return [cells[2] for cells in driver.execute_script(TABLE_ROWS, "#my-quota-rows")]

    wait.until(vms_used)
    assert browser.find_element(By.ID, "my-quota").is_displayed()
    assert "What ops may hold" in browser.find_element(By.ID, "my-quota").text
    assert browser.execute_script(TABLE_ROWS, "#my-quota-rows") == [
        ["any pool", "yes", "0 / 1, 1 left", "0 / no limit", "no limit", "role agent"],
        ["web", "yes", "0 / 1, 1 left", "0 / no limit", "no limit", "role agent"],
    ]
    # Every rule is for admins only.
    assert not browser.find_element(By.ID, "quotas").is_displayed()

    browser.find_element(By.ID, "assign-vm-type").send_keys("web")
    browser.find_element(By.ID, "assign-user").send_keys("grace")
    browser.find_element(By.CSS_SELECTOR, "#assign-form button[type=submit]").click()
    wait.until(lambda driver: "grace" in driver.execute_script(ASSIGNED_USERS))
    wait.until(lambda driver: vms_used(driver) == ["1 / 1, 0 left"] * 2)

    # A second VM would be over the quota: the form says so, with the API's reason.
    browser.find_element(By.CSS_SELECTOR, "#assign-form button[type=submit]").click()
    message = browser.find_element(By.ID, "assign-message")
    wait.until(lambda driver: message.text.startswith("Assign refused"))
    assert message.text == "Assign refused: quota: user ops holds 1 of 1 VMs (rule role agent)"
    assert browser.execute_script(ASSIGNED_USERS).count("grace") == 1

    release = "//tbody[@id='assignments-rows']/tr[td[4]='grace']//button[text()='Release']"
    click_afresh(browser, lambda driver: driver.find_element(By.XPATH, release))
    wait.until(expected_conditions.alert_is_present()).accept()
    wait.until(lambda driver: vms_used(driver) == ["0 / 1, 1 left"] * 2)

    api = server.base + "/"
    requested = requested_urls(browser)
    assert f"{api}quotas/me" in requested
    assert f"{api}quotas" not in requested  # an agent's page never asks for every rule


def test_an_admin_sees_every_quota_rule_and_its_use(server, browser):
    admin = {"X-Auth-Token": admin_token(server)}
    rule = {"max_lease": 7200, "max_vm_hours": None}
    answer = requests.put(f"{server.base}/quotas/user/ops", json=rule, headers=admin, timeout=10)
    assert answer.status_code == 200, answer.text
    wait_for_a_free_vm(server, admin["X-Auth-Token"])
    ops = {"X-Auth-Token": token_of(server, "ops", AGENT_PASSWORD)}
    body = {"vm_type": "web", "user": "grace"}
    held = requests.put(f"{server.base}/vm/action/assign", json=body, headers=ops, timeout=30)
    assert held.status_code == 200, held.text
    try:
        sign_in(browser, server, "admin", ADMIN_PASSWORD)
        wait = WebDriverWait(browser, WAIT)
        wait.until(lambda driver: driver.execute_script(TABLE_ROWS, "#quotas-rows"))
        assert browser.find_element(By.ID, "quotas").is_displayed()
        [mine, agents] = browser.execute_script(TABLE_ROWS, "#quotas-rows")
        # The user's rule, set here: the lease it caps (to 2 h, the assign asked for none)
        # counts whole in the VM-hours.
        assert mine[:7] == ["user ops", "any", "—", "no limit", "2 h", "—", "database"]
        assert re.fullmatch(r"1 VM, 2(\.\d+)? VM-hours in 24 h", mine[7])
        assert mine[8].startswith("admin, ")
        # The QUOTAS setting's rule, which counts every agent.
        assert agents[:7] == ["role agent", "any", "1", "—", "—", "—", "setting"]
        assert re.fullmatch(r"1 VM, 2(\.\d+)? VM-hours in 24 h", agents[7])
        assert agents[8] == "—"
    finally:
        node = {"node": held.json()["id_vm"]}
        url = f"{server.base}/vm/action/release/fake_driver"
        assert requests.put(url, json=node, headers=admin, timeout=30).status_code == 200
        url = f"{server.base}/quotas/user/ops"
        assert requests.delete(url, headers=admin, timeout=10).status_code == 200


def test_a_request_in_line_is_listed_with_its_place_and_cancelled_from_the_page(server, browser):
    """The pool drained (no free VM, none made): an agent's request waits in line, shown
    with its place, and its Cancel button ends it; the pool is given back afterwards."""
    token = admin_token(server)
    headers = {"X-Auth-Token": token}
    pool_url = f"{server.base}/pools/web"
    assert requests.patch(pool_url, json={"draining": True}, headers=headers, timeout=10).ok
    try:
        deadline = time.monotonic() + 30
        # Neither free nor booting: a VM still booting would come free and serve the
        # request at once.
        while any(pool_counts(server, token)[("web", "")][:2]):
            assert time.monotonic() < deadline, server.output()
            time.sleep(0.2)
        ops = token_of(server, "ops", AGENT_PASSWORD)
        made = requests.post(
            f"{server.base}/requests",
            json={"vms": {"web": 1}, "user": "ada", "priority": 1},
            headers={"X-Auth-Token": ops},
            timeout=10,
        )
        assert made.status_code == 202, made.text
        request_id = made.json()["request"]["id"]

        sign_in(browser, server, "ops", AGENT_PASSWORD)
        wait = WebDriverWait(browser, WAIT)
        wait.until(lambda driver: driver.execute_script(TABLE_ROWS, "#requests-rows"))
        [shown] = browser.execute_script(TABLE_ROWS, "#requests-rows")
        assert shown[:5] == [str(request_id), "ada", "1 web", "1", "1"]
        click_in_row(browser, f'#requests-rows tr[data-request="{request_id}"]', "Cancel")
        wait.until(expected_conditions.alert_is_present()).accept()
        wait.until(lambda driver: driver.execute_script(TABLE_ROWS, "#requests-rows") == [])
        ended = requests.get(
            f"{server.base}/requests/{request_id}", headers={"X-Auth-Token": ops}, timeout=10
        )
        assert ended.json()["request"]["state"] == "cancelled"
    finally:
        requests.delete(pool_url, headers=headers, timeout=10)
        wait_for_a_free_vm(server, token)


def test_an_admin_sees_the_months_usage_by_pool_and_by_user(server, browser, tmp_path):
    """Spans of this month written into the server's database (a pool `batch` no longer
    configured, and a VM of no pool, on "large" VMs at 3.0 an hour): the Usage view shows
    their hours and costs by pool and by user, and downloads them as CSV."""
    now = datetime.datetime.now(datetime.UTC)
    month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    if now - month < datetime.timedelta(hours=1):
        pytest.skip("the spans take the month's first hour, which has not gone by yet")

    def span(number, status, start, minutes, pool="batch", user=None):
        begins = month + datetime.timedelta(minutes=start)
        return {
            "assignment_id": 900_000 + number,
            "cloud": "fake_driver",
            "pool": pool,
            "vm_type": pool,
            "size": "large",
            "status": status,
            "user": user,
            "holder": "ci" if user else None,
            "started_at": begins,
            "ended_at": begins + datetime.timedelta(minutes=minutes),
        }

    spans = [
        span(1, ASSIGNED, 0, 30, user="lin"),  # 0.5 h, 1.50
        span(2, ASSIGNED, 10, 12, user="lin"),  # 0.2 h, 0.60, two held at once
        span(3, FREE, 30, 24),  # idle, 0.4 h, 1.20
        span(4, FAULTY, 0, 6),  # 0.1 h, 0.30
        span(5, ASSIGNED, 0, 12, pool=None, user="mei"),  # 0.2 h, 0.60
    ]
    database = f"sqlite:///{server.env['DISPATCHER_INSTANCE_PATH']}/dispatcher.sqlite"
    engine = sqlalchemy.create_engine(database)
    with engine.begin() as connection:
        connection.execute(sqlalchemy.insert(Span.__table__), spans)
    engine.dispose()

    sign_in(browser, server, "admin", ADMIN_PASSWORD)
    wait = WebDriverWait(browser, WAIT)
    wait.until(lambda driver: driver.execute_script(TABLE_ROWS, "#usage-users-rows"))
    assert browser.find_element(By.ID, "usage").is_displayed()
    assert browser.find_element(By.CSS_SELECTOR, "nav a[href='#usage']").is_displayed()
    period = browser.find_element(By.ID, "usage-period").text
    assert period.startswith(f"This month so far, {month:%Y-%m-%d} 00:00 to ")

    rows = browser.execute_script(TABLE_ROWS, "#usage-pools-rows")
    pools = {cells[0]: cells[1:] for cells in rows}
    # Held hours and cost, idle hours and cost, faulty cost, total cost.
    assert pools["batch"] == ["0.7", "2.10", "0.4", "1.20", "0.30", "3.60"]
    assert pools["(no pool)"] == ["0.2", "0.60", "0.0", "0.00", "0.00", "0.60"]
    rows = browser.execute_script(TABLE_ROWS, "#usage-users-rows")
    users = {cells[0]: cells[1:] for cells in rows}
    # Held hours, cost, assigns, the most held at once.
    assert users["lin"] == ["0.7", "2.10", "2", "2"]
    assert users["mei"] == ["0.2", "0.60", "1", "1"]
    assert users["(nobody)"][0] == "0.0"  # idle and faulty VMs, which nobody held
    [pools_total] = browser.execute_script(TABLE_ROWS, "#usage-pools-total")
    [users_total] = browser.execute_script(TABLE_ROWS, "#usage-users-total")
    # Both tables count the same period: the same total cost.
    assert pools_total[0] == users_total[0] == "Total"
    assert pools_total[6] == users_total[2]

    downloads = tmp_path / "downloads"
    browser.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    browser.find_element(By.ID, "usage-csv").click()
    wait.until(lambda driver: list(downloads.glob("usage-*.csv")))
    [csv_file] = downloads.glob("usage-*.csv")
    assert browser.find_element(By.ID, "usage-message").text == f"Downloaded {csv_file.name}"
    lines = csv_file.read_text().splitlines()
    assert lines[0].startswith("pool,user,assigned_seconds,idle_seconds,faulty_seconds,")
    assert "batch,lin,2520,0,0,2.1,0.0,0.0,2.1,2,2,,,0,2" in lines
