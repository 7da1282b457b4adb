"""The OpenAPI document and its browsable page (Swagger UI from an installed package)."""

from pathlib import Path

import flask_swagger_ui
from flask import current_app, jsonify, send_from_directory, url_for

from .base import PublicView, answers
from .openapi import build_document

# Swagger UI's files from the flask-swagger-ui package, not a CDN: operators' networks
# are often closed. It ships Swagger UI 5, the first to read OpenAPI 3.1 (the
# swagger-ui-bundle package stops at 4.15, which refuses our document). Only the
# files are used; the page is ours and points Swagger UI at our document.
SWAGGER_UI_FILES = Path(flask_swagger_ui.__file__).with_name("dist")
PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>dispatcher API</title>
  <link rel="stylesheet" href="{assets}/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{assets}/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({{url: "{document}", dom_id: "#swagger-ui"}});
  </script>
</body>
</html>
"""


class OpenAPIDocumentAPI(PublicView):
    """``GET /api/v1/openapi.json``: the OpenAPI 3.1 document of the API (no token needed)."""

    @answers(content_type="application/json")
    def get(self):
        """The OpenAPI document of this API."""
        cache = current_app.extensions.setdefault("dispatcher.openapi", {})
        if "document" not in cache:  # the routes do not change once the app runs
            cache["document"] = build_document()
        return jsonify(cache["document"])


class DocsPageAPI(PublicView):
    """``GET /api/v1/docs``: the document as a browsable page (no token needed)."""

    @answers(content_type="text/html")
    def get(self):
        """A browsable page of the OpenAPI document."""
        page = PAGE.format(
            assets=url_for(".docs_asset", filename="").rstrip("/"),
            document=url_for(".openapi"),
        )
        return page, 200, {"Content-Type": "text/html; charset=utf-8"}


class DocsAssetAPI(PublicView):
    """``GET /api/v1/docs/<file>``: Swagger UI's own files."""

    @answers(content_type="*/*")
    def get(self, filename):
        """One of Swagger UI's files."""
        return send_from_directory(SWAGGER_UI_FILES, filename)
