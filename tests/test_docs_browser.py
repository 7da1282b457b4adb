"""The Swagger UI page of a live server, in headless Chromium: operations listed, "try it out"."""

from urllib.parse import urlsplit

import pytest
import requests
from helpers import CHROMEDRIVER, CHROMIUM, CHROMIUM_FLAGS, LOADED_URLS, WAIT
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from harness.ports import free_port

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()),
        reason=f"needs Debian's chromium and chromium-driver ({CHROMIUM}, {CHROMEDRIVER}): "
        "apt-get install chromium chromium-driver, as .ci/run does",
    ),
]

# Swagger UI has rendered the operations, or has given up on the document.
RENDERED = """
const root = document.querySelector('#swagger-ui');
const blocks = root.querySelectorAll('.opblock').length;
const failed = root.querySelector('.errors-wrapper, .version-pragma');
return blocks || failed ? {blocks: blocks, text: root.innerText} : null;
"""
# Method and path of each operation on the page.
OPERATIONS = """
return Array.from(document.querySelectorAll('#swagger-ui .opblock')).map(block => [
  block.querySelector('.opblock-summary-method').textContent.trim(),
  block.querySelector('.opblock-summary-path').getAttribute('data-path'),
]);
"""
# The live response Swagger UI shows once a request has been executed.
LIVE_RESPONSE = """
const row = document.querySelector(`#${arguments[0]} .live-responses-table .response`);
const body = row && row.querySelector('.response-col_description pre');
return body && body.textContent.trim() ? {
  code: row.querySelector('.response-col_status').textContent.trim(),
  body: body.textContent,
} : null;
"""


@pytest.fixture
def browser(tmp_path):
    """Headless Chromium driven by Debian's chromedriver, with a fresh profile."""
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    # ChromeDriver on a port drawn as for every server of the suite (harness.ports).
    service = Service(str(CHROMEDRIVER), port=free_port())
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(WAIT)
    yield driver
    driver.quit()


def test_swagger_ui_lists_the_operations_and_tries_get_root(server, browser, tmp_path):
    """The docs page lists every operation, and "try it out" on GET /api/v1/ shows a live 200."""
    document = requests.get(f"{server.base}/openapi.json", timeout=10).json()
    expected = {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method != "parameters"
    }
    origin = "{0.scheme}://{0.netloc}/".format(urlsplit(server.base))
    try:
        browser.get(f"{server.base}/docs")
        page = WebDriverWait(browser, WAIT).until(lambda driver: driver.execute_script(RENDERED))
        assert page["blocks"], f"Swagger UI rendered no operation:\n{page['text']}"

        listed = [tuple(operation) for operation in browser.execute_script(OPERATIONS)]
        assert len(listed) >= 40
        assert set(listed) == expected and len(listed) == len(expected)
        for operation in [
            ("GET", "/api/v1/{action}/{cloud}"),  # GET /api/v1/nodes/<cloud>, and the others
            ("GET", "/api/v1/nodes/{cloud}/{node_id}"),
            ("POST", "/api/v1/vm/start/{cloud}"),
            ("POST", "/api/v1/auth"),
        ]:
            assert operation in listed

        # Operation ids from the document; Swagger UI puts them in each block's id.
        block = "operations-default-api_v1_home_get"
        browser.find_element(By.CSS_SELECTOR, f"#{block} .opblock-summary-path").click()
        wait = WebDriverWait(browser, WAIT)
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, f"#{block} .try-out__btn")).click()
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, f"#{block} .execute")).click()
        response = wait.until(lambda driver: driver.execute_script(LIVE_RESPONSE, block))
        assert response["code"] == "200"
        assert '"status": "ok"' in response["body"]

        loaded = browser.execute_script(LOADED_URLS)
        assert f"{server.base}/openapi.json" in loaded
        assert f"{server.base}/" in loaded  # the request "try it out" made
        assert [url for url in loaded if not url.startswith(origin)] == []
    finally:
        browser.save_screenshot(str(tmp_path / "docs.png"))  # kept by pytest, for a look
