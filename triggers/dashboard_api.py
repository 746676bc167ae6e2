"""GET /api/cmk/dashboard: the admin dashboard, a page and its two files from `dashboard/`, served by the app.

The page holds no data: everything it shows it reads from the public HTTP API with the caller's credentials (a
function key the admin enters, sent as `x-functions-key`, or the App Service Authentication session). So the
page and its files are served without a key (auth level ANONYMOUS), like a sign-in page; every API route keeps
auth level FUNCTION. Asset URLs carry a digest of their content, so a browser caches them until they change.
"""

from __future__ import annotations

import hashlib
import html
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

import azure.durable_functions as df
import azure.functions as func

from cmk.errors import shown
from triggers.http import error_response

DASHBOARD_DIR = Path(__file__).resolve().parent.parent / "dashboard"
PAGE_ROUTE = "cmk/dashboard"
ASSETS = {"app.js": "text/javascript", "app.css": "text/css"}
SECURITY_HEADERS = {
    # Only this page's own script and styles; data from this origin's API; no framing.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

bp = df.Blueprint()


@cache
def _asset(name: str) -> tuple[bytes, str]:
    """The asset's bytes and a short digest of them."""
    body = (DASHBOARD_DIR / name).read_bytes()
    return body, hashlib.sha256(body).hexdigest()[:12]


def page_base(url: str) -> str:
    """The page's own path (`/api/cmk/dashboard` under the default route prefix), from the request URL."""
    path = urlsplit(url).path.rstrip("/")
    at = path.lower().rfind("/" + PAGE_ROUTE)
    return path[: at + len(PAGE_ROUTE) + 1] if at >= 0 else "/api/" + PAGE_ROUTE


def render_page(url: str) -> str:
    base = page_base(url)
    api_base = base[: -len(PAGE_ROUTE) - 1]
    page = (DASHBOARD_DIR / "index.html").read_text(encoding="utf-8")
    replacements = {
        "{{API_BASE}}": html.escape(api_base, quote=True),
        "{{APP_JS}}": html.escape(f"{base}/app.js?v={_asset('app.js')[1]}", quote=True),
        "{{APP_CSS}}": html.escape(f"{base}/app.css?v={_asset('app.css')[1]}", quote=True),
    }
    for marker, value in replacements.items():
        page = page.replace(marker, value)
    return page


@bp.function_name("cmk_dashboard")
@bp.route(route=PAGE_ROUTE, methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def dashboard(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(
        render_page(req.url),
        status_code=200,
        mimetype="text/html",
        charset="utf-8",
        headers={**SECURITY_HEADERS, "Cache-Control": "no-store"},
    )


@bp.function_name("cmk_dashboard_asset")
@bp.route(route=PAGE_ROUTE + "/{asset}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def dashboard_asset(req: func.HttpRequest) -> func.HttpResponse:
    name = req.route_params.get("asset", "")
    if name not in ASSETS:
        return error_response(404, "NotFound", f"The dashboard has no file {shown(name)}; it has {', '.join(ASSETS)}.")
    body, digest = _asset(name)
    versioned = req.params.get("v") == digest
    return func.HttpResponse(
        body,
        status_code=200,
        mimetype=ASSETS[name],
        charset="utf-8",
        headers={
            **SECURITY_HEADERS,
            "Cache-Control": "public, max-age=31536000, immutable" if versioned else "no-cache",
            "ETag": f'"{digest}"',
        },
    )
