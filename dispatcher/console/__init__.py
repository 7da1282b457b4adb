"""The operators' console, ``GET /console``: one page and its two files, served by the
dispatcher itself from the package (no CDN: it works without the internet), under a
strict Content-Security-Policy. Every view is read from the public API with the
signed-in user's token (``static/console.js``); the console has no endpoint of its own.

Plain HTML, CSS and one JavaScript module, no framework and no build step: a page of
tables, forms and one small chart needs neither, and there is nothing to rebuild or to
keep up to date beside the dispatcher's own dependencies.
"""

from pathlib import Path

from flask import Blueprint, send_from_directory

from ..api.base import PublicView, answers

FILES = Path(__file__).with_name("static")
# No inline script or style, nothing from another origin; the API on this origin only.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

bp = Blueprint("console", __name__)


class ConsolePageAPI(PublicView):
    """``GET /console``: the operators' console (no token needed to load it; it signs in)."""

    @answers(content_type="text/html")
    def get(self):
        """The operators' console: clouds, pools, assignments, history and the reconcile,
        read from this API with the token of whoever signs in."""
        return send_from_directory(FILES, "index.html", max_age=0)


class ConsoleAssetAPI(PublicView):
    """``GET /console/assets/<file>``: the console's script and style sheet."""

    @answers(content_type="*/*")
    def get(self, filename):
        """The console's script or style sheet."""
        return send_from_directory(FILES, filename, max_age=0)


bp.add_url_rule("/console", view_func=ConsolePageAPI.as_view("page"))
bp.add_url_rule(
    "/console/assets/<any('console.js', 'console.css'):filename>",
    view_func=ConsoleAssetAPI.as_view("asset"),
)


@bp.after_request
def guard(response):
    """The console's pages and files under the strict policy, never framed or sniffed."""
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def init_app(app) -> None:
    """Serve the console on ``app``."""
    app.register_blueprint(bp)
