"""The console's page and files as the server answers them: the strict policy, nothing
inline or from elsewhere, the token kept in the tab only; and GET /api/v1/auth, which
tells the page who its user is. (In a browser: test_console_browser.py.)"""

import re

import pytest
from conftest import assert_error, token_client

from dispatcher.console import FILES

# The policy the console's page and files must be served under, written out: a change to
# dispatcher/console's constant that loosens it fails here.
POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/console", "text/html"),
        ("/console/assets/console.js", "text/javascript"),
        ("/console/assets/console.css", "text/css"),
    ],
)
def test_the_page_and_its_files_under_the_strict_policy(anonymous, path, content_type):
    # A file's answer holds the file open until it is closed, as a WSGI server would.
    with anonymous.get(path) as answer:
        assert answer.status_code == 200
        assert answer.content_type.startswith(content_type)
        assert answer.headers["Content-Security-Policy"] == POLICY
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
        assert answer.headers["Referrer-Policy"] == "no-referrer"


def test_no_other_file_is_served(anonymous):
    assert_error(anonymous.get("/console/assets/index.html"), 404, "Page not found")


def test_the_page_has_nothing_inline_and_nothing_from_elsewhere():
    page = (FILES / "index.html").read_text()
    scripts = re.findall(r"<script\b[^>]*>(.*?)</script>", page, re.DOTALL)
    assert scripts == [""]  # one script, by its src, with no code inline
    assert not re.search(r"\sstyle=|<style|\son[a-z]+=", page)
    assert not re.search(r"(src|href)=\"(https?:)?//", page)


def test_the_token_lives_in_the_tab_only():
    script = (FILES / "console.js").read_text()
    assert "sessionStorage" in script
    assert "localStorage" not in script
    assert "document.cookie" not in script


def test_the_script_writes_text_never_markup():
    # What the API answers (names, messages, quota rules) goes into the page as text.
    script = (FILES / "console.js").read_text()
    for writer in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write"):
        assert writer not in script


def test_who_the_token_is(app, anonymous):
    client = token_client(app, "ops", roles=("agent",))
    assert client.get("/api/v1/auth").json == {"status": "ok", "user": "ops", "roles": ["agent"]}
    reader = token_client(app, "reader", roles=())
    assert reader.get("/api/v1/auth").json["roles"] == []
    assert anonymous.get("/api/v1/auth").status_code == 401
