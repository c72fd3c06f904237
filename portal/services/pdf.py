"""The one PDF path: ``render(template, context)``; WeasyPrint renders a Jinja template that extends
``pdf/_base.html`` (invoice, receipt, credit note), with the same document partials the pages show.

The URL fetcher serves only the app's own static files and the stored logo:
no network, no ``file://`` outside ``portal/static``.
"""
from __future__ import annotations

import mimetypes
from pathlib import Path

from flask import current_app, render_template
from weasyprint import HTML
from weasyprint.urls import URLFetcher, URLFetcherResponse

from portal.services.business import get_business

BASE = "https://portal.invalid/"
LOGO_URL = BASE + "branding/logo"
STATIC_PREFIX = BASE + "static/"


class FetchRefused(ValueError):
    pass


class PortalFetcher(URLFetcher):
    """Serves the stored logo, files under portal/static and inline data: URLs; refuses the rest."""

    def fetch(self, url, headers=None):
        if url.startswith("data:"):
            return super().fetch(url, headers)
        if url == LOGO_URL:
            business = get_business()
            if business.has_logo:
                return URLFetcherResponse(url, business.logo, {"Content-Type": business.logo_content_type})
            raise FetchRefused(url)
        if url.startswith(STATIC_PREFIX):
            root = Path(current_app.static_folder).resolve()
            target = (root / url[len(STATIC_PREFIX):].split("?")[0]).resolve()
            if root in target.parents and target.is_file():
                mime, _ = mimetypes.guess_type(target.name)
                return URLFetcherResponse(url, target.read_bytes(),
                                          {"Content-Type": mime or "application/octet-stream"})
        raise FetchRefused(f"the PDF may not fetch {url}")


def html(template: str, context: dict) -> str:
    """The HTML a PDF is made from (``in_pdf`` and ``logo_url`` added), for tests and previews."""
    return render_template(template, **{"logo_url": LOGO_URL, "in_pdf": True, **context})


def render(template: str, context: dict) -> bytes:
    """``template`` (a ``pdf/…`` page) rendered with ``context``, as PDF bytes."""
    return HTML(string=html(template, context), base_url=BASE, url_fetcher=PortalFetcher()).write_pdf()
